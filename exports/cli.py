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
from trial.cli_support import fail_on_trial_error, user_as
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
        with draft.open("rb") as source, out.open("wb") as target:
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
    """Write participant -> arm as CSV (unblinded statistician only; audited)."""
    actor = user_as(username)
    try:
        data, digest = build_key_csv(actor)
        out.write_bytes(data)
        db.session.commit()
    except TrialError as exc:
        db.session.rollback()
        raise fail_on_trial_error(exc) from exc
    click.echo(f"wrote {out} (SHA-256 {digest})")
