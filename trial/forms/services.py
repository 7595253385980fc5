"""Check and save the forms of a visit; re-check a form when it is corrected."""

from __future__ import annotations

from datetime import date

from sqlalchemy import bindparam, select

from trial.extensions import db
from trial.forms.models import (
    DONT_KNOW,
    LAB_UNITS,
    BlindingAssessment,
    CiwaAssessment,
    DrinkingDay,
    LabResult,
    OcdsAssessment,
    Vitals,
)
from trial.participants.models import Participant
from trial.participants.services import site_today
from trial.protocol import current_protocol
from trial.records.services import raise_if_errors

# The days already on a participant's calendar (but for the day being corrected, ``exclude``).
RECORDED_DAYS = select(DrinkingDay.day).where(
    DrinkingDay.participant_id == bindparam("participant"),
    DrinkingDay.entered_in_error.is_(False),
    DrinkingDay.id != bindparam("exclude"),
)


def _recorded_days(participant: Participant, exclude_id: int | None = None) -> set[date]:
    parameters = {"participant": participant.id, "exclude": exclude_id or -1}
    return set(db.session.scalars(RECORDED_DAYS, parameters))


def check_drinking_days(
    participant: Participant,
    days: list[dict],
    period: tuple[date, date],
    errors: dict,
    exclude_id: int | None = None,
    prefix: str = "drinking",
) -> None:
    """Drinks within the protocol's limit for a day, no day twice (nor one already on the
    participant's calendar), none in the future, all inside the visit's period."""
    limit = current_protocol().max_drinks_per_day
    first, last = period
    today = site_today(participant.site)
    recorded = _recorded_days(participant, exclude_id)
    seen: set[date] = set()
    for index, entry in enumerate(days):
        where = f"{prefix}.{index}" if prefix else ""
        day = entry.get("day")  # an entry may hold only what loaded (trial.validation)
        key = f"{where}.date" if where else "date"
        if day is None:
            pass
        elif day > today:
            errors.setdefault(key, []).append(f"{day} is in the future.")
        elif not first <= day <= last:
            errors.setdefault(key, []).append(
                f"{day} is outside the period this visit covers ({first} to {last})."
            )
        if day is not None and (day in seen or day in recorded):
            errors.setdefault(key, []).append(f"{day} is already recorded.")
        seen.add(day)
        if entry.get("standard_drinks") is not None and entry["standard_drinks"] > limit:
            errors.setdefault(
                f"{where}.standard_drinks" if where else "standard_drinks", []
            ).append(f"At most {limit} standard drinks in a day.")


def check_vitals(vitals: dict | None, errors: dict, prefix: str = "vitals") -> None:
    """Diastolic below systolic (when both are known): the rule's one statement, applied to a
    new visit and to a corrected form; the database's CHECK ``diastolic_below_systolic`` is
    the last guard."""
    if not vitals:
        return
    systolic, diastolic = vitals.get("systolic_bp"), vitals.get("diastolic_bp")
    if systolic is not None and diastolic is not None and diastolic >= systolic:
        key = f"{prefix}.diastolic_bp" if prefix else "diastolic_bp"
        errors.setdefault(key, []).append("Diastolic must be below systolic.")


def check_labs(labs: list[dict], errors: dict, prefix: str = "labs") -> None:
    """Each test once per visit, in one of its units (when known)."""
    seen = set()
    for index, lab in enumerate(labs):
        where = f"{prefix}.{index}" if prefix else ""
        test = lab.get("test")
        if test is None:
            continue
        if test in seen:
            errors.setdefault(f"{where}.test" if where else "test", []).append(
                f"{test} is listed twice."
            )
        seen.add(test)
        if "unit" in lab and lab["unit"] not in LAB_UNITS[test]:
            errors.setdefault(f"{where}.unit" if where else "unit", []).append(
                f"Unit for {test} must be one of {', '.join(LAB_UNITS[test])}."
            )


