"""Create, correct and mark captured records, each step audited field by field."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from trial.audit.services import record_changes, record_created, record_event
from trial.database import utcnow
from trial.errors import Conflict, NotFound, ValidationFailed
from trial.extensions import db
from trial.participants.models import Participant
from trial.reasons import require_reason

# entity name -> model class, filled by ``register_record_type``; used by corrections,
# data queries and signatures to find a record from its audit name.
RECORD_TYPES: dict[str, type] = {}
MAX_RECORD_ID = 2**31 - 1


def register_record_type(model: type) -> type:
    RECORD_TYPES[model.ENTITY] = model
    return model


def _site_code(participant: Participant) -> str:
    return participant.site_code


def create_record(
    actor, model: type, participant: Participant, values: dict[str, Any], **extra
) -> Any:
    """Insert a record and record every entered field (old value empty, no reason)."""
    now = utcnow()
    record = model(
        participant_id=participant.id,
        created_at=now,
        updated_at=now,
        created_by_id=actor.id,
        version=1,
        entered_in_error=False,
        **values,
        **extra,
    )
    db.session.add(record)
    db.session.flush()
    record_created(
        actor,
        model.ENTITY,
        record.entity_id,
        {field: getattr(record, field) for field in model.AUDITED_FIELDS},
        entity_site=_site_code(participant),
    )
    return record


def ensure_correctable(record) -> None:
    """Refuse any correction of a record marked in error, before its input is checked."""
    if record.entered_in_error:
        raise Conflict("This record was marked as entered in error and can no longer change.")


def correct_record(
    actor, record, participant: Participant, changes: dict[str, Any], reason: str | None
) -> int:
    """Apply changes with a reason; each changed field is audited with old and new value.

    Returns the number of fields that changed (0 changes nothing and needs no reason).
    """
    ensure_correctable(record)
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
            return 0
        for field, (_, new) in changes.items():
            setattr(record, field, new)
        record.version += 1
        record.updated_at = utcnow()
    db.session.flush()
    return count


def mark_entered_in_error(actor, record, participant: Participant, reason: str | None) -> None:
    """Withdraw a record from every output without deleting it."""
    if record.entered_in_error:
        raise Conflict("This record is already marked as entered in error.")
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


def get_visible_record(actor, entity: str, record_id: int):
    """Return (record, participant) or 404 when missing or at a site the actor cannot see."""
    model = RECORD_TYPES.get(entity)
    if model is None:
        raise NotFound(f"No record type {entity!r}.")
    if not 1 <= record_id <= MAX_RECORD_ID:  # beyond the id column: cannot exist
        raise NotFound(f"No {entity} {record_id}.")
    record = db.session.get(model, record_id)
    if record is None:
        raise NotFound(f"No {entity} {record_id}.")
    participant = db.session.get(Participant, record.participant_id)
    site_ids = actor.visible_site_ids()
    if site_ids is not None and participant.site_id not in site_ids:
        raise NotFound(f"No {entity} {record_id}.")
    return record, participant


def active(statement, model):
    """Restrict a query to records not entered in error."""
    return statement.where(model.entered_in_error.is_(False))


def records_of(model, participant: Participant, *, include_errors: bool = False):
    statement = select(model).where(model.participant_id == participant.id)
    if not include_errors:
        statement = active(statement, model)
    return list(db.session.scalars(statement.order_by(model.id)))


def raise_if_errors(errors: dict[str, list[str]]) -> None:
    """Refuse input with a 422 naming every bad field collected in ``errors``."""
    if errors:
        raise ValidationFailed("Invalid input: " + ", ".join(sorted(errors)) + ".", errors)
