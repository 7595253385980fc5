"""Create users, issue and check tokens, and log in with a password.

Login answers identically for an unknown name and a wrong password: same status, same body,
and the same argon2 work (a dummy hash is verified for unknown names), so neither the answer
nor its timing tells whether an account exists.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import joinedload

from trial.audit.services import record_created, record_event
from trial.auth.models import ApiToken, LoginFailure, User
from trial.auth.roles import MULTI_SITE_ROLES, SINGLE_SITE_ROLES, UNBLINDED_ROLES, Role
from trial.database import utcnow
from trial.errors import Conflict, Forbidden, TooManyRequests, Unauthorized, ValidationFailed
from trial.extensions import db
from trial.sites.services import get_site_by_code

TOKEN_BYTES = 32
# The audit trail records user names (entity_id is 80 wide), so names stay within 80.
USERNAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{1,79}")
USERNAME_RULE = "Use 2 to 80 letters, digits, dots, dashes or underscores."
BAD_CREDENTIALS = "Invalid username or password."


def _password_hasher() -> PasswordHasher:
    config = current_app.config
    return PasswordHasher(
        time_cost=config["ARGON2_TIME_COST"],
        memory_cost=config["ARGON2_MEMORY_COST_KIB"],
        parallelism=config["ARGON2_PARALLELISM"],
    )


def hash_password(password: str) -> str:
    return _password_hasher().hash(password)


def _dummy_hash() -> str:
    cache = current_app.extensions.setdefault("trial_auth", {})
    if "dummy_hash" not in cache:
        cache["dummy_hash"] = hash_password(secrets.token_urlsafe(16))
    return cache["dummy_hash"]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def normalize_username(username: str) -> str:
    return username.strip().lower()


def get_user_by_username(username: str) -> User | None:
    return db.session.scalar(select(User).where(User.username == normalize_username(username)))


def _resolve_sites(role: str, site_codes: list[str]):
    errors = {}
    if role in SINGLE_SITE_ROLES and len(site_codes) != 1:
        errors["site"] = [f"A {role} works at exactly one site: give one site code."]
    elif role in MULTI_SITE_ROLES and not site_codes:
        errors["site"] = [f"A {role} needs at least one site."]
    elif role not in SINGLE_SITE_ROLES | MULTI_SITE_ROLES and site_codes:
        errors["site"] = [f"The {role} role is trial-wide and takes no site."]
    sites = []
    for code in site_codes:
        site = get_site_by_code(code)
        if site is None:
            errors.setdefault("site", []).append(f"Unknown site {code!r}.")
        else:
            sites.append(site)
    if errors:
        raise ValidationFailed("Invalid input: site.", errors)
    return sites


def _check_may_grant(actor, role: str) -> None:
    """Grant unblinded roles only at the server's command line, never through the API.

    An admin who could create an unblinded account with a password of their choosing, or move
    an account they control into an unblinded role, would be unblinded by being admin.
    """
    if role in UNBLINDED_ROLES and isinstance(actor, User):
        raise Forbidden(
            f"The {role} role is granted only from the server's command line "
            f"(flask users create / set-role)."
        )


def create_user(
    actor,
    *,
    username: str,
    role: str,
    site_codes: list[str] | None = None,
    password: str | None = None,
) -> User:
    """Add an account; site staff are bound to their site(s), trial-wide roles to none."""
    username = normalize_username(username)
    if not USERNAME_PATTERN.fullmatch(username):
        raise ValidationFailed("Invalid input: username.", {"username": [USERNAME_RULE]})
    if role not in {r.value for r in Role}:
        raise ValidationFailed("Invalid input: role.", {"role": [f"Unknown role {role!r}."]})
    _check_may_grant(actor, role)
    sites = _resolve_sites(role, list(site_codes or []))
    if get_user_by_username(username) is not None:
        raise Conflict(f"User {username} already exists.", {"username": ["Already taken."]})
    user = User(
        username=username,
        role=role,
        is_active=True,
        created_at=utcnow(),
        password_hash=hash_password(password) if password else None,
    )
    user.sites = sites
    db.session.add(user)
    db.session.flush()
    record_created(
        actor,
        "user",
        username,
        {
            "username": username,
            "role": role,
            "sites": [s.code for s in sites],
            "password_set": bool(password),
        },
    )
    return user


def change_role(actor, user: User, *, role: str, site_codes: list[str] | None, reason: str) -> User:
    """Change a user's role and sites; recorded with old and new values and the reason."""
    if role not in {r.value for r in Role}:
        raise ValidationFailed("Invalid input: role.", {"role": [f"Unknown role {role!r}."]})
    if not (reason and reason.strip()):
        raise ValidationFailed("Invalid input: reason.", {"reason": ["Give a reason."]})
    if getattr(actor, "id", None) == user.id:
        # An admin granting themselves an unblinded role would defeat separation of duties.
        raise Forbidden("You may not change your own role; ask another admin.")
    _check_may_grant(actor, role)
    sites = _resolve_sites(role, list(site_codes or []))
    old_role, old_sites = user.role, user.site_codes
    user.role = role
    user.sites = sites
    db.session.flush()
    for field, old, new in (
        ("role", old_role, role),
        ("sites", old_sites, [s.code for s in sites]),
    ):
        if old != new:
            record_event(
                actor,
                "role_changed",
                entity_type="user",
                entity_id=user.username,
                field=field,
                old=old,
                new=new,
                reason=reason.strip(),
            )
    return user


