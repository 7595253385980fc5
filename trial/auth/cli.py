"""``flask users ...``: manage accounts from the server's command line."""

from datetime import timedelta

import click
from flask import current_app
from flask.cli import AppGroup

from trial.auth import approval, passwords, services, tokens
from trial.cli_support import fail_on_trial_error, system_actor, user_as
from trial.errors import TrialError
from trial.extensions import db

users_cli = AppGroup("users", help="Manage user accounts and tokens.")


@users_cli.command("create")
@click.argument("username")
@click.option(
    "--role",
    required=True,
    help="admin, coordinator, investigator, monitor, "
    "data_manager, statistician, unblinded_statistician or dsmb",
)
@click.option(
    "--site", "sites", multiple=True, help="Site code (site roles; repeatable for monitors)."
)
@click.option("--password", is_flag=True, help="Prompt for a password to allow login.")
@click.option("--email", default=None, help="Where the account's notifications go.")
def create_user_command(username, role, sites, password, email):
    """Create an account and print its new API token as the last line."""
    secret = (
        click.prompt("Password", hide_input=True, confirmation_prompt=True) if password else None
    )
    actor = system_actor()
    try:
        user = services.create_user(
            actor,
            username=username,
            role=role,
            site_codes=list(sites),
            password=secret,
            email=email,
        )
        ttl = timedelta(days=current_app.config["CLI_TOKEN_TTL_DAYS"])
        token, row = tokens.issue_token(actor, user, label="command line", ttl=ttl)
        db.session.commit()
    except TrialError as exc:
        db.session.rollback()
        raise fail_on_trial_error(exc) from exc
    click.echo(
        f"created {user.username} ({user.role}"
        f"{', ' + user.site_label if user.site_label else ''}); "
        f"token expires {row.expires_at:%Y-%m-%d %H:%M} UTC"
    )
    click.echo(token)


@users_cli.command("token")
@click.argument("username")
def issue_token_command(username):
    """Issue a further API token for an account and print it as the last line."""
    user = services.get_user_by_username(username)
    if user is None:
        raise click.ClickException(f"no user {username!r}")
    ttl = timedelta(days=current_app.config["CLI_TOKEN_TTL_DAYS"])
    token, _ = tokens.issue_token(system_actor(), user, label="command line", ttl=ttl)
    db.session.commit()
    click.echo(token)


@users_cli.command("set-role")
@click.argument("username")
@click.option("--role", required=True)
@click.option("--site", "sites", multiple=True)
@click.option("--reason", required=True)
def set_role_command(username, role, sites, reason):
    """Change an account's role and sites (audited with the reason)."""
    user = services.get_user_by_username(username)
    if user is None:
        raise click.ClickException(f"no user {username!r}")
    try:
        services.change_role(system_actor(), user, role=role, site_codes=list(sites), reason=reason)
        db.session.commit()
    except TrialError as exc:
        db.session.rollback()
        raise fail_on_trial_error(exc) from exc
    click.echo(f"{user.username} is now {user.role}")


@users_cli.command("set-email")
@click.argument("username")
@click.option("--email", required=True, help="The new address; an empty one removes it.")
@click.option("--reason", required=True)
def set_email_command(username, email, reason):
    """Change an account's e-mail address (audited with the reason)."""
    user = services.get_user_by_username(username)
    if user is None:
        raise click.ClickException(f"no user {username!r}")
    try:
        services.change_email(system_actor(), user, email=email, reason=reason)
        db.session.commit()
    except TrialError as exc:
        db.session.rollback()
        raise fail_on_trial_error(exc) from exc
    click.echo(f"{user.username}: e-mail {user.email or '(none)'}")


@users_cli.command("revoke-tokens")
@click.argument("username")
def revoke_tokens_command(username):
    """Revoke every live token of an account."""
    user = services.get_user_by_username(username)
    if user is None:
        raise click.ClickException(f"no user {username!r}")
    count = tokens.revoke_all_tokens(system_actor(), user)
    db.session.commit()
    click.echo(f"revoked {count} token(s) of {user.username}")


@users_cli.command("set-password")
@click.argument("username")
def set_password_command(username):
    """Set an account's password (a reset): voids its code-break approval (audited).

    The operator knows the new password, so the owner must set their own (POST
    /api/v1/auth/password) before the account can be approved to break codes again.
    """
    user = services.get_user_by_username(username)
    if user is None:
        raise click.ClickException(f"no user {username!r}")
    secret = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(secret) < 12:
        raise click.ClickException("a password needs at least 12 characters")
    passwords.set_password(system_actor(), user, secret)
    db.session.commit()
    click.echo(f"password of {user.username} set; its owner must set their own before approval")


def _approval_command(action, username: str, as_user: str, reason: str) -> None:
    actor = user_as(as_user)
    user = services.get_user_by_username(username)
    if user is None:
        raise click.ClickException(f"no user {username!r}")
    try:
        action(actor, user, reason=reason)
        db.session.commit()
    except TrialError as exc:
        db.session.rollback()
        raise fail_on_trial_error(exc) from exc


@users_cli.command("approve-code-break")
@click.argument("username")
@click.option("--as", "as_user", required=True, help="The approving unblinded statistician.")
@click.option("--reason", required=True)
def approve_code_break_command(username, as_user, reason):
    """Approve an investigator account to break codes (as an unblinded statistician; audited).

    Confirm out of band first that the account is held by the investigator it names and that
    they set its password themselves.
    """
    _approval_command(approval.approve_code_break, username, as_user, reason)
    click.echo(f"{username} may break codes (approved by {as_user})")


@users_cli.command("revoke-code-break")
@click.argument("username")
@click.option("--as", "as_user", required=True, help="The revoking unblinded statistician.")
@click.option("--reason", required=True)
def revoke_code_break_command(username, as_user, reason):
    """Revoke an account's code-break approval (as an unblinded statistician; audited)."""
    _approval_command(approval.revoke_code_break_approval, username, as_user, reason)
    click.echo(f"code-break approval of {username} revoked")
