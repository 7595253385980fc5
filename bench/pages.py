"""Benchmark the pages: the time each page of one site takes, one client and 16, against
``GET /api/v1/health`` as the floor; then the central roles' start pages (the monitor's
source verification and queries, the data manager's coding, the statistician's bundle form,
the DSMB's reports, the unblinded statistician's page, the admin's accounts, sites and audit
trail), each as its demo account opens it.

For each database (SQLite: a temporary file; PostgreSQL: a throwaway database on the server
named by --pg-url) the script migrates a fresh schema, loads the demo trial
(``flask trial demo --participants N``; S01 holds a third of it), starts gunicorn with
--workers worker processes, and signs each client in once through the sign-in form (a
``requests.Session`` per client, the CSRF token read from the page, as a browser does). It
then asks for each page of site S01 as its coordinator (the visits awaiting signature as its
investigator): first --warm untimed calls from each of --clients clients at once (so every
worker has served it), then from one client, --repeat times, then from --clients clients at
once, --repeat calls each. The floor is measured the same way in the
same run. Times are taken at the client over loopback: the server's time plus well under a
millisecond.

``--worklist-cache off`` builds every page afresh: each worker otherwise keeps what the
worklist and the participant page read and render (a site's visit lists, queries and SAE
reports; a participant's records; their markup) until the audit chain or the site's date
moves (``trial/worklist/kept.py``), so the kept figures are those of a page opened again
while nothing changed, and the "off" figures those of the first opening after a change (at
a busy site, often).

Goals (issue 24): p95 under 150 ms per page with one client; the worklist and the participant
page within 5x the floor's p50 under 16 clients (the page's p50 against the floor's p50,
both under the same load).

    .venv/bin/python bench/pages.py                        # SQLite, 2,000 participants
    .venv/bin/python bench/pages.py --participants 400 --db both
    .venv/bin/python bench/pages.py --only worklist,participant   # the goal's pages alone

Not a test: timings depend on the machine. Exit status 1 if a page did not answer 200.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.randomize import DEFAULT_PG, bench_config, gunicorn, throwaway_database  # noqa: E402

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = re.compile(r"password for every demo user: (\S+)")
TOKEN = re.compile(r"^(\S+)\s+([A-Za-z0-9_-]{40,})$", re.M)
SITE = "S01"
COORDINATOR, INVESTIGATOR = "coordinator.s01", "investigator.s01"
# The pages the goal under load names.
UNDER_LOAD_GOAL = ("worklist", "participant")
# The central roles' start pages (issue 25), each as its demo account opens it: across every
# site (the monitor: S01-S03), so the largest reads the demo offers.
CENTRAL_PAGES = {
    "verification": ("monitor", "/verification"),
    "queries (monitor)": ("monitor", "/queries"),
    "coding": ("data_manager", "/coding"),
    "bundle form": ("statistician", "/bundle"),
    "reports": ("dsmb", "/reports"),
    "randomization": ("unblinded_statistician", "/randomization"),
    "accounts": ("admin", "/users"),
    "sites": ("admin", "/sites"),
    "audit trail": ("admin", "/audit-trail"),
}


# --- the trial ---------------------------------------------------------------------------


def load_demo(url: str, instance: Path, arm_key: str, participants: int) -> tuple[str, dict]:
    """Migrate and load the demo; returns the demo users' password and API tokens."""
    from flask_migrate import upgrade

    from trial import create_app
    from trial.extensions import db

    app = create_app(bench_config(url, instance, arm_key))
    with app.app_context():
        upgrade(directory=app.config["MIGRATIONS_DIR"])
        result = app.test_cli_runner().invoke(
            args=["trial", "demo", "--participants", str(participants), "--seed", "1"]
        )
        db.session.remove()
        db.engine.dispose()
    if result.exit_code != 0:
        raise SystemExit(f"demo failed: {result.output[-800:]}")
    return PASSWORD.search(result.output).group(1), dict(TOKEN.findall(result.output))