def set_password(actor, user: User, password: str) -> None:
    user.password_hash = hash_password(password)
    db.session.flush()
    record_event(actor, "password_set", entity_type="user", entity_id=user.username)


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


# One statement for the token, its user and the user's sites, built once: every request
# pays for it.
_TOKEN_WITH_USER = (
    select(ApiToken)
    .where(ApiToken.token_hash == bindparam("token_hash"))
    .options(joinedload(ApiToken.user).joinedload(User.sites))
)


def authenticate_token(token: str) -> tuple[User, ApiToken]:
    """Return the user behind a bearer token, or raise 401 (one message for every cause)."""
    row = db.session.scalar(_TOKEN_WITH_USER, {"token_hash": hash_token(token)})
    if (
        row is None
        or row.revoked_at is not None
        or row.expires_at <= utcnow()
        or not row.user.is_active
    ):
        raise Unauthorized("The token is missing, invalid, expired or revoked.")
    return row.user, row


def _recent_failures(username: str, now: datetime) -> int:
    window = timedelta(minutes=current_app.config["LOGIN_FAILURE_WINDOW_MINUTES"])
    return (
        db.session.scalar(
            select(func.count())
            .select_from(LoginFailure)
            .where(LoginFailure.username == username, LoginFailure.occurred_at > now - window)
        )
        or 0
    )


def login(username: str, password: str) -> tuple[str, ApiToken] | None:
    """Check a password and return a new token, or None after recording the failure.

    The caller commits in both cases, so failures are recorded even though the request fails;
    it then raises ``login_failed_error()``. A locked name raises 429 whether or not it exists.
    """
    name = normalize_username(username)[:150]
    now = utcnow()
    if _recent_failures(name, now) >= current_app.config["LOGIN_MAX_FAILURES"]:
        record_event(None, "login_locked", entity_type="user", entity_id=name, username=name)
        return None
    user = get_user_by_username(name)
    hasher = _password_hasher()
    stored = user.password_hash if user is not None and user.password_hash else _dummy_hash()
    try:
        verified = hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        verified = False
    if not verified or user is None or not user.password_hash or not user.is_active:
        db.session.add(LoginFailure(username=name, occurred_at=now))
        # The attempt is not by the account holder, so no actor: only the name typed.
        record_event(None, "login_failed", entity_type="user", entity_id=name, username=name)
        return None
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
    record_event(user, "login", entity_type="user", entity_id=user.username)
    ttl = timedelta(hours=current_app.config["TOKEN_TTL_HOURS"])
    return issue_token(user, user, label="password login", ttl=ttl)


def login_refusal(username: str) -> Exception:
    """The error for a refused login: locked (429) or bad credentials (401), never more."""
    name = normalize_username(username)[:150]
    if _recent_failures(name, utcnow()) >= current_app.config["LOGIN_MAX_FAILURES"]:
        return TooManyRequests("Too many failed logins for this name; try again later.")
    return Unauthorized(BAD_CREDENTIALS)


def verify_password(user: User, password: str) -> bool:
    """Re-check an already authenticated user's password (e.g. before a code-break).

    Shares the login lockout: a wrong password counts as a failed attempt for the name, and
    a locked name is refused (429) before the password is even checked, so a stolen token
    cannot be used to guess the password without limit.
    """
    now = utcnow()
    if _recent_failures(user.username, now) >= current_app.config["LOGIN_MAX_FAILURES"]:
        raise TooManyRequests("Too many wrong passwords for this account; try again later.")
    verified = False
    if user.password_hash and password:
        try:
            verified = _password_hasher().verify(user.password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            verified = False
    if not verified:
        db.session.add(LoginFailure(username=user.username, occurred_at=now))
    return verified
