"""Queries the system raises: an edit check (``trial.forms.edit_checks``) found an entry
possible but unusual.

A system query is a query like any other once raised: site staff answer it, a monitor or data
manager closes or re-opens it (``trial.queries.services``). What differs is who asked. Its
row says ``origin = "system"`` and names the check (``rule``); its opener, its thread's
messages and its audit rows name the user whose entry or correction fired the check, marked
automatic, so the trail never shows a person asking a question they did not ask, nor a
question without the action that caused it.
"""

from __future__ import annotations

from trial.database import utcnow
from trial.extensions import db
from trial.participants.models import Participant
from trial.queries.models import DataQuery
from trial.queries.services import _add_message, _audit


def raise_system_query(
    actor,
    participant: Participant,
    *,
    rule: str,
    entity: str,
    record_id: str,
    field: str | None,
    text: str,
    value: str,
) -> DataQuery:
    """Open a query for edit check ``rule`` on a record ``actor`` has just entered or
    corrected (and so can see); ``value``: the value the check fired on, as quoted."""
    now = utcnow()
    query = DataQuery(
        entity=entity,
        record_id=record_id,
        field=field,
        participant_id=participant.id,
        site_id=participant.site_id,
        text=text,
        status="open",
        origin="system",
        rule=rule,
        checked_value=value,
        opened_at=now,
        opened_by_id=actor.id,
        updated_at=now,
        messages=[],  # a new query's thread is empty: appending to it needs no read
    )
    db.session.add(query)
    db.session.flush()  # its id, for its audit row; its message and audit row go with the rest
    _add_message(actor, query, "raise", text, now, automatic=True)
    _audit(actor, query, "raise", text, None, value=value)
    return query


def note_system_query(actor, query: DataQuery, *, text: str, value: str) -> DataQuery:
    """Add the system's note to a query's thread that the queried value is now ``value``
    (its status unchanged: settling it stays a monitor's call)."""
    now = utcnow()
    before = query.checked_value
    query.checked_value = value
    query.updated_at = now
    _add_message(actor, query, "note", text, now, automatic=True)
    _audit(actor, query, "note", text, query.status, value_from=before, value_to=value)
    db.session.flush()
    return query
