"""One function per event that tells people: who (``recipients``), what (``messages``),
queued with ``services.notify`` in the caller's transaction.

Callers are the services where the events happen (code-break, serious AE, stratum notice,
queries, accounts); the overdue check runs in the sender's pass (``check_overdue_reports``).
"""

from __future__ import annotations

from sqlalchemy import select

from trial.database import utcnow
from trial.extensions import db
from trial.notifications import messages, recipients
from trial.notifications.services import enqueue_once, notify


def code_break(actor, participant, *, reason: str, at) -> None:
    """Takes no arm: there is nothing arm-dependent a message could be built from."""
    site = participant.site_code
    subject, body = messages.code_break(
        participant_id=participant.participant_id,
        site=site,
        by=actor.username,
        by_role=actor.role,
        at=at,
        reason=reason,
    )
    notify(
        "code_break",
        recipients.unblinded_statisticians()
        + recipients.dsmb_members()
        + recipients.site_investigators(site),
        subject,
        body,
    )


def serious_adverse_event(actor, record, participant, report) -> None:
    subject, body = messages.serious_adverse_event(
        record=record,
        participant=participant,
        reported_by=getattr(actor, "username", str(actor)),
        due_at=report.due_at,
    )
    notify(
        "serious_adverse_event",
        recipients.safety_desk() + recipients.unblinded_statisticians() + recipients.dsmb_members(),
        subject,
        body,
    )


def stratum_notice(kind: str, *, stratum: str, **facts) -> None:
    """``stratum_low`` (``remaining``, ``total``) or ``stratum_exhausted``
    (``participant_id``): the unblinded statistician only, never a blinded role."""
    build = messages.stratum_low if kind == "stratum_low" else messages.stratum_exhausted
    subject, body = build(stratum=stratum, **facts)
    notify(kind, recipients.unblinded_statisticians(), subject, body)


def query_raised(actor, query) -> None:
    subject, body = messages.query_raised(query=query, by=actor)
    notify("query_raised", recipients.site_staff(query.site_code), subject, body)


def query_answered(actor, query, *, text, at) -> None:
    raiser = query.opened_by
    if query.origin != "manual" or raiser is None or raiser.id == actor.id:
        return  # a system query has no person who asked
    subject, body = messages.query_answered(query=query, by=actor, text=text, at=at)
    notify("query_answered", recipients.owner(raiser), subject, body)


def account_created(user, *, password_set: bool) -> None:
    subject, body = messages.account_created(user=user, password_set=password_set)
    notify("account_created", recipients.owner(user), subject, body)


def password_reset(user) -> None:
    subject, body = messages.password_reset(user=user, expires_at=user.password_expires_at)
    notify("password_reset", recipients.owner(user), subject, body)


def overdue_event_key(report) -> str:
    """One message per report and deadline: a deadline moved later and missed again is a
    new event."""
    return f"expedited_overdue:{report.id}:{report.due_at:%Y%m%dT%H%M%S}"


def check_overdue_reports(now=None) -> int:
    """Queue a message for each open expedited report past its deadline that has none yet;
    return how many were queued. The caller commits."""
    from trial.participants.models import Participant
    from trial.safety.models import AdverseEvent, ExpeditedReport

    now = now or utcnow()
    rows = db.session.execute(
        select(ExpeditedReport, AdverseEvent, Participant)
        .join(AdverseEvent, AdverseEvent.id == ExpeditedReport.adverse_event_id)
        .join(Participant, Participant.id == AdverseEvent.participant_id)
        .where(ExpeditedReport.status == "open", ExpeditedReport.due_at <= now)
        .order_by(ExpeditedReport.due_at, ExpeditedReport.id)
    ).all()
    queued = 0
    for report, record, participant in rows:
        subject, body = messages.expedited_report_overdue(
            report=report, record=record, participant=participant, now=now
        )
        site = participant.site_code
        queued += enqueue_once(
            "expedited_report_overdue",
            recipients.safety_desk()
            + recipients.unblinded_statisticians()
            + recipients.dsmb_members()
            + recipients.site_investigators(site),
            subject,
            body,
            event_key=overdue_event_key(report),
        )
    return queued
