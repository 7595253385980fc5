"""Record audit events and verify the chain.

Services call ``record_event`` (or the create/update helpers) with the acting user inside the
transaction that makes the change; the caller commits once, so the change and its audit rows
stand or fall together.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from json.encoder import encode_basestring
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from trial.audit.chain import (
    GENESIS_HASH,
    chain_hash,
    hash_payload,
    json_value,
    payload_template,
)
from trial.audit.models import AuditChainHead, AuditEvent
from trial.bulk import bulk_insert, insert_few
from trial.database import utcnow
from trial.extensions import db
from trial.reasons import require_reason

_ABSENT = object()

# Up to this many events (what one request writes) go in one INSERT ... VALUES with the head
# update; more (bulk loads) stream through COPY.
FEW_EVENTS = 200
HEAD_UPDATE_SQL = "UPDATE audit_chain_head SET last_seq = %s, last_hash = %s WHERE id = 1"


def encode_value(value: Any) -> str | None:
    """JSON-encode a field value so None, "" and 0 stay distinguishable in the trail."""
    if value is None:
        return None
    kind = type(value)
    if kind is str:  # the common scalars, written as json.dumps writes them but faster
        return encode_basestring(value)
    if kind is int:
        return int.__repr__(value)
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    if hasattr(value, "isoformat"):
        value = value.isoformat()
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _actor_columns(actor) -> dict:
    if actor is None:
        return {"user_id": None, "username": None, "role": None, "user_site": None}
    return {
        "user_id": actor.id,
        "username": actor.username,
        "role": actor.role,
        "user_site": actor.site_label,
    }


_HEAD_FOR_UPDATE = (
    select(AuditChainHead)
    .where(AuditChainHead.id == 1)
    .with_for_update()
    .execution_options(populate_existing=True)
)


def _lock_head() -> AuditChainHead:
    """Lock the chain head once per transaction and keep it for the transaction's events.

    The lock is held until commit or rollback; later events of the same transaction reuse
    the head in memory instead of re-reading it (one lock, one flush, whatever the count).
    """
    cached = _locked_head()
    if cached is not None:
        return cached
    session = db.session()
    head = db.session.execute(_HEAD_FOR_UPDATE).scalar_one()
    session.info["audit_head"] = (session.get_transaction(), head)
    return head


def _dialect_name() -> str:
    return db.session.get_bind().dialect.name


def _locked_head() -> AuditChainHead | None:
    """The chain head if this transaction has locked it already, else None."""
    session = db.session()
    cached = session.info.get("audit_head")
    transaction = session.get_transaction()
    if cached is not None and transaction is not None and cached[0] is transaction:
        return cached[1]
    return None


# The chain head locked by a statement of the caller's own (which also did its own work),
# returned as its last columns: see ``adopt_locked_head``.
HEAD_FOR_UPDATE_SQL = "SELECT last_seq, last_hash FROM audit_chain_head WHERE id = 1 FOR UPDATE"


def adopt_locked_head(last_seq: int, last_hash: str) -> None:
    """Use the chain head that the caller has just locked and read (``HEAD_FOR_UPDATE_SQL``
    in one of its own statements, on PostgreSQL), so this transaction's events skip the
    lock's round trip. The lock must be held (taken in this transaction) and the values
    read under it: the next event chains from them.
    """
    session = db.session()
    head = session.identity_map.get(session.identity_key(AuditChainHead, 1))
    if head is None:
        head = AuditChainHead(id=1)
        make_transient_to_detached(head)
        session.add(head)  # known to the session as stored, without a query
    set_committed_value(head, "last_seq", last_seq)
    set_committed_value(head, "last_hash", last_hash)
    session.info["audit_head"] = (session.get_transaction(), head)


def record_event(
    actor,
    action: str,
    *,
    entity_type: str | None = None,
    entity_id: str | None = None,
    entity_site: str | None = None,
    field: str | None = None,
    old: Any = None,
    new: Any = None,
    reason: str | None = None,
    detail: dict | None = None,
    username: str | None = None,
) -> AuditEvent:
    """Append one event to the chain in the current transaction.

    ``username`` overrides the actor's name for events without a known user (a failed login
    under an unknown name). Values are JSON-encoded; ``detail`` holds extra context.
    """
    head = _lock_head()
    columns = _actor_columns(actor)
    if username is not None and actor is None:
        columns["username"] = username
    event = AuditEvent(
        seq=head.last_seq + 1,
        occurred_at=utcnow(),
        action=action,
        entity_type=entity_type,
        entity_id=entity_id,
        entity_site=entity_site,
        field=field,
        old_value=encode_value(old),
        new_value=encode_value(new),
        reason=reason,
        detail=json.dumps(detail, sort_keys=True, ensure_ascii=False) if detail else None,
        prev_hash=head.last_hash,
        **columns,
    )
    # Hash the instant as it will read back from either database (microseconds, UTC).
    event.occurred_at = event.occurred_at.astimezone(UTC)
    event.hash = chain_hash(event.prev_hash, event)
    head.last_seq, head.last_hash = event.seq, event.hash
    db.session.add(event)  # flushed with the change it records, at the latest on commit
    return event


def _event_row(event: Mapping[str, Any]) -> tuple[dict, tuple[str, ...]]:
    """An event's own columns, encoded, and the JSON of those the payload hashes
    (``_EVENT_HASHED``): everything but the chain's place, the actor and the instant."""
    detail = event.get("detail")
    row = {
        "action": event["action"],
        "entity_type": event.get("entity_type"),
        "entity_id": event.get("entity_id"),
        "entity_site": event.get("entity_site"),
        "field": event.get("field"),
        "old_value": encode_value(event.get("old")),
        "new_value": encode_value(event.get("new")),
        "reason": event.get("reason"),
        "detail": json.dumps(detail, sort_keys=True, ensure_ascii=False) if detail else None,
    }
    return row, tuple([json_value(row[column]) for column in _EVENT_HASHED])


