"""Benchmark a large demo trial's load and its two chain checks, at given sizes, on both databases.

For each database (SQLite: a temporary file; PostgreSQL: a throwaway database named
``bench_<random>`` on the server of --postgres, or of TEST_DATABASE_URL, dropped afterwards)
and each size in --participants (2,000 and 10,000 by default), the script migrates a fresh
schema, then times each command as a child process of its own, with its peak RSS:

* the load: ``flask --app wsgi trial demo --participants N``;
* ``flask --app wsgi audit verify``: every audit row's hash and link, streamed;
* ``flask --app wsgi randomization verify``: the list regenerated from its seed, its
  SHA-256, and the allocations in list order;
* the start-up: ``flask --app wsgi audit --help``, what each command pays to start Python and
  import the application (printed, not subtracted).

Beside each wall time it prints the command's CPU time (user and system, from ``os.wait4``):
on a shared machine a wall time says as much about the others' load as about the command.
On PostgreSQL the server's own CPU time is not in it.

It prints each figure, the database's row counts (audit trail and all rows), the seconds per
1,000 participants, and from the smallest size to each larger one the growth of each time
against the growth of the trial (a time that grows faster than the participants does
something per participant that grows with the trial).

Goals (issue 26, section 4: ten thousand participants): the 10,000-participant demo loads in
under 2.5 minutes on both databases; ``audit verify`` and ``randomization verify`` finish (their
times are reported). The other goals of that section have their own scripts:
``bench/export.py --participants 2000 10000`` (the bundle from the server within 1.5x the
floor, peak memory flat from 2,000 to 10,000) and ``bench/report.py --participants 10000``
(the closed report in under 3 s).

    .venv/bin/python bench/scale.py                               # SQLite, + PostgreSQL if
                                                                  #   TEST_DATABASE_URL is set
    .venv/bin/python bench/scale.py --db both --participants 2000 10000
    .venv/bin/python bench/scale.py --db postgresql --participants 10000

Not a test: timings depend on the machine (this one's two cores are shared: compare runs).
Exit status 1 if a command failed, 0 otherwise, goals met or not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy import create_engine, inspect, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.export import (  # noqa: E402 - shared
    CommandFailed,
    child_env,
    flask,
    floor_command,
    measure,
    run_measured,
    served_bundle_seconds,
)
from bench.randomize import DEFAULT_PG, bench_config, throwaway_database  # noqa: E402

GOAL_LOAD_SECONDS = 150.0
GOAL_REPORT_SECONDS = 3.0
GOAL_RATIO = 1.5
GOAL_GROWTH_PCT = 10.0
GOAL_PARTICIPANTS = 10_000
STEPS = (
    ("load", ("trial", "demo", "--participants", "{n}")),
    ("audit", ("audit", "verify")),
    ("randomization", ("randomization", "verify")),
)


def row_counts(url: str) -> tuple[int, int]:
    """(audit rows, rows in every table) of the loaded database."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            tables = inspect(connection).get_table_names()
            counts = {
                t: connection.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one()
                for t in tables
            }
    finally:
        engine.dispose()
    return counts.get("audit_events", 0), sum(counts.values())


