"""Benchmark the blinded CSV bundle: time and peak memory against the floor of a plain dump.

For each database (SQLite: a temporary file; PostgreSQL: a throwaway database named
``bench_<random>`` created on the server of --postgres, or of TEST_DATABASE_URL, and
dropped afterwards) and each size in --participants (500 and 2,000 by default; issue 26 asks
for 2,000 and 10,000), the script migrates a fresh schema and loads the demo trial
(``flask trial demo``), then:

* the bundle: runs ``flask --app wsgi exports blinded --as statistician --out FILE.zip``
  (CSV) as a child process, --repeats times, each in a fresh child, timing its wall clock and
  reading that child's own peak RSS (``os.wait4``: the maximum is per run, not per script);
* the floor: the database's own command-line client writing the same tables as CSV, one
  process for all ten tables (participants, visits, drinking_days, ocds_assessments,
  ciwa_assessments, vitals, lab_results, dosing_records, adverse_events,
  protocol_deviations): ``sqlite3 -csv -header`` with ``.once FILE`` per table, or ``psql``
  with ``\\copy (SELECT * FROM t) TO FILE CSV HEADER`` per table; run once right after each
  timed pull from the server (below), so that floor and bundle are timed on the machine as
  it is at the time;
* the bundle from a running server: ``GET /api/v1/exports/blinded`` (CSV) on ``gunicorn
  wsgi:app`` (one worker, on loopback) with a statistician's token, --repeats times after one
  untimed pull (which loads the export code; each pull forks its own export helpers),
  timing each request until the last byte of the ZIP is read: how a
  statistician pulls a cut, without the process start-up a command pays; and the peak RSS
  of that worker process (``VmHWM`` in ``/proc``, read after its last pull: the request's
  process, not the helpers it forks for each bundle);
* the start-up: ``flask --app wsgi exports --help``, the cost of starting Python and
  importing the application that every bundle run pays (printed, not subtracted).

Peak memory is each child's own maximum resident set (the largest of the command and the
helpers it forks), read through GNU time (``/usr/bin/time -f %M``), falling back to
``os.wait4`` when it is missing. Each command's CPU time (its own and its helpers', user and
system, from ``os.wait4``) is printed beside its wall time: on a shared machine the wall
time of one run says as much about the others' load as about the bundle.

It prints the median of each timing, the bundle/floor ratio, the peak memory and, per
database, the growth of the peak memory from the smallest to the largest size.

The ratio is printed for both ways of pulling the bundle (command and server).

Goals (issue 26, section 4: ten thousand participants): the bundle from the server within
1.5x the floor, and its peak memory flat from 2,000 to 10,000 participants (within 10%), on
both databases. Earlier (issue 5): the command within 2x the floor, peak memory under 250 MB.

    .venv/bin/python bench/export.py                      # SQLite (+ PostgreSQL if
                                                          #   TEST_DATABASE_URL is set)
    .venv/bin/python bench/export.py --db both --participants 2000 10000 --repeats 2
    .venv/bin/python bench/export.py --db sqlite --sizes 500 2000   # --sizes: the old name
    .venv/bin/python bench/export.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres

Not a test: timings depend on the machine. Exit status 1 if a command failed (a missing
sqlite3 or psql client is reported and its floor skipped), 0 otherwise, goals met or not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from cryptography.fernet import Fernet
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.randomize import DEFAULT_PG, gunicorn, throwaway_database  # noqa: E402 - shared

TABLES = (
    "participants",
    "visits",
    "drinking_days",
    "ocds_assessments",
    "ciwa_assessments",
    "vitals",
    "lab_results",
    "blinding_assessments",
    "dosing_records",
    "adverse_events",
    "protocol_deviations",
)
GOAL_RATIO = {"command": 2.0, "server": 1.5}  # issue 5; issue 26 for the server
GOAL_PEAK_MB = 250.0
GOAL_GROWTH_PCT = 10.0


class CommandFailed(RuntimeError):
    pass


# --- databases -------------------------------------------------------------------------------


def libpq_url(url: str) -> str:
    """The SQLAlchemy URL as psql understands it (no +driver)."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def sqlite_path(url: str) -> str:
    return make_url(url).database


