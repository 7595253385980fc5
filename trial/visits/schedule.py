"""The visit schedule of one participant: from the protocol, the randomization date and the
participant's course."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from trial.conduct.course import Course, course_of, visit_expected
from trial.participants.models import Participant
from trial.participants.services import randomization_date, site_today
from trial.protocol import current_protocol
from trial.visits.checks import calendar_period
from trial.visits.windows import in_window, window_dates

__all__ = ["ScheduledVisit", "build_schedule", "in_window", "window_dates"]


@dataclass(frozen=True)
class ScheduledVisit:
    code: str
    label: str
    day: int
    forms: tuple[str, ...]
    target_date: date | None
    earliest_date: date | None
    latest_date: date | None
    status: str
    visit_id: int | None
    visit_date: date | None
    calendar_from: date | None
    calendar_to: date | None
    missing_forms: tuple[str, ...]


def forms_held(participant_ids) -> dict[str, set[int]]:
    """Per form, the ids of the visits of these participants holding an active one: one
    statement per form, where ``Visit.missing_forms`` loads each visit's forms."""
    from sqlalchemy import select

    from trial.extensions import db
    from trial.forms.models import FORM_MODELS

    ids = list(participant_ids)
    held: dict[str, set[int]] = {form: set() for form in FORM_MODELS}
    for form, model in FORM_MODELS.items() if ids else ():
        held[form] = set(
            db.session.scalars(
                select(model.visit_id)
                .where(model.participant_id.in_(ids), model.entered_in_error.is_(False))
                .distinct()
            )
        )
    return held


def missing_forms_from(held: dict[str, set[int]]) -> Callable[[object], list[str]]:
    """``Visit.missing_forms`` computed from ``forms_held``: a completed visit's expected
    forms (``Visit.expected_forms``) that it holds none of."""

    def missing(visit) -> list[str]:
        return [form for form in visit.expected_forms if visit.id not in held[form]]

    return missing


def _status(visit, course: Course, earliest, latest, later_done: bool, today: date) -> str:
    if visit is not None:
        return visit.status
    if not course.randomized and course.final is not None:
        return "not_expected"  # a screen failure: no schedule at all
    if earliest is not None and not visit_expected(earliest, course.final):
        return "not_expected"
    if later_done:
        return "missed"
    if latest is not None and today > latest:
        return "overdue"
    if earliest is not None and today >= earliest:
        return "due"
    return "upcoming"


def build_schedule(
    participant: Participant,
    visits: list,
    course: Course | None = None,
    missing_forms: Callable[[object], list[str]] | None = None,
) -> list[ScheduledVisit]:
    """Each protocol visit with its forms, target date, window, status and calendar days.

    Status: completed or missed when recorded so; not_expected after a final disposition
    dated before the window opens (``trial.conduct.course.visit_expected``, the rule the
    DSMB report's completeness table counts by) and for a screen failure; otherwise missed
    when a later visit was completed, overdue past the window, due inside it, upcoming
    before it. Without a randomization date (day 0) only the screening visit can be other
    than upcoming. The calendar days are those a completed visit's drinking calendar covers,
    or, for a visit not recorded yet, those it must cover if done on its target date (a
    screening visit: if done today). ``course`` and ``missing_forms`` (a recorded visit's
    missing forms), when the caller has read them for many participants at once.
    """
    protocol = current_protocol()
    course = course or course_of(participant)
    missing_forms = missing_forms or missing_forms_from(forms_held([participant.id]))
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
        later_done = last_completed_day is not None and last_completed_day > definition.day
        status = _status(visit, course, earliest, latest, later_done, today)
        on = visit.visit_date if visit is not None else None
        if on is None and visit is None and status not in ("not_expected", "missed"):
            on = target if target is not None else (today if definition.day < 0 else None)
        calendar = (None, None)
        if on is not None and "drinking" in definition.forms:
            calendar = calendar_period(
                participant,
                definition.code,
                on,
                exclude_visit_id=visit.id if visit is not None else None,
                visits=visits,
            )
        schedule.append(
            ScheduledVisit(
                definition.code,
                definition.label,
                definition.day,
                definition.forms,
                target,
                earliest,
                latest,
                status,
                visit.id if visit else None,
                visit.visit_date if visit else None,
                *calendar,
                tuple(missing_forms(visit)) if visit is not None else (),
            )
        )
    return schedule
