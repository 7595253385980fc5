"""Create and look up sites."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from trial.audit.services import record_created
from trial.database import utcnow
from trial.errors import Conflict, ValidationFailed
from trial.extensions import db
from trial.protocol import current_protocol
from trial.sites.models import Site
from trial.sites.schemas import SiteSchema
from trial.validation import checks_body


def get_site_by_code(code: str) -> Site | None:
    return db.session.scalar(select(Site).where(Site.code == code))


def list_sites() -> list[Site]:
    return list(db.session.scalars(select(Site).order_by(Site.code)))


def check_timezone(timezone: str) -> None:
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed(
            "Invalid input: timezone.", {"timezone": [f"Unknown time zone {timezone!r}."]}
        ) from None


@checks_body(SiteSchema)
def _check_new_site(actor, values, failed):
    """The rules of a new site whose body failed its schema (``trial.validation``)."""
    if "timezone" in values:
        check_timezone(values["timezone"])


def create_site(
    actor, *, code: str, name: str, timezone: str = "UTC", planned_enrollment: int | None = None
) -> Site:
    """Add a site; its planned enrollment defaults to the protocol's per-site figure."""
    check_timezone(timezone)
    if get_site_by_code(code) is not None:
        raise Conflict(f"Site {code} already exists.", {"code": ["Already exists."]})
    if planned_enrollment is None:
        planned_enrollment = current_protocol().planned_enrollment_per_site
    site = Site(
        code=code,
        name=name,
        timezone=timezone,
        planned_enrollment=planned_enrollment,
        participant_counter=0,
        created_at=utcnow(),
    )
    try:
        # A savepoint: another request may have created the same code since the check above.
        with db.session.begin_nested():
            db.session.add(site)
    except IntegrityError:
        raise Conflict(f"Site {code} already exists.", {"code": ["Already exists."]}) from None
    record_created(
        actor,
        "site",
        site.code,
        {
            "code": code,
            "name": name,
            "timezone": timezone,
            "planned_enrollment": planned_enrollment,
        },
        entity_site=site.code,
    )
    return site
