"""The rules of a visit: its code, date and status, its calendar period, its forms' fit.

Each check returns or fills an errors dict naming every bad field (forms prefixed:
``drinking.2.date``, ``vitals.diastolic_bp``); a visit the participant cannot have is a 409.
"""

from __future__ import annotations

from datetime import date, timedelta

from trial.conduct.course import course_of, refuse_after_final, visit_expected
from trial.errors import Conflict
from trial.forms import services as forms
from trial.participants.models import Participant
from trial.participants.services import (
    randomization_date,
    site_today,
)
from trial.protocol import VisitDefinition, current_protocol
from trial.reasons import clean_reason
from trial.records.registry import records_of
from trial.records.services import raise_if_errors
from trial.visits.models import Visit
from trial.visits.windows import in_window, window_dates

VISIT_FIELDS = ("visit_code", "visit_date", "status", "missed_reason", "out_of_window_reason")


def visit_definition(code: str) -> VisitDefinition | None:
    try:
        return current_protocol().visit(code)
    except KeyError:
        return None


def check_visit(
    participant: Participant,
    values: dict,
    *,
    exclude_id: int | None = None,
    errors: dict | None = None,
    visits: list | None = None,
) -> dict:
    """Check visit-level fields; return the errors dict (raise nothing). ``visits``: the
    participant's active visits, when the caller has read them already.

    A rule whose inputs are not in ``values`` is skipped (they failed the schema and are
    named already, see ``trial.validation``). A visit the participant cannot have yet, or
    has already, is a 409 whatever else is wrong.
    """
    errors = {} if errors is None else errors
    code = values.get("visit_code")
    definition = day0 = None
    if code is not None:
        definition = visit_definition(code)
        if definition is None:
            codes = ", ".join(v.code for v in current_protocol().visits)
            errors["visit_code"] = [f"Unknown visit {code!r}; use one of {codes}."]
            return errors
        day0 = randomization_date(participant)
        if definition.day >= 0 and day0 is None:
            raise Conflict(
                f"Participant {participant.participant_id} is not randomized yet: only "
                f"the screening visit can be recorded."
            )
    status = values.get("status")
    visit_date = values.get("visit_date")
    if status == "missed":
        if "missed_reason" in values and clean_reason(values["missed_reason"]) is None:
            errors["missed_reason"] = ["Say why the visit was missed."]
    elif status == "completed" and "visit_date" in values and visit_date is None:
        errors["visit_date"] = ["A completed visit needs its date."]
    elif visit_date is not None:
        if visit_date > site_today(participant.site):
            errors["visit_date"] = [f"{visit_date} is in the future."]
        elif visit_date < participant.consent_date:
            errors["visit_date"] = [f"{visit_date} is before consent ({participant.consent_date})."]
        elif definition is not None and definition.day >= 0 and visit_date < day0:
            errors["visit_date"] = [f"{visit_date} is before randomization ({day0})."]
    if "visit_date" not in errors:
        _refuse_after_course(participant, definition, day0, status, visit_date)
    if code is None:
        return errors
    if visits is None:
        visits = records_of(Visit, participant)
    taken = [v for v in visits if v.visit_code == code and v.id != exclude_id]
    if taken:
        raise Conflict(
            f"Visit {code} is already recorded for "
            f"{participant.participant_id} (visit {taken[0].id}); correct it "
            f"instead.",
            {"visit_code": ["Already recorded."]},
        )
    return errors


def _refuse_after_course(participant, definition, day0, status, visit_date) -> None:
    """No visit dated after a final disposition; no missed visit the course no longer
    expects (its window opens after the disposition)."""
    if status == "completed":
        refuse_after_final(participant, visit_date, field="visit_date", what="visit")
    elif status == "missed" and definition is not None and day0 is not None:
        opens = window_dates(definition, day0)[1]
        final = course_of(participant).final
        if not visit_expected(opens, final):
            raise Conflict(
                f"Participant {participant.participant_id} ended the study ({final.status}) "
                f"on {final.date}, before the window of {definition.label} opens ({opens}): "
                f"the visit is not expected, so it is not recorded as missed.",
                {"status": [f"Not expected after the disposition ({final.status})."]},
            )


def window_errors(participant: Participant, data: dict, errors: dict) -> None:
    """A completed visit outside its window needs ``out_of_window_reason``: a visit code that
    does not fit the date is more often a slip than a late visit, so it is refused rather
    than silently becoming a deviation. Screening visits are placed at randomization."""
    code, visit_date = data.get("visit_code"), data.get("visit_date")
    definition = visit_definition(code) if code is not None else None
    day0 = randomization_date(participant)
    if data.get("status") != "completed" or None in (definition, visit_date, day0):
        return
    if "visit_date" in errors:  # a date refused already (future, before consent) is not placed
        return
    if in_window(definition, day0, visit_date):
        return
    if "out_of_window_reason" in data and clean_reason(data["out_of_window_reason"]) is None:
        _, earliest, latest = window_dates(definition, day0)
        day = (visit_date - day0).days
        fitting = [d.code for d in current_protocol().visits if in_window(d, day0, visit_date)]
        hint = f" On day {day} the protocol expects {', '.join(fitting)}." if fitting else ""
        errors.setdefault("visit_date", []).append(
            f"{visit_date} is day {day}, outside the window of {definition.label} "
            f"({earliest} to {latest}).{hint} Check the visit code, or give "
            f"out_of_window_reason to record it late or early (a protocol deviation)."
        )
        errors["out_of_window_reason"] = ["Required for a visit outside its window."]


