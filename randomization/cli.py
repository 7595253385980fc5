"""``flask randomization generate|import|verify|summary``."""

from pathlib import Path

import click
from flask.cli import AppGroup

from randomization import lists
from trial.cli_support import fail_on_trial_error, user_as
from trial.errors import TrialError
from trial.extensions import db

randomization_cli = AppGroup("randomization", help="The randomization list (unblinded).")


def _run(action):
    try:
        result = action()
        db.session.commit()
        return result
    except TrialError as exc:
        db.session.rollback()
        raise fail_on_trial_error(exc) from exc


@randomization_cli.command("generate")
@click.option("--as", "username", required=True, help="An unblinded statistician.")
def generate_command(username):
    """Generate the stratified permuted-block list from the protocol and a fresh seed."""
    actor = user_as(username)
    row = _run(lambda: lists.generate(actor))
    click.echo(f"generated list {row.id}: {row.slot_count} slots, SHA-256 {row.list_sha256}")


@randomization_cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--as", "username", required=True, help="An unblinded statistician.")
@click.option("--append", is_flag=True, help="Add to an already loaded list.")
def import_command(file, username, append):
    """Load a list made elsewhere: CSV with stratum, sequence, arm[, block][, kit]."""
    actor = user_as(username)
    data = file.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise click.ClickException(
            f"{file.name} refused: line {line} is not UTF-8 text (byte {exc.start + 1}); "
            f"save the file as UTF-8. Nothing was loaded."
        ) from None
    row = _run(lambda: lists.import_list(actor, text, append=append))
    click.echo(f"imported list {row.id}: {row.slot_count} slots, SHA-256 {row.list_sha256}")


@randomization_cli.command("verify")
def verify_command():
    """Regenerate from the seed, check hashes and that allocations followed list order."""
    try:
        report = lists.verify()
    except TrialError as exc:
        raise fail_on_trial_error(exc) from exc
    for line in report.lines:
        click.echo(line)
    if not report.ok:
        raise SystemExit(1)


@randomization_cli.command("summary")
@click.option("--as", "username", required=True, help="An unblinded statistician.")
@click.option(
    "--simulations",
    default=100_000,
    show_default=True,
    type=click.IntRange(0),
    help="Simulated allocations for the predictability figure.",
)
def summary_command(username, simulations):
    """Per stratum: slots, used, remaining, block sizes; and the design's predictability."""
    actor = user_as(username)
    rows = _run(lambda: lists.summary(actor, simulations=simulations))
    click.echo(f"{'stratum':<22} {'slots':>5} {'used':>5} {'left':>5}  block sizes")
    for row in rows:
        sizes = ", ".join(f"{size}x{count}" for size, count in row["block_sizes"].items())
        warn = "  LOW" if row["remaining"] < 0.1 * row["slots"] else ""
        click.echo(
            f"{row['stratum']:<22} {row['slots']:>5} {row['used']:>5} "
            f"{row['remaining']:>5}  {sizes}{warn}"
        )
    if rows and rows[0]["predictability"] is not None:
        click.echo(
            f"predictability (convergence guesser, {simulations} simulated "
            f"allocations): {rows[0]['predictability']:.3f} correct guesses"
        )