def choose_pages(api: str, token: str) -> dict[str, tuple[str, str]]:
    """The pages to time, as ``{name: (user, path)}``: S01's lists and forms, and the pages
    of its participant with the most visits (a typical record late in the schedule)."""
    headers = {"Authorization": f"Bearer {token}"}
    people = requests.get(f"{api}/participants", headers=headers, timeout=120).json()
    people = [p for p in people if p["participant_id"].startswith(SITE)]

    def visits(pid):
        return requests.get(f"{api}/participants/{pid}/visits", headers=headers, timeout=60).json()

    randomized = [p for p in people if p["status"] not in ("screening", "screen_failure")]
    # The most visits among the first randomized (the earliest are furthest in the schedule).
    heavy = max(randomized[:10], key=lambda p: len(visits(p["participant_id"])))["participant_id"]
    last_visit = max(v["id"] for v in visits(heavy))
    events = []
    for person in randomized:
        shown = requests.get(
            f"{api}/participants/{person['participant_id']}/adverse-events",
            headers=headers,
            timeout=60,
        ).json()
        if shown:
            events = shown
            break
    newest, todo = None, None
    for person in reversed(people):  # the last registered: visits still to record
        schedule = requests.get(
            f"{api}/participants/{person['participant_id']}/schedule", headers=headers, timeout=60
        ).json()
        open_visits = [
            v for v in schedule if not v.get("visit_id") and v["status"] != "not_expected"
        ]
        if open_visits:
            newest, todo = person["participant_id"], open_visits[0]["code"]
            break
    pages = {
        "worklist": (COORDINATOR, "/worklist"),
        "participants": (COORDINATOR, "/participants"),
        "participants?status": (COORDINATOR, "/participants?status=randomized"),
        "register form": (COORDINATOR, "/participants/new"),
        "participant": (COORDINATOR, f"/participants/{heavy}"),
        "visit": (COORDINATOR, f"/visits/{last_visit}"),
        "eligibility": (COORDINATOR, f"/participants/{heavy}/eligibility"),
        "dosing": (COORDINATOR, f"/participants/{heavy}/dosing"),
        "adverse events": (COORDINATOR, f"/participants/{heavy}/adverse-events"),
        "queries": (COORDINATOR, "/queries"),
        "signatures": (INVESTIGATOR, "/signatures"),
    }
    if newest:
        pages["new visit form"] = (
            COORDINATOR,
            f"/participants/{newest}/visits/new?visit_code={todo}",
        )
    if events:
        pages["adverse event"] = (COORDINATOR, f"/adverse-events/{events[0]['id']}")
    return {**pages, **CENTRAL_PAGES}


# --- clients -----------------------------------------------------------------------------


def signed_in(base: str, username: str, password: str) -> requests.Session:
    """A client signed in through the sign-in form, as a browser is."""
    client = requests.Session()
    form = client.get(f"{base}/sign-in", timeout=60)
    token = CSRF.search(form.text).group(1)
    answer = client.post(
        f"{base}/sign-in",
        data={"username": username, "password": password, "csrf_token": token},
        allow_redirects=False,
        timeout=60,
    )
    if answer.status_code != 302:
        raise SystemExit(f"sign-in as {username} failed: {answer.status_code}")
    return client


def timed(client: requests.Session, url: str, count: int, failures: list) -> list[float]:
    times = []
    for _ in range(count):
        began = time.perf_counter()
        response = client.get(url, allow_redirects=False, timeout=300)
        times.append(time.perf_counter() - began)
        if response.status_code != 200:
            failures.append((url, response.status_code))
    return times


