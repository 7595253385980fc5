"""Read the audit trail: filters, a participant's whole history, and cursor pages.

A participant's history is every row about the participant or about a record under it
(visits, forms, dosing, dispositions, deviations, eligibility answers, adverse events, their
expedited reports, data queries). Rows carry ``entity_type`` and ``entity_id``, not the
participant, so the link is made when the trail is read, through the records' own
``participant_id``: no column is added to ``audit_events``, the rows and their hashes stay as
they are (``tests/test_audit_chain_pinned.py``), and rows written before this existed are
found as well as new ones. Which record types are under a participant is found from the
models themselves (every mapped class with an audit ``ENTITY`` and a ``participant_id``),
plus the two linked another way (``LINKED_OTHERWISE``); ``tests/test_audit_api_filters.py``
fails on an entity type of a demo trial's trail that is neither linked nor trial-wide.

Cursors: ``seq`` is gapless and assigned under the chain head's lock, held to commit, so
committed rows always form a prefix of ``seq``. A page ends at a ``seq``; the next page starts
strictly past it, so rows committed meanwhile (all of higher ``seq``) never shift a page:
newest first, they are not in later pages; in chain order, they come at the end.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterator

from sqlalchemy import String, and_, cast, false, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from trial.audit.models import AuditEvent
from trial.errors import ValidationFailed
from trial.extensions import db

PARTICIPANT_ENTITY = "participant"
# Entity types about the trial, no participant: accounts, sites, the randomization list and
# key, released artefacts, the dictionary, the database itself.
TRIAL_WIDE_ENTITIES = frozenset(
    {
        "user",
        "site",
        "randomization_list",
        "randomization_key",
        "report",
        "export",
        "database",
        "meddra_dictionary",
    }
)
_CURSOR = re.compile(r"(newest|chain):([1-9][0-9]{0,9})")


def _query_ids(participant_pk: int):
    from trial.queries.models import DataQuery

    return select(cast(DataQuery.id, String)).where(DataQuery.participant_id == participant_pk)


def _expedited_report_ids(participant_pk: int):
    from trial.safety.models import AdverseEvent, ExpeditedReport

    return (
        select(cast(ExpeditedReport.id, String))
        .join(AdverseEvent, AdverseEvent.id == ExpeditedReport.adverse_event_id)
        .where(AdverseEvent.participant_id == participant_pk)
    )


# Entity types under a participant whose rows do not carry ``participant_id`` themselves.
LINKED_OTHERWISE: dict[str, Callable] = {
    "query": _query_ids,
    "expedited_report": _expedited_report_ids,
}


def record_types_under_a_participant() -> dict[str, type]:
    """Every mapped class recorded in the trail as an ``ENTITY`` and holding the
    ``participant_id`` of the participant it belongs to (the captured records)."""
    found = {}
    for mapper in db.Model.registry.mappers:
        model = mapper.class_
        entity = getattr(model, "ENTITY", None)
        column = mapper.columns.get("participant_id")
        if isinstance(entity, str) and entity and column is not None and column.foreign_keys:
            if any(key.column.table.name == "participants" for key in column.foreign_keys):
                found[entity] = model
    return found


def linked_entity_types() -> frozenset[str]:
    return frozenset({PARTICIPANT_ENTITY, *record_types_under_a_participant(), *LINKED_OTHERWISE})


def about_participant(participant) -> ColumnElement[bool]:
    """Rows about ``participant`` or any record under it (index ``ix_audit_events_entity``:
    each branch is an equality on ``entity_type`` and a set of ``entity_id``)."""
    branches = [
        and_(
            AuditEvent.entity_type == PARTICIPANT_ENTITY,
            AuditEvent.entity_id == participant.participant_id,
        )
    ]
    for entity, model in sorted(record_types_under_a_participant().items()):
        ids = select(cast(model.id, String)).where(model.participant_id == participant.id)
        branches.append(and_(AuditEvent.entity_type == entity, AuditEvent.entity_id.in_(ids)))
    for entity, ids_of in sorted(LINKED_OTHERWISE.items()):
        branches.append(
            and_(AuditEvent.entity_type == entity, AuditEvent.entity_id.in_(ids_of(participant.id)))
        )
    return or_(*branches)


def encode_cursor(order: str, seq: int) -> str:
    """An opaque token for the page after ``seq`` (clients pass it back, never parse it)."""
    return base64.urlsafe_b64encode(f"{order}:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, int]:
    """The order and ``seq`` a cursor continues from, or 422 naming ``cursor``."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        text = ""
    match = _CURSOR.fullmatch(text)
    if match is None or int(match.group(2)) > 2**31 - 1:
        raise ValidationFailed(
            "Invalid input: cursor.",
            {"cursor": ["Not a cursor this service gave: pass next_cursor back unchanged."]},
        )
    return match.group(1), int(match.group(2))


