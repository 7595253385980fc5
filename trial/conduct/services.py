"""Record dispositions and protocol deviations."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select

from trial.conduct.course import course_of, refresh_status
from trial.conduct.models import (
    DISPOSITIONS_NEEDING_REASON,
    TREATMENT_DISCONTINUATION,
    Disposition,
    ProtocolDeviation,
)
from trial.conduct.schemas import DeviationCreateSchema, DispositionCreateSchema
from trial.dosing.models import DosingRecord
from trial.errors import Conflict
from trial.extensions import db
from trial.participants.models import Participant
from trial.participants.services import get_visible_participant, site_today
from trial.reasons import clean_reason
from trial.records.registry import register_revalidation
from trial.records.services import create_record, raise_if_errors
from trial.safety.models import AdverseEvent
from trial.validation import checks_body
from trial.visits.models import Visit


def _latest(model, column, participant: Participant, **where) -> date | None:
    statement = select(func.max(column)).where(
        model.participant_id == participant.id, model.entered_in_error.is_(False)
    )
    for name, value in where.items():
        statement = statement.where(getattr(model, name) == value)
    return db.session.scalar(statement)


def check_disposition(
    participant: Participant, values: dict, *, exclude_id: int | None = None
) -> None:
    """The rules of a disposition (new, or as a correction would leave it). A rule whose
    inputs are not in ``values`` is skipped.

    One final disposition and at most one treatment discontinuation; before randomization
    only a screen failure, after it never; dated not in the future, not before consent, and
    not before data it would leave dated after it (the visits and adverse events a final
    disposition ends, the study drug a discontinuation ends); a reason where the status
    needs one.
    """
    status, day = values.get("status"), values.get("date")
    course = course_of(participant, exclude_id=exclude_id)
    if status is not None:
        taken = course.discontinued if status == TREATMENT_DISCONTINUATION else course.final
        if taken is not None:
            kind = "treatment discontinuation" if taken is course.discontinued else "final"
            raise Conflict(
                f"A {kind} disposition ({taken.status}, {taken.date}) is already recorded; "
                f"correct it (PATCH) or mark it entered in error instead.",
                {"status": [f"A {kind} disposition is already recorded."]},
            )
        if status == "screen_failure" and course.randomized:
            raise Conflict(
                f"Participant {participant.participant_id} is randomized: a screen failure is "
                f"for a participant never randomized (intention to treat keeps them in).",
                {"status": ["A randomized participant is not a screen failure."]},
            )
        if status != "screen_failure" and not course.randomized:
            raise Conflict(
                f"Participant {participant.participant_id} is not randomized: the only "
                f"disposition before randomization is screen_failure.",
                {"status": ["Before randomization, record screen_failure."]},
            )
    errors: dict[str, list[str]] = {}
    if day is not None and day > site_today(participant.site):
        errors["date"] = ["The date is in the future."]
    elif day is not None and day < participant.consent_date:
        errors["date"] = [f"The date is before consent ({participant.consent_date})."]
    elif day is not None and status is not None:
        _check_nothing_after(participant, status, day, errors)
    if (
        status in DISPOSITIONS_NEEDING_REASON
        and "reason" in values
        and clean_reason(values["reason"]) is None
    ):
        errors["reason"] = [f"Give the reason for '{status}'."]
    raise_if_errors(errors)


def _check_nothing_after(participant: Participant, status: str, day: date, errors) -> None:
    """A disposition may not leave recorded data dated after it."""
    if status == TREATMENT_DISCONTINUATION:
        later = {"study drug": _latest(DosingRecord, DosingRecord.date, participant)}
    else:
        later = {
            "visit": _latest(Visit, Visit.visit_date, participant),
            "study drug": _latest(DosingRecord, DosingRecord.date, participant),
            "adverse event": _latest(AdverseEvent, AdverseEvent.onset_date, participant),
        }
    after = [f"a {what} on {when}" for what, when in later.items() if when and when > day]
    if after:
        errors["date"] = [
            f"{', '.join(after)} is recorded after {day}: date the disposition on or after "
            f"the last data, or correct those records first."
        ]


def revalidate_disposition(record: Disposition, participant: Participant, values: dict) -> None:
    """A disposition as a correction would leave it (it does not count as a second one)."""
    check_disposition(participant, values, exclude_id=record.id)


def after_disposition_change(actor, record: Disposition, participant: Participant) -> None:
    """A corrected or withdrawn disposition changes the course: derive the status again."""
    refresh_status(actor, participant, because=f"disposition {record.status} changed")


register_revalidation(Disposition, revalidate_disposition, after_change=after_disposition_change)


@checks_body(DispositionCreateSchema)
def _check_new_disposition(actor, values, failed, participant_id):
    check_disposition(get_visible_participant(actor, participant_id), values)


def record_disposition(actor, participant: Participant, values: dict) -> Disposition:
    """Record a disposition, and the status it gives the participant."""
    values = {"reason": None, **values}
    check_disposition(participant, values)
    record = create_record(actor, Disposition, participant, values)
    refresh_status(actor, participant, because=f"disposition {record.status} recorded")
    return record


def check_deviation(participant: Participant, values: dict) -> None:
    day = values.get("date")
    if day is not None and day > site_today(participant.site):
        raise_if_errors({"date": ["The date is in the future."]})


def revalidate_deviation(record: ProtocolDeviation, participant: Participant, values) -> None:
    """A deviation as a correction would leave it."""
    check_deviation(participant, values)


register_revalidation(ProtocolDeviation, revalidate_deviation)


@checks_body(DeviationCreateSchema)
def _check_new_deviation(actor, values, failed, participant_id):
    check_deviation(get_visible_participant(actor, participant_id), values)


def record_deviation(
    actor, participant: Participant, values: dict, *, automatic=False, visit_id: int | None = None
) -> ProtocolDeviation:
    check_deviation(participant, values)
    return create_record(
        actor, ProtocolDeviation, participant, values, automatic=automatic, visit_id=visit_id
    )
