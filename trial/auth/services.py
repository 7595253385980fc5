"""Create accounts, look them up, and change their role or e-mail address.

An account's role decides its sites (site staff at one, monitors at one or more, trial-wide
roles at none), and an unblinded role is never granted over HTTP (``_check_may_grant``).
Its password is ``trial.auth.passwords``', its tokens ``trial.auth.tokens``', signing in
``trial.auth.signin``'s; an admin's deactivation and reset are ``trial.auth.accounts``'.
"""

from __future__ import annotations

import re

from marshmallow import ValidationError as MarshmallowError
from marshmallow import validate
from sqlalchemy import select

from trial.audit.services import record_created, record_event
from trial.auth.models import User
from trial.auth.passwords import hash_password
from trial.auth.roles import MULTI_SITE_ROLES, SINGLE_SITE_ROLES, UNBLINDED_ROLES, Role
from trial.auth.schemas import UserCreateSchema
from trial.database import utcnow
from trial.errors import Conflict, Forbidden, NotFound, ValidationFailed
from trial.extensions import db
from trial.reasons import require_reason
from trial.sites.services import get_site_by_code
from trial.validation import checks_body

# The audit trail records user names (entity_id is 80 wide), so names stay within 80.
USERNAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{1,79}")
USERNAME_RULE = "Use 2 to 80 letters, digits, dots, dashes or underscores."
# The schemas' rule for an address, also for callers that bypass them (command line, demo).
_EMAIL_RULE = validate.And(validate.Length(max=254), validate.Email())


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
