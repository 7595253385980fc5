"""Move an expedited report through its workflow: open -> submitted -> acknowledged.

The site submits (coordinator or investigator of the report's site: ICH E6 puts the
investigator's duty to report serious events to the sponsor at the site); the sponsor's
safety desk acknowledges receipt. The desk is the data manager: the central, blinded role
that already reads every site's adverse events and codes them. Not the admin, who runs
accounts and must not also hold clinical sign-offs (separation of duties), nor the
unblinded roles, whose reading of a report must not become an operational step that blinded
staff wait on. Each step records who and when, audited field by field.
"""

from __future__ import annotations

from trial.audit.services import record_event
from trial.database import utcnow
from trial.errors import Conflict, NotFound
from trial.extensions import db
from trial.participants.models import Participant
from trial.safety.expedited import ENTITY
from trial.safety.models import AdverseEvent, ExpeditedReport

MAX_REPORT_ID = 2**31 - 1


def _locked_report(actor, report_id: int) -> tuple[ExpeditedReport, Participant]:
    """The report, its row held to the end of the transaction; 404 if missing or at a site
    the actor cannot see (the same answer, so another site's reports cannot be counted)."""
    missing = NotFound(f"No expedited report {report_id}.")
    if not 1 <= report_id <= MAX_REPORT_ID:
        raise missing
    report = db.session.get(
        ExpeditedReport,
        report_id,
        with_for_update={"of": ExpeditedReport},
        populate_existing=True,
    )
    if report is None:
        raise missing
    record = db.session.get(AdverseEvent, report.adverse_event_id)
    participant = db.session.get(Participant, record.participant_id)
    site_ids = actor.visible_site_ids()
    if site_ids is not None and participant.site_id not in site_ids:
        raise missing
    return report, participant


# The people are audited by username, as everywhere in the trail, not by user id.
_AUDITED_AS = {"submitted_by_id": "submitted_by", "acknowledged_by_id": "acknowledged_by"}


def _move(actor, report, participant, action: str, values: dict) -> None:
    """Set ``values`` on the report, one audit row per field (old value and new)."""
    for field, new in values.items():
        record_event(
            actor,
            action,
            entity_type=ENTITY,
            entity_id=str(report.id),
            entity_site=participant.site_code,
            field=_AUDITED_AS.get(field, field),
            old=None if field in _AUDITED_AS else getattr(report, field),
            new=actor.username if field in _AUDITED_AS else new,
        )
        setattr(report, field, new)
    report.updated_at = utcnow()
    db.session.flush()


def submit_expedited_report(actor, report_id: int) -> ExpeditedReport:
    """Record that the site sent the report (only an open one: 409 otherwise)."""
    report, participant = _locked_report(actor, report_id)
    if report.status != "open":
        raise Conflict(
            f"Expedited report {report_id} is {report.status}; only an open report can be "
            f"submitted."
        )
    now = utcnow()
    values = {"status": "submitted", "submitted_at": now, "submitted_by_id": actor.id}
    _move(actor, report, participant, "submit", values)
    return report


def acknowledge_expedited_report(actor, report_id: int) -> ExpeditedReport:
    """Record that the safety desk received the report (only a submitted one: 409
    otherwise)."""
    report, participant = _locked_report(actor, report_id)
    if report.status != "submitted":
        raise Conflict(
            f"Expedited report {report_id} is {report.status}; only a submitted report can be "
            f"acknowledged."
        )
    now = utcnow()
    values = {"status": "acknowledged", "acknowledged_at": now, "acknowledged_by_id": actor.id}
    _move(actor, report, participant, "acknowledge", values)
    return report
