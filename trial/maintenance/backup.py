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
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import create_engine, func, inspect, select, table, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.pool import NullPool

from trial.cli_support import open_private

MANIFEST_FORMAT = "baclofen-trial-backup/1"
SQLITE_MAGIC = b"SQLite format 3\x00"
PG_CUSTOM_MAGIC = b"PGDMP"


class MaintenanceError(Exception):
    """A backup or restore refused or failed; the message says why and what to do."""


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


# --- helpers ---------------------------------------------------------------------------


def manifest_path_for(path: Path | str) -> Path:
    return Path(f"{path}.manifest.json")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _publish(partial: Path, final: Path) -> None:
    """Make a finished file durable, then give it its final name (atomically)."""
    _fsync_file(partial)
    os.replace(partial, final)
    _fsync_directory(final.parent)


def _write_manifest(path: Path, manifest: dict) -> Path:
    target = manifest_path_for(path)
    partial = Path(f"{target}.partial")
    with open_private(partial, overwrite=True) as handle:
        handle.write((json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    _publish(partial, target)
    return target


def read_manifest(path: Path) -> dict | None:
    target = manifest_path_for(path)
    if not target.exists():
        return None
    manifest = json.loads(target.read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise MaintenanceError(f"{target} is not a manifest of this service's backups")
    return manifest


def database_kind(url: str | URL) -> str:
    name = make_url(url).get_backend_name()
    if name not in ("sqlite", "postgresql"):
        raise MaintenanceError(f"unsupported database {name!r}")
    return name


def backup_kind(path: Path) -> str:
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if head.startswith(PG_CUSTOM_MAGIC):
        return "postgresql"
    raise MaintenanceError(
        f"{path} is neither a SQLite database nor a pg_dump custom-format archive"
    )


def _table_counts(connection: Connection) -> dict[str, int]:
    names = sorted(inspect(connection).get_table_names())
    return {
        name: connection.execute(select(func.count()).select_from(table(name))).scalar_one()
        for name in names
    }


def _audit_head(connection: Connection) -> dict | None:
    if not inspect(connection).has_table("audit_chain_head"):
        return None
    row = connection.execute(
        text("SELECT last_seq, last_hash FROM audit_chain_head WHERE id = 1")
    ).first()
    return {"seq": row[0], "hash": row[1]} if row else None


def _read_only_uri(path: Path) -> str:
    return f"file:{quote(str(path))}?mode=ro"


def _sqlite_path(url: str | URL) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise MaintenanceError(f"not a SQLite file database: {url}")
    return Path(database).resolve()


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


def _libpq(url: str | URL) -> tuple[str, dict[str, str]]:
    """A libpq URI without the password, and an environment that carries it."""
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    uri = parsed.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    return uri, env


def _run(command: list[str], env: dict[str, str], what: str) -> None:
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise MaintenanceError(f"{what} failed ({result.returncode}): {result.stderr.strip()}")


def _describe(url: str | URL) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"sqlite:{_sqlite_path(parsed)}"
    return f"postgresql://{parsed.host or ''}:{parsed.port or 5432}/{parsed.database}"


# --- backup ------------------------------------------------------------------------------


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
            tables, head = _backup_sqlite(_sqlite_path(url), partial)
        else:
            tables, head = _backup_postgresql(url, partial)
        _publish(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    seconds = time.monotonic() - started
    size = out.stat().st_size
    digest = sha256_file(out)
    manifest = {
        "format": MANIFEST_FORMAT,
        "database": kind,
        "source": _describe(url),
        "file": out.name,
        "size": size,
        "sha256": digest,
        "taken_at": taken_at.isoformat(),
        "seconds": round(seconds, 3),
        "tables": tables,
        "audit_head": head,
    }
    manifest_path = _write_manifest(out, manifest)
    return BackupResult(out, manifest_path, kind, size, digest, seconds, tables, head)


def _backup_sqlite(source: Path, partial: Path) -> tuple[dict[str, int], dict | None]:
    if not source.exists():
        raise MaintenanceError(f"no database at {source}")
    src = sqlite3.connect(_read_only_uri(source), uri=True, timeout=60)
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
            return _table_counts(connection), _audit_head(connection)
    finally:
        engine.dispose()


def _backup_postgresql(url: str | URL, partial: Path) -> tuple[dict[str, int], dict | None]:
    uri, env = _libpq(url)
    engine = create_engine(url, poolclass=NullPool, isolation_level="REPEATABLE READ")
    try:
        with engine.connect() as connection:
            # The first statement fixes the transaction's snapshot; pg_dump imports it, so the
            # counts below and the dump see exactly the same committed transactions.
            snapshot = connection.execute(text("SELECT pg_export_snapshot()")).scalar_one()
            tables, head = _table_counts(connection), _audit_head(connection)
            _run(
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


# --- restore -----------------------------------------------------------------------------


def check_backup_file(path: Path, kind: str) -> dict | None:
    """Check the file is a backup of ``kind`` and matches its manifest; return the manifest."""
    if not path.is_file():
        raise MaintenanceError(f"no backup file at {path}")
    found = backup_kind(path)
    if found != kind:
        raise MaintenanceError(f"{path} is a {found} backup; the target database is {kind}")
    manifest = read_manifest(path)
    if manifest is not None:
        if manifest.get("database") != kind:
            raise MaintenanceError(f"manifest says {manifest.get('database')}, file is {kind}")
        digest = sha256_file(path)
        if digest != manifest["sha256"] or path.stat().st_size != manifest["size"]:
            raise MaintenanceError(
                f"{path} does not match its manifest (SHA-256 {digest}, manifest "
                f"{manifest['sha256']}): the file is damaged or not the backup it names"
            )
    return manifest


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


def discard_empty_sqlite(url: str | URL) -> bool:
    """Remove a SQLite target that holds nothing at all (no table, view or trigger).

    Starting the application to run ``db restore`` opens ``DATABASE_URL``, and opening a
    SQLite path creates the file; a refused restore must not leave that empty database behind
    (the next start would take it for a new trial). A file holding anything is left alone.
    """
    if database_kind(url) != "sqlite":
        return False
    path = _sqlite_path(url)
    if not path.exists():
        return False
    if path.stat().st_size:
        connection = sqlite3.connect(_read_only_uri(path), uri=True)
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


def ensure_empty(url: str | URL) -> None:
    """Refuse a target that holds anything: a restore never merges into a database."""
    kind = database_kind(url)
    if kind == "sqlite":
        path = _sqlite_path(url)
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
            f"refusing to restore into {_describe(url)}: it is not empty ({len(found)} "
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
        _restore_sqlite(path, _sqlite_path(url))
    else:
        _restore_postgresql(path, url)
    seconds = time.monotonic() - started
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            tables, head = _table_counts(connection), _audit_head(connection)
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


def _restore_sqlite(path: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(_read_only_uri(path), uri=True)
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


def _restore_postgresql(path: Path, url: str | URL) -> None:
    uri, env = _libpq(url)
    _run(
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