# The payload's columns other than the shared ones (actor, instant), in template order:
# ``seq`` sorts last, so a payload is ``template % (*an event's hashed values, seq)``.
_SHARED = (*_actor_columns(None), "occurred_at")
*_EVENT_HASHED, _LAST = payload_template(dict.fromkeys(_SHARED, ""))[1]
assert _LAST == "seq"


def record_events(
    actor,
    events: Iterable[Mapping[str, Any]],
    *,
    along: Sequence[tuple[Table, list[Mapping[str, Any]]] | tuple] = (),
) -> int:
    """Append many events with one head lock and one bulk insert; return how many.

    ``along`` holds the rows the events record, as ``insert_few`` parts (ids reserved
    beforehand). When the events are few, they go in with the events: on PostgreSQL, when
    the chain head is not locked yet, the records go in with the statement that locks it
    and the events with the one that advances it, so the client's work on the records'
    statement (converting it, packing its arrays) and the events' encoding are done before
    the lock, which every audited write waits for, is taken; on SQLite (the write lock is
    taken at BEGIN) and when the head is locked already, all in one statement.

    Each event is a mapping of ``record_event``'s keyword arguments plus ``action``. Rows are
    encoded and chained exactly as ``record_event`` does it (same columns, same payload, same
    hash), so ``verify_chain`` cannot tell the two paths apart; they share one instant, as
    the events of one transaction do. For bulk loads (the demo), where an ORM object and a
    flush per event would cost more than the data itself.
    """
    is_few = isinstance(events, list | tuple) and len(events) <= FEW_EVENTS
    encoded = [_event_row(event) for event in events] if is_few else map(_event_row, events)
    if is_few and events and along and _locked_head() is None and _dialect_name() == "postgresql":
        adopt_locked_head(*insert_few(along, then=(HEAD_FOR_UPDATE_SQL, ())))
        along = ()
    head = _lock_head()
    occurred_at = utcnow().astimezone(UTC)
    constants = {
        **_actor_columns(actor),
        "occurred_at": occurred_at.isoformat(timespec="microseconds"),
    }
    template = payload_template(constants)[0]
    constants["occurred_at"] = occurred_at
    state = {"seq": head.last_seq, "hash": head.last_hash}

    def rows():
        seq, prev_hash = state["seq"], state["hash"]
        for row, hashed in encoded:
            seq += 1
            row["seq"] = seq
            row["prev_hash"] = prev_hash
            row["hash"] = prev_hash = hash_payload(prev_hash, template % (*hashed, seq))
            row.update(constants)
            state["seq"], state["hash"] = seq, prev_hash
            yield row

    if is_few:
        few = list(rows())
        if few:  # the events and the advanced head in one statement where possible
            last_seq, last_hash = state["seq"], state["hash"]
            advance = (HEAD_UPDATE_SQL, (last_seq, last_hash))
            insert_few([*along, (AuditEvent.__table__, few, _SHARED)], then=advance)
            # The head row is written: show it on the loaded object without making it dirty.
            set_committed_value(head, "last_seq", last_seq)
            set_committed_value(head, "last_hash", last_hash)
            return len(few)
    # Bulk loads (and records without audited fields): each table streamed on its own.
    for table, records, *_ in along:
        bulk_insert(table, records)
    # Rows are hashed as they are sent, so the database stores while the chain is computed.
    count = bulk_insert(AuditEvent.__table__, rows())
    if count:
        head.last_seq, head.last_hash = state["seq"], state["hash"]
    return count


