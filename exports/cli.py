"""``flask exports key``."""

from pathlib import Path

import click
from flask.cli import AppGroup

from exports.key import build_key_csv
from trial.cli_support import fail_on_trial_error, user_as
from trial.errors import TrialError
from trial.extensions import db

exports_cli = AppGroup("exports", help="Files that leave the system.")


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
