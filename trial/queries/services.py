"""Raise, answer, close and re-open data queries, each step audited with the query's site.

The life cycle is a small state machine:

    open --answer--> answered --close--> closed
    open --close--> closed               (a monitor may withdraw a query raised in error)
    answered --reopen--> open            (the answer does not settle it)
    closed --reopen--> open              (new doubt about a settled point)

Anything else is a 409 that says what the query's state allows. A transition reads the query
under a row lock (``FOR UPDATE`` on PostgreSQL; SQLite's write transactions are serialised at
BEGIN), so two concurrent steps cannot both pass the state check.
"""

from __future__ import annotations

import re

from sqlalchemy import func, select

from trial.audit.services import record_event
from trial.auth.roles import SINGLE_SITE_ROLES, Role
from trial.database import utcnow
from trial.errors import Conflict, Forbidden, NotFound, ValidationFailed
from trial.extensions import db
from trial.notifications import events as notification_events
from trial.participants.models import Participant
from trial.participants.services import get_visible_participant
from trial.queries.models import DataQuery, QueryMessage, age_in_days
from trial.records.registry import RECORD_TYPES, get_visible_record
from trial.sites.models import Site

# The participant record is queryable on the fields entered at registration.
PARTICIPANT_ENTITY = "participant"
PARTICIPANT_FIELDS = ("site", "sex", "year_of_birth", "consent_date")
# Who asks and settles queries; site staff answer them.
QUERY_OWNERS = frozenset({Role.MONITOR, Role.DATA_MANAGER})
# Integer ids beyond this cannot exist (32-bit INTEGER on PostgreSQL) and would overflow there.
MAX_ID = 2**31 - 1
_DIGITS = re.compile(r"[0-9]{1,10}")


def queryable_entities() -> list[str]:
    return [PARTICIPANT_ENTITY, *sorted(e for e in RECORD_TYPES if e != PARTICIPANT_ENTITY)]


def queryable_fields(entity: str) -> tuple[str, ...]:
    if entity == PARTICIPANT_ENTITY:
        return PARTICIPANT_FIELDS
    return tuple(RECORD_TYPES[entity].AUDITED_FIELDS)


def _parse_id(value: str) -> int | None:
    if not _DIGITS.fullmatch(value) or int(value) > MAX_ID:
        return None
    return int(value)


def _require_role(actor, roles, what: str) -> None:
    """Guard services called outside a view too (the views' policies say the same)."""
    if actor.role not in roles:
        raise Forbidden(f"The {actor.role} role may not {what}.")


def _check_target(entity: str, field: str | None) -> None:
    """Refuse an unknown record type or a field the record does not have, naming both."""
    entities = queryable_entities()
    errors: dict[str, list[str]] = {}
    if entity not in entities:
        errors["entity"] = [f"Unknown record type {entity!r}; use one of: {', '.join(entities)}."]
    elif field is not None and field not in queryable_fields(entity):
        errors["field"] = [
            f"A {entity.replace('_', ' ')} has no field {field!r}; use one of: "
            f"{', '.join(queryable_fields(entity))}, or leave it out to query the whole record."
        ]
    if errors:
        raise ValidationFailed("Invalid input: " + ", ".join(sorted(errors)) + ".", errors)


def _locate_record(actor, entity: str, record_id: str) -> tuple[str, Participant]:
    """Return the record's canonical id and its participant; 404 if missing or not visible."""
    if entity == PARTICIPANT_ENTITY:
        participant = get_visible_participant(actor, record_id)
        return participant.participant_id, participant
    number = _parse_id(record_id)
    if number is None:
        raise NotFound(f"No {entity} {record_id!r}.")
    record, participant = get_visible_record(actor, entity, number)
    return record.entity_id, participant


def _audit(
    actor, query: DataQuery, action: str, text: str | None, before: str | None, **extra
) -> None:
    """One audit row per step. A system query's rows say so (origin, rule): the actor is the
    user whose entry fired the check, never a person who asked."""
    detail = {"status_from": before, "status_to": query.status, **extra}
    if query.origin == "system":
        detail.update(origin="system", rule=query.rule)
    if action == "raise":
        detail.update(
            entity=query.entity,
            record_id=query.record_id,
            field=query.field,
            participant_id=query.participant_code,
        )
    record_event(
        actor,
        action,
        entity_type="query",
        entity_id=str(query.id),
        entity_site=query.site_code,
        new=text,
        detail=detail,
    )


def _add_message(
    actor, query: DataQuery, kind: str, text: str | None, now, *, automatic: bool = False
) -> None:
    query.messages.append(
        QueryMessage(kind=kind, text=text, at=now, by_id=actor.id, automatic=automatic)
    )


def _clean(text: str | None) -> str | None:
    text = (text or "").strip()
    return text or None


def raise_query(actor, *, entity: str, record_id: str, text: str, field: str | None = None):
    """Open a query on a record (and optionally one field) the actor can see."""
    _require_role(actor, QUERY_OWNERS, "raise data queries")
    _check_target(entity, field)
    canonical_id, participant = _locate_record(actor, entity, record_id)
    now = utcnow()
    query = DataQuery(
        entity=entity,
        record_id=canonical_id,
        field=field,
        participant_id=participant.id,
        site_id=participant.site_id,
        text=_clean(text),
        status="open",
        origin="manual",
        opened_at=now,
        opened_by_id=actor.id,
        updated_at=now,
    )
    db.session.add(query)
    db.session.flush()
    _add_message(actor, query, "raise", query.text, now)
    _audit(actor, query, "raise", query.text, None)
    db.session.flush()
    notification_events.query_raised(actor, query)
    return query


