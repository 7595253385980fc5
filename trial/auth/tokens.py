"""Issue, revoke and check API tokens.

A token is shown in clear text once, when issued; only its SHA-256 is stored, so a copy of
the database opens no account. Every request checks its bearer token here
(``trial.auth.policy``), and the pages' sessions are tokens too (``trial.web.session``).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from functools import cache

from sqlalchemy import bindparam, select
from sqlalchemy.orm import joinedload

from trial.audit.services import record_event
from trial.auth.models import ApiToken, User
from trial.database import utcnow
from trial.errors import Unauthorized
from trial.extensions import db

TOKEN_BYTES = 32


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(actor, user: User, *, label: str, ttl: timedelta) -> tuple[str, ApiToken]:
    """Create a token and return it in clear text once; only its hash is stored."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    now = utcnow()
    row = ApiToken(
        user_id=user.id,
        token_hash=hash_token(token),
        label=label,
        created_at=now,
        expires_at=now + ttl,
    )
    db.session.add(row)
    db.session.flush()
    record_event(
        actor,
        "token_created",
        entity_type="user",
        entity_id=user.username,
        detail={"token_id": row.id, "label": label, "expires_at": row.expires_at.isoformat()},
    )
    return token, row


def revoke_token(actor, token_row: ApiToken) -> None:
    if token_row.revoked_at is None:
        token_row.revoked_at = utcnow()
        db.session.flush()
        record_event(
            actor,
            "token_revoked",
            entity_type="user",
            entity_id=token_row.user.username,
            detail={"token_id": token_row.id},
        )


def revoke_all_tokens(actor, user: User) -> int:
    rows = db.session.scalars(
        select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
    )
    count = 0
    for row in rows:
        revoke_token(actor, row)
        count += 1
    return count


@cache
def _token_with_user():
    """One statement for the token, its user and the user's sites, built once (every request
    pays for it), at first use: building a loader option configures every mapper, which at
    import time could run before all the models a relationship names are imported."""
    return (
        select(ApiToken)
        .where(ApiToken.token_hash == bindparam("token_hash"))
        .options(joinedload(ApiToken.user).joinedload(User.sites))
    )


def authenticate_token(token: str) -> tuple[User, ApiToken]:
    """Return the user behind a bearer token, or raise 401 (one message for every cause)."""
    row = db.session.scalar(_token_with_user(), {"token_hash": hash_token(token)})
    if (
        row is None
        or row.revoked_at is not None
        or row.expires_at <= utcnow()
        or not row.user.is_active
    ):
        raise Unauthorized("The token is missing, invalid, expired or revoked.")
    return row.user, row
