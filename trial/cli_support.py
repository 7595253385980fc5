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


def open_private(path, *, overwrite: bool):
    """Open ``path`` for writing, readable and writable by its owner only (0600).

    Trial files written by the commands (key files, bundles, reports, backups) hold participant
    data or arms; the process umask must not leave them readable by every local account.
    Without ``overwrite`` an existing file is refused (``FileExistsError``), atomically.
    An existing file that is overwritten is narrowed to 0600 before anything is written.
    """
    import os

    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    descriptor = os.open(path, flags, 0o600)
    os.fchmod(descriptor, 0o600)
    return os.fdopen(descriptor, "wb")
