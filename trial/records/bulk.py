"""Create several captured records at once, each stored and audited as ``create_record`` does.

The records are ORM objects added together and flushed once (the ORM inserts each table's
rows in one batch); every entered field then gets its audit row (action ``create``, old value
empty) through ``record_events``, in the order the records were given. Used for a visit and
its forms and for loads of already-checked data (the demo trial); the callers make the
checks the services make, and the database constraints apply as always.

A bulk load that needs no record back (the demo's visits and forms: about 230 rows per
participant) writes the same rows and audit rows as plain rows instead (``insert_records``,
``audit_inserted``): the ORM's unit of work cost about three times the insert itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import insert

from trial.audit.services import record_events
from trial.database import utcnow
from trial.extensions import db
from trial.participants.models import Participant


def create_records(actor, items: Sequence[tuple[type, Participant, dict[str, Any]]]) -> list:
    """Insert and audit one record per ``(model, participant, values)``; return them in order."""
    records = add_records(actor, items)
    audit_creations(actor, zip(records, [participant for _, participant, _ in items], strict=True))
    return records


def add_records(actor, items: Sequence[tuple[type, Participant, dict[str, Any]]]) -> list:
    """Insert one record per ``(model, participant, values)`` (one flush); return them in
    order. Not audited yet: the caller passes them to ``audit_creations`` in the same
    transaction (a visit's forms need the visit's id first, and all are audited together)."""
    now = utcnow()
    records = [
        model(
            participant_id=participant.id,
            created_at=now,
            updated_at=now,
            created_by_id=actor.id,
            version=1,
            entered_in_error=False,
            **values,
        )
        for model, participant, values in items
    ]
    if records:
        db.session.add_all(records)
        db.session.flush()
    return records


def audit_creations(actor, created: Iterable[tuple[Any, Participant]]) -> None:
    """Record each new record's entered fields, one audit row each (old value empty)."""
    record_events(
        actor,
        (
            _created(record.ENTITY, entity_id, site, field, getattr(record, field))
            for record, participant in created
            for entity_id, site in [(record.entity_id, participant.site_code)]
            for field in record.AUDITED_FIELDS
        ),
    )


def _created(entity: str, entity_id: str, site: str, field: str, value) -> dict[str, Any]:
    """The audit event of one field of a new record."""
    return {
        "action": "create",
        "entity_type": entity,
        "entity_id": entity_id,
        "entity_site": site,
        "field": field,
        "new": value,
    }


def insert_records(actor, items: Sequence[tuple[type, Participant, dict[str, Any]]]) -> list:
    """Insert ``add_records``'s rows without making ORM objects; return each row as written
    (its ``id`` included), in order. Not audited yet: see ``audit_inserted``.

    One executemany per table, the rows in the items' order, their ids returned in that
    order (``sort_by_parameter_order``: in batches on PostgreSQL, a row at a time on SQLite,
    which does not promise the order of a multi-row RETURNING). A column some rows of a
    table leave out (or an audited field all leave out) takes its default in those rows, as
    the ORM would give it.
    """
    now = utcnow()
    rows = [
        {
            "participant_id": participant.id,
            "created_at": now,
            "updated_at": now,
            "created_by_id": actor.id,
            "version": 1,
            "entered_in_error": False,
            **values,
        }
        for _, participant, values in items
    ]
    by_model: dict[type, list[dict]] = {}
    for (model, _, _), row in zip(items, rows, strict=True):
        by_model.setdefault(model, []).append(row)
    for model, written in by_model.items():
        table = model.__table__
        keys = set().union(*written, model.AUDITED_FIELDS)
        for row in written:
            for key in keys.difference(row):
                row[key] = _default(table.c[key])
        statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        ids = db.session.execute(statement, written).scalars().all()
        for row, new_id in zip(written, ids, strict=True):
            row["id"] = new_id
    return rows


def _default(column) -> Any:
    """What a column left out of a new record holds: its scalar default, else None."""
    default = column.default
    return default.arg if default is not None and default.is_scalar else None


def audit_inserted(actor, created: Iterable[tuple[type, Participant, dict[str, Any]]]) -> None:
    """``audit_creations`` for ``insert_records``' rows: the same events, in the same order,
    from ``(model, participant, row as written)``."""
    record_events(
        actor,
        (
            _created(model.ENTITY, entity_id, site, field, row[field])
            for model, participant, row in created
            for entity_id, site in [(str(row["id"]), participant.site_code)]
            for field in model.AUDITED_FIELDS
        ),
    )
