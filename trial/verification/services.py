"""Mark visits verified against source, void marks on change, count what is left per site.

Only a monitor marks, and only a visit of one of their sites (another site's is a 404, as
every record is). A mark is taken on the visit's version the monitor read (a stale one is a
412, as a correction's is): what was verified is then exactly what the page showed. Any later
change to the visit or one of its forms (a correction, an entered-in-error mark) voids the
mark in the same transaction, from the place that voids an investigator's signature
(``trial.records.services.invalidate_signature``); the visit then counts as left to verify
again. Marking and voiding are each one audit row on the visit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import and_, func, select
from sqlalchemy.orm import aliased

from trial.audit.services import record_event
from trial.auth.roles import Role
from trial.database import utcnow
from trial.errors import Conflict, Forbidden
from trial.extensions import db
from trial.participants.models import Participant
from trial.records.registry import get_visible_record
from trial.records.versions import check_version
from trial.sites.models import Site
from trial.verification.models import SourceVerification
from trial.visits.models import Visit

# What the progress counts: completed visits not entered in error (a missed visit has no
# forms to check against source).
COUNTING_RULE = (
    "Visits counted: completed visits not entered in error. Verified: those with a standing "
    "mark (not voided by a later change). Left to verify: completed minus verified."
)


def require_monitor(actor) -> None:
    """Only a monitor marks a visit verified (the route's policy says it first; this is the
    rule for a page, a command or any other caller)."""
    if actor.role != Role.MONITOR.value:
        raise Forbidden("Only a monitor marks visits verified against source.")


def standing_mark(visit_id: int) -> SourceVerification | None:
    return db.session.scalar(
        select(SourceVerification).where(
            SourceVerification.visit_id == visit_id, SourceVerification.voided_at.is_(None)
        )
    )


def marks_of(actor, visit_id: int) -> list[SourceVerification]:
    """Every mark of a visit the actor can see (404 otherwise), newest first."""
    get_visible_record(actor, "visit", visit_id)
    return list(
        db.session.scalars(
            select(SourceVerification)
            .where(SourceVerification.visit_id == visit_id)
            .order_by(SourceVerification.verified_at.desc(), SourceVerification.id.desc())
        )
    )


def verify_visit(actor, visit_id: int, *, expected_version: int | None = None):
    """Mark a completed visit of one of the monitor's sites verified against source.

    In the order a person is told: not a monitor (403), a visit not found or at another
    site (404), a stale ``expected_version`` (412), a visit entered in error, missed, or
    verified already (409). Returns the mark.
    """
    require_monitor(actor)
    visit, participant = get_visible_record(actor, "visit", visit_id, lock=True)
    check_version(visit, expected_version, {})
    if visit.entered_in_error:
        raise Conflict("This visit was marked as entered in error: there is nothing to verify.")
    if visit.status != "completed":
        raise Conflict("A missed visit has no forms to verify against source.")
    current = standing_mark(visit.id)
    if current is not None:
        raise Conflict(
            f"Visit {visit.id} is verified already (by {current.verified_by}, "
            f"{current.verified_at:%Y-%m-%d %H:%M} UTC)."
        )
    mark = SourceVerification(
        visit_id=visit.id,
        visit_version=visit.version,
        verified_by_id=actor.id,
        verified_at=utcnow(),
    )
    db.session.add(mark)
    db.session.flush()
    record_event(
        actor,
        "source_verified",
        entity_type="visit",
        entity_id=visit.entity_id,
        entity_site=participant.site_code,
        field="source_verification",
        old=None,
        new="verified",
        detail={"verification_id": mark.id, "visit_version": visit.version},
    )
    return mark


def void_verification(actor, visit: Visit, record) -> None:
    """Void the visit's standing mark, if any, because ``record`` (the visit or one of its
    forms) changed: called where a change voids the investigator's signature."""
    mark = standing_mark(visit.id)
    if mark is None:
        return
    mark.voided_at = utcnow()
    mark.voided_by_id = actor.id
    mark.void_reason = f"{record.ENTITY} {record.id} changed after source verification"
    db.session.flush()
    record_event(
        actor,
        "source_verification_voided",
        entity_type="visit",
        entity_id=visit.entity_id,
        entity_site=visit.participant.site_code,
        field="source_verification",
        old="verified",
        new="voided",
        reason=mark.void_reason,
        detail={"verification_id": mark.id, "visit_version": mark.visit_version},
    )


def _completed(statement):
    return statement.where(Visit.status == "completed", Visit.entered_in_error.is_(False))


def _verified_join():
    return and_(SourceVerification.visit_id == Visit.id, SourceVerification.voided_at.is_(None))


def verification_progress(actor, site: str | None = None) -> list[dict]:
    """Per site the actor can see (every site listed, zeros included): completed visits,
    verified ones, and those left to verify (``COUNTING_RULE``)."""
    sites = select(Site).order_by(Site.code)
    site_ids = actor.visible_site_ids()
    if site_ids is not None:
        sites = sites.where(Site.id.in_(site_ids))
    if site is not None:
        sites = sites.where(Site.code == site)
    counts = select(
        Participant.site_id,
        func.count(Visit.id),
        func.count(SourceVerification.id),
    ).join(Participant, Participant.id == Visit.participant_id)
    counts = _completed(counts.outerjoin(SourceVerification, _verified_join()))
    by_site = {
        site_id: (completed, verified)
        for site_id, completed, verified in db.session.execute(
            counts.group_by(Participant.site_id)
        ).all()
    }
    rows = []
    for row in db.session.scalars(sites):
        completed, verified = by_site.get(row.id, (0, 0))
        rows.append(
            {
                "site": row.code,
                "completed": completed,
                "verified": verified,
                "left_to_verify": completed - verified,
            }
        )
    return rows


@dataclass(frozen=True)
class PendingVisit:
    visit_id: int
    visit_code: str
    visit_date: date
    version: int
    participant_id: str
    site: str
    voided_before: bool  # it was verified once and a later change voided the mark


def visits_left_to_verify(
    actor, site: str | None = None, *, limit: int | None = None, offset: int = 0
) -> list[PendingVisit]:
    """Completed visits of the actor's sites without a standing mark, oldest visit first
    (``limit`` and ``offset``: one page of them, read as such)."""
    earlier = aliased(SourceVerification)
    voided = (
        select(earlier.id)
        .where(earlier.visit_id == Visit.id, earlier.voided_at.is_not(None))
        .correlate(Visit)
        .exists()
    )
    statement = (
        select(Visit, Participant.participant_id, Site.code, voided)
        .join(Participant, Participant.id == Visit.participant_id)
        .join(Site, Site.id == Participant.site_id)
        .outerjoin(SourceVerification, _verified_join())
        .where(SourceVerification.id.is_(None))
    )
    statement = _completed(statement)
    site_ids = actor.visible_site_ids()
    if site_ids is not None:
        statement = statement.where(Participant.site_id.in_(site_ids))
    if site is not None:
        statement = statement.where(Site.code == site)
    statement = statement.order_by(Visit.visit_date, Participant.participant_id, Visit.id)
    if limit is not None:
        statement = statement.limit(limit).offset(offset)
    return [
        PendingVisit(
            visit_id=visit.id,
            visit_code=visit.visit_code,
            visit_date=visit.visit_date,
            version=visit.version,
            participant_id=participant_id,
            site=code,
            voided_before=bool(was_voided),
        )
        for visit, participant_id, code, was_voided in db.session.execute(statement).unique()
    ]
