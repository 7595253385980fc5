"""Record audit events and verify the chain.

Services call ``record_event`` (or the create/update helpers) with the acting user inside the
transaction that makes the change; the caller commits once, so the change and its audit rows
stand or fall together. Every event, one or many, becomes its row in one place
(``_chained_row``) and chains from the head locked once per transaction (``_lock_head``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC
from itertools import islice
from json.encoder import encode_basestring
from typing import Any

from sqlalchemy import insert, select

from trial.audit.chain import GENESIS_HASH, chain_hash, hash_payload, payload_of
from trial.audit.models import AuditChainHead, AuditEvent
from trial.database import utcnow
from trial.extensions import db
from trial.reasons import require_reason

# Events inserted together by ``record_events``: all of a request's; a bulk load's in parts.
CHUNK = 1000
_INSERT = insert(AuditEvent.__table__)


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


def _actor_columns(actor, username: str | None = None) -> dict:
    """Who acted; ``username`` names an unknown user (a failed login) when there is no actor."""
    if actor is None:
        return {"user_id": None, "username": username, "role": None, "user_site": None}
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

    The lock (``SELECT ... FOR UPDATE``; SQLite's writers hold the database lock already) is
    held until commit or rollback; later events of the same transaction chain from the head
    in memory instead of reading it again. A head locked inside a savepoint is locked again
    once the savepoint ends: rolled back, it released the lock (PostgreSQL) and the head's
    advance with it.
    """
    session = db.session()
    cached = session.info.get("audit_head")
    if cached is not None and cached[0].is_active:
        return cached[1]
    head = session.execute(_HEAD_FOR_UPDATE).scalar_one()
    transaction = session.get_nested_transaction() or session.get_transaction()
    session.info["audit_head"] = (transaction, head)
    return head


def _author(actor, username: str | None = None) -> tuple[dict[str, Any], str]:
    """The columns the events of one call share (who acted, and now), and the instant as
    it is hashed: as it reads back from either database (microseconds, UTC)."""
    now = utcnow().astimezone(UTC)
    return {**_actor_columns(actor, username), "occurred_at": now}, now.isoformat(
        timespec="microseconds"
    )


@dataclass
class _ChainEnd:
    """Where the chain ends while a call's rows are chained: the locked head's seq and hash,
    kept apart from the ORM object (its attribute events would fire on every row) and
    written back to the head once a call's rows are made (``record_events``)."""

    last_seq: int
    last_hash: str


def _chained_row(
    head: AuditChainHead | _ChainEnd,
    author: tuple[dict[str, Any], str],
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
) -> dict[str, Any]:
    """The one way an event becomes a row: its columns, encoded, chained after ``head``.

    ``author``: ``_author``'s shared columns and hashed instant. The head advances to the
    new row (the caller holds it locked: ``_lock_head``).
    """
    shared, stamp = author
    row = {
        "seq": head.last_seq + 1,
        **shared,
        "action": action,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "entity_site": entity_site,
        "field": field,
        "old_value": encode_value(old),
        "new_value": encode_value(new),
        "reason": reason,
        "detail": json.dumps(detail, sort_keys=True, ensure_ascii=False) if detail else None,
        "prev_hash": head.last_hash,
    }
    row["hash"] = hash_payload(head.last_hash, payload_of({**row, "occurred_at": stamp}))
    head.last_seq, head.last_hash = row["seq"], row["hash"]
    return row


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
    row = _chained_row(
        _lock_head(),
        _author(actor, username),
        action,
        entity_type=entity_type,
        entity_id=entity_id,
        entity_site=entity_site,
        field=field,
        old=old,
        new=new,
        reason=reason,
        detail=detail,
    )
    event = AuditEvent(**row)
    db.session.add(event)  # flushed with the change it records, at the latest on commit
    return event


def record_events(actor, events: Iterable[Mapping[str, Any]]) -> int:
    """Append many events of one actor, sharing one instant; return how many.

    Each event is a mapping of ``record_event``'s keyword arguments plus ``action``, made
    into its row and chained as ``record_event`` does it, and inserted at once: one
    statement per ``CHUNK`` rows (a bulk load's are sent as they are computed).
    """
    head, author = _lock_head(), _author(actor)
    end = _ChainEnd(head.last_seq, head.last_hash)
    rows = (_chained_row(end, author, **event) for event in events)
    count = 0
    while chunk := list(islice(rows, CHUNK)):
        head.last_seq, head.last_hash = end.last_seq, end.last_hash
        db.session.execute(_INSERT, chunk)  # executemany
        count += len(chunk)
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
