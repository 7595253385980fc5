"""An admin's account operations: deactivate, reactivate, reset a password.

Each takes a reason, is audited with it in the same transaction, and is refused on the
admin's own account (409): an admin locking themselves out, or choosing a password for
themselves that no one else saw, is not what these are for. None of them widens what the
admin can see (DESIGN §2: admin is not unblinded): a reset of an unblinded account is refused
over HTTP, because the admin who saw the temporary password could sign in with it, set a
password of their own and read arms.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from flask import current_app

from trial.audit.services import record_event
from trial.auth.models import User
from trial.auth.passwords import set_password
from trial.auth.roles import UNBLINDED_ROLES
from trial.auth.tokens import revoke_all_tokens
from trial.database import utcnow
from trial.errors import Conflict, Forbidden
from trial.extensions import db
from trial.notifications import events as notification_events
from trial.reasons import require_reason

# 18 random bytes: 24 URL-safe characters, twice the password minimum, typed once.
TEMPORARY_PASSWORD_BYTES = 18
DEFAULT_TEMPORARY_PASSWORD_TTL_HOURS = 72


def _not_yourself(actor, user: User, what: str, instead: str) -> None:
    if getattr(actor, "id", None) == user.id:
        raise Conflict(f"You may not {what} your own account; {instead}.")


def deactivate_account(actor, user: User, *, reason: str) -> User:
    """Close an account at once: it cannot log in, and every token it holds is revoked (a
    request with one answers 401 from now on; reactivating brings none of them back)."""
    reason = require_reason(reason, what="deactivating an account")
    _not_yourself(actor, user, "deactivate", "ask another admin")
    if not user.is_active:
        raise Conflict(f"Account {user.username} is already deactivated.")
    user.is_active = False
    db.session.flush()
    record_event(
        actor,
        "account_deactivated",
        entity_type="user",
        entity_id=user.username,
        field="is_active",
        old=True,
        new=False,
        reason=reason,
    )
    revoke_all_tokens(actor, user)
    return user


def reactivate_account(actor, user: User, *, reason: str) -> User:
    """Open a deactivated account again; its owner logs in afresh (no old token revives)."""
    reason = require_reason(reason, what="reactivating an account")
    _not_yourself(actor, user, "reactivate", "ask another admin")
    if user.is_active:
        raise Conflict(f"Account {user.username} is already active.")
    user.is_active = True
    db.session.flush()
    record_event(
        actor,
        "account_reactivated",
        entity_type="user",
        entity_id=user.username,
        field="is_active",
        old=False,
        new=True,
        reason=reason,
    )
    return user


def reset_password(actor, user: User, *, reason: str) -> tuple[str, User]:
    """Give an account a one-time temporary password, returned to the admin once.

    Why a temporary password shown to the admin, not a link by e-mail: account e-mails never
    carry a password or what stands for one (DESIGN §6), and the service has no channel to
    the owner but the admin who confirmed who they are. The temporary password is random (the
    admin chooses nothing), shown once in the answer, stored only as its argon2 hash, never
    audited or logged; it expires (``TEMPORARY_PASSWORD_TTL_HOURS``, 72 by default), and until
    the owner replaces it (``POST /auth/password``) every token of the account reaches nothing
    but the password change, so the admin who saw it cannot use the account. Every token
    the account held is revoked; a code-break approval is voided (someone else set the
    password: ``set_password``).
    """
    reason = require_reason(reason, what="resetting a password")
    _not_yourself(actor, user, "reset the password of", "change it with POST /auth/password")
    if user.role in UNBLINDED_ROLES:
        raise Forbidden(
            f"The password of a {user.role} account is reset only from the server's command "
            f"line (flask users set-password): an admin who knew it could read arms."
        )
    temporary = secrets.token_urlsafe(TEMPORARY_PASSWORD_BYTES)
    hours = current_app.config.get(
        "TEMPORARY_PASSWORD_TTL_HOURS", DEFAULT_TEMPORARY_PASSWORD_TTL_HOURS
    )
    set_password(
        actor, user, temporary, reason=reason, temporary_until=utcnow() + timedelta(hours=hours)
    )
    revoke_all_tokens(actor, user)
    # Its owner learns of the reset by e-mail, and how to get the password: never the password.
    notification_events.password_reset(user)
    return temporary, user
