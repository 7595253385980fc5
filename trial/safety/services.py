"""Report, correct and withdraw adverse events; each step audited field by field.

Every write goes through ``trial.records.services`` (create_record, correct_record,
mark_entered_in_error), so the audit trail holds each entered and derived field with its old
and new value. Services flush; the view or command commits once.

This module never imports ``randomization``: nothing here can know an arm.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select

from trial.conduct.course import refuse_after_final
from trial.dosing.services import first_dose_date
from trial.errors import Conflict, NotFound
from trial.extensions import db
from trial.participants.models import Participant
from trial.participants.services import get_visible_participant, site_today
from trial.reasons import require_reason
from trial.records.registry import get_visible_record
from trial.records.services import correct_record, create_record, mark_entered_in_error
from trial.records.versions import check_version
from trial.safety.definitions import is_treatment_emergent
from trial.safety.expedited import awareness_problems, sync_expedited_report
from trial.safety.meddra import code_term
from trial.safety.models import (
    SERIOUSNESS_CRITERIA,
    AdverseEvent,
    criterion_column,
)
from trial.safety.schemas import AdverseEventCorrectionSchema, AdverseEventCreateSchema
from trial.safety.verbatim import DEATH_ONLY_MESSAGE, states_only_death
from trial.validation import checks_body, raise_errors

MAX_RECORD_ID = 2**31 - 1  # the id column's range on PostgreSQL


# --- validation ---------------------------------------------------------------------------


def entered_values(record: AdverseEvent) -> dict[str, Any]:
    values = {field: getattr(record, field) for field in AdverseEvent.ENTERED_FIELDS}
    values["seriousness_criteria"] = list(record.seriousness_criteria)
    return values


def check_adverse_event(values: dict[str, Any], participant: Participant) -> None:
    """Check the cross-field rules of an AE as it would be stored; name every bad field.

    A rule whose inputs are not all in ``values`` is skipped: when a body fails its schema,
    its valid part is checked here (``trial.validation``) and the rest is named already.
    """
    errors: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    onset, end = values.get("onset_date"), values.get("end_date")
    today = site_today(participant.site)
    if onset is not None and onset > today:
        add("onset_date", f"Onset {onset} is in the future (today at the site is {today}).")
    if onset is not None and onset < participant.consent_date:
        add(
            "onset_date",
            f"Onset {onset} is before the participant's consent on {participant.consent_date}; "
            f"events before consent are medical history, not adverse events.",
        )
    if end is not None and onset is not None and end < onset:
        add("end_date", f"End date {end} is before the onset date {onset}.")
    if end is not None and end > today:
        add("end_date", f"End date {end} is in the future (today at the site is {today}).")

    term = values.get("term")
    if term and states_only_death(term):
        add("term", DEATH_ONLY_MESSAGE)

    known = values.keys()
    criteria = set(values.get("seriousness_criteria") or ())
    for message in awareness_problems(values, today):
        add("awareness_date", message)
    if values.get("serious") is True and "seriousness_criteria" in known and not criteria:
        add("seriousness_criteria", "A serious event needs at least one seriousness criterion.")
    if values.get("serious") is False and criteria:
        add(
            "seriousness_criteria",
            "A non-serious event has no seriousness criteria; set serious to true or "
            "remove the criteria.",
        )
    grade, outcome = values.get("grade"), values.get("outcome")
    if grade == 5 and "outcome" in known and outcome != "fatal":
        add("outcome", "Grade 5 means death related to the event: the outcome must be fatal.")
    if outcome == "fatal" and "grade" in known and grade != 5:
        add("grade", "A fatal outcome is CTCAE grade 5.")
    if outcome == "fatal" and "seriousness_criteria" in known and "death" not in criteria:
        add("seriousness_criteria", "A fatal event must have the seriousness criterion 'death'.")
    if "death" in criteria and "outcome" in known and outcome != "fatal":
        add("outcome", "The seriousness criterion 'death' needs the outcome fatal.")
    raise_errors(errors)
    # An event after the course ended is not taken (409; the dates themselves are fine).
    refuse_after_final(participant, onset, field="onset_date", what="adverse event")


@checks_body(AdverseEventCreateSchema)
def _check_new_adverse_event(actor, values, failed, participant_id):
    check_adverse_event(values, get_visible_participant(actor, participant_id))


@checks_body(AdverseEventCorrectionSchema)
def _check_adverse_event_correction(actor, values, failed, record_id):
    record, participant = get_adverse_event(actor, record_id)
    corrected_values(record, participant, values, failed)


def corrected_values(
    record: AdverseEvent, participant: Participant, changes: dict[str, Any], failed=frozenset()
) -> dict[str, Any]:
    """The AE as the correction would leave it, checked whole (the fields in ``failed``,
    refused by the schema, left out so no rule judges their old value instead)."""
    if record.entered_in_error:
        raise Conflict("This adverse event was marked entered in error and can no longer change.")
    merged = {k: v for k, v in entered_values(record).items() if k not in failed}
    merged.update((k, v) for k, v in changes.items() if k in AdverseEvent.ENTERED_FIELDS)
    check_adverse_event(merged, participant)
    return merged


def stored_values(values: dict[str, Any]) -> dict[str, Any]:
    """Entered values as columns: the criteria list becomes one boolean per criterion."""
    stored = {k: v for k, v in values.items() if k != "seriousness_criteria"}
    chosen = set(values.get("seriousness_criteria") or ())
    for criterion in SERIOUSNESS_CRITERIA:
        stored[criterion_column(criterion)] = criterion in chosen
    return stored


# --- create, read, correct, withdraw ------------------------------------------------------


def apply_correction(
    actor,
    record: AdverseEvent,
    participant: Participant,
    values: dict[str, Any],
    reason: str | None,
    **options,
) -> int:
    """``correct_record`` (with its ``options``) with every field set before anything is
    flushed.

    correct_record sets the fields one at a time and writes an audit row after each; the
    audit head query would autoflush the half-changed row, and the check constraints that
    tie fields together (serious and its criteria, PT and SOC and source) refuse it.
    """
    with db.session.no_autoflush:
        return correct_record(actor, record, participant, values, reason, **options)


def report_adverse_event(actor, participant_id: str, body: dict[str, Any]):
    """Record an AE of a participant the actor can see, coded and audited.

    A serious AE also opens its expedited report, due from its awareness date. Returns
    (AE, participant).
    """
    participant = get_visible_participant(actor, participant_id)
    values = {"end_date": None, "seriousness_criteria": [], **body}
    values = {"awareness_date": None, **values}
    check_adverse_event(values, participant)
    stored = stored_values(values)
    stored.update(code_term(stored["term"]).as_values())
    record = create_record(actor, AdverseEvent, participant, stored)
    sync_expedited_report(actor, record, participant)
    return record, participant


def get_adverse_event(actor, record_id: int, *, lock: bool = False):
    """Return (AE, participant), or 404 when missing or at a site the actor cannot see."""
    if not 1 <= record_id <= MAX_RECORD_ID:
        raise NotFound(f"No adverse_event {record_id}.")
    record, participant = get_visible_record(actor, AdverseEvent.ENTITY, record_id)
    if lock:  # serialise concurrent changes of one AE (a row lock on PostgreSQL)
        db.session.execute(
            select(AdverseEvent.id).where(AdverseEvent.id == record.id).with_for_update()
        )
        db.session.refresh(record)
    return record, participant


def correct_adverse_event(
    actor, record_id: int, body: dict[str, Any], *, expected_version: int | None = None
):
    """Apply a correction with its reason after re-checking the whole record.

    A changed term is coded again; a change of seriousness opens, reopens or withdraws the
    expedited report. ``expected_version``: the version corrected (412 if stale); a
    correction that changes nothing is refused (422 ``no_change``). Returns (AE, participant).
    """
    record, participant = get_adverse_event(actor, record_id, lock=True)
    changes = dict(body)
    reason = changes.pop("reason", None)
    if not record.entered_in_error:  # else corrected_values refuses it (409)
        entered = entered_values(record)
        check_version(record, expected_version, {k: entered.get(k) for k in changes})
    stored = stored_values(corrected_values(record, participant, changes))
    if stored["term"] != record.term:
        stored.update(code_term(stored["term"]).as_values())
    apply_correction(
        actor,
        record,
        participant,
        stored,
        reason,
        expected_version=expected_version,
        require_change=True,
    )
    sync_expedited_report(actor, record, participant, reason=reason)
    return record, participant


def withdraw_adverse_event(
    actor, record_id: int, reason: str, *, expected_version: int | None = None
):
    """Mark an AE entered in error (kept, audited, out of every list); withdraw its report.
    ``expected_version``: the version withdrawn (412 if stale)."""
    reason = require_reason(reason, what="marking a record entered in error")
    record, participant = get_adverse_event(actor, record_id, lock=True)
    mark_entered_in_error(actor, record, participant, reason, expected_version=expected_version)
    sync_expedited_report(actor, record, participant, reason=reason)
    return record, participant


def adverse_events_of(actor, participant_id: str, *, include_errors: bool = False):
    """A participant's AEs by onset, with the participant."""
    participant = get_visible_participant(actor, participant_id)
    statement = select(AdverseEvent).where(AdverseEvent.participant_id == participant.id)
    if not include_errors:
        statement = statement.where(AdverseEvent.entered_in_error.is_(False))
    statement = statement.order_by(AdverseEvent.onset_date, AdverseEvent.id)
    return [(record, participant) for record in db.session.scalars(statement)]


