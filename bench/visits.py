"""Benchmark visit capture through gunicorn: full visit submissions per second, next to health.

For each database (PostgreSQL: a throwaway database created and dropped on the server named by
--pg-url; SQLite: a temporary file) the script migrates a fresh schema, builds a trial (sites,
a generated list, coordinators, participants randomized eight weeks ago), starts gunicorn with
--workers worker processes on a free loopback port, and sends requests from --clients
threads to ``GET /api/v1/health`` (the floor: a request that touches the database and nothing
else) and to ``POST /api/v1/participants/{id}/visits`` with a full visit: 7 to 14 days of
drinking calendar, OCDS (14 items), CIWA-Ar (10 items), vitals and 3 to 5 liver labs, one
participant per request. Each such request validates the whole visit, writes some 25 to 40
rows and 100 to 180 audit rows in one transaction. Both are warmed up first with 4 x
--clients untimed calls of their own (a worker's first visits compile its statements and
PostgreSQL's prepared statements; a running service is past them), as in bench/randomize.py,
on participants of their own. The timed calls then run in --rounds rounds of health checks
followed by visits (--health-requests checks, 4 x --requests by default, so each phase lasts
about as long as the other), so that both are timed on the machine as it is at the time. It
prints throughput, p50, p95 and the visits/health throughput ratio over all rounds and per
round, then checks that every visit was stored once and that the audit chain verifies.

Goal (issue 4): visit throughput at least a quarter of the health throughput, zero errors.

    .venv/bin/python bench/visits.py                 # both databases
    .venv/bin/python bench/visits.py --db sqlite --requests 300

Not a test: timings depend on the machine. Exit status 1 if any request failed, a visit is
missing or doubled, or the audit chain does not verify.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.randomize import (  # noqa: E402 - the shared harness of the benchmarks
    DEFAULT_PG,
    SITES,
    bench_config,
    combine_loads,
    gunicorn,
    make_ready,
    run_load,
    throwaway_database,
)

VISIT_CODE = "week_8"  # day 56, window -5/+5: a regular visit with every form
CIWA_ITEMS = (
    ("nausea_vomiting", 7),
    ("tremor", 7),
    ("paroxysmal_sweats", 7),
    ("anxiety", 7),
    ("agitation", 7),
    ("tactile_disturbances", 7),
    ("auditory_disturbances", 7),
    ("visual_disturbances", 7),
    ("headache", 7),
    ("orientation", 4),
)


def visit_body(rng: random.Random, visit_date) -> dict:
    """A complete visit as a site enters it (the JSON body of the POST)."""
    days = rng.randint(7, 14)
    tests = rng.sample(["GGT", "ALT", "AST", "bilirubin", "CDT"], rng.randint(3, 5))
    units = {
        "GGT": ("U/L", 55),
        "ALT": ("U/L", 45),
        "AST": ("U/L", 40),
        "bilirubin": ("umol/L", 21),
        "CDT": ("%", 1.7),
    }
    systolic = rng.randint(110, 160)
    return {
        "visit_code": VISIT_CODE,
        "visit_date": visit_date.isoformat(),
        "drinking": [
            {
                "date": (visit_date - timedelta(days=k)).isoformat(),
                "standard_drinks": rng.choice([0, 0, 1, 2, 3.5, 5, 8]),
            }
            for k in range(days, 0, -1)
        ],
        "ocds": {f"item_{n}": rng.randint(0, 4) for n in range(1, 15)},
        "ciwa": {item: rng.randint(0, min(top, 3)) for item, top in CIWA_ITEMS},
        "vitals": {
            "systolic_bp": systolic,
            "diastolic_bp": systolic - rng.randint(30, 50),
            "heart_rate": rng.randint(55, 100),
            "weight_kg": round(rng.uniform(55, 110), 1),
        },
        "labs": [
            {
                "test": test,
                "value": round(rng.uniform(0.4, 3.0) * units[test][1], 1),
                "unit": units[test][0],
                "upper_limit_normal": units[test][1],
            }
            for test in tests
        ],
    }


def prepare_trial(database_url: str, instance: Path, arm_key: str, participants: int):
    """Migrate, then build sites, a list, coordinators and participants randomized 56 days
    ago (so week 8 is due today); return the app and the work: (participant, token, body)."""
    from flask_migrate import upgrade

    from randomization import lists, services
    from trial import create_app
    from trial.auth import services as auth
    from trial.auth.tokens import issue_token
    from trial.cli_support import system_actor
    from trial.extensions import db
    from trial.participants.services import register_participants, site_today
    from trial.sites.services import create_site

    app = create_app(bench_config(database_url, instance, arm_key))
    rng = random.Random(20261121)
    with app.app_context():
        upgrade(directory=app.config["MIGRATIONS_DIR"])
        per_site = -(-participants // len(SITES))
        sites = {}
        for code in SITES:
            sites[code] = create_site(
                system_actor(),
                code=code,
                name=f"Bench {code}",
                timezone="UTC",
                planned_enrollment=per_site,
            )
        statistician = auth.create_user(
            system_actor(),
            username="bench.ustat",
            role="unblinded_statistician",
            site_codes=[],
            password=None,
        )
        lists.generate(statistician)
        tokens, users = {}, {}
        for code in SITES:
            users[code] = auth.create_user(
                system_actor(),
                username=f"bench.coord.{code}",
                role="coordinator",
                site_codes=[code],
                password=None,
            )
            tokens[code], _ = issue_token(
                system_actor(), users[code], label="bench", ttl=timedelta(hours=2)
            )
        today = site_today(sites[SITES[0]])
        day0 = datetime.combine(today - timedelta(days=56), datetime.min.time(), tzinfo=UTC)
        consent = today - timedelta(days=80)
        work = []
        for index, code in enumerate(SITES):
            count = len(range(index, participants, len(SITES)))
            entries = [("FM"[n % 2], 1975, consent) for n in range(count)]
            for participant in register_participants(users[code], code, entries):
                make_ready(users[code], participant, screening=day0.date() - timedelta(days=7))
                services.randomize(
                    users[code],
                    participant.participant_id,
                    eligibility_confirmed=True,
                    at=day0 + timedelta(hours=9, minutes=len(work)),
                )
                work.append((participant.participant_id, tokens[code], visit_body(rng, today)))
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    rng.shuffle(work)
    return app, work


def verify_after(app, expected: int) -> tuple[bool, list[str]]:
    from sqlalchemy import func, select

    from trial.audit.services import verify_chain
    from trial.extensions import db
    from trial.visits.models import Visit

    with app.app_context():
        chain = verify_chain()
        timed = Visit.visit_code == VISIT_CODE  # not the screening visits of the set-up
        visits = db.session.scalar(select(func.count()).select_from(Visit).where(timed))
        distinct = db.session.scalar(
            select(func.count(func.distinct(Visit.participant_id))).where(timed)
        )
        lines = [
            f"visits stored: {visits} for {distinct} participants (expected {expected})",
            f"audit chain: {'ok' if chain.ok else chain.problem} ({chain.rows_checked} rows)",
        ]
        db.session.remove()
        db.engine.dispose()
    return chain.ok and visits == distinct == expected, lines


def bench(kind: str, args) -> dict:
    arm_key = Fernet.generate_key().decode()
    instance = Path(tempfile.mkdtemp(prefix=f"bench-{kind}-instance-"))
    try:
        with throwaway_database(kind, args.pg_url) as url:
            t0 = time.perf_counter()
            warm_up = 4 * args.clients
            app, work = prepare_trial(url, instance, arm_key, args.requests + warm_up)
            print(
                f"[{kind}] trial ready in {time.perf_counter() - t0:.1f} s "
                f"({len(work)} participants randomized 8 weeks ago)",
                flush=True,
            )
            with gunicorn(url, instance, arm_key, args.workers) as base:

                def health(session):
                    return session.get(f"{base}/api/v1/health", timeout=120).status_code

                def submit(pid, token, body):
                    def call(session):
                        return session.post(
                            f"{base}/api/v1/participants/{pid}/visits",
                            headers={"Authorization": f"Bearer {token}"},
                            json=body,
                            timeout=120,
                        ).status_code

                    return call

                run_load([health] * warm_up, args.clients)
                warmed = run_load([submit(*item) for item in work[:warm_up]], args.clients)
                # Rounds of health then visits, so both see the machine as it was at the
                # time (a shared machine's speed drifts by tens of per cent within minutes).
                floors, loads = [], []
                timed = work[warm_up:]
                for r in range(args.rounds):
                    checks = args.health_requests * (r + 1) // args.rounds
                    checks -= args.health_requests * r // args.rounds
                    share = timed[
                        len(timed) * r // args.rounds : len(timed) * (r + 1) // args.rounds
                    ]
                    floors.append(run_load([health] * checks, args.clients))
                    loads.append(run_load([submit(*item) for item in share], args.clients))
                floor, load = combine_loads(floors), combine_loads(loads)
            ok, lines = verify_after(app, len(work))
    finally:
        shutil.rmtree(instance, ignore_errors=True)
    errors = {
        "health": [s for s in floor["statuses"] if s != 200],
        "visits": [s for s in warmed["statuses"] + load["statuses"] if s != 201],
    }
    return {
        "kind": kind,
        "health": floor,
        "visits": load,
        "verified": ok,
        "verify_lines": lines,
        "errors": errors,
        "rows": sum(len(b["drinking"]) + len(b["labs"]) + 4 for _, _, b in work) / len(work),
        "warm_up": warm_up,
        "round_ratios": [v["rate"] / h["rate"] for h, v in zip(floors, loads, strict=True)],
    }


def report(result: dict) -> None:
    kind, floor, load = result["kind"], result["health"], result["visits"]
    print(
        f"\n== {kind}: {load['n']} visit submissions "
        f"(~{result['rows']:.0f} form rows each), {floor['n']} health checks, "
        f"after {result['warm_up']} untimed of each =="
    )
    print(f"{'endpoint':<12}{'req/s':>10}{'p50 ms':>10}{'p95 ms':>10}{'errors':>8}")
    for name, data in (("health", floor), ("visits", load)):
        print(
            f"{name:<12}{data['rate']:>10.1f}{data['p50'] * 1000:>10.1f}"
            f"{data['p95'] * 1000:>10.1f}{len(result['errors'][name]):>8}"
        )
    ratio = load["rate"] / floor["rate"]
    print(
        f"throughput visits/health: {ratio:.3f} "
        f"(goal: at least 0.25 -> {'met' if ratio >= 0.25 else 'NOT met'}); "
        f"p50 {load['p50'] / floor['p50']:.1f}x the health p50"
    )
    print(
        f"rounds (health then visits, {len(result['round_ratios'])}x): ratios "
        + ", ".join(f"{x:.2f}" for x in result["round_ratios"])
    )
    for line in result["verify_lines"]:
        print(f"  {line}")
    for name, bad in result["errors"].items():
        if bad:
            print(f"  {name} errors: {sorted(set(map(str, bad)))}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["both", "sqlite", "postgresql"], default="both")
    parser.add_argument(
        "--requests",
        type=int,
        default=400,
        help="visit submissions per database",
    )
    parser.add_argument(
        "--health-requests",
        type=int,
        default=None,
        help="health checks per database (default: 4x --requests, so the floor is timed "
        "about as long as the visits)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="alternate health and visits in this many rounds (each a share of the calls)",
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_PG_URL", DEFAULT_PG),
        help="a PostgreSQL URL whose server may create and drop databases",
    )
    args = parser.parse_args(argv)
    if args.health_requests is None:
        args.health_requests = 4 * args.requests
    kinds = ["postgresql", "sqlite"] if args.db == "both" else [args.db]
    print(
        f"{args.clients} clients, gunicorn --workers {args.workers}, {os.cpu_count()} CPUs",
        flush=True,
    )
    failed = False
    for kind in kinds:
        result = bench(kind, args)
        report(result)
        failed |= bool(
            result["errors"]["health"] or result["errors"]["visits"] or not result["verified"]
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