def check_blinding(entries: list[dict], errors: dict, prefix: str = "blinding") -> None:
    """Each respondent once per visit; a guess of an arm with its confidence, "don't know"
    without one. The database's CHECK ``confidence_of_a_guess`` is the last guard."""
    seen = set()
    for index, entry in enumerate(entries):
        where = f"{prefix}.{index}." if prefix else ""
        respondent, guess = entry.get("respondent"), entry.get("guess")
        if respondent is not None:
            if respondent in seen:
                errors.setdefault(f"{where}respondent", []).append(
                    f"The {respondent}'s guess is given twice."
                )
            seen.add(respondent)
        if guess is None or "confidence" not in entry:
            continue
        if guess == DONT_KNOW and entry["confidence"] is not None:
            errors.setdefault(f"{where}confidence", []).append(
                "Leave the confidence out when the answer is don't know."
            )
        elif guess != DONT_KNOW and entry["confidence"] is None:
            errors.setdefault(f"{where}confidence", []).append(
                "Say how sure the guess is: strongly or somewhat."
            )


def form_records(participant: Participant, visit_id: int, data: dict) -> list[tuple]:
    """A visit's forms (drinking days, OCDS, CIWA-Ar, vitals, labs, blinding assessment) as
    ``create_records`` items, in the order of their audit rows."""
    items: list[tuple] = [
        (
            DrinkingDay,
            participant,
            {
                "visit_id": visit_id,
                "day": entry["day"],
                "standard_drinks": entry["standard_drinks"],
            },
        )
        for entry in data.get("drinking") or ()
    ]
    for key, model in (("ocds", OcdsAssessment), ("ciwa", CiwaAssessment), ("vitals", Vitals)):
        if data.get(key) is not None:
            items.append((model, participant, {"visit_id": visit_id, **data[key]}))
    items.extend(
        (LabResult, participant, {"visit_id": visit_id, **lab}) for lab in data.get("labs") or ()
    )
    items.extend(
        (BlindingAssessment, participant, {"visit_id": visit_id, **guess})
        for guess in data.get("blinding") or ()
    )
    return items


# --- re-validation of corrected forms ---------------------------------------------------


def revalidate_drinking_day(record: DrinkingDay, participant: Participant, merged: dict):
    from trial.visits.checks import calendar_period
    from trial.visits.models import Visit

    visit = db.session.get(Visit, record.visit_id)
    period = calendar_period(
        participant, visit.visit_code, visit.visit_date, exclude_visit_id=visit.id
    )
    errors: dict = {}
    check_drinking_days(participant, [merged], period, errors, exclude_id=record.id, prefix="")
    raise_if_errors(errors)


def revalidate_vitals(record, participant, merged: dict) -> None:
    errors: dict = {}
    check_vitals(merged, errors, prefix="")
    raise_if_errors(errors)


def revalidate_lab(record, participant, merged: dict) -> None:
    errors: dict = {}
    check_labs([merged], errors, prefix="")
    _slot_taken(record, merged, "test", errors, "{} is already recorded at this visit.")
    raise_if_errors(errors)


def revalidate_blinding(record, participant, merged: dict) -> None:
    errors: dict = {}
    check_blinding([merged], errors, prefix="")
    _slot_taken(
        record, merged, "respondent", errors, "The {}'s guess is already recorded at this visit."
    )
    raise_if_errors(errors)


def _slot_taken(record, merged: dict, field: str, errors: dict, message: str) -> None:
    """A corrected form must not take a slot its visit already fills (one lab per test, one
    guess per respondent): name ``field`` with ``message`` if another active record holds
    the corrected value."""
    value = merged.get(field)
    if value is None:
        return
    model = type(record)
    other = db.session.scalar(
        select(model.id).where(
            model.visit_id == record.visit_id,
            getattr(model, field) == value,
            model.id != record.id,
            model.entered_in_error.is_(False),
        )
    )
    if other is not None:
        errors.setdefault(field, []).append(message.format(value))


def no_cross_field_rules(record, participant, merged: dict) -> None:
    """OCDS and CIWA-Ar items are independent: their ranges are checked by the schema."""
