"""Record visits with their forms, correct them, and sign them.

A visit is refused whole when any part is wrong (the errors name each field, forms
prefixed: ``drinking.2.date``, ``vitals.diastolic_bp``). A visit outside its window is
accepted and raises an automatic protocol deviation.
"""

from __future__ import annotations

from datetime import date, timedelta
from types import SimpleNamespace

from sqlalchemy import bindparam, null, select, union_all

from trial.audit.services import record_event
from trial.auth.services import verify_password
from trial.conduct.models import ProtocolDeviation
from trial.conduct.services import record_deviation
from trial.database import utcnow
from trial.errors import Conflict, Forbidden
from trial.extensions import db
from trial.forms import services as forms
from trial.forms.models import CiwaAssessment, DrinkingDay, LabResult, OcdsAssessment, Vitals
from trial.participants.models import Participant
from trial.participants.services import (
    get_visible_participant,
    randomization_date,
    site_today,
)
from trial.protocol import VisitDefinition, current_protocol
from trial.reasons import clean_reason, require_reason
from trial.records.bulk import RecordBatch, RecordRef, as_written
from trial.records.services import (
    check_version,
    correct_record,
    ensure_correctable,
    get_visible_record,
    mark_entered_in_error,
    raise_if_errors,
    records_of,
)
from trial.validation import checks_body
from trial.visits.models import SIGNATURE_MEANING, Visit
from trial.visits.schedule import in_window, window_dates
from trial.visits.schemas import VisitCreateSchema, VisitPatchSchema

VISIT_FIELDS = ("visit_code", "visit_date", "status", "missed_reason")
# What a new visit's body holds when a field is left out (VisitCreateSchema's defaults).
VISIT_DEFAULTS = {
    "status": "completed",
    "visit_date": None,
    "missed_reason": None,
    "drinking": [],
    "labs": [],
    "ocds": None,
    "ciwa": None,
    "vitals": None,
}
# What a new visit is checked against (its code not taken, its calendar period): the
# participant's active visits, as plain rows (built once; rows need no ORM objects).
_VISITS_TO_CHECK = select(Visit.id, Visit.visit_code, Visit.visit_date, Visit.status).where(
    Visit.participant_id == bindparam("participant"), Visit.entered_in_error.is_(False)
)
# The same, and the days already on the participant's calendar (for a visit that brings
# calendar days) in the same round trip: a day is a row with no id, its day as visit_date.
_VISITS_AND_RECORDED_DAYS = union_all(
    _VISITS_TO_CHECK,
    forms.RECORDED_DAYS.with_only_columns(
        null(), null(), forms.RECORDED_DAYS.selected_columns.day, null()
    ),
)


def _definition(code: str) -> VisitDefinition | None:
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
        definition = _definition(code)
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
    if _definition(visit_code).day < 0:
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


