"""Benchmark the site's worklist: what one site's worklist shows on a demo trial of N
participants and how long ``GET /api/v1/worklist`` takes to answer.

For each database (SQLite: a temporary file; PostgreSQL: a throwaway database on the server
named by --pg-url) the script migrates a fresh schema, loads the demo trial
(``flask trial demo --participants N``), then asks for site S01's worklist as its coordinator
through the app's test client --repeat times, and, as the floor measured in the same run,
``GET /api/v1/health``. It prints what the worklist holds and the best and median times, and
the ratio to the floor.

Goal (issue 23): report the figures for 2,000 participants (no time goal is set).

    .venv/bin/python bench/worklist.py                       # SQLite, 2000
    .venv/bin/python bench/worklist.py --db both --participants 500 2000

Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.randomize import DEFAULT_PG, bench_config, throwaway_database  # noqa: E402

SECTIONS = (
    "visits_due",
    "missing_forms",
    "awaiting_signature",
    "open_queries",
    "serious_adverse_events",
)


def _timed(client, path: str, headers: dict, repeat: int) -> tuple[list[float], dict]:
    times, body = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        response = client.get(path, headers=headers)
        times.append(time.perf_counter() - t0)
        if response.status_code != 200:
            raise SystemExit(f"{path}: {response.status_code} {response.get_data(True)[:300]}")
        body = response.get_json()
    return times, body


def measure(kind: str, participants: int, args) -> dict:
    from flask_migrate import upgrade

    from trial import create_app
    from trial.auth.services import get_user_by_username
    from trial.auth.tokens import issue_token
    from trial.cli_support import system_actor
    from trial.extensions import db

    instance = Path(tempfile.mkdtemp(prefix=f"bench-worklist-{kind}-"))
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
            user = get_user_by_username("coordinator.s01")
            token, _ = issue_token(system_actor(), user, label="bench", ttl=timedelta(hours=1))
            db.session.commit()
            db.session.remove()
        headers = {"Authorization": f"Bearer {token}"}
        client = app.test_client()
        floor, _ = _timed(client, "/api/v1/health", {}, args.repeat)
        times, body = _timed(client, "/api/v1/worklist", headers, args.repeat)
        with app.app_context():
            db.engine.dispose()
    site_people = len({row["participant_id"] for s in SECTIONS for row in body[s]})
    return {
        "kind": kind,
        "n": participants,
        "load": load,
        "best": min(times),
        "median": statistics.median(times),
        "floor": statistics.median(floor),
        "counts": {s: len(body[s]) for s in SECTIONS},
        "overdue": sum(1 for row in body["visits_due"] if row["status"] == "overdue"),
        "people_listed": site_people,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["both", "sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--participants", type=int, nargs="+", default=[2000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    args = parser.parse_args(argv)
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    for kind in kinds:
        for n in sorted(args.participants):
            row = measure(kind, n, args)
            print(f"\n== {kind}: site S01's worklist on a {n}-participant demo ==")
            print(f"demo load {row['load']:.1f} s")
            for section, count in row["counts"].items():
                print(f"{section:>24}: {count}")
            print(f"{'of which overdue visits':>24}: {row['overdue']}")
            print(f"{'participants listed':>24}: {row['people_listed']}")
            print(
                f"worklist best {row['best'] * 1000:.0f} ms, median {row['median'] * 1000:.0f} "
                f"ms; health median {row['floor'] * 1000:.1f} ms; ratio "
                f"{row['median'] / row['floor']:.0f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
