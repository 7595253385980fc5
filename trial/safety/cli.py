"""``flask meddra load FILE``: load the sponsor's licensed MedDRA dictionary."""

from pathlib import Path

import click
from flask.cli import AppGroup

from trial.cli_support import system_actor
from trial.extensions import db
from trial.safety.coding import load_sponsor_dictionary
from trial.safety.meddra import DictionaryFileInvalid

meddra_cli = AppGroup("meddra", help="The MedDRA dictionary used to code adverse events.")


@meddra_cli.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--recode-coded",
    is_flag=True,
    help="Also re-code AEs already coded whose coding differs in the new dictionary "
    "(each change audited). By default only uncoded AEs are coded.",
)
def load_command(file: Path, recode_coded: bool):
    """Load FILE (CSV: llt or term, pt, soc), replacing the previous sponsor dictionary.

    The file is refused whole, naming each bad line, if anything in it is wrong. The load is
    audited; uncoded AEs that the new dictionary knows are coded, each an audited correction.
    """
    try:
        result = load_sponsor_dictionary(system_actor(), file, recode_coded=recode_coded)
    except DictionaryFileInvalid as exc:
        db.session.rollback()
        for problem in exc.problems:
            click.echo(f"{file.name}: {problem}", err=True)
        raise click.ClickException(
            f"{file.name} refused: {len(exc.problems)} problem(s); nothing was loaded."
        ) from None
    db.session.commit()
    click.echo(
        f"loaded {result.terms} terms ({result.preferred_terms} preferred terms) from "
        f"{result.source}; replaced {result.replaced_terms} terms of the previous load"
    )
    click.echo(
        f"coded {result.recoded_uncoded} previously uncoded adverse events; "
        f"{result.still_uncoded} remain uncoded"
    )
    if recode_coded:
        click.echo(f"re-coded {result.recoded_coded} adverse events coded before")
    elif result.would_recode_coded:
        click.echo(
            f"{result.would_recode_coded} adverse events coded before would code differently "
            f"with this dictionary; run again with --recode-coded to re-code them (audited)"
        )
