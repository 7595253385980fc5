"""The automatic out-of-window deviation a completed visit raises, kept true to the visit."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from trial.conduct.models import ProtocolDeviation
from trial.conduct.services import record_deviation
from trial.extensions import db
from trial.participants.models import Participant
from trial.participants.services import (
    randomization_date,
)
from trial.records.registry import records_of
from trial.records.services import mark_entered_in_error
from trial.visits.checks import visit_definition
from trial.visits.models import Visit
from trial.visits.windows import in_window, window_dates


def out_of_window_deviation(
    participant: Participant, visit_code: str, visit_date: date, reason: str | None = None
):
    """The automatic deviation a completed visit on ``visit_date`` raises, or None in window;
    ``reason``: the visit's out-of-window reason, kept in the description."""
    definition = visit_definition(visit_code)
    day0 = randomization_date(participant)
    if in_window(definition, day0, visit_date):
        return None
    _, earliest, latest = window_dates(definition, day0)
    return {
        "category": "visit_out_of_window",
        "date": visit_date,
        "description": f"{definition.label} on {visit_date}, outside its window "
        f"{earliest} to {latest} (day {definition.day}, "
        f"-{definition.window_before}/+{definition.window_after} days)."
        + (f" Reason: {reason}" if reason else ""),
    }


def _flag_window(actor, participant: Participant, visit: Visit) -> None:
    """Raise an automatic deviation for a completed visit outside its window (once)."""
    if visit.status != "completed":
        return
    values = out_of_window_deviation(
        participant, visit.visit_code, visit.visit_date, visit.out_of_window_reason
    )
    if values is None:
        return
    existing = db.session.scalar(
        select(ProtocolDeviation).where(
            ProtocolDeviation.visit_id == visit.id,
            ProtocolDeviation.automatic.is_(True),
            ProtocolDeviation.entered_in_error.is_(False),
        )
    )
    if existing is not None:
        return
    record_deviation(actor, participant, values, automatic=True, visit_id=visit.id)


def flag_visits_in_new_schedule(
    actor, participant: Participant, visits: list[Visit] | None = None
) -> None:
    """At randomization, check the visits recorded before day 0 (screening) against their
    windows, which only day 0 defines. ``visits``: the participant's active visits, if read
    already."""
    for visit in records_of(Visit, participant) if visits is None else visits:
        _flag_window(actor, participant, visit)


def after_visit_corrected(actor, participant: Participant, visit: Visit) -> None:
    """Keep the automatic out-of-window deviation true to the corrected visit."""
    current = db.session.scalar(
        select(ProtocolDeviation).where(
            ProtocolDeviation.visit_id == visit.id,
            ProtocolDeviation.automatic.is_(True),
            ProtocolDeviation.entered_in_error.is_(False),
        )
    )
    expected = None
    if visit.status == "completed":
        expected = out_of_window_deviation(
            participant, visit.visit_code, visit.visit_date, visit.out_of_window_reason
        )
    if current is not None and (expected is None or current.date != expected["date"]):
        why = (
            "now within its window"
            if expected is None
            else f"now dated {visit.visit_date}, outside its window"
        )
        mark_entered_in_error(
            actor, current, participant, f"Visit {visit.id} was corrected: {why}."
        )
    _flag_window(actor, participant, visit)
