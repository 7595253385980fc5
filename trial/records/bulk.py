"""Create many captured records at once, audited field by field exactly like create_record.

The bulk path of ``create_record``: each record type goes in with one bulk insert and the
whole batch's audit rows with one ``record_events`` call, in the caller's transaction. Each
record gets the audit rows ``create_record`` would give it (one per audited field, action
``create``, old value empty), in the same order. The caller makes the checks the services
make; the database constraints apply as always. Used by visit capture (a visit's forms) and
by loads of already-checked data (the demo trial).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trial.audit.services import record_events
from trial.bulk import bulk_insert, reserve_ids_for
from trial.database import utcnow
from trial.participants.models import Participant


class RecordBatch:
    """Records of one actor, of one or more types, written together by ``write``."""

    def __init__(self, actor):
        self.actor = actor
        self.items: dict[type, list[tuple[Participant, dict[str, Any]]]] = {}

    def add(self, model: type, participant: Participant, values: dict[str, Any]) -> None:
        """Queue a record; ``values`` holds its columns (entered values, links such as
        ``visit_id``), the same columns for every record of one type."""
        self.items.setdefault(model, []).append((participant, values))

    def write(self) -> dict[type, list[int]]:
        """Insert every queued record and audit it; return the new ids by type, in order."""
        if not self.items:
            return {}
        now = utcnow()
        reserved = reserve_ids_for({m.__table__: len(items) for m, items in self.items.items()})
        ids, events = {}, []
        for model, items in self.items.items():
            ids[model] = reserved[model.__table__]
            rows = []
            for record_id, (participant, values) in zip(ids[model], items, strict=True):
                rows.append(
                    {
                        "id": record_id,
                        "participant_id": participant.id,
                        "created_at": now,
                        "updated_at": now,
                        "created_by_id": self.actor.id,
                        "version": 1,
                        "entered_in_error": False,
                        **values,
                    }
                )
                entity_id, site = str(record_id), participant.site_code
                events.extend(
                    {
                        "action": "create",
                        "entity_type": model.ENTITY,
                        "entity_id": entity_id,
                        "entity_site": site,
                        "field": field,
                        "new": values.get(field),
                    }
                    for field in model.AUDITED_FIELDS
                )
            bulk_insert(model.__table__, rows)
        record_events(self.actor, events)
        self.items = {}
        return ids


def create_records_bulk(
    actor, model: type, items: Sequence[tuple[Participant, dict[str, Any]]]
) -> list[int]:
    """Insert one record of ``model`` per ``(participant, values)``; return their ids in order."""
    if not items:
        return []
    batch = RecordBatch(actor)
    for participant, values in items:
        batch.add(model, participant, values)
    return batch.write()[model]
