"""``flask reports safety``."""

from pathlib import Path

import click
from flask.cli import AppGroup

from reports.options import ARM_MODES, SESSIONS
from trial.cli_support import fail_on_trial_error, open_private, user_as
from trial.errors import TrialError
from trial.extensions import db

reports_cli = AppGroup("reports", help="DSMB safety reports.")


@reports_cli.command("safety")
@click.option("--as", "username", required=True, help="The user the report is made for.")
@click.option("--session", type=click.Choice(SESSIONS), required=True)
@click.option("--arms", type=click.Choice(ARM_MODES), default=None, help="Closed report only.")
@click.option("--cutoff", default=None, help="ISO 8601 with a time zone; default now.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))
def safety_command(username, session, arms, cutoff, out):
    """Write the open or closed DSMB safety report as PDF (audited with its SHA-256)."""
    actor = user_as(username)
    try:
        from reports.pdf import produce_safety_report  # reportlab: loaded when used

        report = produce_safety_report(actor, session, arms, cutoff)
    except TrialError as exc:
        db.session.rollback()
        raise fail_on_trial_error(exc) from exc
    with open_private(out, overwrite=True) as target:
        target.write(report.pdf)
    click.echo(
        f"wrote {out} ({report.session}, cut-off {report.cutoff.isoformat()}, "
        f"SHA-256 {report.sha256})"
    )


@reports_cli.command("arm-code")
@click.option("--as", "username", required=True, help="The unblinded statistician.")
def arm_code_command(username):
    """Print which arm the closed report calls A, B, ... (unblinded statistician; audited).

    The coding is a secret permutation keyed by ARM_KEY, so it is handed to the DSMB
    separately from the reports it decodes.
    """
    from reports.arm_code import release_arm_code

    actor = user_as(username)
    try:
        pairs = release_arm_code(actor)
        db.session.commit()
    except TrialError as exc:
        db.session.rollback()
        raise fail_on_trial_error(exc) from exc
    for code, arm in pairs:
        click.echo(f"{code} = {arm}")
