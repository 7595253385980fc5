"""``flask exports blinded`` and ``flask exports key``."""

import shutil
import sys
import tempfile
from pathlib import Path

import click
from flask.cli import AppGroup

from exports.bundle import parse_request, require_export_role, write_bundle
from exports.key import build_key_csv
from exports.tables import tables
from trial.cli_support import fail_on_trial_error, open_private, user_as
from trial.errors import TrialError
from trial.extensions import db
from trial.protocol import current_protocol

exports_cli = AppGroup("exports", help="Files that leave the system.")


@exports_cli.command("blinded")
@click.option("--as", "username", required=True, help="A statistician or data manager.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--cutoff", default=None, help="ISO 8601 instant with time zone; default now.")
@click.option("--dummy-arms", "dummy_arms", default=None, help="Seed for dummy arms.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "xpt", "parquet"]),
    default="csv",
    show_default=True,
)
def blinded_command(username, out, cutoff, dummy_arms, fmt):
    """Write the blinded dataset bundle (ZIP) for a data cut-off; audited.

    The bundle is built in a temporary file and copied into ``--out`` only once it is
    complete and audited: a refused or failed export never touches (or removes) ``--out``.
    """
    actor = user_as(username)
    with tempfile.TemporaryDirectory() as directory:
        draft = Path(directory) / "bundle.zip"
        try:
            request = parse_request(cutoff, fmt, dummy_arms)
            require_export_role(actor)
            count = len(tables(current_protocol())) + 1
            if sys.stdout.isatty():
                with click.progressbar(length=count, label="Exporting", show_pos=True) as bar:
                    result = write_bundle(actor, request, draft, lambda _name: bar.update(1))
            else:
                result = write_bundle(actor, request, draft)
            db.session.commit()
        except TrialError as exc:
            db.session.rollback()
            raise fail_on_trial_error(exc) from exc
        with draft.open("rb") as source, open_private(out, overwrite=True) as target:
            shutil.copyfileobj(source, target)
    manifest = result.manifest
    rows = sum(f["rows"] for f in manifest["files"])
    click.echo(f"cut-off {manifest['cutoff']}: {len(manifest['files'])} files, {rows} rows")
    if request.dummy_seed is not None:
        click.echo(f"DUMMY ARMS (seed {request.dummy_seed}): NOT the real allocation")
    click.echo(f"wrote {out} (SHA-256 {result.sha256})")


@exports_cli.command("key")
@click.option("--as", "username", required=True, help="The unblinded statistician.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))
def key_command(username, out):
    """Write participant -> arm as CSV (unblinded statistician only; audited).

    Refuses to overwrite an existing file (as ``db backup`` does): a key file already handed
    on must not silently change under its recipient. The file is readable by its owner only.
    """
    actor = user_as(username)
    try:
        target = open_private(out, overwrite=False)
    except FileExistsError:
        raise click.ClickException(
            f"{out} already exists; a key file is never overwritten. Nothing was released."
        ) from None
    try:
        with target:
            data, digest = build_key_csv(actor)
            target.write(data)
        db.session.commit()
    except BaseException as exc:
        db.session.rollback()
        out.unlink(missing_ok=True)  # ours: created above, so nothing else is lost
        if isinstance(exc, TrialError):
            raise fail_on_trial_error(exc) from exc
        raise
    click.echo(f"wrote {out} (SHA-256 {digest})")


@exports_cli.command("verify-release")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def verify_release_command(file):
    """Name the audit event that released FILE (key, report, bundle); exit 1 if none did.

    Blinded artefacts are recorded with their plain SHA-256; those that depend on arms (the
    key file, closed reports) with a digest keyed by the server's ARM_KEY, which only this
    server can recompute. Run it where the service runs, on the file as it was received.
    """
    import hashlib

    from sqlalchemy import or_, select

    from randomization.release import release_digest
    from trial.audit.models import AuditEvent

    data = file.read_bytes()
    plain = hashlib.sha256(data).hexdigest()
    try:
        keyed = release_digest(data)
    except TrialError as exc:
        raise fail_on_trial_error(exc) from exc
    events = db.session.scalars(
        select(AuditEvent)
        .where(or_(AuditEvent.detail.contains(plain), AuditEvent.detail.contains(keyed)))
        .order_by(AuditEvent.seq)
    ).all()
    db.session.rollback()
    if not events:
        raise click.ClickException(
            f"no release of {file.name} is recorded in the audit trail (SHA-256 {plain}): "
            f"the file was altered, or was not released by this service."
        )
    for event in events:
        click.echo(
            f"released: audit seq {event.seq}, {event.action} {event.entity_id} by "
            f"{event.username} ({event.role}) at {event.occurred_at.isoformat()}"
        )
    click.echo(f"{file.name}: SHA-256 {plain} matches {len(events)} recorded release(s)")