def _visible(actor, query: DataQuery | None, query_id: str) -> DataQuery:
    site_ids = actor.visible_site_ids()
    if query is None or (site_ids is not None and query.site_id not in site_ids):
        raise NotFound(f"No query {query_id!r}.")
    return query


def get_query(actor, query_id: str) -> DataQuery:
    """Return a query of a site the actor can see; anything else is a 404."""
    number = _parse_id(query_id)
    query = db.session.get(DataQuery, number) if number is not None else None
    return _visible(actor, query, query_id)


def _lock_query(actor, query_id: str) -> DataQuery:
    number = _parse_id(query_id)
    query = None
    if number is not None:
        statement = (
            select(DataQuery)
            .where(DataQuery.id == number)
            .with_for_update(of=DataQuery)
            .execution_options(populate_existing=True)
        )
        query = db.session.execute(statement).unique().scalar_one_or_none()
    return _visible(actor, query, query_id)


def _step(actor, query: DataQuery, kind: str, text: str | None, status: str) -> DataQuery:
    now = utcnow()
    before = query.status
    query.status = status
    query.updated_at = now
    if status == "closed":
        query.closed_at, query.closed_by_id = now, actor.id
    else:
        query.closed_at, query.closed_by_id = None, None
    _add_message(actor, query, kind, text, now)
    _audit(actor, query, kind, text, before)
    db.session.flush()
    return query


def answer_query(actor, query_id: str, *, text: str) -> DataQuery:
    """Answer an open query of the actor's own site."""
    _require_role(actor, SINGLE_SITE_ROLES, "answer data queries")
    query = _lock_query(actor, query_id)
    if query.status == "answered":
        raise Conflict(
            f"Query {query.id} is already answered; the monitor closes it or re-opens it "
            "if more is needed."
        )
    if query.status == "closed":
        raise Conflict(f"Query {query.id} is closed; it can be answered only once re-opened.")
    query = _step(actor, query, "answer", _clean(text), "answered")
    notification_events.query_answered(actor, query, text=_clean(text), at=query.updated_at)
    return query


def close_query(actor, query_id: str, *, text: str | None = None) -> DataQuery:
    """Close an open or answered query (an open one is withdrawn without an answer)."""
    _require_role(actor, QUERY_OWNERS, "close data queries")
    query = _lock_query(actor, query_id)
    if query.status == "closed":
        raise Conflict(f"Query {query.id} is already closed.")
    return _step(actor, query, "close", _clean(text), "closed")


def reopen_query(actor, query_id: str, *, text: str) -> DataQuery:
    """Re-open an answered or closed query, saying why."""
    _require_role(actor, QUERY_OWNERS, "re-open data queries")
    query = _lock_query(actor, query_id)
    if query.status == "open":
        raise Conflict(
            f"Query {query.id} is still open; only an answered or closed query can be re-opened."
        )
    return _step(actor, query, "reopen", _clean(text), "open")


def visible_queries(
    actor,
    *,
    site: str | None = None,
    status: str | None = None,
    entity: str | None = None,
    participant_id: str | None = None,
    origin: str | None = None,
) -> list[DataQuery]:
    """Queries of the actor's sites (every site for a data manager), oldest first."""
    statement = select(DataQuery)
    site_ids = actor.visible_site_ids()
    if site_ids is not None:
        statement = statement.where(DataQuery.site_id.in_(site_ids))
    if site is not None:
        statement = statement.where(DataQuery.site_id.in_(select(Site.id).where(Site.code == site)))
    if participant_id is not None:
        statement = statement.where(
            DataQuery.participant_id.in_(
                select(Participant.id).where(Participant.participant_id == participant_id)
            )
        )
    if status is not None:
        statement = statement.where(DataQuery.status == status)
    if entity is not None:
        statement = statement.where(DataQuery.entity == entity)
    if origin is not None:
        statement = statement.where(DataQuery.origin == origin)
    statement = statement.order_by(DataQuery.opened_at, DataQuery.id)
    return list(db.session.scalars(statement).unique())


def summarize_open_queries(actor) -> list[dict]:
    """Per visible site: open queries, the age of the oldest, and answered ones awaiting review.

    Every site the actor can see is listed, with zero counts where nothing is open.
    """
    now = utcnow()
    sites = select(Site).order_by(Site.code)
    site_ids = actor.visible_site_ids()
    if site_ids is not None:
        sites = sites.where(Site.id.in_(site_ids))
    counts = db.session.execute(
        select(
            DataQuery.site_id,
            DataQuery.status,
            func.count(DataQuery.id),
            func.min(DataQuery.opened_at),
        )
        .where(DataQuery.status.in_(("open", "answered")))
        .group_by(DataQuery.site_id, DataQuery.status)
    ).all()
    by_site = {(site_id, status): (count, oldest) for site_id, status, count, oldest in counts}
    summary = []
    for site in db.session.scalars(sites):
        open_count, oldest = by_site.get((site.id, "open"), (0, None))
        summary.append(
            {
                "site": site.code,
                "open": open_count,
                "oldest_open_age_days": None if oldest is None else age_in_days(oldest, now),
                "answered": by_site.get((site.id, "answered"), (0, None))[0],
            }
        )
    return summary