def visit_errors(
    participant: Participant, data: dict, *, visits: list | None = None, recorded=None
) -> dict:
    """Every rule of a new visit with its forms, on the fields of ``data`` that are known.

    ``visits`` and ``recorded`` (the days on the participant's calendar): as read by the
    caller, or read here.
    """
    errors = check_visit(
        participant, {k: data[k] for k in VISIT_FIELDS if k in data}, visits=visits
    )
    status, visit_date = data.get("status"), data.get("visit_date")
    form_keys = [k for k in ("drinking", "labs") if data.get(k)] + [
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
        forms.check_drinking_days(participant, data["drinking"], period, errors, recorded=recorded)
    forms.check_vitals(data.get("vitals"), errors)
    forms.check_labs(data.get("labs") or [], errors)
    return errors


@checks_body(VisitCreateSchema)
def _check_new_visit(actor, values, failed, participant_id):
    raise_if_errors(visit_errors(get_visible_participant(actor, participant_id), values))


def record_visit(actor, participant: Participant, data: dict):
    """Create a visit and its forms in one step; refuse everything if anything is wrong.

    Returns the visit as written (``visit_as_written``: built from the rows stored, not
    read back), so the response needs no further round trip.
    """
    data = {**VISIT_DEFAULTS, **data}  # as the schema loads them: every rule applies
    if data["drinking"]:
        parameters = {"participant": participant.id, "exclude": -1}
        rows = db.session.execute(_VISITS_AND_RECORDED_DAYS, parameters).all()
        visits = [row for row in rows if row.id is not None]
        recorded = {row.visit_date for row in rows if row.id is None}
    else:
        visits = db.session.execute(_VISITS_TO_CHECK, {"participant": participant.id}).all()
        recorded = None  # no calendar day to check
    raise_if_errors(visit_errors(participant, data, visits=visits, recorded=recorded))

    batch = RecordBatch(actor)
    queue_visit(batch, participant, data)
    return visit_as_written(batch.write(), participant)


def queue_visit(batch: RecordBatch, participant: Participant, data: dict) -> RecordRef:
    """Queue a checked visit on ``batch``: the visit, its automatic out-of-window deviation
    if it is outside its window, then its forms (the order of their audit rows)."""
    visit = batch.add(
        Visit,
        participant,
        {**{k: data.get(k) for k in VISIT_FIELDS}, "signature_status": "unsigned"},
    )
    if data.get("status", "completed") == "completed":
        values = out_of_window_deviation(participant, data["visit_code"], data["visit_date"])
        if values is not None:
            automatic = {**values, "automatic": True, "visit_id": visit}
            batch.add(ProtocolDeviation, participant, automatic)
        forms.add_forms(batch, participant, visit, data)
    return visit


def visit_as_written(written: dict[type, list[dict]], participant: Participant):
    """The one visit of ``written`` (``RecordBatch.write``'s rows) with its forms, shown as
    ``VisitSchema`` shows a stored visit, from exactly the values stored."""
    shown = SimpleNamespace(id=participant.id, participant_id=participant.participant_id)

    def records(model: type) -> list:
        return [as_written(model, row, participant=shown) for row in written.get(model, ())]

    single = {
        name: next(iter(records(model)), None)
        for name, model in (("ocds", OcdsAssessment), ("ciwa", CiwaAssessment), ("vitals", Vitals))
    }
    [row] = written[Visit]
    return as_written(
        Visit,
        row,
        participant=shown,
        signer=None,
        drinking_days=sorted(records(DrinkingDay), key=lambda day: day.day),
        labs=sorted(records(LabResult), key=lambda lab: lab.test),
        **single,
    )


def out_of_window_deviation(participant: Participant, visit_code: str, visit_date: date):
    """The automatic deviation a completed visit on ``visit_date`` raises, or None in window."""
    definition = _definition(visit_code)
    day0 = randomization_date(participant)
    if in_window(definition, day0, visit_date):
        return None
    _, earliest, latest = window_dates(definition, day0)
    return {
        "category": "visit_out_of_window",
        "date": visit_date,
        "description": f"{definition.label} on {visit_date}, outside its window "
        f"{earliest} to {latest} (day {definition.day}, "
        f"-{definition.window_before}/+{definition.window_after} days).",
    }


def _flag_window(actor, participant: Participant, visit: Visit) -> None:
    """Raise an automatic deviation for a completed visit outside its window (once)."""
    if visit.status != "completed":
        return
    values = out_of_window_deviation(participant, visit.visit_code, visit.visit_date)
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


def flag_visits_in_new_schedule(actor, participant: Participant) -> None:
    """At randomization, check the visits recorded before day 0 (screening) against their
    windows, which only day 0 defines."""
    for visit in records_of(Visit, participant):
        _flag_window(actor, participant, visit)


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


def _active_forms(visit: Visit) -> list:
    singles = [visit.ocds, visit.ciwa, visit.vitals]
    return [*visit.drinking_days, *(form for form in singles if form is not None), *visit.labs]


def revalidate_visit(actor, participant: Participant, visit: Visit, merged: dict) -> None:
    """Check the visit as corrected, and that its forms still fit it (a rule whose inputs
    are not in ``merged`` is skipped)."""
    errors = check_visit(participant, merged, exclude_id=visit.id)
    status, visit_date = merged.get("status"), merged.get("visit_date")
    if not errors and status == "missed" and _active_forms(visit):
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


@checks_body(VisitPatchSchema)
def _check_visit_correction(actor, values, failed, visit_id):
    """The rules of a visit correction whose body failed its schema, on the part that loaded
    (the correction view applies the same steps to a body that loads)."""
    visit, participant = get_visible_record(actor, "visit", visit_id)
    ensure_correctable(visit)
    changes = coherent_visit_changes(visit, {k: v for k, v in values.items() if k in VISIT_FIELDS})
    merged = {field: getattr(visit, field) for field in Visit.AUDITED_FIELDS if field not in failed}
    merged.update(changes)
    revalidate_visit(actor, participant, visit, merged)


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
        expected = out_of_window_deviation(participant, visit.visit_code, visit.visit_date)
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


def correct_visit(
    actor,
    visit: Visit,
    participant: Participant,
    body: dict,
    reason: str | None,
    *,
    expected_version: int | None = None,
) -> int:
    """Correct a visit's date, status or missed reason with a reason, from the version the
    change was made from (``expected_version``; None: as it is now).

    In the order a person is told: a visit entered in error (409), a stale version (412,
    naming the current value of each field sent), the visit as corrected (422), a body that
    changes nothing (422 ``no_change``). Keeps the automatic out-of-window deviation true and
    voids the signature. The caller holds the visit's row (``get_visible_record(...,
    lock=True)``). Returns the number of fields changed.
    """
    ensure_correctable(visit)
    check_version(visit, expected_version, {field: getattr(visit, field) for field in body})
    changes = coherent_visit_changes(visit, body)
    merged = {field: getattr(visit, field) for field in Visit.AUDITED_FIELDS}
    merged.update(changes)
    revalidate_visit(actor, participant, visit, merged)
    count = correct_record(
        actor,
        visit,
        participant,
        changes,
        reason,
        expected_version=expected_version,
        require_change=True,
    )
    after_visit_corrected(actor, participant, visit)
    invalidate_signature(actor, visit)
    return count


def mark_visit_in_error(
    actor,
    visit: Visit,
    participant: Participant,
    reason: str,
    *,
    expected_version: int | None = None,
) -> None:
    """Mark a visit in error with its forms and its automatic deviation, each audited.

    The forms and the deviation describe the visit; left active they would stay in every
    output and block the days and the visit from being entered again correctly.
    ``expected_version``: the visit's version the mark was made from (412 if stale).
    """
    reason = require_reason(reason, what="marking a record entered in error")
    mark_entered_in_error(actor, visit, participant, reason, expected_version=expected_version)
    deviations = db.session.scalars(
        select(ProtocolDeviation).where(
            ProtocolDeviation.visit_id == visit.id,
            ProtocolDeviation.automatic.is_(True),
            ProtocolDeviation.entered_in_error.is_(False),
        )
    )
    because = f"Visit {visit.id} was entered in error: {reason}"
    for record in [*_active_forms(visit), *deviations]:
        mark_entered_in_error(actor, record, participant, because)


def sign_visit(actor, visit: Visit, participant: Participant, password: str) -> bool:
    """An investigator signs a visit: name, server UTC time, meaning. False: bad password."""
    if actor.role != "investigator":
        raise Forbidden("Only an investigator signs visits.")
    if visit.entered_in_error:
        raise Conflict("A visit marked as entered in error cannot be signed.")
    if not verify_password(actor, password):
        record_event(
            actor,
            "sign_refused",
            entity_type="visit",
            entity_id=visit.entity_id,
            entity_site=participant.site_code,
            detail={"cause": "password incorrect"},
        )
        return False
    old = visit.signature_status
    visit.signature_status = "signed"
    visit.signed_by_id, visit.signed_at = actor.id, utcnow()
    visit.signature_meaning = SIGNATURE_MEANING
    db.session.flush()
    record_event(
        actor,
        "sign",
        entity_type="visit",
        entity_id=visit.entity_id,
        entity_site=participant.site_code,
        field="signature_status",
        old=old,
        new="signed",
        detail={"meaning": SIGNATURE_MEANING, "signed_at": visit.signed_at.isoformat()},
    )
    return True


def invalidate_signature(actor, record) -> None:
    """Any change to a signed visit or to one of its forms voids the signature."""
    visit = (
        record
        if isinstance(record, Visit)
        else (db.session.get(Visit, record.visit_id) if getattr(record, "visit_id", None) else None)
    )
    if visit is None or visit.signature_status != "signed":
        return
    visit.signature_status = "invalidated"
    db.session.flush()
    record_event(
        actor,
        "signature_invalidated",
        entity_type="visit",
        entity_id=visit.entity_id,
        entity_site=visit.participant.site_code,
        field="signature_status",
        old="signed",
        new="invalidated",
        reason=f"{record.ENTITY} {record.id} changed after signature",
    )
