"""Record study-drug dosing and derive the first dose date."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select

from trial.conduct.course import refuse_dosing_after_discontinuation
from trial.dosing.models import DosingRecord
from trial.dosing.schemas import DosingCreateSchema
from trial.errors import Conflict
from trial.extensions import db
from trial.participants.models import Participant
from trial.participants.services import get_visible_participant, randomization_date, site_today
from trial.protocol import current_protocol
from trial.reasons import clean_reason
from trial.records.registry import records_of, register_revalidation
from trial.records.services import create_record
from trial.validation import checks_body, raise_errors


def first_dose_date(participant: Participant) -> date | None:
    """The first day with at least one tablet: the start of treatment-emergence."""
    return db.session.scalar(
        select(func.min(DosingRecord.date)).where(
            DosingRecord.participant_id == participant.id,
            DosingRecord.tablets_per_day > 0,
            DosingRecord.entered_in_error.is_(False),
        )
    )


def check_dosing(participant: Participant, values: dict, *, exclude_id: int | None = None):
    """Check a dosing entry (new or corrected) against the protocol and the participant.

    A rule whose inputs are not in ``values`` is skipped (``trial.validation``).
    """
    protocol = current_protocol()
    errors: dict[str, list[str]] = {}
    start = randomization_date(participant)
    if start is None:
        raise Conflict(
            f"Participant {participant.participant_id} is not randomized: no study "
            f"drug can be recorded."
        )
    day, tablets = values.get("date"), values.get("tablets_per_day")
    if day is not None and day > site_today(participant.site):
        errors.setdefault("date", []).append("The date is in the future.")
    if day is not None and day < start:
        errors.setdefault("date", []).append(f"The date is before randomization ({start}).")
    maximum = protocol.dosing["max_tablets_per_day"]
    if tablets is not None and tablets > maximum:
        errors.setdefault("tablets_per_day", []).append(
            f"At most {maximum} tablets per day in this protocol."
        )
    others = [r for r in records_of(DosingRecord, participant) if r.id != exclude_id]
    if day is not None and any(r.date == day for r in others):
        errors.setdefault("date", []).append(f"A dose is already recorded from {day}.")
    earlier = [r for r in others if day is not None and r.date < day]
    if earlier and tablets is not None and "change_reason" in values:
        previous = max(earlier, key=lambda r: r.date)
        if previous.tablets_per_day != tablets and clean_reason(values["change_reason"]) is None:
            errors.setdefault("change_reason", []).append(
                f"The dose changes from {previous.tablets_per_day} to "
                f"{tablets} tablets per day: give the reason "
                f"(e.g. titration step, sedation)."
            )
    raise_errors(errors)
    # A date the rules above accept, after the course stopped the drug: a conflict (409).
    refuse_dosing_after_discontinuation(participant, day)


def revalidate_dosing(record: DosingRecord, participant: Participant, values: dict) -> None:
    """A dosing record as a correction would leave it (the other records as they are)."""
    check_dosing(participant, values, exclude_id=record.id)


register_revalidation(DosingRecord, revalidate_dosing)


@checks_body(DosingCreateSchema)
def _check_new_dosing(actor, values, failed, participant_id):
    check_dosing(get_visible_participant(actor, participant_id), values)


def record_dosing(actor, participant: Participant, values: dict) -> DosingRecord:
    values = {"change_reason": None, "tablets_returned": None, **values}
    check_dosing(participant, values)
    return create_record(actor, DosingRecord, participant, values)
