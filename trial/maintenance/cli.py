"""``flask db backup --out FILE`` and ``flask db restore FILE``, in Flask-Migrate's ``db`` group.

Both act on the database of ``DATABASE_URL``. A backup is recorded in the audit trail *after*
its snapshot is taken and its file is durable: the event names the file, its SHA-256 and the
audit seq the snapshot ends at, so the trail lists every copy of the trial that was made, and
the backup never contains (or is changed by) its own event; the next backup contains it. A
restore verifies the restored chain first and then appends a ``restore`` event naming the
backup it came from, so the restored trail itself says why its history jumps.
"""

from __future__ import annotations

from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from trial.maintenance.backup import MaintenanceError, discard_empty_sqlite
from trial.maintenance.backup import backup as run_backup
from trial.maintenance.backup import restore as run_restore


def _url() -> str:
    return current_app.config["SQLALCHEMY_DATABASE_URI"]


@click.command("backup")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Backup file to write (refused if it exists); FILE.manifest.json is written beside it.",
)
@with_appcontext
def backup_command(out: Path) -> None:
    """Back up the running database online, as one consistent snapshot."""
    from trial.audit.services import record_event
    from trial.cli_support import system_actor
    from trial.extensions import db

    try:
        result = run_backup(_url(), out)
    except MaintenanceError as exc:
        raise click.ClickException(str(exc)) from exc
    head = result.audit_head or {}
    record_event(
        system_actor(),
        "backup",
        entity_type="database",
        entity_id=result.database,
        detail={
            "file": result.path.name,
            "sha256": result.sha256,
            "size": result.size,
            "snapshot_audit_seq": head.get("seq"),
        },
    )
    db.session.commit()
    rows = sum(result.tables.values())
    click.echo(
        f"backup written: {result.path} ({result.size:,} bytes, sha256 {result.sha256})\n"
        f"manifest: {result.manifest_path}\n"
        f"snapshot: {len(result.tables)} tables, {rows:,} rows, audit chain to seq "
        f"{head.get('seq')}\n"
        f"took {result.seconds:.2f}s"
    )


@click.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@with_appcontext
def restore_command(file: Path) -> None:
    """Restore FILE into the empty database of DATABASE_URL, then verify it."""
    from trial.audit.services import record_event, verify_chain
    from trial.cli_support import system_actor
    from trial.database import reading
    from trial.extensions import db

    db.session.remove()
    db.engine.dispose()  # no pooled connection may hold the target while it is replaced
    try:
        result = run_restore(_url(), file)
    except MaintenanceError as exc:
        discard_empty_sqlite(_url())  # the app's start created it; a refusal leaves none
        raise click.ClickException(str(exc)) from exc
    db.session.remove()
    db.engine.dispose()
    with reading():
        chain = verify_chain()
    db.session.rollback()
    rows = sum(result.tables.values())
    click.echo(
        f"restored {file} into {result.database} in {result.seconds:.2f}s: "
        f"{len(result.tables)} tables, {rows:,} rows"
    )
    if result.manifest is None:
        click.echo("no manifest beside the file: checksum and row counts NOT checked", err=True)
    elif not result.problems:
        click.echo(f"row counts and audit head match the manifest ({result.manifest['sha256']})")
    if chain.ok:
        click.echo(f"audit chain intact: {chain.rows_checked} rows verified")
    else:
        click.echo(
            f"audit chain BROKEN at row {chain.broken_seq}: {chain.problem} "
            f"({chain.rows_checked} rows verified before it)",
            err=True,
        )
    for problem in result.problems:
        click.echo(f"MISMATCH: {problem}", err=True)
    if result.problems or not chain.ok:
        raise SystemExit(1)
    manifest = result.manifest or {}
    record_event(
        system_actor(),
        "restore",
        entity_type="database",
        entity_id=result.database,
        detail={
            "file": file.name,
            "sha256": manifest.get("sha256"),
            "taken_at": manifest.get("taken_at"),
            "snapshot_audit_seq": (result.audit_head or {}).get("seq"),
        },
    )
    db.session.commit()


def register_maintenance_cli(app: Flask) -> None:
    """Add ``backup`` and ``restore`` to Flask-Migrate's ``db`` group."""
    from flask_migrate.cli import db as db_group

    db_group.add_command(backup_command)
    db_group.add_command(restore_command)
