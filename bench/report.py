"""Benchmark the closed DSMB safety report: time and peak memory for demo trials of N participants.

For each database (SQLite: a temporary file; PostgreSQL: a throwaway database on the server
named by --pg-url) and each size in --participants, the script migrates a fresh schema, loads
the demo trial (``flask trial demo --participants N``), then builds the closed report as the
DSMB would (data loading, counting, layout, audit event) --repeat times at one cut-off taken
after the load (the repeats must give the same bytes) and reports the best time, and once
more under tracemalloc for the peak of Python memory. It prints the figures and the ratios
between sizes: time should grow no faster than the number of participants.

Goal (issue 6): the 2,000-participant closed report in under 10 seconds.

    .venv/bin/python bench/report.py                          # SQLite, 500 and 2000
    .venv/bin/python bench/report.py --db both --participants 500 2000

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

GOAL_SECONDS = 10.0
GOAL_PARTICIPANTS = 2000


def measure(kind: str, participants: int, args) -> dict:
    from flask_migrate import upgrade

    from reports.data import resolve_cutoff
    from reports.pdf import produce_safety_report
    from trial import create_app
    from trial.auth.services import get_user_by_username
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
            dsmb = get_user_by_username("dsmb")
            time.sleep(1.05)  # a cut-off is to the second: let the load's last second pass
            cutoff = resolve_cutoff(None).isoformat()  # after the load: the whole trial
            times, digests = [], set()
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                report = produce_safety_report(dsmb, "closed", "coded", cutoff)
                times.append(time.perf_counter() - t0)
                digests.add(report.sha256)
            tracemalloc.start()
            produce_safety_report(dsmb, "closed", "coded", cutoff)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            db.session.remove()
            db.engine.dispose()
    return {
        "kind": kind,
        "n": participants,
        "load": load,
        "best": min(times),
        "median": sorted(times)[len(times) // 2],
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
        print(f"{'participants':>12}{'demo load s':>13}{'report s':>10}{'median s':>10}"
              f"{'peak MiB':>10}{'PDF KiB':>9}{'s per 1k':>10}")  # fmt: skip
        for row in rows:
            print(
                f"{row['n']:>12}{row['load']:>13.1f}{row['best']:>10.2f}{row['median']:>10.2f}"
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
        goal = [r for r in rows if r["n"] == GOAL_PARTICIPANTS]
        for row in goal:
            met = row["best"] < GOAL_SECONDS
            print(f"goal: {GOAL_PARTICIPANTS} participants under {GOAL_SECONDS:.0f} s: "
                  f"{'met' if met else 'MISSED'} ({row['best']:.2f} s)")  # fmt: skip
            ok &= met
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
