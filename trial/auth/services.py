"""Create users, issue and check tokens, and log in with a password.

Login answers identically for an unknown name and a wrong password: same status, same body,
and the same argon2 work (a dummy hash is verified for unknown names), so neither the answer
nor its timing tells whether an account exists. Throttling (how many attempts, per what) is
``trial.auth.throttle``'s job; this module checks passwords and records what happened.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app
from marshmallow import ValidationError as MarshmallowError
from marshmallow import validate
from sqlalchemy import bindparam, select
from sqlalchemy.orm import joinedload

from trial.audit.services import record_created, record_event
from trial.auth.models import ApiToken, User
from trial.auth.roles import MULTI_SITE_ROLES, SINGLE_SITE_ROLES, UNBLINDED_ROLES, Role
from trial.auth.schemas import UserCreateSchema
from trial.auth.throttle import check_step_up_allowed, count_wrong_step_up
from trial.database import utcnow
from trial.errors import (
    Conflict,
    Forbidden,
    ForbiddenRecorded,
    NotFound,
    Unauthorized,
    UnauthorizedRecorded,
    ValidationFailed,
)
from trial.extensions import db
from trial.reasons import require_reason
from trial.sites.services import get_site_by_code
from trial.validation import checks_body

TOKEN_BYTES = 32
# The audit trail records user names (entity_id is 80 wide), so names stay within 80.
USERNAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{1,79}")
USERNAME_RULE = "Use 2 to 80 letters, digits, dots, dashes or underscores."
BAD_CREDENTIALS = "Invalid username or password."
# What a failed-login row records instead of a name that is no account's: people type
# passwords into the name box, and admins read the trail.
UNKNOWN_NAME = "(unknown name)"
# The schemas' rule for an address, also for callers that bypass them (command line, demo).
_EMAIL_RULE = validate.And(validate.Length(max=254), validate.Email())


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


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def normalize_username(username: str) -> str:
    return username.strip().lower()


def get_user_by_username(username: str) -> User | None:
    return db.session.scalar(select(User).where(User.username == normalize_username(username)))


def require_user(username: str) -> User:
    """The account named ``username``, or 404."""
    user = get_user_by_username(username)
    if user is None:
        raise NotFound(f"No user {username!r}.")
    return user


def list_users(actor) -> list[User]:
    """Every account, by name (the route lets admins only)."""
    return list(db.session.scalars(select(User).order_by(User.username)))


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


@checks_body(UserCreateSchema)
def _check_new_user(actor, values, failed):
    """The rules of a new account whose body failed its schema (``trial.validation``): the
    sites its role takes, and an unblinded role never granted over HTTP (403)."""
    if "role" not in values:
        return
    _check_may_grant(actor, values["role"])
    if "sites" not in failed:
        _resolve_sites(values["role"], list(values.get("sites") or []))


def create_user(
    actor,
    *,
    username: str,
    role: str,
    site_codes: list[str] | None = None,
    password: str | None = None,
    email: str | None = None,
) -> User:
    """Add an account; site staff are bound to their site(s), trial-wide roles to none.

    ``email``: where the account's notifications go; its owner is told by e-mail that the
    account exists and how to sign in (never a password: ``trial.notifications``).
    """
    username = normalize_username(username)
    if not USERNAME_PATTERN.fullmatch(username):
        raise ValidationFailed("Invalid input: username.", {"username": [USERNAME_RULE]})
    if role not in {r.value for r in Role}:
        raise ValidationFailed("Invalid input: role.", {"role": [f"Unknown role {role!r}."]})
    _check_may_grant(actor, role)
    sites = _resolve_sites(role, list(site_codes or []))
    if get_user_by_username(username) is not None:
        raise Conflict(f"User {username} already exists.", {"username": ["Already taken."]})
    email = normalize_email(email)
    user = User(
        email=email,
        username=username,
        role=role,
        is_active=True,
        created_at=utcnow(),
        password_hash=hash_password(password) if password else None,
        password_set_at=utcnow() if password else None,
        credential_version=1,
        password_set_by_owner=False,
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
            **({"email": email} if email else {}),
        },
    )
    if email:
        from trial.notifications.events import account_created

        account_created(user, password_set=bool(password))
    return user


def normalize_email(email: str | None) -> str | None:
    """An address as stored: trimmed, or None when empty; refused (422) when malformed."""
    email = (email or "").strip()
    if not email:
        return None
    try:
        _EMAIL_RULE(email)
    except MarshmallowError:
        raise ValidationFailed(
            "Invalid input: email.", {"email": ["Not a valid email address."]}
        ) from None
    return email


def change_email(actor, user: User, *, email: str | None, reason: str) -> User:
    """Set or clear an account's e-mail address, audited with the old and new values."""
    reason = require_reason(reason, what="an e-mail address change")
    email = normalize_email(email)
    old = user.email
    if old == email:
        return user
    user.email = email
    db.session.flush()
    record_event(
        actor,
        "email_changed",
        entity_type="user",
        entity_id=user.username,
        field="email",
        old=old,
        new=email,
        reason=reason,
    )
    return user


def change_role(actor, user: User, *, role: str, site_codes: list[str] | None, reason: str) -> User:
    """Change a user's role and sites; recorded with old and new values and the reason."""
    if role not in {r.value for r in Role}:
        raise ValidationFailed("Invalid input: role.", {"role": [f"Unknown role {role!r}."]})
    reason = require_reason(reason, what="a role change")
    if getattr(actor, "id", None) == user.id:
        # An admin granting themselves an unblinded role would defeat separation of duties.
        raise Forbidden("You may not change your own role; ask another admin.")
    _check_may_grant(actor, role)
    sites = _resolve_sites(role, list(site_codes or []))
    old_role, old_sites = user.role, user.site_codes
    user.role = role
    user.sites = sites
    if (old_role, old_sites) != (role, [s.code for s in sites]):
        # Voids a code-break approval: it was given to the account at its former role/sites.
        user.credential_version += 1
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
                reason=reason,
            )
    return user


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
    hasher = _password_hasher()
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
            verified = _password_hasher().verify(user.password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            verified = False
    if not verified:
        count_wrong_step_up(user)
    return verified
