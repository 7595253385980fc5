"""Who is told of what: accounts by role (and site), each active one with an address, and
the safety desk's configured list.

Which roles get which message is stated here once (``RECIPIENTS``, printed in the README),
so a blinded role is never on a message that could carry unblinded news: a stratum running
low goes to the unblinded statistician alone.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import current_app
from sqlalchemy import select

from trial.auth.models import User, user_sites
from trial.auth.roles import Role
from trial.extensions import db
from trial.sites.models import Site

SAFETY_DESK = "safety desk"

# kind -> who gets it (roles, "<role> of the site", or the safety desk); the README's table.
RECIPIENTS = {
    "code_break": ("unblinded_statistician", "dsmb", "investigators of the site"),
    "serious_adverse_event": (SAFETY_DESK, "unblinded_statistician", "dsmb"),
    "expedited_report_overdue": (
        SAFETY_DESK,
        "unblinded_statistician",
        "dsmb",
        "investigators of the site",
    ),
    "stratum_low": ("unblinded_statistician",),
    "stratum_exhausted": ("unblinded_statistician",),
    "query_raised": ("coordinators and investigators of the site",),
    "query_answered": ("the monitor or data manager who raised it",),
    "account_created": ("the account's owner",),
    "password_reset": ("the account's owner",),
}


def addresses_of_roles(roles: Iterable[Role | str], site_code: str | None = None) -> list[str]:
    """The addresses of the active accounts with one of ``roles`` (at ``site_code`` if
    given), by address."""
    statement = select(User.email).where(
        User.role.in_([str(role) for role in roles]),
        User.is_active.is_(True),
        User.email.is_not(None),
    )
    if site_code is not None:
        statement = statement.where(
            User.id.in_(
                select(user_sites.c.user_id)
                .join(Site, Site.id == user_sites.c.site_id)
                .where(Site.code == site_code)
            )
        )
    return sorted({email for email in db.session.scalars(statement) if email})


def safety_desk() -> list[str]:
    """SAFETY_DESK_EMAILS: comma- (or space-) separated addresses."""
    configured = current_app.config.get("SAFETY_DESK_EMAILS") or ""
    if isinstance(configured, list | tuple):
        configured = ",".join(configured)
    return sorted({part.strip() for part in configured.replace(" ", ",").split(",") if part})


def unblinded_statisticians() -> list[str]:
    return addresses_of_roles([Role.UNBLINDED_STATISTICIAN])


def dsmb_members() -> list[str]:
    return addresses_of_roles([Role.DSMB])


def site_investigators(site_code: str) -> list[str]:
    return addresses_of_roles([Role.INVESTIGATOR], site_code)


def site_staff(site_code: str) -> list[str]:
    return addresses_of_roles([Role.COORDINATOR, Role.INVESTIGATOR], site_code)


def owner(user: User) -> list[str]:
    return [user.email] if user.email and user.is_active else []