def visible_participant(participant_id: str):
    """The participant the current reader may see, or None (missing and at another site
    alike: a site's staff learn nothing of another site's participants)."""
    from flask import g

    from trial.errors import NotFound
    from trial.participants.services import get_visible_participant

    try:
        return get_visible_participant(g.current_user, participant_id)
    except NotFound:
        return None


def participant_errors(participant_id: str) -> dict[str, list[str]]:
    """The ``participant`` filter's error, if the current reader may not see it. Without a
    reader (the schema loaded outside a request) there is nobody to judge it for: the
    request's own check (``audit_page``) is the one that counts."""
    from flask import g, has_request_context

    if not has_request_context() or g.get("current_user") is None:
        return {}
    if visible_participant(participant_id) is None:
        return {"participant": [f"No participant {participant_id!r} among those you may read."]}
    return {}


def _readable_by(user, statement):
    """``statement`` narrowed to the rows ``user`` may read: site staff and monitors read
    only rows of their sites."""
    if user.is_site_bound:
        sites = user.site_codes
        statement = statement.where(AuditEvent.entity_site.in_(sites) if sites else false())
    return statement


def audit_page(user, args: dict) -> tuple[list[AuditEvent], str | None]:
    """One page of the rows ``user`` may read that match ``args`` (``AuditQuerySchema``),
    and the next page's cursor (None on the last page). Site staff and monitors read only
    rows of their sites."""
    order, after = args.get("order", "chain"), None
    if "cursor" in args:
        given = args.get("order")
        order, after = decode_cursor(args["cursor"])
        if given is not None and given != order:
            raise ValidationFailed(
                "Invalid input: order.",
                {"order": [f"The cursor continues a page in {order!r} order."]},
            )
    newest = order == "newest"
    statement = select(AuditEvent)
    if after is not None:
        statement = statement.where(AuditEvent.seq < after if newest else AuditEvent.seq > after)
    elif "after_seq" in args:
        statement = statement.where(AuditEvent.seq > args["after_seq"])
    statement = _readable_by(user, statement)
    for column in ("entity_type", "entity_id", "action"):
        if column in args:
            statement = statement.where(getattr(AuditEvent, column) == args[column])
    if "site" in args:
        statement = statement.where(AuditEvent.entity_site == args["site"])
    if "username" in args:  # account names are stored lower-cased (normalize_username)
        statement = statement.where(AuditEvent.username == args["username"].strip().lower())
    if "participant" in args:
        participant = visible_participant(args["participant"])
        if participant is None:  # the schema named it already, with any other bad field
            raise ValidationFailed(
                "Invalid input: participant.", participant_errors(args["participant"])
            )
        statement = statement.where(about_participant(participant))
    if "from_" in args:
        statement = statement.where(AuditEvent.occurred_at >= args["from_"])
    if "to" in args:
        statement = statement.where(AuditEvent.occurred_at < args["to"])
    limit = args["limit"]
    statement = statement.order_by(AuditEvent.seq.desc() if newest else AuditEvent.seq)
    rows = list(db.session.scalars(statement.limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(order, rows[-1].seq) if more else None


def audit_rows(user, args: dict, batch: int = 1000) -> Iterator[AuditEvent]:
    """Every row ``user`` may read that matches ``args``, in ``args``' order, from ``args``'
    cursor on: ``audit_page`` page after page (a download of what a filter shows). Rows
    committed meanwhile never shift a page (see the module's note on cursors)."""
    args = {**args, "limit": batch}
    while True:
        rows, cursor = audit_page(user, args)
        yield from rows
        if cursor is None:
            return
        args["cursor"] = cursor


def recorded_actions(user, recent: int = 5000) -> list[str]:
    """The actions recorded in the latest ``recent`` rows ``user`` may read, by name (a
    filter's suggestions). Only the latest: no index serves ``action``, and a DISTINCT over
    the whole trail read every row on every page (a third of a 400-participant demo's
    audit page's time); the ``seq`` range is the primary key's."""
    newest = select(func.max(AuditEvent.seq)).scalar_subquery()
    statement = select(AuditEvent.action).where(AuditEvent.seq > newest - recent).distinct()
    return sorted(db.session.scalars(_readable_by(user, statement)))
