"""The backup files: their manifest, their kind, and publishing them durably.

A manifest (``FILE.manifest.json``) holds the file's SHA-256 and size, the row count of
every table and the audit chain head at the snapshot; a file is written as ``FILE.partial``
and renamed once complete and synced, so a half-written backup never looks finished.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from sqlalchemy import func, inspect, select, table, text
from sqlalchemy.engine import URL, Connection, make_url

from trial.cli_support import open_private

MANIFEST_FORMAT = "baclofen-trial-backup/1"


SQLITE_MAGIC = b"SQLite format 3\x00"


PG_CUSTOM_MAGIC = b"PGDMP"


class MaintenanceError(Exception):
    """A backup or restore refused or failed; the message says why and what to do."""


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


def publish(partial: Path, final: Path) -> None:
    """Make a finished file durable, then give it its final name (atomically)."""
    _fsync_file(partial)
    os.replace(partial, final)
    _fsync_directory(final.parent)


def write_manifest(path: Path, manifest: dict) -> Path:
    target = manifest_path_for(path)
    partial = Path(f"{target}.partial")
    with open_private(partial, overwrite=True) as handle:
        handle.write((json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    publish(partial, target)
    return target


def read_manifest(path: Path) -> dict | None:
    target = manifest_path_for(path)
    if not target.exists():
        return None
    manifest = json.loads(target.read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise MaintenanceError(f"{target} is not a manifest of this service's backups")
    return manifest


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


def table_counts(connection: Connection) -> dict[str, int]:
    names = sorted(inspect(connection).get_table_names())
    return {
        name: connection.execute(select(func.count()).select_from(table(name))).scalar_one()
        for name in names
    }


def audit_head(connection: Connection) -> dict | None:
    if not inspect(connection).has_table("audit_chain_head"):
        return None
    row = connection.execute(
        text("SELECT last_seq, last_hash FROM audit_chain_head WHERE id = 1")
    ).first()
    return {"seq": row[0], "hash": row[1]} if row else None


def database_kind(url: str | URL) -> str:
    name = make_url(url).get_backend_name()
    if name not in ("sqlite", "postgresql"):
        raise MaintenanceError(f"unsupported database {name!r}")
    return name
