"""Time ``flask db backup`` and ``flask db restore`` on a demo trial (2,000 participants).

For each database (SQLite: temporary files; PostgreSQL: two throwaway databases created and
dropped on the server named by --pg-url) the script migrates, loads the demo trial with
``flask trial demo --participants N``, then runs the two commands exactly as an operator would
and prints, for each, the time the command itself reports (the snapshot or restore work) and
the wall time of the whole command (with Python and app start-up), the file size, and the row
and audit counts. The restore command verifies row counts against the manifest and the audit
chain; its verification time is part of the wall time.

    .venv/bin/python bench/backup.py                       # both databases, 2,000 participants
    .venv/bin/python bench/backup.py --db sqlite --participants 500

Not a test: timings depend on the machine. Exit status 1 if a command fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def flask(database_url: str, instance: Path, *args: str) -> tuple[float, str]:
    env = dict(os.environ, DATABASE_URL=database_url, TRIAL_INSTANCE_DIR=str(instance))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"flask {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return seconds, result.stdout


def pg_admin(url: str, statement: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(statement))
    engine.dispose()


def run(kind: str, args) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"bench-backup-{kind}-"))
    instance = work / "instance"
    names = []
    if kind == "sqlite":
        source, target = f"sqlite:///{work / 'live.db'}", f"sqlite:///{work / 'restored.db'}"
    else:
        from sqlalchemy.engine import make_url

        base = make_url(args.pg_url)
        suffix = uuid.uuid4().hex[:8]
        names = [f"bench_backup_live_{suffix}", f"bench_backup_restored_{suffix}"]
        for name in names:
            pg_admin(args.pg_url, f'CREATE DATABASE "{name}"')
        source, target = (base.set(database=n).render_as_string(False) for n in names)
    try:
        flask(source, instance, "db", "upgrade")
        demo_seconds, _ = flask(
            source, instance, "trial", "demo", "--participants", str(args.participants)
        )
        out = work / "trial.backup"
        backup_wall, backup_output = flask(source, instance, "db", "backup", "--out", str(out))
        manifest = json.loads(Path(f"{out}.manifest.json").read_text())
        restore_wall, restore_output = flask(
            target, work / "restore-instance", "db", "restore", str(out)
        )
        restore_seconds = float(re.search(r"in ([\d.]+)s:", restore_output).group(1))
        chain = re.search(r"audit chain intact: (\d+) rows", restore_output)
        return {
            "database": kind,
            "participants": manifest["tables"]["participants"],
            "rows": sum(manifest["tables"].values()),
            "audit_rows": manifest["tables"]["audit_events"],
            "demo_load_s": round(demo_seconds, 1),
            "backup_s": manifest["seconds"],
            "backup_command_s": round(backup_wall, 2),
            "size_bytes": manifest["size"],
            "restore_s": restore_seconds,
            "restore_command_s": round(restore_wall, 2),
            "chain_verified_rows": int(chain.group(1)) if chain else None,
        }
    finally:
        for name in names:
            pg_admin(args.pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--participants", type=int, default=2000)
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="admin URL of the PostgreSQL server")
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    for kind in kinds:
        result = run(kind, args)
        print(
            f"{kind}: {result['participants']:,} participants, {result['rows']:,} rows "
            f"({result['audit_rows']:,} audit rows); backup {result['backup_s']:.2f}s "
            f"(command {result['backup_command_s']:.2f}s), {result['size_bytes'] / 1e6:.1f} MB; "
            f"restore {result['restore_s']:.2f}s (command with verification "
            f"{result['restore_command_s']:.2f}s, {result['chain_verified_rows']:,} chain rows)",
            flush=True,
        )


if __name__ == "__main__":
    main()
