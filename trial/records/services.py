"""Create, correct and mark captured records, each step audited field by field.

The record types and the lookup of a record are ``trial.records.registry``'s; the version a
change is made from is checked by ``trial.records.versions``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from trial.audit.services import record_changes, record_event
from trial.database import utcnow
from trial.errors import Conflict, TrialError, ValidationFailed
from trial.extensions import db
from trial.participants.models import Participant
from trial.reasons import require_reason
from trial.records.bulk import create_records
from trial.records.registry import AFTER_CHANGE, RECORD_TYPES, REVALIDATIONS, get_visible_record
from trial.records.versions import check_version


class NothingToChange(TrialError):
    """A correction whose every value is the record's already: refused, so its reason is
    not silently dropped (422 with its own code)."""

    status, code = 422, "no_change"


def _site_code(participant: Participant) -> str:
    return participant.site_code


def create_record(
    actor, model: type, participant: Participant, values: dict[str, Any], **extra
) -> Any:
    """Insert a record and record every entered field (old value empty, no reason): one
    record of ``trial.records.bulk.create_records``, the one way records are created."""
    return create_records(actor, [(model, participant, {**values, **extra})])[0]


def ensure_correctable(record) -> None:
    """Refuse any correction of a record marked in error, before its input is checked."""
    if record.entered_in_error:
        raise Conflict("This record was marked as entered in error and can no longer change.")


def correct_record(
    actor,
    record,
    participant: Participant,
    changes: dict[str, Any],
    reason: str | None,
    *,
    expected_version: int | None = None,
    require_change: bool = False,
) -> int:
    """Apply changes with a reason; each changed field is audited with old and new value.

    A step of the whole operations (``correct_any_record``, ``trial.visits.services.
    correct_visit``, the adverse-event correction), which also revalidate the record and void
    its visit's signature: call those, not this.

    Returns the number of fields that changed (0 changes nothing and needs no reason).
    ``expected_version``: the version the change was made from (``If-Match`` or a body's
    ``version``); another is refused with 412 and nothing written. ``require_change``: a
    correction that changes nothing is refused (422 ``no_change``) instead of returning 0,
    so a person's reason is never silently dropped (internal re-derivations, such as
    re-coding, pass False).
    """
    ensure_correctable(record)
    check_version(record, expected_version, {field: getattr(record, field) for field in changes})
    changes = {field: (getattr(record, field), new) for field, new in changes.items()}
    # No autoflush while fields change one by one: a check constraint spanning two columns
    # (diastolic < systolic) must see the record whole, at the flush below.
    with db.session.no_autoflush:
        count = record_changes(
            actor,
            record.ENTITY,
            record.entity_id,
            changes,
            reason=reason,
            entity_site=_site_code(participant),
        )
        if not count:
            if require_change:
                raise NothingToChange(
                    f"Nothing to correct: every value sent is the record's already (version "
                    f"{record.version}). Nothing was saved and the reason was not recorded.",
                    {},
                )
            return 0
        for field, (_, new) in changes.items():
            setattr(record, field, new)
        record.version += 1
        record.updated_at = utcnow()
    db.session.flush()
    return count


def invalidate_signature(actor, record) -> None:
    """Void the signature of the visit ``record`` is (a visit) or belongs to (its forms, its
    automatic deviation), if signed, and its source verification mark, if any: any change
    after signing or verifying does."""
    # Imported here: verification builds on records and visits.
    from trial.verification.services import void_verification

    visit_model = RECORD_TYPES["visit"]
    if record.ENTITY == visit_model.ENTITY:
        visit = record
    else:
        visit_id = getattr(record, "visit_id", None)
        visit = db.session.get(visit_model, visit_id) if visit_id else None
    if visit is None:
        return
    void_verification(actor, visit, record)
    if visit.signature_status != "signed":
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


def _generic(entity: str) -> Callable:
    """The revalidation of a record type ``correct_any_record`` and
    ``mark_any_record_in_error`` serve; a type with operations of its own is not one."""
    if entity in RECORD_TYPES and entity not in REVALIDATIONS:
        raise ValueError(f"{entity} records change through an operation of their own")
    return REVALIDATIONS.get(entity)


def correct_any_record(
    actor,
    entity: str,
    record_id: int,
    changes: dict[str, Any],
    reason: str | None,
    *,
    expected_version: int | None = None,
    names: Mapping[str, str] | None = None,
):
    """Correct one captured record (a form, a dosing record, a disposition, a deviation) with
    a reason, whole: the operation the API and the pages call.

    In the order a person is told: a record not found or at another site (404), one entered
    in error (409), a stale ``expected_version`` (412, naming the current value of each field
    sent), the record as corrected (422, its type's ``register_revalidation`` check), a
    correction that changes nothing (422 ``no_change``). Each changed field is audited with
    old and new value, and the signature of the record's visit is voided. ``names``: the
    request's key of each field, where it differs from the field's (errors name those).
    Returns the record, its row held to the end of the transaction.
    """
    names = names or {}
    revalidate = _generic(entity)
    record, participant = get_visible_record(actor, entity, record_id, lock=True)
    ensure_correctable(record)
    check_version(record, expected_version, {names.get(f, f): getattr(record, f) for f in changes})
    merged = {field: getattr(record, field) for field in record.AUDITED_FIELDS}
    merged.update(changes)
    try:
        revalidate(record, participant, merged)
    except ValidationFailed as error:
        error.errors = {names.get(k, k): messages for k, messages in error.errors.items()}
        raise
    correct_record(
        actor,
        record,
        participant,
        changes,
        reason,
        expected_version=expected_version,
        require_change=True,
    )
    invalidate_signature(actor, record)
    _after_change(actor, record, participant)
    return record


def _after_change(actor, record, participant: Participant) -> None:
    """What a correction or a mark changes beyond the record: its type's declared effect,
    and the edit checks of its visit (warnings on the answer, system queries)."""
    # Imported here: the edit checks build on the visits' checks, which import this module.
    from trial.forms.edit_checks.run import run_record_checks

    effect = AFTER_CHANGE.get(record.ENTITY)
    if effect is not None:
        effect(actor, record, participant)
    record.warnings = run_record_checks(actor, participant, record)


def mark_any_record_in_error(
    actor, entity: str, record_id: int, reason: str | None, *, expected_version: int | None = None
):
    """Mark one captured record as entered in error, whole: found at a site the actor sees
    (404), not already marked (409), at ``expected_version`` (412), with a reason; audited,
    and the signature of its visit voided. Returns the record."""
    _generic(entity)
    record, participant = get_visible_record(actor, entity, record_id, lock=True)
    mark_entered_in_error(actor, record, participant, reason, expected_version=expected_version)
    invalidate_signature(actor, record)
    _after_change(actor, record, participant)
    return record


def mark_entered_in_error(
    actor,
    record,
    participant: Participant,
    reason: str | None,
    *,
    expected_version: int | None = None,
) -> None:
    """Withdraw a record from every output without deleting it.

    A step of the whole operations (``mark_any_record_in_error``, ``trial.visits.services.
    mark_visit_in_error``, the adverse-event withdrawal), which also void the signature of the
    record's visit: call those, not this.

    ``expected_version`` as for ``correct_record``: a stale one is refused with 412.
    """
    if record.entered_in_error:
        raise Conflict("This record is already marked as entered in error.")
    check_version(record, expected_version, {"entered_in_error": False})
    reason = require_reason(reason, what="marking a record entered in error")
    record.entered_in_error = True
    record.error_reason = reason
    record.version += 1
    record.updated_at = utcnow()
    db.session.flush()
    record_event(
        actor,
        "entered_in_error",
        entity_type=record.ENTITY,
        entity_id=record.entity_id,
        entity_site=_site_code(participant),
        field="entered_in_error",
        old=False,
        new=True,
        reason=reason,
    )


def raise_if_errors(errors: dict[str, list[str]]) -> None:
    """Refuse input with a 422 naming every bad field collected in ``errors``."""
    if errors:
        raise ValidationFailed("Invalid input: " + ", ".join(sorted(errors)) + ".", errors)