def bench_size(kind: str, size: int, args) -> dict:
    instance = Path(tempfile.mkdtemp(prefix=f"bench-scale-{kind}-"))
    work = Path(tempfile.mkdtemp(prefix=f"bench-scale-{kind}-out-"))
    result = {"kind": kind, "size": size}
    try:
        with throwaway_database(kind, args.postgres) as url:
            arm_key = Fernet.generate_key().decode()
            env = child_env(url, instance, arm_key)
            run_measured(flask("db", "upgrade", "-d", str(ROOT / "migrations")), env)
            for name, command in STEPS:
                argv = [part.format(n=size) for part in command]
                seconds, peak, cpu = measure(flask(*argv), env)
                result[name], result[f"{name}_peak"], result[f"{name}_cpu"] = seconds, peak, cpu
                print(
                    f"[{kind} {size}] {' '.join(argv)}: {seconds:.1f} s (CPU {cpu:.1f} s), "
                    f"peak {peak:.0f} MB",
                    flush=True,
                )
            result["startup"], _ = run_measured(flask("audit", "--help"), env)
            result["audit_rows"], result["rows"] = row_counts(url)
            print(
                f"[{kind} {size}] start-up {result['startup']:.2f} s; "
                f"{result['audit_rows']:,} audit rows, {result['rows']:,} rows in all",
                flush=True,
            )
            if args.report:
                report = closed_report(url, instance, arm_key, args.report)
                result["report"], result["report_cpu"] = report["best"], report["cpu"]
                print(
                    f"[{kind} {size}] closed report (in process, best of {args.report}): "
                    f"{report['best']:.2f} s (CPU {report['cpu']:.2f} s), "
                    f"{report['bytes'] / 1024:.0f} KiB",
                    flush=True,
                )
            if args.bundle:
                result.update(served_bundle(kind, url, instance, arm_key, env, work, args.bundle))
                print(
                    f"[{kind} {size}] bundle from the server: median {result['served']:.2f} s, "
                    f"floor median {result['floor']:.2f} s, ratio {result['ratio']:.2f}; "
                    f"the worker's peak RSS {result['server_peak']:.0f} MB",
                    flush=True,
                )
    finally:
        shutil.rmtree(instance, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return result


def closed_report(url: str, instance: Path, arm_key: str, repeat: int) -> dict:
    """``bench/report.py``'s timing of the closed report, on the loaded database."""
    from bench.report import closed_report_times
    from trial import create_app
    from trial.extensions import db

    time.sleep(1.05)  # a cut-off is to the second: let the load's last second pass
    app = create_app(bench_config(url, instance, arm_key))
    with app.app_context():
        try:
            return closed_report_times(repeat)
        finally:
            db.session.remove()
            db.engine.dispose()


def served_bundle(kind, url, instance, arm_key, env, work: Path, repeats: int) -> dict:
    """``bench/export.py``'s pulls from a one-worker gunicorn, each followed by a floor run."""
    command, script = floor_command(kind, url, work)
    served, floors, peak = served_bundle_seconds(
        url, instance, arm_key, env, repeats, lambda: run_measured(command, env, stdin=script)
    )
    median_served = statistics.median(served)
    median_floor = statistics.median(s for s, _ in floors)
    return {
        "served": median_served,
        "floor": median_floor,
        "ratio": median_served / median_floor,
        "server_peak": peak,
    }


def summary(results: list[dict]) -> None:
    nan = float("nan")
    print(
        f"\n{'backend':<11}{'size':>7}{'load s':>8}{'CPU s':>8}{'s/1k':>6}{'peak MB':>8}"
        f"{'audit vfy s':>12}{'CPU s':>7}{'rand vfy s':>11}{'CPU s':>7}"
        f"{'report s':>9}{'CPU s':>7}{'bundle s':>9}{'floor s':>8}{'ratio':>7}{'srv MB':>7}"
        f"{'audit rows':>12}{'all rows':>12}"
    )
    for r in results:
        print(
            f"{r['kind']:<11}{r['size']:>7}{r['load']:>8.1f}{r['load_cpu']:>8.1f}"
            f"{1000 * r['load'] / r['size']:>6.1f}{r['load_peak']:>8.0f}"
            f"{r['audit']:>12.1f}{r['audit_cpu']:>7.1f}"
            f"{r['randomization']:>11.2f}{r['randomization_cpu']:>7.2f}"
            f"{r.get('report', nan):>9.2f}{r.get('report_cpu', nan):>7.2f}"
            f"{r.get('served', nan):>9.2f}{r.get('floor', nan):>8.2f}{r.get('ratio', nan):>7.2f}"
            f"{r.get('server_peak', nan):>7.0f}{r['audit_rows']:>12,}{r['rows']:>12,}"
        )
    print(
        "\nload = flask trial demo, audit vfy = flask audit verify, rand vfy = flask "
        "randomization verify (each a command, start-up included); report = the closed "
        "report in process (best); bundle = GET /api/v1/exports/blinded on a one-worker "
        "gunicorn (median), floor = sqlite3/psql writing the same tables as CSV right after "
        "each pull (median); srv MB = the worker's peak RSS. CPU s: the process's own (on "
        "PostgreSQL the server's is not in it)."
    )
    print("\ngrowth from the smallest size:")
    for kind in dict.fromkeys(r["kind"] for r in results):
        rows = sorted((r for r in results if r["kind"] == kind), key=lambda r: r["size"])
        base = rows[0]
        for r in rows[1:]:
            line = (
                f"  {kind} {base['size']} -> {r['size']}: "
                f"participants x{r['size'] / base['size']:.1f},"
                f" load x{r['load'] / base['load']:.2f}"
                f" (CPU x{r['load_cpu'] / base['load_cpu']:.2f}),"
                f" audit verify x{r['audit'] / base['audit']:.2f},"
                f" randomization verify x{r['randomization'] / base['randomization']:.2f}"
            )
            if "server_peak" in r and "server_peak" in base:
                grown = 100 * (r["server_peak"] - base["server_peak"]) / base["server_peak"]
                line += f", the bundle worker's peak RSS {grown:+.1f}%"
            print(line)
    print("\ngoals (issue 26, section 4):")
    for kind in dict.fromkeys(r["kind"] for r in results):
        rows = sorted((r for r in results if r["kind"] == kind), key=lambda r: r["size"])
        verdicts = []
        for r in rows:
            if r["size"] != GOAL_PARTICIPANTS:
                continue
            verdicts.append(_verdict("load", r["load"] < GOAL_LOAD_SECONDS, f"{r['load']:.1f} s"))
            if "report" in r:
                met = r["report"] < GOAL_REPORT_SECONDS
                verdicts.append(_verdict("closed report", met, f"{r['report']:.2f} s"))
        ratios = [r["ratio"] for r in rows if "ratio" in r]
        if ratios:
            met = max(ratios) <= GOAL_RATIO
            verdicts.append(_verdict("bundle ratio", met, f"worst {max(ratios):.2f}x"))
        peaks = [r for r in rows if "server_peak" in r]
        if len(peaks) >= 2:
            grown = (
                100 * (peaks[-1]["server_peak"] - peaks[0]["server_peak"]) / peaks[0]["server_peak"]
            )
            verdicts.append(_verdict("peak flat", grown <= GOAL_GROWTH_PCT, f"{grown:+.1f}%"))
        print(f"  {kind}: " + ("; ".join(verdicts) or "no goal size measured"))


def _verdict(goal: str, met: bool, figure: str) -> str:
    return f"{goal} {'met' if met else 'NOT met'} ({figure})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--db",
        choices=["auto", "both", "sqlite", "postgresql"],
        default="auto",
        help="auto: SQLite, and PostgreSQL when --postgres or TEST_DATABASE_URL is given",
    )
    parser.add_argument(
        "--participants", "--sizes", dest="sizes", type=int, nargs="+", default=[2000, 10000]
    )
    parser.add_argument(
        "--report",
        type=int,
        default=2,
        metavar="N",
        help="also time the closed report N times on the loaded trial (0: not)",
    )
    parser.add_argument(
        "--bundle",
        type=int,
        default=2,
        metavar="N",
        help="also pull the blinded bundle N times from a one-worker gunicorn, each followed "
        "by the floor (0: not)",
    )
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
    print(f"sizes {sorted(args.sizes)}, databases {kinds}, {os.cpu_count()} CPUs", flush=True)
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
