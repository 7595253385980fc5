"""SQLite's side of backup and restore: the online backup API, one snapshot, one transaction."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from trial.maintenance.files import MaintenanceError, audit_head, database_kind, table_counts


def read_only_uri(path: Path) -> str:
    return f"file:{quote(str(path))}?mode=ro"


def sqlite_path(url: str | URL) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise MaintenanceError(f"not a SQLite file database: {url}")
    return Path(database).resolve()


def backup_sqlite(source: Path, partial: Path) -> tuple[dict[str, int], dict | None]:
    if not source.exists():
        raise MaintenanceError(f"no database at {source}")
    src = sqlite3.connect(read_only_uri(source), uri=True, timeout=60)
    try:
        src.execute("PRAGMA busy_timeout = 60000")
        dst = sqlite3.connect(partial)
        try:
            # pages=-1: every page in one step, under one read transaction: one snapshot.
            src.backup(dst, pages=-1)
            # The copy is a single self-contained file (no -wal beside it).
            dst.execute("PRAGMA journal_mode = DELETE")
            check = dst.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise MaintenanceError(f"the backup copy fails SQLite's quick_check: {check}")
        finally:
            dst.close()
    finally:
        src.close()
    engine = create_engine(f"sqlite:///{partial}", poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return table_counts(connection), audit_head(connection)
    finally:
        engine.dispose()


def restore_sqlite(path: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(read_only_uri(path), uri=True)
    try:
        try:
            check = src.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:  # a damaged header: not a database at all
            raise MaintenanceError(f"{path} is not a readable SQLite database: {exc}") from exc
        if check != "ok":
            raise MaintenanceError(f"{path} fails SQLite's quick_check: {check}")
        dst = sqlite3.connect(target, timeout=60)
        try:
            # The page copy runs in one destination transaction (all or nothing); rollback
            # journal mode for the copy avoids WAL's page-size restriction, WAL again after.
            dst.execute("PRAGMA journal_mode = DELETE")
            dst.execute("PRAGMA synchronous = FULL")
            src.backup(dst, pages=-1)
            mode = dst.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise MaintenanceError(f"restored database could not switch to WAL ({mode})")
        finally:
            dst.close()
    finally:
        src.close()


def discard_empty_sqlite(url: str | URL) -> bool:
    """Remove a SQLite target that holds nothing at all (no table, view or trigger).

    Starting the application to run ``db restore`` opens ``DATABASE_URL``, and opening a
    SQLite path creates the file; a refused restore must not leave that empty database behind
    (the next start would take it for a new trial). A file holding anything is left alone.
    """
    if database_kind(url) != "sqlite":
        return False
    path = sqlite_path(url)
    if not path.exists():
        return False
    if path.stat().st_size:
        connection = sqlite3.connect(read_only_uri(path), uri=True)
        try:
            held = connection.execute(
                "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
            ).fetchone()[0]
        finally:
            connection.close()
        if held:
            return False
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)
    return True