def record_created(
    actor,
    entity_type: str,
    entity_id: str,
    values: dict,
    *,
    entity_site: str | None = None,
    action: str = "create",
) -> None:
    """Record a first entry: one row per field, old value empty, no reason needed."""
    for field, value in values.items():
        record_event(
            actor,
            action,
            entity_type=entity_type,
            entity_id=entity_id,
            entity_site=entity_site,
            field=field,
            old=None,
            new=value,
        )


def record_changes(
    actor,
    entity_type: str,
    entity_id: str,
    changes: dict[str, tuple],
    *,
    reason: str | None,
    entity_site: str | None = None,
    action: str = "update",
) -> int:
    """Record each changed field as (old, new); a reason is required for any change.

    A change to or from empty counts; unchanged fields are not recorded. Returns how many
    fields changed.
    """
    changed = {f: (o, n) for f, (o, n) in changes.items() if encode_value(o) != encode_value(n)}
    if changed:
        reason = require_reason(reason, what="changing a record")
    for field, (old, new) in changed.items():
        record_event(
            actor,
            action,
            entity_type=entity_type,
            entity_id=entity_id,
            entity_site=entity_site,
            field=field,
            old=old,
            new=new,
            reason=reason,
        )
    return len(changed)


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    rows_checked: int
    broken_seq: int | None = None
    problem: str | None = None


def verify_chain(batch_size: int = 5000) -> ChainReport:
    """Walk the chain in order, streaming rows; report the first row that does not check.

    Plain rows, not ORM objects: what is stored is checked (never an object the session
    holds), and a trail of millions of rows is walked several times faster.
    """
    expected_seq = 1
    prev_hash = GENESIS_HASH
    checked = 0
    db.session.flush()
    table = AuditEvent.__table__
    statement = select(table).order_by(table.c.seq).execution_options(yield_per=batch_size)
    for event in db.session.execute(statement):
        if event.seq != expected_seq:
            return ChainReport(
                False,
                checked,
                expected_seq,
                f"row {expected_seq} is missing (next row present is {event.seq})",
            )
        if event.prev_hash != prev_hash:
            return ChainReport(
                False, checked, event.seq, f"row {event.seq} does not link to row {event.seq - 1}"
            )
        if chain_hash(prev_hash, event) != event.hash:
            return ChainReport(
                False,
                checked,
                event.seq,
                f"row {event.seq} was altered: its content does not match its hash",
            )
        prev_hash = event.hash
        expected_seq += 1
        checked += 1
    head = db.session.get(AuditChainHead, 1)
    if head is None or head.last_seq != checked or head.last_hash != prev_hash:
        return ChainReport(
            False,
            checked,
            checked + 1 if head and head.last_seq > checked else checked,
            f"chain head says {head.last_seq if head else 'nothing'} rows, "
            f"found {checked}: rows were removed from the end",
        )
    return ChainReport(True, checked)


def count_events() -> int:
    return db.session.scalar(select(func.count()).select_from(AuditEvent)) or 0