def uncoded_adverse_events(actor):
    """AEs whose term no dictionary codes, at the sites the actor can see, oldest first."""
    statement = (
        select(AdverseEvent, Participant)
        .join(Participant, Participant.id == AdverseEvent.participant_id)
        .where(AdverseEvent.coding_source == "uncoded")
        .where(AdverseEvent.entered_in_error.is_(False))
    )
    site_ids = actor.visible_site_ids()
    if site_ids is not None:
        statement = statement.where(Participant.site_id.in_(site_ids))
    return [tuple(row) for row in db.session.execute(statement.order_by(AdverseEvent.id))]


# --- presentation -------------------------------------------------------------------------


def present(rows) -> list[dict[str, Any]]:
    """Turn (AE, participant) pairs into response dicts with the derived fields.

    The first dose date is read once per participant.
    """
    first_doses: dict[int, date | None] = {}
    out = []
    for record, participant in rows:
        if participant.id not in first_doses:
            first_doses[participant.id] = first_dose_date(participant)
        out.append(present_one(record, participant, first_doses[participant.id]))
    return out


def present_one(record: AdverseEvent, participant: Participant, first_dose=...) -> dict:
    if first_dose is ...:
        first_dose = first_dose_date(participant)
    values = entered_values(record)
    values.update(
        id=record.id,
        participant_id=participant.participant_id,
        site=participant.site_code,
        preferred_term=record.preferred_term,
        system_organ_class=record.system_organ_class,
        coded=record.coded,
        coding_source=record.coding_source,
        treatment_emergent=is_treatment_emergent(record.onset_date, first_dose),
        version=record.version,
        entered_in_error=record.entered_in_error,
        error_reason=record.error_reason,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )
    return values
