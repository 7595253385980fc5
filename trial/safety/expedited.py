"""Expedited reports: a serious AE owes the sponsor's safety desk a report within 24 hours of
the site's awareness of it.

One report per AE, kept in step with the AE: opened when the AE is first serious, withdrawn
when it is corrected to non-serious or marked entered in error while still open, reopened
(the same report) if it becomes serious again; its deadline follows the AE's awareness date.
The site submits it, the safety desk acknowledges it (``trial.safety.submission``). Every
step is audited. No arm is ever read here.

The deadline is a date rule, because the site enters the date it became aware, not the hour:
a site that learned of the event at any time on day D has had at least 24 hours by the end of
day D+1 at the site, so the report is due at 00:00 of D+2 in the site's time zone (stored in
UTC, so a daylight-saving change is handled by the zone). Never due before 24 hours have
passed, at most 48 after the awareness; overdue means still open at or after that instant.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import aliased

from trial.audit.services import record_created, record_event
from trial.auth.models import User
from trial.database import utcnow
from trial.extensions import db
from trial.notifications import events as notification_events
from trial.participants.models import Participant
from trial.safety.models import AdverseEvent, ExpeditedReport
from trial.sites.services import get_site_by_code

ENTITY = "expedited_report"
DUE_RULE = "00:00 at the site on the second day after the awareness date (24 to 48 hours)"


def due_at(awareness: date, timezone: str) -> datetime:
    """The report's deadline for an awareness date at a site (see the module's rule)."""
    local = datetime.combine(awareness + timedelta(days=2), time(0), tzinfo=ZoneInfo(timezone))
    return local.astimezone(UTC)


def awareness_problems(values: dict[str, Any], today: date) -> list[str]:
    """What is wrong with an AE's awareness date (a rule of ``check_adverse_event``): needed
    when serious (if the key is known), not before the onset, not after the site's today."""
    awareness, onset = values.get("awareness_date"), values.get("onset_date")
    problems = []
    if values.get("serious") is True and "awareness_date" in values and awareness is None:
        problems.append(
            "A serious event needs the date the site became aware of it: the 24-hour "
            "expedited clock runs from that date."
        )
    if awareness is not None and onset is not None and awareness < onset:
        problems.append(f"Awareness date {awareness} is before the onset {onset}.")
    if awareness is not None and awareness > today:
        problems.append(
            f"Awareness date {awareness} is in the future (today at the site is {today})."
        )
    return problems


def sync_expedited_report(
    actor, record: AdverseEvent, participant: Participant, *, reason: str | None = None
) -> ExpeditedReport | None:
    """Open, reopen or withdraw the AE's expedited report, and move its deadline, to match
    the AE as it now is."""
    report = db.session.scalar(
        select(ExpeditedReport).where(ExpeditedReport.adverse_event_id == record.id)
    )
    wanted = record.serious and not record.entered_in_error
    site = participant.site_code
    if wanted and report is None:
        now = utcnow()
        report = ExpeditedReport(
            adverse_event_id=record.id,
            created_at=now,
            due_at=due_at(record.awareness_date, participant.site.timezone),
            status="open",
            updated_at=now,
        )
        db.session.add(report)
        db.session.flush()
        record_created(
            actor,
            ENTITY,
            str(report.id),
            {"adverse_event_id": record.id, "due_at": report.due_at, "status": "open"},
            entity_site=site,
        )
        # A new serious AE: the safety desk, the unblinded statistician and the DSMB are told
        # in this transaction (the AE's fields only; no arm is read here).
        notification_events.serious_adverse_event(actor, record, participant, report)
        return report
    if report is None:
        return None
    changes = {}
    if wanted and report.status == "withdrawn":
        changes["status"] = "open"
    elif not wanted and report.status == "open":
        changes["status"] = "withdrawn"
    if record.awareness_date is not None:
        new_due = due_at(record.awareness_date, participant.site.timezone)
        if new_due != report.due_at:
            changes["due_at"] = new_due
    for field, new in changes.items():
        record_event(
            actor,
            "update",
            entity_type=ENTITY,
            entity_id=str(report.id),
            entity_site=site,
            field=field,
            old=getattr(report, field),
            new=new,
            reason=reason,
        )
        setattr(report, field, new)
    if changes:
        report.updated_at = utcnow()
        db.session.flush()
    if changes.get("status") == "open":
        # Serious again after a downgrade: as new to those who must act on it.
        notification_events.serious_adverse_event(actor, record, participant, report)
    return report


