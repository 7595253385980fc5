"""Online backup and restore of the trial database, SQLite or PostgreSQL.

A backup is taken while the service runs and is one consistent snapshot:

- SQLite: SQLite's online backup API (``sqlite3.Connection.backup``) copies every page in a
  single step under one read transaction, so writers go on (WAL) and the copy is the database
  as of one commit. Never a file copy, which can tear a page or miss the WAL.
- PostgreSQL: ``pg_dump`` in custom format, run inside a snapshot that this module exports
  from a REPEATABLE READ transaction (``pg_export_snapshot`` + ``pg_dump --snapshot``); the
  row counts of the manifest are read in that same transaction, so they are the dump's.

Next to the backup goes a manifest (``FILE.manifest.json``): the file's SHA-256 and size, the
row count of every table and the audit chain head (last seq and hash) at the snapshot. The
backup is written to ``FILE.partial`` and renamed when complete and synced, so a backup that
died half-way never looks like one that finished.

A restore goes only into an empty database (an absent or table-less SQLite file, a PostgreSQL
database without relations) and refuses anything else: it never merges into or overwrites a
trial. It checks the file against its manifest first, restores (SQLite: the backup API into
the target, one transaction; PostgreSQL: ``pg_restore --single-transaction``, data before the
post-data triggers and constraints, so the append-only audit triggers come back intact), then
compares every table's row count and the audit head with the manifest. The caller verifies
the hash chain (``trial.maintenance.cli``).

This module holds the two operations; each database's own steps are in ``sqlite`` and
``postgresql``, the files, their manifests and their durable publishing in ``files``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.pool import NullPool

from trial.cli_support import open_private
from trial.maintenance.files import (
    MANIFEST_FORMAT,
    MaintenanceError,
    audit_head,
    check_backup_file,
    database_kind,
    manifest_path_for,
    publish,
    sha256_file,
    table_counts,
    write_manifest,
)
from trial.maintenance.postgresql import (
    backup_postgresql,
    restore_postgresql,
)
from trial.maintenance.sqlite import (
    backup_sqlite,
    discard_empty_sqlite,
    restore_sqlite,
    sqlite_path,
)

__all__ = [
    "BackupResult",
    "MaintenanceError",
    "RestoreResult",
    "backup",
    "discard_empty_sqlite",
    "manifest_path_for",
    "restore",
]


@dataclass
class BackupResult:
    path: Path
    manifest_path: Path
    database: str
    size: int
    sha256: str
    seconds: float
    tables: dict[str, int]
    audit_head: dict


@dataclass
class RestoreResult:
    database: str
    seconds: float
    tables: dict[str, int]
    audit_head: dict | None
    manifest: dict | None
    problems: list[str] = field(default_factory=list)


def describe(url: str | URL) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"sqlite:{sqlite_path(parsed)}"
    return f"postgresql://{parsed.host or ''}:{parsed.port or 5432}/{parsed.database}"


def backup(url: str | URL, out: Path | str) -> BackupResult:
    """Back up the running database at ``url`` to ``out`` (refused if ``out`` exists)."""
    out = Path(out).resolve()
    kind = database_kind(url)
    if out.exists() or manifest_path_for(out).exists():
        raise MaintenanceError(f"{out} already exists; a backup never overwrites another")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(f"{out}.partial")
    partial.unlink(missing_ok=True)
    # Created empty and owner-only before the dump writes into it: the copy of a trial is
    # never readable by other local accounts, not even while it is being written.
    open_private(partial, overwrite=False).close()
    started = time.monotonic()
    taken_at = datetime.now(UTC)
    try:
        if kind == "sqlite":
            tables, head = backup_sqlite(sqlite_path(url), partial)
        else:
            tables, head = backup_postgresql(url, partial)
        publish(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    seconds = time.monotonic() - started
    size = out.stat().st_size
    digest = sha256_file(out)
    manifest = {
        "format": MANIFEST_FORMAT,
        "database": kind,
        "source": describe(url),
        "file": out.name,
        "size": size,
        "sha256": digest,
        "taken_at": taken_at.isoformat(),
        "seconds": round(seconds, 3),
        "tables": tables,
        "audit_head": head,
    }
    manifest_path = write_manifest(out, manifest)
    return BackupResult(out, manifest_path, kind, size, digest, seconds, tables, head)


def _relations(connection: Connection, kind: str) -> list[str]:
    if kind == "sqlite":
        rows = connection.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view', 'trigger')"
            " AND name NOT LIKE 'sqlite_%'"
        )
    else:
        rows = connection.execute(
            text(
                "SELECT n.nspname || '.' || c.relname FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
                "AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' "
                "AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"
            )
        )
    return sorted(row[0] for row in rows)


def ensure_empty(url: str | URL) -> None:
    """Refuse a target that holds anything: a restore never merges into a database."""
    kind = database_kind(url)
    if kind == "sqlite":
        path = sqlite_path(url)
        if not path.exists() or path.stat().st_size == 0:
            return
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            found = _relations(connection, kind)
    finally:
        engine.dispose()
    if found:
        shown = ", ".join(found[:5]) + (" ..." if len(found) > 5 else "")
        raise MaintenanceError(
            f"refusing to restore into {describe(url)}: it is not empty ({len(found)} "
            f"objects: {shown}). Restore into a new, empty database (SQLite: a new file "
            "path; PostgreSQL: createdb NAME) and point DATABASE_URL at it."
        )


def restore(url: str | URL, path: Path | str) -> RestoreResult:
    """Restore ``path`` into the empty database at ``url`` and compare it with the manifest."""
    path = Path(path).resolve()
    kind = database_kind(url)
    manifest = check_backup_file(path, kind)
    ensure_empty(url)
    started = time.monotonic()
    if kind == "sqlite":
        restore_sqlite(path, sqlite_path(url))
    else:
        restore_postgresql(path, url)
    seconds = time.monotonic() - started
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            tables, head = table_counts(connection), audit_head(connection)
    finally:
        engine.dispose()
    result = RestoreResult(kind, seconds, tables, head, manifest)
    if manifest is not None:
        expected = manifest["tables"]
        for name in sorted(set(expected) | set(tables)):
            if expected.get(name) != tables.get(name):
                result.problems.append(
                    f"table {name}: {tables.get(name)} rows restored, backup had "
                    f"{expected.get(name)}"
                )
        if manifest.get("audit_head") != head:
            result.problems.append(
                f"audit head {head} restored, backup had {manifest.get('audit_head')}"
            )
    return result
