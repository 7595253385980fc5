"""Create many captured records at once, audited field by field exactly like create_record.

The bulk path of ``create_record``: the records and their audit rows go in with one
``record_events`` call, in the caller's transaction (one statement on PostgreSQL for the
few records of a request, ``COPY`` per table for bulk loads). Each
record gets the audit rows ``create_record`` would give it (one per audited field, action
``create``, old value empty), in the same order. The caller makes the checks the services
make; the database constraints apply as always. Used by visit capture (a visit's forms) and
by loads of already-checked data (the demo trial).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import inspect

from trial.audit.services import record_events
from trial.bulk import reserve_ids_for
from trial.database import utcnow
from trial.participants.models import Participant

# The columns a batch gives every record alike (see ``write``), sent once per table.
_SHARED = ("created_at", "updated_at", "created_by_id", "version", "entered_in_error")


class RecordRef:
    """A record queued on a batch, whose id is known once the batch writes: a value of
    another queued record may be a ref (a form's ``visit_id``), replaced by that id."""

    __slots__ = ("model", "index")

    def __init__(self, model: type, index: int):
        self.model, self.index = model, index


class RecordBatch:
    """Records of one actor, of one or more types, written together by ``write``."""

    def __init__(self, actor):
        self.actor = actor
        self.items: dict[type, list[tuple[Participant, dict[str, Any]]]] = {}

    def add(self, model: type, participant: Participant, values: dict[str, Any]) -> RecordRef:
        """Queue a record; ``values`` holds its columns (entered values, links such as
        ``visit_id``, possibly refs to records queued earlier), the same columns for every
        record of one type. Records are written and audited in the order of their types'
        first ``add``, then of their own."""
        items = self.items.setdefault(model, [])
        items.append((participant, values))
        return RecordRef(model, len(items) - 1)

    def write(self) -> dict[type, list[dict[str, Any]]]:
        """Insert every queued record and audit it; return the rows written (columns as
        stored, ``id`` included) by type, in the order queued."""
        if not self.items:
            return {}
        now = utcnow()
        reserved = reserve_ids_for({m.__table__: len(items) for m, items in self.items.items()})
        ids = {model: reserved[model.__table__] for model in self.items}
        written, events = {}, []
        for model, items in self.items.items():
            rows = written[model] = []
            for record_id, (participant, values) in zip(ids[model], items, strict=True):
                row = {
                    "id": record_id,
                    "participant_id": participant.id,
                    "created_at": now,
                    "updated_at": now,
                    "created_by_id": self.actor.id,
                    "version": 1,
                    "entered_in_error": False,
                    **values,
                }
                for key, value in values.items():
                    if type(value) is RecordRef:
                        row[key] = ids[value.model][value.index]
                rows.append(row)
                entity_id, site = str(record_id), participant.site_code
                events.extend(
                    {
                        "action": "create",
                        "entity_type": model.ENTITY,
                        "entity_id": entity_id,
                        "entity_site": site,
                        "field": field,
                        "new": row.get(field),
                    }
                    for field in model.AUDITED_FIELDS
                )
        along = [(model.__table__, rows, _SHARED) for model, rows in written.items()]
        record_events(self.actor, events, along=along)
        self.items = {}
        return written


def create_records_bulk(
    actor, model: type, items: Sequence[tuple[Participant, dict[str, Any]]]
) -> list[int]:
    """Insert one record of ``model`` per ``(participant, values)``; return their ids in order."""
    if not items:
        return []
    batch = RecordBatch(actor)
    for participant, values in items:
        batch.add(model, participant, values)
    return [row["id"] for row in batch.write()[model]]


def as_written(model: type, row: dict[str, Any], **links: Any) -> Any:
    """A written row (``RecordBatch.write``) shown as a record of ``model``: its columns,
    ``links`` (``participant``, a visit's forms) and the model's derived properties
    (``total``, ``participant_code``), for a response built without reading back.

    A plain object, not an ORM instance: nothing can load, flush or expire it, and building
    and reading it costs attribute lookups only.
    """
    shown = _view_class(model)()
    shown.__dict__.update(row)
    shown.__dict__.update(links)
    return shown


@functools.cache
def _view_class(model: type) -> type:
    # Columns not written read as None, as on an ORM instance; properties as the model has them.
    properties = dict.fromkeys(inspect(model).column_attrs.keys())
    for klass in reversed(model.__mro__):
        properties.update(
            (name, value) for name, value in vars(klass).items() if isinstance(value, property)
        )
    return type(f"{model.__name__}AsWritten", (), properties)
