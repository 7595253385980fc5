"""Shared pieces of the command line: the acting user for audit, and ``--as`` resolution."""

from __future__ import annotations

import getpass
from dataclasses import dataclass

import click

from trial.errors import TrialError


@dataclass(frozen=True)
class SystemActor:
    """The operator at the server's command line, recorded as such in the audit trail."""

    id: None = None
    role: str = "system"
    site_label: None = None

    @property
    def username(self) -> str:
        try:
            return f"cli:{getpass.getuser()}"
        except Exception:  # noqa: BLE001 - no login name in some containers
            return "cli"


def system_actor() -> SystemActor:
    return SystemActor()


def user_as(username: str):
    """Resolve ``--as USERNAME`` to an active account or stop with a clear message."""
    from trial.auth.services import get_user_by_username

    user = get_user_by_username(username)
    if user is None or not user.is_active:
        raise click.ClickException(f"no active user {username!r}")
    return user


def fail_on_trial_error(exc: TrialError) -> click.ClickException:
    details = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.errors.items())
    return click.ClickException(f"{exc.message}{' (' + details + ')' if details else ''}")