def calendar_period(
    participant: Participant,
    visit_code: str,
    visit_date: date,
    exclude_visit_id: int | None = None,
    visits: list | None = None,
) -> tuple[date, date]:
    """Days a visit's drinking calendar may cover: the baseline days before screening, or
    the days since the previous completed visit, up to the day before this visit."""
    last = visit_date - timedelta(days=1)
    if visit_definition(visit_code).day < 0:
        return visit_date - timedelta(days=current_protocol().baseline_days), last
    if visits is None:
        visits = records_of(Visit, participant)
    earlier = [
        v.visit_date
        for v in visits
        if v.status == "completed"
        and v.visit_date is not None
        and v.visit_date < visit_date
        and v.id != exclude_visit_id
    ]
    first = (
        max(earlier) if earlier else visit_date - timedelta(days=current_protocol().baseline_days)
    )
    return first, last


def visit_errors(participant: Participant, data: dict, *, visits: list | None = None) -> dict:
    """Every rule of a new visit with its forms, on the fields of ``data`` that are known.

    ``visits``: the participant's active visits, as read by the caller, or read here.
    """
    errors = check_visit(
        participant, {k: data[k] for k in VISIT_FIELDS if k in data}, visits=visits
    )
    status, visit_date = data.get("status"), data.get("visit_date")
    form_keys = [k for k in ("drinking", "labs", "blinding") if data.get(k)] + [
        k for k in ("ocds", "ciwa", "vitals") if data.get(k) is not None
    ]
    if status == "missed" and form_keys:
        for key in form_keys:
            errors[key] = ["A missed visit carries no forms."]
    if status == "missed" and visit_date is not None:
        errors["visit_date"] = [
            "A missed visit has no date: leave visit_date out, or record the visit as completed."
        ]
    if (
        data.get("drinking")
        and status == "completed"
        and data.get("visit_code") is not None
        and visit_date is not None
        and not errors
    ):
        period = calendar_period(participant, data["visit_code"], visit_date, visits=visits)
        forms.check_drinking_days(participant, data["drinking"], period, errors)
    window_errors(participant, data, errors)
    forms.check_vitals(data.get("vitals"), errors)
    forms.check_labs(data.get("labs") or [], errors)
    forms.check_blinding(data.get("blinding") or [], errors)
    return errors


def coherent_visit_changes(visit: Visit, changes: dict) -> dict:
    """Complete a correction so the visit stays coherent, with every change audited.

    A visit corrected to missed loses its date (as a missed visit is recorded without one);
    a missed visit corrected to completed loses its missed reason unless one is given.
    """
    changes = dict(changes)
    status = changes.get("status", visit.status)
    if status == "missed":
        changes["visit_date"] = None
    elif visit.status == "missed" and "missed_reason" not in changes:
        changes["missed_reason"] = None
    return changes


def active_forms(visit: Visit) -> list:
    singles = [visit.ocds, visit.ciwa, visit.vitals]
    return [
        *visit.drinking_days,
        *(form for form in singles if form is not None),
        *visit.labs,
        *visit.blinding,
    ]


def revalidate_visit(actor, participant: Participant, visit: Visit, merged: dict) -> None:
    """Check the visit as corrected, and that its forms still fit it (a rule whose inputs
    are not in ``merged`` is skipped)."""
    errors = check_visit(participant, merged, exclude_id=visit.id)
    status, visit_date = merged.get("status"), merged.get("visit_date")
    if not errors and status == "missed" and active_forms(visit):
        errors["status"] = [
            "This visit has forms; a missed visit carries none. Mark its forms as entered "
            "in error first."
        ]
    dated = status == "completed" and visit_date is not None
    if not errors and dated and visit.drinking_days:
        first, last = calendar_period(
            participant, visit.visit_code, visit_date, exclude_visit_id=visit.id
        )
        outside = sorted(d.day for d in visit.drinking_days if not first <= d.day <= last)
        if outside:
            errors["visit_date"] = [
                f"On {visit_date} this visit's drinking calendar would cover "
                f"{first} to {last}, but it holds "
                f"{', '.join(str(day) for day in outside)}: correct those days first."
            ]
    if not errors and dated:
        _check_next_calendar(participant, visit, visit_date, errors)
    raise_if_errors(errors)


def _check_next_calendar(participant: Participant, visit: Visit, new_date, errors) -> None:
    """Moving a visit later shortens the next visit's calendar period (it starts on this
    visit's date): refuse the move while the next visit holds days before the new date."""
    later = [
        v
        for v in records_of(Visit, participant)
        if v.id != visit.id
        and v.status == "completed"
        and v.visit_date is not None
        and v.visit_date > new_date
    ]
    if not later:
        return
    following = min(later, key=lambda v: v.visit_date)
    stranded = sorted(d.day for d in following.drinking_days if d.day < new_date)
    if stranded:
        errors["visit_date"] = [
            f"On {new_date} this visit would start the calendar period of visit "
            f"{following.visit_code} ({following.visit_date}), which holds "
            f"{', '.join(str(day) for day in stranded)}: correct those days first."
        ]
