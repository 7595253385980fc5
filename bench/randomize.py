"""Benchmark allocation through gunicorn: randomizations per second and p50/p95 latency.

For each database (PostgreSQL: a throwaway database created and dropped on the server named by
--pg-url; SQLite: a temporary file) the script migrates a fresh schema, builds a trial (sites,
a generated list, coordinators, participants), starts gunicorn with --workers real worker
processes on a free loopback port, and sends the same number of requests from --clients
threads to ``GET /api/v1/health`` (the floor: a request that touches the database and nothing
else) and to ``POST /api/v1/participants/{id}/randomize`` (one distinct participant per
request). Both are warmed up first with 4 x --clients untimed calls of their own (a worker's
first calls compile its statements; a running service is past them). It prints throughput, p50,
p95 and the randomize/health ratios, then checks that the list still verifies and that no
request failed, warm-up calls included.

Goal (issue 3): randomize p50 within 3x the health p50, zero errors.

    .venv/bin/python bench/randomize.py                 # both databases
    .venv/bin/python bench/randomize.py --db sqlite --requests 800

Not a test: timings depend on the machine. Exit status 1 if any request failed or the list
does not verify afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import requests
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import Config  # noqa: E402
from tests.conftest import make_ready_in_process as make_ready  # noqa: E402 - as tests do it

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SITES = ("S01", "S02", "S03", "S04")


# --- databases -------------------------------------------------------------------------------


@contextmanager
def throwaway_database(kind: str, pg_url: str | None):
    """Yield a URL to an empty database that is removed afterwards."""
    if kind == "sqlite":
        directory = Path(tempfile.mkdtemp(prefix="bench-sqlite-"))
        try:
            yield f"sqlite:///{directory / 'bench.db'}"
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return
    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def bench_config(database_url: str, instance: Path, arm_key: str) -> type[Config]:
    return type(
        "BenchConfig",
        (Config,),
        {
            "SQLALCHEMY_DATABASE_URI": database_url,
            "INSTANCE_PATH": str(instance),
            "ARM_KEY": arm_key,
            "SECRET_KEY": "bench-secret",
            "ARGON2_TIME_COST": 1,
            "ARGON2_MEMORY_COST_KIB": 1024,
            "ARGON2_PARALLELISM": 1,
        },
    )


def prepare_trial(database_url: str, instance: Path, arm_key: str, participants: int):
    """Migrate, then build sites, a list, coordinators and participants; return the work."""
    from flask_migrate import upgrade

    from randomization import lists
    from trial import create_app
    from trial.auth import services as auth
    from trial.auth.tokens import issue_token
    from trial.cli_support import system_actor
    from trial.extensions import db
    from trial.participants.services import register_participant
    from trial.sites.services import create_site

    app = create_app(bench_config(database_url, instance, arm_key))
    with app.app_context():
        upgrade(directory=app.config["MIGRATIONS_DIR"])
        per_site = -(-participants // len(SITES))
        for code in SITES:  # each sex stratum can take the whole site's enrollment
            create_site(
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
        tokens, work = {}, []
        for code in SITES:
            user = auth.create_user(
                system_actor(),
                username=f"bench.coord.{code}",
                role="coordinator",
                site_codes=[code],
                password=None,
            )
            tokens[code], _ = issue_token(
                system_actor(), user, label="bench", ttl=timedelta(hours=2)
            )
        db.session.commit()
        for n in range(participants):
            code = SITES[n % len(SITES)]
            user = auth.get_user_by_username(f"bench.coord.{code}")
            participant = register_participant(
                user,
                site=code,
                sex="FM"[(n // 4) % 2],
                year_of_birth=1980,
                consent_date=date(2026, 1, 15),
            )
            make_ready(user, participant)
            work.append((participant.participant_id, tokens[code]))
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    return app, work


def verify_after(app) -> tuple[bool, list[str], int]:
    from sqlalchemy import func, select

    from randomization import lists
    from randomization.models import RandomizationSlot
    from trial.audit.services import verify_chain
    from trial.extensions import db

    with app.app_context():
        report = lists.verify()
        chain = verify_chain()
        used = db.session.scalar(
            select(func.count())
            .select_from(RandomizationSlot)
            .where(RandomizationSlot.participant_id.is_not(None))
        )
        lines = report.lines + [
            f"audit chain: {'ok' if chain.ok else chain.problem} ({chain.rows_checked} rows)"
        ]
        db.session.remove()
        db.engine.dispose()
    return report.ok and chain.ok, lines, used


# --- server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def gunicorn(database_url: str, instance: Path, arm_key: str, workers: int):
    """Start ``gunicorn wsgi:app`` on a free loopback port; yield its base URL."""
    port = free_port()
    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        ARM_KEY=arm_key,
        SECRET_KEY="bench-secret",
        TRIAL_INSTANCE_DIR=str(instance),
    )
    log = open(instance / "gunicorn.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "--workers",
            str(workers),
            "--bind",
            f"127.0.0.1:{port}",
            "--backlog",
            "256",
            "--timeout",
            "120",
            "wsgi:app",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited; see {instance / 'gunicorn.log'}")
            try:
                if requests.get(f"{base}/api/v1/health", timeout=10).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not answer /api/v1/health within 60 s")
            time.sleep(0.2)
        yield base
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


# --- load ------------------------------------------------------------------------------------


def run_load(calls, clients: int) -> dict:
    """Run every call from ``clients`` threads, released together; time each one."""
    local = threading.local()
    start = threading.Barrier(clients)
    queue = iter(calls)
    lock = threading.Lock()
    latencies, statuses = [], []

    def worker():
        local.session = requests.Session()
        start.wait()
        while True:
            with lock:
                call = next(queue, None)
            if call is None:
                return
            began = time.perf_counter()
            try:
                status = call(local.session)
            except requests.RequestException as exc:
                status = type(exc).__name__
            elapsed = time.perf_counter() - began
            with lock:
                latencies.append(elapsed)
                statuses.append(status)

    began = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(worker) for _ in range(clients)]:
            future.result()
    return _load_figures(latencies, time.perf_counter() - began, statuses)


def combine_loads(loads: list[dict]) -> dict:
    """Several ``run_load`` results as one: their calls over their summed wall time."""
    return _load_figures(
        [x for load in loads for x in load["latencies"]],
        sum(load["wall"] for load in loads),
        [s for load in loads for s in load["statuses"]],
    )


def _load_figures(latencies: list[float], wall: float, statuses: list) -> dict:
    latencies = sorted(latencies)
    return {
        "n": len(latencies),
        "wall": wall,
        "rate": len(latencies) / wall,
        "p50": statistics.median(latencies),
        "p95": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
        "statuses": statuses,
        "latencies": latencies,
    }


def bench(kind: str, args) -> dict:
    arm_key = Fernet.generate_key().decode()
    instance = Path(tempfile.mkdtemp(prefix=f"bench-{kind}-instance-"))
    try:
        with throwaway_database(kind, args.pg_url) as url:
            t0 = time.perf_counter()
            warm = 4 * args.clients  # as many warm-up calls as the health check gets
            app, work = prepare_trial(url, instance, arm_key, args.requests + warm)
            warm_up, work = work[:warm], work[warm:]
            print(
                f"[{kind}] trial ready in {time.perf_counter() - t0:.1f} s "
                f"({len(work)} participants)",
                flush=True,
            )
            with gunicorn(url, instance, arm_key, args.workers) as base:

                def health(session):
                    return session.get(f"{base}/api/v1/health", timeout=120).status_code

                def allocate(pid, token):
                    def call(session):
                        return session.post(
                            f"{base}/api/v1/participants/{pid}/randomize",
                            headers={"Authorization": f"Bearer {token}"},
                            json={"eligibility_confirmed": True},
                            timeout=120,
                        ).status_code

                    return call

                # Warm both up (each worker's first calls compile its statements), then time.
                run_load([health] * warm, args.clients)
                floor = run_load([health] * args.requests, args.clients)
                warmed = run_load([allocate(pid, token) for pid, token in warm_up], args.clients)
                load = run_load([allocate(pid, token) for pid, token in work], args.clients)
            ok, lines, used = verify_after(app)
    finally:
        shutil.rmtree(instance, ignore_errors=True)
    errors = {
        "health": [s for s in floor["statuses"] if s != 200],
        "randomize": [s for s in warmed["statuses"] + load["statuses"] if s != 201],
    }
    return {
        "kind": kind,
        "health": floor,
        "randomize": load,
        "verified": ok,
        "verify_lines": lines,
        "used": used,
        "errors": errors,
    }


def report(result: dict) -> None:
    kind, floor, load = result["kind"], result["health"], result["randomize"]
    print(f"\n== {kind}: {load['n']} randomizations, {floor['n']} health checks ==")
    print(f"{'endpoint':<12}{'req/s':>10}{'p50 ms':>10}{'p95 ms':>10}{'errors':>8}")
    for name, data in (("health", floor), ("randomize", load)):
        print(
            f"{name:<12}{data['rate']:>10.1f}{data['p50'] * 1000:>10.1f}"
            f"{data['p95'] * 1000:>10.1f}{len(result['errors'][name]):>8}"
        )
    ratio50 = load["p50"] / floor["p50"]
    ratio95 = load["p95"] / floor["p95"]
    print(
        f"ratio randomize/health: p50 {ratio50:.2f}x, p95 {ratio95:.2f}x, "
        f"throughput {load['rate'] / floor['rate']:.2f}x "
        f"(goal: p50 within 3x -> {'met' if ratio50 <= 3 else 'NOT met'})"
    )
    print(f"slots used {result['used']}; list verify {'ok' if result['verified'] else 'FAILED'}")
    for line in result["verify_lines"]:
        if not line.startswith("ok") or result["verified"] is False:
            print(f"  {line}")
    for name, bad in result["errors"].items():
        if bad:
            print(f"  {name} errors: {sorted(set(map(str, bad)))}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["both", "sqlite", "postgresql"], default="both")
    parser.add_argument(
        "--requests", type=int, default=400, help="randomizations (and health checks) per database"
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_PG_URL", DEFAULT_PG),
        help="a PostgreSQL URL whose server may create and drop databases",
    )
    args = parser.parse_args(argv)
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
            result["errors"]["health"] or result["errors"]["randomize"] or not result["verified"]
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
