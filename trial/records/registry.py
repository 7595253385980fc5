"""Which record types exist, and how to find a record the acting user may see.

Each feature registers its record types here (``register_record_type``, and the check of a
correction with ``register_revalidation``), so corrections, data queries, signatures and
exports can find a record from its audit name without importing every feature. A record at
a site the user cannot see is answered as missing (404), never as forbidden.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from trial.errors import NotFound
from trial.extensions import db
from trial.participants.models import Participant

# entity name -> model class, filled by ``register_record_type``; used by corrections,
# data queries and signatures to find a record from its audit name.
RECORD_TYPES: dict[str, type] = {}
# entity name -> the check of a record as a correction would leave it (``register_revalidation``):
# the record types ``correct_any_record`` corrects. Visits and adverse events have operations
# of their own (``trial.visits.services``, ``trial.safety.services``).
REVALIDATIONS: dict[str, Callable] = {}
# entity name -> what a correction or an entered-in-error mark of such a record changes
# beyond the record (e.g. a disposition, the participant's status): ``register_revalidation``.
AFTER_CHANGE: dict[str, Callable] = {}
MAX_RECORD_ID = 2**31 - 1


def register_record_type(model: type) -> type:
    RECORD_TYPES[model.ENTITY] = model
    return model


def register_revalidation(
    model: type, revalidate: Callable, *, after_change: Callable | None = None
) -> None:
    """Declare how a record of ``model`` is checked as a correction would leave it:
    ``revalidate(record, participant, merged_values)`` raises ValidationFailed naming each bad
    field. A record type with one is corrected by ``correct_any_record``. ``after_change(actor,
    record, participant)``: what a correction or an entered-in-error mark changes beyond the
    record, in the same transaction."""
    REVALIDATIONS[model.ENTITY] = revalidate
    if after_change is not None:
        AFTER_CHANGE[model.ENTITY] = after_change


def get_visible_record(actor, entity: str, record_id: int, *, lock: bool = False):
    """Return (record, participant) or 404 when missing or at a site the actor cannot see.

    ``lock``: read the record as committed and hold its row to the end of the transaction
    (``FOR UPDATE`` on PostgreSQL; SQLite's writers are serialised by ``BEGIN IMMEDIATE``),
    so a change checked against its version cannot be overtaken by another.
    """
    model = RECORD_TYPES.get(entity)
    if model is None:
        raise NotFound(f"No record type {entity!r}.")
    if not 1 <= record_id <= MAX_RECORD_ID:  # beyond the id column: cannot exist
        raise NotFound(f"No {entity} {record_id}.")
    if lock:
        record = db.session.get(
            model, record_id, with_for_update={"of": model}, populate_existing=True
        )
    else:
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
