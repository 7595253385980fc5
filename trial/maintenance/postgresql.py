"""PostgreSQL's side of backup and restore: pg_dump inside an exported snapshot, pg_restore in
one transaction.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from trial.maintenance.files import MaintenanceError, audit_head, table_counts


def pg_tool(name: str) -> str:
    """Path of a PostgreSQL client program: $PG_BIN, the newest /usr/lib/postgresql, PATH."""
    candidates = []
    if os.environ.get("PG_BIN"):
        candidates.append(Path(os.environ["PG_BIN"]) / name)

    def major(directory: str) -> int:
        version = Path(directory).parent.name
        return int(version) if version.isdigit() else 0

    for directory in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=major, reverse=True):
        candidates.append(Path(directory) / name)
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise MaintenanceError(f"{name} not found (install the PostgreSQL client or set PG_BIN)")


def libpq(url: str | URL) -> tuple[str, dict[str, str]]:
    """A libpq URI without the password, and an environment that carries it."""
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    uri = parsed.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    return uri, env


def run_tool(command: list[str], env: dict[str, str], what: str) -> None:
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise MaintenanceError(f"{what} failed ({result.returncode}): {result.stderr.strip()}")


def backup_postgresql(url: str | URL, partial: Path) -> tuple[dict[str, int], dict | None]:
    uri, env = libpq(url)
    engine = create_engine(url, poolclass=NullPool, isolation_level="REPEATABLE READ")
    try:
        with engine.connect() as connection:
            # The first statement fixes the transaction's snapshot; pg_dump imports it, so the
            # counts below and the dump see exactly the same committed transactions.
            snapshot = connection.execute(text("SELECT pg_export_snapshot()")).scalar_one()
            tables, head = table_counts(connection), audit_head(connection)
            run_tool(
                [
                    pg_tool("pg_dump"),
                    "--format=custom",
                    f"--snapshot={snapshot}",
                    f"--file={partial}",
                    f"--dbname={uri}",
                ],
                env,
                "pg_dump",
            )
            connection.rollback()
    finally:
        engine.dispose()
    return tables, head


def restore_postgresql(path: Path, url: str | URL) -> None:
    uri, env = libpq(url)
    run_tool(
        [
            pg_tool("pg_restore"),
            "--single-transaction",  # all or nothing; implies --exit-on-error
            "--no-owner",  # the restoring role owns the objects: works on any server
            "--no-privileges",
            f"--dbname={uri}",
            str(path),
        ],
        env,
        "pg_restore",
    )