# --- child processes -------------------------------------------------------------------------


GNU_TIME = "/usr/bin/time"


def run_measured(command: list[str], env: dict, stdin: str | None = None) -> tuple[float, float]:
    """Run a command in a fresh child; return (wall seconds, the child's peak RSS in MB)."""
    return measure(command, env, stdin)[:2]


def measure(command: list[str], env: dict, stdin: str | None = None) -> tuple[float, float, float]:
    """Run a command in a fresh child; return (wall seconds, peak RSS in MB, CPU seconds).

    CPU seconds: user and system time of the child and every process it waited for (its
    helpers), from ``os.wait4``.

    A child's ru_maxrss starts at its parent's RSS at the fork (Linux carries the high-water
    mark across exec), so the peak is read through GNU time, a small process that forks the
    command itself: its %M is the command's own peak. Without GNU time, ``os.wait4`` on the
    child is the fallback, which never reads below this script's own RSS.
    """
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "maxrss"
        wrapped = command
        if os.access(GNU_TIME, os.X_OK):
            wrapped = [GNU_TIME, "-f", "%M", "-o", str(report), *command]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            started = time.perf_counter()
            process = subprocess.Popen(
                wrapped,
                cwd=ROOT,
                env=env,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
            if stdin is not None:
                process.stdin.write(stdin.encode())
                process.stdin.close()
            _, status, usage = os.wait4(process.pid, 0)
            elapsed = time.perf_counter() - started
            process.returncode = os.waitstatus_to_exitcode(status)
            if process.returncode != 0:
                err.seek(0)
                out.seek(0)
                raise CommandFailed(
                    f"{' '.join(command[:6])} ... exited {process.returncode}:\n"
                    + (out.read() + err.read()).decode(errors="replace")[-2000:]
                )
        kib = usage.ru_maxrss
        if wrapped is not command:
            kib = int(report.read_text().split()[-1])
    return elapsed, kib / 1024, usage.ru_utime + usage.ru_stime  # KiB on Linux


def flask(*args: str) -> list[str]:
    return [sys.executable, "-m", "flask", "--app", "wsgi", *args]


def child_env(database_url: str, instance: Path, arm_key: str) -> dict:
    return dict(
        os.environ,
        DATABASE_URL=database_url,
        TRIAL_INSTANCE_DIR=str(instance),
        ARM_KEY=arm_key,
        SECRET_KEY="bench-secret",
        ARGON2_TIME_COST="1",
        ARGON2_MEMORY_COST_KIB="1024",
        ARGON2_PARALLELISM="1",
    )


def floor_command(kind: str, database_url: str, directory: Path) -> tuple[list[str], str] | None:
    """The floor's command and its script (stdin), or None when the client is missing."""
    if kind == "sqlite":
        client = shutil.which("sqlite3")
        if client is None:
            return None
        lines = [".headers on", ".mode csv"]
        for table in TABLES:
            lines += [f".once {directory / (table + '.csv')}", f"SELECT * FROM {table};"]
        return [client, "-bail", sqlite_path(database_url)], "\n".join(lines) + "\n"
    client = shutil.which("psql")
    if client is None:
        return None
    lines = [
        f"\\copy (SELECT * FROM {table}) TO '{directory / (table + '.csv')}' CSV HEADER"
        for table in TABLES
    ]
    return [
        client,
        "--no-psqlrc",
        "--quiet",
        "-v",
        "ON_ERROR_STOP=1",
        libpq_url(database_url),
    ], "\n".join(lines) + "\n"


def csv_rows(directory: Path) -> int:
    """Data rows written by the floor (lines minus headers; the demo has no multi-line text)."""
    total = 0
    for table in TABLES:
        with (directory / f"{table}.csv").open("rb") as handle:
            total += max(sum(1 for _ in handle) - 1, 0)
    return total


# --- one database, one size ------------------------------------------------------------------


def bench_size(kind: str, size: int, args) -> dict:
    arm_key = Fernet.generate_key().decode()
    instance = Path(tempfile.mkdtemp(prefix=f"bench-export-{kind}-instance-"))
    work = Path(tempfile.mkdtemp(prefix=f"bench-export-{kind}-out-"))
    result = {"kind": kind, "size": size}
    try:
        with throwaway_database(kind, args.postgres) as url:
            env = child_env(url, instance, arm_key)
            run_measured(flask("db", "upgrade", "-d", str(ROOT / "migrations")), env)
            seconds, _, cpu = measure(flask("trial", "demo", "--participants", str(size)), env)
            result["load"] = seconds
            print(f"[{kind} {size}] demo loaded in {seconds:.1f} s (CPU {cpu:.1f} s)", flush=True)
            time.sleep(1.1)  # let the demo's last second pass before the cut-off "now"

            startup = [run_measured(flask("exports", "--help"), env) for _ in range(2)]
            result["startup"] = statistics.median(s for s, _ in startup)
            result["startup_peak"] = max(m for _, m in startup)
            print(
                f"[{kind} {size}] start-up (flask exports --help): "
                f"{result['startup']:.2f} s, peak {result['startup_peak']:.0f} MB",
                flush=True,
            )

            bundle_times, peaks = [], []
            for run in range(args.repeats):
                out = work / f"bundle-{run}.zip"
                seconds, peak, cpu = measure(
                    flask("exports", "blinded", "--as", "statistician", "--out", str(out)), env
                )
                bundle_times.append(seconds)
                peaks.append(peak)
                print(
                    f"[{kind} {size}] bundle run {run + 1}: {seconds:.2f} s (CPU {cpu:.2f} s "
                    f"with its helpers), peak {peak:.0f} MB, {out.stat().st_size / 1e6:.1f} MB zip",
                    flush=True,
                )
            result["bundle"] = statistics.median(bundle_times)
            result["peak"] = max(peaks)
            result["peaks"] = peaks

            floor = floor_command(kind, url, work)
            if floor is None:
                client = "sqlite3" if kind == "sqlite" else "psql"
                hint = (
                    "apt-get install -y sqlite3"
                    if kind == "sqlite"
                    else "apt-get install -y postgresql-client"
                )
                print(
                    f"[{kind} {size}] the {client} command-line client is not installed: "
                    f"no floor measured (install it with: {hint})",
                    flush=True,
                )
                run_floor = None
            else:
                command, script = floor

                def run_floor():
                    return run_measured(command, env, stdin=script)

            # Each pull from the server is followed by one floor run, so the two are timed on
            # the machine as it is at the time (a shared machine's speed drifts by tens of
            # per cent within minutes, which a floor timed apart would read as the bundle's).
            served, floors, result["server_peak"] = served_bundle_seconds(
                url, instance, arm_key, env, args.repeats, run_floor
            )
            result["served"] = statistics.median(served)
            print(
                f"[{kind} {size}] bundle from the server (GET /api/v1/exports/blinded): "
                f"median {result['served']:.2f} s "
                f"(runs {', '.join(f'{x:.2f}' for x in served)}); "
                f"the worker's peak RSS {result['server_peak']:.0f} MB",
                flush=True,
            )
            result["floor"] = None
            if floors:
                result["floor"] = statistics.median(s for s, _ in floors)
                result["floor_peak"] = max(m for _, m in floors)
                result["floor_rows"] = csv_rows(work)
                print(
                    f"[{kind} {size}] floor ({Path(command[0]).name}, {len(TABLES)} tables, "
                    f"{result['floor_rows']} rows, each run right after a pull): median "
                    f"{result['floor']:.2f} s (runs {', '.join(f'{s:.2f}' for s, _ in floors)}), "
                    f"peak {result['floor_peak']:.0f} MB",
                    flush=True,
                )
    finally:
        shutil.rmtree(instance, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return result


def served_bundle_seconds(
    url: str, instance: Path, arm_key: str, env: dict, repeats: int, run_floor=None
) -> tuple[list[float], list[tuple[float, float]], float]:
    """Seconds of each GET /api/v1/exports/blinded on a one-worker gunicorn, after one
    untimed pull (the worker's first request loads the export code); when ``run_floor`` is
    given, the (seconds, peak MB) of the floor run right after each timed pull; and the
    worker's peak RSS in MB after its last pull."""
    token = subprocess.run(
        flask("users", "token", "statistician"),
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[-1]
    headers = {"Authorization": f"Bearer {token}"}
    seconds, floors = [], []
    with gunicorn(url, instance, arm_key, workers=1) as base:
        for run in range(repeats + 1):
            started = time.perf_counter()
            response = requests.get(f"{base}/api/v1/exports/blinded", headers=headers, timeout=600)
            size = len(response.content)
            elapsed = time.perf_counter() - started
            if response.status_code != 200 or not size:
                raise CommandFailed(f"GET /api/v1/exports/blinded: {response.status_code}")
            if run:
                seconds.append(elapsed)
                if run_floor is not None:
                    floors.append(run_floor())
        peak = worker_peak_mb(base)
    return seconds, floors, peak


def worker_peak_mb(base: str) -> float:
    """The peak RSS (``VmHWM``) of the gunicorn worker serving ``base``.

    gunicorn renames its processes (``gunicorn: worker [wsgi:app]``), so they are found by
    the listening socket they share: of the processes holding it, the master's parent is
    not one of them, and the worker is the master's child (a helper forked for a bundle
    would be the worker's)."""
    port = f"{int(base.rsplit(':', 1)[1]):04X}"
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(f":{port}") and fields[3] == "0A":  # LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    holders = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                continue
            status = dict(
                line.split(":", 1) for line in (entry / "status").read_text().splitlines()
            )
        except OSError:  # it exited meanwhile, or is not ours to read
            continue
        holders[entry.name] = status
    masters = {pid for pid, status in holders.items() if status["PPid"].strip() not in holders}
    workers = [status for status in holders.values() if status["PPid"].strip() in masters]
    if len(workers) != 1:
        return float("nan")
    return int(workers[0]["VmHWM"].split()[0]) / 1024


# --- report ----------------------------------------------------------------------------------


def growth(results: list[dict], kind: str, key: str = "peak") -> float | None:
    rows = sorted((r for r in results if r["kind"] == kind), key=lambda r: r["size"])
    if len(rows) < 2:
        return None
    return 100 * (rows[-1][key] - rows[0][key]) / rows[0][key]


def summary(results: list[dict]) -> None:
    nan = float("nan")
    print(
        f"\n{'size':>6} {'backend':<11}{'load s':>8}{'command s':>10}{'server s':>9}"
        f"{'floor s':>9}{'ratio cmd':>10}{'ratio srv':>10}{'startup s':>11}{'cmd peak MB':>12}"
        f"{'growth %':>9}{'srv peak MB':>12}{'growth %':>9}"
    )
    for r in results:
        floor = r.get("floor")
        last = r["size"] == max(x["size"] for x in results if x["kind"] == r["kind"])
        grown = [
            growth(results, r["kind"], key) if last else None for key in ("peak", "server_peak")
        ]
        print(
            f"{r['size']:>6} {r['kind']:<11}{r['load']:>8.1f}{r['bundle']:>10.2f}"
            f"{r['served']:>9.2f}{(floor or nan):>9.2f}"
            f"{(r['bundle'] / floor if floor else nan):>10.2f}"
            f"{(r['served'] / floor if floor else nan):>10.2f}"
            f"{r['startup']:>11.2f}{r['peak']:>12.0f}"
            + (f"{grown[0]:>+9.1f}" if grown[0] is not None else f"{'':>9}")
            + f"{r['server_peak']:>12.0f}"
            + (f"{grown[1]:>+9.1f}" if grown[1] is not None else f"{'':>9}")
        )
    print(
        "\nmedian of the runs; load = flask trial demo; command = flask exports blinded in a "
        "fresh process (start-up included); server = GET /api/v1/exports/blinded on a running "
        "one-worker gunicorn; cmd peak = the largest command peak RSS of the runs (the command "
        "or one of its helpers); srv peak = the worker's peak RSS after its pulls; growth = "
        "peak at the largest size vs the smallest, per backend.\n"
        f"Goals: ratio (server) <= {GOAL_RATIO['server']:g} (issue 26), ratio (command) <= "
        f"{GOAL_RATIO['command']:g} (issue 5), peak < {GOAL_PEAK_MB:g} MB, "
        f"growth <= {GOAL_GROWTH_PCT:g}%."
    )
    for kind in dict.fromkeys(r["kind"] for r in results):
        rows = [r for r in results if r["kind"] == kind]
        verdicts = []
        for label, key in (("command", "bundle"), ("server", "served")):
            ratios = [r[key] / r["floor"] for r in rows if r.get("floor")]
            met = ratios and max(ratios) <= GOAL_RATIO[label]
            verdicts.append(
                f"ratio ({label}) {'met' if met else 'NOT met'}"
                + (f" (worst {max(ratios):.2f}x)" if ratios else " (no floor)")
            )
        peak = max(r["peak"] for r in rows)
        verdicts.append(f"peak {'met' if peak < GOAL_PEAK_MB else 'NOT met'} (max {peak:.0f} MB)")
        for label, key in (("command", "peak"), ("server", "server_peak")):
            g = growth(results, kind, key)
            if g is not None:
                met = g <= GOAL_GROWTH_PCT
                verdicts.append(f"growth ({label}) {'met' if met else 'NOT met'} ({g:+.1f}%)")
        print(f"  {kind}: " + "; ".join(verdicts))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--db",
        choices=["auto", "both", "sqlite", "postgresql"],
        default="auto",
        help="auto: SQLite, and PostgreSQL when --postgres or TEST_DATABASE_URL is given",
    )
    parser.add_argument(
        "--participants",
        "--sizes",
        dest="sizes",
        type=int,
        nargs="+",
        default=[500, 2000],
        help="demo sizes (--sizes: the same, its earlier name)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--postgres",
        default=None,
        help="a PostgreSQL URL whose server may create and drop databases "
        "(default: TEST_DATABASE_URL's server, else none)",
    )
    args = parser.parse_args(argv)
    if args.postgres is None and os.environ.get("TEST_DATABASE_URL"):
        args.postgres = os.environ["TEST_DATABASE_URL"]
    if args.db == "auto":
        kinds = ["sqlite"] + (["postgresql"] if args.postgres else [])
    elif args.db == "both":
        kinds = ["sqlite", "postgresql"]
    else:
        kinds = [args.db]
    if "postgresql" in kinds and not args.postgres:
        args.postgres = DEFAULT_PG
    print(
        f"sizes {args.sizes}, {args.repeats} runs each, databases {kinds}, {os.cpu_count()} CPUs",
        flush=True,
    )
    if shutil.which("sqlite3") is None and "sqlite" in kinds:
        print("note: sqlite3 is not installed (apt-get install -y sqlite3): no SQLite floor")
    results, failed = [], False
    for kind in kinds:
        for size in sorted(args.sizes):
            try:
                results.append(bench_size(kind, size, args))
            except CommandFailed as exc:
                print(f"[{kind} {size}] FAILED: {exc}", flush=True)
                failed = True
    if results:
        summary(results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
