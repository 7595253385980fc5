"""Create several captured records at once, each stored and audited as ``create_record`` does.

The records are ORM objects added together and flushed once (the ORM inserts each table's
rows in one batch); every entered field then gets its audit row (action ``create``, old value
empty) through ``record_events``, in the order the records were given. Used for a visit and
its forms and for loads of already-checked data (the demo trial); the callers make the
checks the services make, and the database constraints apply as always.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

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
            {
                "action": "create",
                "entity_type": record.ENTITY,
                "entity_id": entity_id,
                "entity_site": site,
                "field": field,
                "new": getattr(record, field),
            }
            for record, participant in created
            for entity_id, site in [(record.entity_id, participant.site_code)]
            for field in record.AUDITED_FIELDS
        ),
    )
