"""Record study-drug dosing and derive the first dose date."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select

from trial.dosing.models import DosingRecord
from trial.errors import Conflict, ValidationFailed
from trial.extensions import db
from trial.participants.models import Participant
from trial.participants.services import randomization_date, site_today
from trial.protocol import current_protocol
from trial.records.services import create_record, records_of


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
    """Check a dosing entry (new or corrected) against the protocol and the participant."""
    protocol = current_protocol()
    errors: dict[str, list[str]] = {}
    start = randomization_date(participant)
    if start is None:
        raise Conflict(
            f"Participant {participant.participant_id} is not randomized: no study "
            f"drug can be recorded."
        )
    day = values["date"]
    if day > site_today(participant.site):
        errors.setdefault("date", []).append("The date is in the future.")
    if day < start:
        errors.setdefault("date", []).append(f"The date is before randomization ({start}).")
    maximum = protocol.dosing["max_tablets_per_day"]
    if values["tablets_per_day"] > maximum:
        errors.setdefault("tablets_per_day", []).append(
            f"At most {maximum} tablets per day in this protocol."
        )
    others = [r for r in records_of(DosingRecord, participant) if r.id != exclude_id]
    if any(r.date == day for r in others):
        errors.setdefault("date", []).append(f"A dose is already recorded from {day}.")
    earlier = [r for r in others if r.date < day]
    if earlier:
        previous = max(earlier, key=lambda r: r.date)
        if previous.tablets_per_day != values["tablets_per_day"] and not values.get(
            "change_reason"
        ):
            errors.setdefault("change_reason", []).append(
                f"The dose changes from {previous.tablets_per_day} to "
                f"{values['tablets_per_day']} tablets per day: give the reason "
                f"(e.g. titration step, sedation)."
            )
    if errors:
        raise ValidationFailed("Invalid input: " + ", ".join(sorted(errors)) + ".", errors)


def record_dosing(actor, participant: Participant, values: dict) -> DosingRecord:
    check_dosing(participant, values)
    return create_record(actor, DosingRecord, participant, values)
