"""Sign in with a password (the API's login and the pages' alike), and record each attempt.

Login answers identically for an unknown name and a wrong password: same status, same body,
and the same argon2 work (a dummy hash is verified for unknown names), so neither the answer
nor its timing tells whether an account exists. Throttling (how many attempts, per what) is
``trial.auth.throttle``'s job; this module checks passwords and records what happened.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app

from trial.audit.services import record_event
from trial.auth.models import ApiToken, User
from trial.auth.passwords import hash_password, password_hasher
from trial.auth.services import get_user_by_username, normalize_username
from trial.auth.tokens import issue_token
from trial.database import utcnow
from trial.errors import UnauthorizedRecorded

BAD_CREDENTIALS = "Invalid username or password."
# What a failed-login row records instead of a name that is no account's: people type
# passwords into the name box, and admins read the trail.
UNKNOWN_NAME = "(unknown name)"


def _dummy_hash() -> str:
    cache = current_app.extensions.setdefault("trial_auth", {})
    if "dummy_hash" not in cache:
        cache["dummy_hash"] = hash_password(secrets.token_urlsafe(16))
    return cache["dummy_hash"]


def keyed_digest(value: str) -> str:
    """HMAC-SHA256 of ``value`` under the app's SECRET_KEY (hex), so that repeated typed text
    can be told apart and matched without being readable to anyone without the key.
    """
    key = current_app.config.get("SECRET_KEY")
    if not key:  # no secret configured: a per-process key still hides the text
        key = current_app.extensions.setdefault("trial_auth", {}).setdefault(
            "digest_key", secrets.token_hex(32)
        )
    return hmac.new(str(key).encode(), value.encode("utf-8"), hashlib.sha256).hexdigest()


def _record_failed_login(name: str, user: User | None, cause: str | None = None) -> None:
    """Audit a failed login, naming the account only if the name is one.

    Anything else typed in the name box (often a password) is never stored: the row says
    ``(unknown name)`` and carries a short digest of it under the server's secret, so
    repeated attempts on one unknown name can still be told apart and counted.
    """
    if user is not None:
        # The attempt is not by the account holder, so no actor: only the account's name.
        record_event(
            None,
            "login_failed",
            entity_type="user",
            entity_id=name,
            username=name,
            detail={"cause": cause} if cause else None,
        )
        return
    record_event(
        None,
        "login_failed",
        entity_type="user",
        entity_id=UNKNOWN_NAME,
        username=UNKNOWN_NAME,
        detail={"name_digest": keyed_digest(name)[:16]},
    )


def login(username: str, password: str) -> tuple[str, ApiToken]:
    """Check a password and return a new API token (``login_user`` says how it is checked)."""
    user = login_user(username, password)
    ttl = timedelta(hours=current_app.config["TOKEN_TTL_HOURS"])
    return issue_token(user, user, label="password login", ttl=ttl)


def login_user(username: str, password: str) -> User:
    """Check a password for the API's login and the pages' sign-in alike, and record it.

    A failure is refused with one 401 for every cause, the attempt kept on record
    (``UnauthorizedRecorded``). Throttled attempts never get here (the limiter refuses them
    before the view runs).
    """
    name = normalize_username(username)[:150]
    user = get_user_by_username(name)
    hasher = password_hasher()
    stored = user.password_hash if user is not None and user.password_hash else _dummy_hash()
    try:
        verified = hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        verified = False
    if not verified or user is None or not user.password_hash or not user.is_active:
        _record_failed_login(name, user)
        raise UnauthorizedRecorded(BAD_CREDENTIALS)
    if user.password_expires_at is not None and user.password_expires_at <= utcnow():
        # A temporary password past its time: refused like a wrong one (the answer tells
        # nobody the password was right); the trail says why, for the admin who reissues it.
        _record_failed_login(name, user, cause="temporary password expired")
        raise UnauthorizedRecorded(BAD_CREDENTIALS)
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
    record_event(user, "login", entity_type="user", entity_id=user.username)
    return user
