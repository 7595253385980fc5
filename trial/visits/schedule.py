"""The visit schedule of one participant, from the protocol and the randomization date."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from trial.participants.models import Participant
from trial.participants.services import randomization_date, site_today
from trial.protocol import VisitDefinition, current_protocol


@dataclass(frozen=True)
class ScheduledVisit:
    code: str
    label: str
    day: int
    target_date: date | None
    earliest_date: date | None
    latest_date: date | None
    status: str
    visit_id: int | None
    visit_date: date | None


def window_dates(definition: VisitDefinition, day0: date) -> tuple[date, date, date]:
    return (
        day0 + timedelta(days=definition.day),
        day0 + timedelta(days=definition.earliest_day),
        day0 + timedelta(days=definition.latest_day),
    )


def in_window(definition: VisitDefinition, day0: date | None, visit_date: date) -> bool:
    if day0 is None:
        return True
    _, earliest, latest = window_dates(definition, day0)
    return earliest <= visit_date <= latest


def build_schedule(participant: Participant, visits: list) -> list[ScheduledVisit]:
    """Each protocol visit with target date, window and status.

    Status: completed or missed when recorded so; otherwise missed when a later visit was
    completed, overdue past the window, due inside it, upcoming before it. Without a
    randomization date (day 0) only a recorded screening visit has a status other than
    upcoming.
    """
    protocol = current_protocol()
    day0 = randomization_date(participant)
    today = site_today(participant.site)
    recorded = {visit.visit_code: visit for visit in visits}
    completed_days = [
        d.day
        for d in protocol.visits
        if recorded.get(d.code) and recorded[d.code].status == "completed"
    ]
    last_completed_day = max(completed_days, default=None)
    schedule = []
    for definition in protocol.visits:
        visit = recorded.get(definition.code)
        target = earliest = latest = None
        if day0 is not None:
            target, earliest, latest = window_dates(definition, day0)
        if visit is not None:
            status = visit.status
        elif last_completed_day is not None and last_completed_day > definition.day:
            status = "missed"
        elif latest is not None and today > latest:
            status = "overdue"
        elif earliest is not None and today >= earliest:
            status = "due"
        else:
            status = "upcoming"
        schedule.append(
            ScheduledVisit(
                definition.code,
                definition.label,
                definition.day,
                target,
                earliest,
                latest,
                status,
                visit.id if visit else None,
                visit.visit_date if visit else None,
            )
        )
    return schedule
