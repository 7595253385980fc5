"""Hash, set, change and re-check passwords.

Who set a password decides what it is trusted for (``set_password``): a code-break approval
stands only on a password its owner chose. Re-checking the password of a signed-in user
(the step-up) is throttled per account by ``trial.auth.throttle``; signing in with one is
``trial.auth.signin``'s job.
"""

from __future__ import annotations

from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app
from sqlalchemy import select

from trial.audit.services import record_event
from trial.auth.models import ApiToken, User
from trial.auth.throttle import check_step_up_allowed, count_wrong_step_up
from trial.auth.tokens import revoke_token
from trial.database import utcnow
from trial.errors import ForbiddenRecorded, ValidationFailed
from trial.extensions import db


def password_hasher() -> PasswordHasher:
    """The argon2 hasher at the app's configured cost, for setting and checking passwords
    here and at sign-in (``trial.auth.signin``), so both do the same work."""
    config = current_app.config
    return PasswordHasher(
        time_cost=config["ARGON2_TIME_COST"],
        memory_cost=config["ARGON2_MEMORY_COST_KIB"],
        parallelism=config["ARGON2_PARALLELISM"],
    )


def hash_password(password: str) -> str:
    return password_hasher().hash(password)


def set_password(
    actor,
    user: User,
    password: str,
    *,
    reason: str | None = None,
    temporary_until: datetime | None = None,
) -> None:
    """Set an account's password; who set it decides what it is trusted for.

    Set by its owner, the password is known to the owner alone, and a code-break approval
    stands. Set by anyone else (an admin, the command line), that person knows it too: the
    credential version changes, which voids any approval, and none can be given until the
    owner sets a password of their own. ``temporary_until``: an admin's reset
    (``trial.auth.accounts.reset_password``): the password opens the account until then, and
    only to change it (``must_change_password``); audited as ``password_reset``.
    """
    by_owner = getattr(actor, "id", None) == user.id
    user.password_hash = hash_password(password)
    user.password_set_at = utcnow()
    user.password_set_by_owner = by_owner
    user.must_change_password = temporary_until is not None
    user.password_expires_at = temporary_until
    if not by_owner:
        user.credential_version += 1
    db.session.flush()
    detail = {"set_by": "owner" if by_owner else "another"}
    if temporary_until is not None:
        detail["expires_at"] = temporary_until.isoformat()
    record_event(
        actor,
        "password_set" if temporary_until is None else "password_reset",
        entity_type="user",
        entity_id=user.username,
        reason=reason,
        detail=detail,
    )


def change_own_password(user: User, token_row: ApiToken, current: str, new: str) -> None:
    """The owner replaces their password, typing the current one.

    The current password is a step-up (the account's own throttle): a wrong one is refused
    (403) with nothing changed and the attempt kept on record (``ForbiddenRecorded``). The
    new password must differ from the current one (someone who set the current one would
    otherwise still know it). The account's other tokens are revoked: a token obtained with
    the old password (by whoever knew it) dies with it.
    """
    if not verify_password(user, current):
        record_event(
            user,
            "password_change_refused",
            entity_type="user",
            entity_id=user.username,
            detail={"cause": "current password incorrect"},
        )
        raise ForbiddenRecorded(
            "Current password incorrect: the password was not changed. The attempt was recorded.",
            {"current_password": ["Incorrect password."]},
        )
    if new == current:
        raise ValidationFailed(
            "Invalid input: new_password.",
            {"new_password": ["Choose a password different from the current one."]},
        )
    set_password(user, user, new)
    others = db.session.scalars(
        select(ApiToken).where(
            ApiToken.user_id == user.id,
            ApiToken.revoked_at.is_(None),
            ApiToken.id != token_row.id,
        )
    )
    for row in others:
        revoke_token(user, row)


def verify_password(user: User, password: str) -> bool:
    """Re-check an authenticated user's password (the step-up before a code-break, a
    signature, an approval or a password change).

    Has its own per-account throttle (``trial.auth.throttle``): a wrong password counts
    against the account, and once the budget is spent the check is refused (429) before the
    password is even looked at, so a stolen token cannot guess the password without limit.
    Failed anonymous logins under the same name count elsewhere and never block this.
    """
    check_step_up_allowed(user)
    verified = False
    expired = user.password_expires_at is not None and user.password_expires_at <= utcnow()
    if user.password_hash and password and not expired:
        try:
            verified = password_hasher().verify(user.password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            verified = False
    if not verified:
        count_wrong_step_up(user)
    return verified