_SUBMITTER, _ACKNOWLEDGER = aliased(User), aliased(User)


def _report_rows(actor=None, *, status=None, site=None, report_id=None):
    """Reports with their AE, participant and people, at the sites ``actor`` sees (None:
    every site), most urgent first (by deadline, then id: nothing that depends on an arm)."""
    statement = (
        select(
            ExpeditedReport, AdverseEvent, Participant, _SUBMITTER.username, _ACKNOWLEDGER.username
        )
        .join(AdverseEvent, AdverseEvent.id == ExpeditedReport.adverse_event_id)
        .join(Participant, Participant.id == AdverseEvent.participant_id)
        .outerjoin(_SUBMITTER, _SUBMITTER.id == ExpeditedReport.submitted_by_id)
        .outerjoin(_ACKNOWLEDGER, _ACKNOWLEDGER.id == ExpeditedReport.acknowledged_by_id)
    )
    site_ids = None if actor is None else actor.visible_site_ids()
    if site_ids is not None:
        statement = statement.where(Participant.site_id.in_(site_ids))
    if status is not None:
        statement = statement.where(ExpeditedReport.status == status)
    if site is not None:
        found = get_site_by_code(site)
        statement = statement.where(Participant.site_id == (found.id if found else -1))
    if report_id is not None:
        statement = statement.where(ExpeditedReport.id == report_id)
    return db.session.execute(statement.order_by(ExpeditedReport.due_at, ExpeditedReport.id))


def present_report(report, record, participant, submitter, acknowledger, now) -> dict:
    """One report as every reader gets it: the same fields whatever the AE (no arm)."""
    submitted = report.submitted_at
    return {
        "id": report.id,
        "adverse_event_id": record.id,
        "participant_id": participant.participant_id,
        "site": participant.site_code,
        "term": record.term,
        "preferred_term": record.preferred_term,
        "system_organ_class": record.system_organ_class,
        "onset_date": record.onset_date,
        "awareness_date": record.awareness_date,
        "grade": record.grade,
        "serious": record.serious,
        "seriousness_criteria": record.seriousness_criteria,
        "relatedness": record.relatedness,
        "outcome": record.outcome,
        "status": report.status,
        "created_at": report.created_at,
        "due_at": report.due_at,
        "overdue": report.status == "open" and now >= report.due_at,
        "submitted_at": submitted,
        "submitted_by": submitter,
        "submitted_late": None if submitted is None else submitted >= report.due_at,
        "acknowledged_at": report.acknowledged_at,
        "acknowledged_by": acknowledger,
    }


def expedited_reports(
    status: str | None = None, *, actor=None, site: str | None = None
) -> list[dict]:
    """The expedited reports at the sites ``actor`` sees (site staff: their own; None: every
    site, for internal callers), most urgent first, each with its clock."""
    now = utcnow()
    return [present_report(*row, now) for row in _report_rows(actor, status=status, site=site)]


def expedited_report(actor, report_id: int) -> dict | None:
    """One report as listed, or None when missing or at a site ``actor`` cannot see."""
    rows = list(_report_rows(actor, report_id=report_id))
    return present_report(*rows[0], utcnow()) if rows else None


def expedited_reports_due(actor, site: str | None = None) -> list[dict[str, Any]]:
    """The reports a site still owes (status open), for the site's worklist: participant, AE,
    awareness date, deadline, overdue flag and status, most urgent first, at the sites
    ``actor`` sees (``site``: one of them; an unknown or unseen code gives an empty list)."""
    keys = (
        "id",
        "participant_id",
        "adverse_event_id",
        "site",
        "awareness_date",
        "due_at",
        "overdue",
        "status",
    )
    return [
        {key: report[key] for key in keys}
        for report in expedited_reports("open", actor=actor, site=site)
    ]
