"""Expedited reports: a serious AE owes a report within 24 hours of being recorded as serious.

One report per AE, kept in step with the AE: opened when the AE is first serious, withdrawn
when it is corrected to non-serious or marked entered in error, reopened (same report, same
deadline) if it becomes serious again. Every step is audited. No arm is ever read here.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from trial.audit.services import record_created, record_event
from trial.database import utcnow
from trial.extensions import db
from trial.participants.models import Participant
from trial.safety.models import AdverseEvent, ExpeditedReport

ENTITY = "expedited_report"
EXPEDITED_DEADLINE = timedelta(hours=24)


def sync_expedited_report(
    actor, record: AdverseEvent, participant: Participant, *, reason: str | None = None
) -> ExpeditedReport | None:
    """Open, reopen or withdraw the AE's expedited report to match the AE as it now is."""
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
            due_at=now + EXPEDITED_DEADLINE,
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
        return report
    if report is None:
        return None
    new_status = report.status
    if wanted and report.status == "withdrawn":
        new_status = "open"
    elif not wanted and report.status == "open":
        new_status = "withdrawn"
    if new_status != report.status:
        record_event(
            actor,
            "update",
            entity_type=ENTITY,
            entity_id=str(report.id),
            entity_site=site,
            field="status",
            old=report.status,
            new=new_status,
            reason=reason,
        )
        report.status = new_status
        report.updated_at = utcnow()
        db.session.flush()
    return report


def expedited_reports(status: str | None = None) -> list[dict[str, Any]]:
    """Every expedited report with its AE, most urgent first (no arm, by construction)."""
    statement = (
        select(ExpeditedReport, AdverseEvent, Participant)
        .join(AdverseEvent, AdverseEvent.id == ExpeditedReport.adverse_event_id)
        .join(Participant, Participant.id == AdverseEvent.participant_id)
    )
    if status is not None:
        statement = statement.where(ExpeditedReport.status == status)
    statement = statement.order_by(ExpeditedReport.due_at, ExpeditedReport.id)
    now = utcnow()
    return [
        {
            "id": report.id,
            "adverse_event_id": record.id,
            "participant_id": participant.participant_id,
            "site": participant.site_code,
            "term": record.term,
            "preferred_term": record.preferred_term,
            "system_organ_class": record.system_organ_class,
            "onset_date": record.onset_date,
            "grade": record.grade,
            "serious": record.serious,
            "seriousness_criteria": record.seriousness_criteria,
            "relatedness": record.relatedness,
            "outcome": record.outcome,
            "status": report.status,
            "created_at": report.created_at,
            "due_at": report.due_at,
            "overdue": report.status == "open" and report.due_at < now,
        }
        for report, record, participant in db.session.execute(statement)
    ]