def warm_every_worker(clients: list[requests.Session], url: str, args, failures: list) -> None:
    """--warm untimed calls from each of the clients at once. One client's calls in a row
    may all reach the same gunicorn worker, leaving another to build the pages it keeps
    inside the timed calls; with more clients at once than workers, every worker serves."""
    threads = [
        threading.Thread(target=timed, args=(client, url, args.warm, failures))
        for client in clients
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def under_load(clients: list[requests.Session], url: str, args, failures: list) -> list[float]:
    """Every client asks for ``url`` --repeat times, all released together."""
    start = threading.Barrier(len(clients))
    results: list[list[float]] = [[] for _ in clients]

    def work(index: int) -> None:
        timed(clients[index], url, args.warm, failures)  # each client's own warm-up
        start.wait()
        results[index] = timed(clients[index], url, args.repeat, failures)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [t for times in results for t in times]


def figures(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


# --- the run -----------------------------------------------------------------------------


def bench(kind: str, args) -> tuple[dict, list]:
    arm_key = Fernet.generate_key().decode()
    instance = Path(tempfile.mkdtemp(prefix=f"bench-pages-{kind}-"))
    results, failures = {}, []
    try:
        with throwaway_database(kind, args.pg_url) as url:
            t0 = time.perf_counter()
            password, tokens = load_demo(url, instance, arm_key, args.participants)
            loaded = time.perf_counter() - t0
            print(f"[{kind}] demo of {args.participants} loaded in {loaded:.0f} s", flush=True)
            with gunicorn(url, instance, arm_key, args.workers) as base:
                pages = choose_pages(f"{base}/api/v1", tokens[COORDINATOR])
                if args.only:
                    chosen = {name.strip() for name in args.only.split(",")}
                    pages = {name: page for name, page in pages.items() if name in chosen}
                users = {user for user, _ in pages.values()}
                one = {user: signed_in(base, user, password) for user in users}
                many = {
                    user: [signed_in(base, user, password) for _ in range(args.clients)]
                    for user in users
                }
                floor_url = f"{base}/api/v1/health"
                warm_every_worker(many[COORDINATOR], floor_url, args, failures)
                results["health (floor)"] = {
                    "path": "/api/v1/health",
                    "one": figures(timed(one[COORDINATOR], floor_url, args.repeat, failures)),
                    "many": figures(under_load(many[COORDINATOR], floor_url, args, failures)),
                }
                for name, (user, path) in pages.items():
                    warm_every_worker(many[user], base + path, args, failures)
                    results[name] = {
                        "path": path,
                        "one": figures(timed(one[user], base + path, args.repeat, failures)),
                        "many": figures(under_load(many[user], base + path, args, failures)),
                    }
                    print(f"[{kind}] {name}: done", flush=True)
    finally:
        shutil.rmtree(instance, ignore_errors=True)
    return results, failures


def report(kind: str, results: dict, args) -> bool:
    floor = results["health (floor)"]
    floor_one, floor_many = floor["one"][0], floor["many"][0]
    print(
        f"\n== {kind}: site {SITE} of a {args.participants}-participant demo; gunicorn "
        f"--workers {args.workers}; {args.repeat} calls per client ==\n"
        f"{'page':<22}{'1 client p50':>13}{'p95':>8}{'x floor':>9}   "
        f"{args.clients} clients p50{'p95':>8}{'x floor':>9}   goal"
    )
    ok = True
    for name, row in results.items():
        (p50, p95), (m50, m95) = row["one"], row["many"]
        goals = []
        if name != "health (floor)":
            met = p95 < 0.150
            goals.append(f"p95<150ms {'met' if met else 'NOT met'}")
            ok &= met
            if name in UNDER_LOAD_GOAL:
                met = m50 <= 5 * floor_many
                goals.append(f"{args.clients}x p50<=5x floor {'met' if met else 'NOT met'}")
                ok &= met
        print(
            f"{name:<22}{p50 * 1000:>10.1f} ms{p95 * 1000:>8.1f}{p50 / floor_one:>8.1f}x   "
            f"{m50 * 1000:>13.1f} ms{m95 * 1000:>8.1f}{m50 / floor_many:>8.1f}x   "
            f"{'; '.join(goals)}"
        )
    print("pages: " + ", ".join(f"{n} = {r['path']}" for n, r in results.items()))
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["both", "sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--participants", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per client")
    parser.add_argument(
        "--warm",
        type=int,
        default=10,
        help="untimed calls per client first, all clients at once (every worker serves)",
    )
    parser.add_argument(
        "--worklist-cache",
        choices=["on", "off"],
        default="on",
        help="off: the worklist and participant page are built afresh on every request "
        "(WORKLIST_CACHE=0), as after any write",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated page names to time (e.g. 'worklist,participant'); default all",
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_PG_URL", DEFAULT_PG),
        help="a PostgreSQL URL whose server may create and drop databases",
    )
    args = parser.parse_args(argv)
    if args.worklist_cache == "off":
        os.environ["WORKLIST_CACHE"] = "0"  # the server inherits the environment
    print(f"{os.cpu_count()} CPUs; worklist cache {args.worklist_cache}", flush=True)
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    failed = False
    for kind in kinds:
        results, failures = bench(kind, args)
        report(kind, results, args)
        if failures:
            failed = True
            print(f"  FAILED calls: {sorted(set(failures))[:10]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
