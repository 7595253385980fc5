"""Create several captured records at once, each stored and audited as ``create_record`` does.

The records are ORM objects added together and flushed once (the ORM inserts each table's
rows in one batch), then every entered field gets its audit row (action ``create``, old value
empty) through ``record_events``, in the order the records were given. Used for a visit's
forms and for loads of already-checked data (the demo trial); the callers make the checks
the services make, and the database constraints apply as always.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trial.audit.services import record_events
from trial.database import utcnow
from trial.extensions import db
from trial.participants.models import Participant


def create_records(actor, items: Sequence[tuple[type, Participant, dict[str, Any]]]) -> list:
    """Insert one record per ``(model, participant, values)``; return them in order."""
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
    if not records:
        return []
    db.session.add_all(records)
    db.session.flush()
    events = (
        event
        for record, (_, participant, _) in zip(records, items, strict=True)
        for event in _creation_events(record, participant)
    )
    record_events(actor, events)
    return records


def _creation_events(record, participant: Participant) -> list[dict[str, Any]]:
    """A new record's audit events: one per entered field, old value empty."""
    about = {
        "action": "create",
        "entity_type": record.ENTITY,
        "entity_id": record.entity_id,
        "entity_site": participant.site_code,
    }
    return [
        {**about, "field": field, "new": getattr(record, field)} for field in record.AUDITED_FIELDS
    ]
