"""Benchmark the closed DSMB safety report: time and peak memory for demo trials of N participants.

For each database (SQLite: a temporary file; PostgreSQL: a throwaway database on the server
named by --pg-url) and each size in --participants, the script migrates a fresh schema, loads
the demo trial (``flask trial demo --participants N``), then builds the closed report as the
DSMB would (data loading, counting, layout, audit event) --repeat times at one cut-off taken
after the load (the repeats must give the same bytes) and reports the best time, with the
CPU time of that run beside it (``time.process_time``: on a shared machine a wall time says
as much about the others' load as about the report), and once more under tracemalloc for
the peak of Python memory. It prints the figures and the ratios between sizes: time should
grow no faster than the number of participants.

Goals: the 2,000-participant closed report in under 10 seconds (issue 6); the
10,000-participant closed report in under 3 seconds, on both databases (issue 26, section 4).

    .venv/bin/python bench/report.py                          # SQLite, 500 and 2000
    .venv/bin/python bench/report.py --db both --participants 500 2000
    .venv/bin/python bench/report.py --db both --participants 2000 10000 --repeat 2

Not a test: timings depend on the machine. Exit status 1 if the goal is missed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.randomize import DEFAULT_PG, bench_config, throwaway_database  # noqa: E402

GOALS = {2000: 10.0, 10_000: 3.0}  # participants: seconds (issues 6 and 26)


def measure(kind: str, participants: int, args) -> dict:
    from flask_migrate import upgrade

    from trial import create_app
    from trial.extensions import db

    instance = Path(tempfile.mkdtemp(prefix=f"bench-report-{kind}-"))
    with throwaway_database(kind, args.pg_url) as url:
        app = create_app(bench_config(url, instance, Fernet.generate_key().decode()))
        with app.app_context():
            upgrade(directory=app.config["MIGRATIONS_DIR"])
            t0 = time.perf_counter()
            result = app.test_cli_runner().invoke(
                args=["trial", "demo", "--participants", str(participants), "--seed", "1"]
            )
            if result.exit_code != 0:
                raise SystemExit(f"demo failed: {result.output[-500:]}")
            load = time.perf_counter() - t0
            db.session.remove()
            time.sleep(1.05)  # a cut-off is to the second: let the load's last second pass
            timed = closed_report_times(args.repeat)
            db.session.remove()
            db.engine.dispose()
    return {"kind": kind, "n": participants, "load": load, **timed}


def closed_report_times(repeat: int) -> dict:
    """Build the closed report as the DSMB, ``repeat`` times at a cut-off of now (the whole
    trial loaded, in the current application's database), then once under tracemalloc:
    the best time and its CPU time, the median, the peak of Python memory, the PDF's size,
    and whether the repeats gave the same bytes."""
    from reports.data import resolve_cutoff
    from reports.pdf import produce_safety_report
    from trial.auth.services import get_user_by_username

    dsmb = get_user_by_username("dsmb")
    cutoff = resolve_cutoff(None).isoformat()
    times, digests = [], set()
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        report = produce_safety_report(dsmb, "closed", "coded", cutoff)
        times.append((time.perf_counter() - t0, time.process_time() - c0))
        digests.add(report.sha256)
    tracemalloc.start()
    produce_safety_report(dsmb, "closed", "coded", cutoff)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "best": min(times)[0],
        "cpu": min(times)[1],
        "median": sorted(times)[len(times) // 2][0],
        "peak_mb": peak / 2**20,
        "bytes": len(report.pdf),
        "same_bytes": len(digests) == 1,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["both", "sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--participants", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    args = parser.parse_args(argv)
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    ok = True
    for kind in kinds:
        rows = [measure(kind, n, args) for n in sorted(args.participants)]
        print(f"\n== {kind}: closed report, best of {args.repeat} ==")
        print(f"{'participants':>12}{'demo load s':>13}{'report s':>10}{'CPU s':>8}"
              f"{'median s':>10}{'peak MiB':>10}{'PDF KiB':>9}{'s per 1k':>10}")  # fmt: skip
        for row in rows:
            print(
                f"{row['n']:>12}{row['load']:>13.1f}{row['best']:>10.2f}{row['cpu']:>8.2f}"
                f"{row['median']:>10.2f}"
                f"{row['peak_mb']:>10.1f}{row['bytes'] / 1024:>9.0f}"
                f"{1000 * row['best'] / row['n']:>10.2f}"
            )
            if row["same_bytes"] is False:
                print("   the repeats gave different bytes")
                ok = False
        for small, large in zip(rows, rows[1:], strict=False):
            size = large["n"] / small["n"]
            growth = large["best"] / small["best"]
            print(
                f"{small['n']} -> {large['n']}: participants x{size:.1f}, time x{growth:.2f}, "
                f"peak memory x{large['peak_mb'] / small['peak_mb']:.2f} "
                f"(time grows {'no faster' if growth <= size else 'FASTER'} than participants:"
                f" goal {'met' if growth <= size else 'NOT met'})"
            )
            ok &= growth <= size
        for row in rows:
            if row["n"] not in GOALS:
                continue
            goal = GOALS[row["n"]]
            met = row["best"] < goal
            verdict = "met" if met else "MISSED"
            print(
                f"goal: {row['n']} participants under {goal:g} s: "
                f"{verdict} ({row['best']:.2f} s, CPU {row['cpu']:.2f} s)"
            )
            ok &= met
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
