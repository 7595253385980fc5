"""Run the edit checks on a visit: warnings for its answer, a system query for each.

A warning never refuses anything: the value is saved as entered. Each firing rule raises one
data query on the record it read (``trial.queries.automatic``), addressed to the site,
answered by the site and settled by a monitor as any other. Running again (after a
correction, or twice) raises nothing twice:

- a query still unsettled (open or answered) for the same rule, record and field stands; if
  the value it quoted has changed, the system adds a note to its thread (still unusual, now
  accepted by the check, or no longer read by it) and leaves closing it to a monitor, who
  decides whether the correction settles it;
- a value whose query a monitor has closed is not queried again while it stays the value
  the query last quoted (the monitor accepted it); a new value that fires gets a new query.
"""

from __future__ import annotations

from sqlalchemy import select, tuple_

from trial.extensions import db
from trial.forms.edit_checks.conditions import Observation, observe
from trial.forms.edit_checks.rules import Rule
from trial.participants.models import Participant
from trial.protocol import current_protocol
from trial.queries.automatic import note_system_query, raise_system_query
from trial.queries.models import DataQuery
from trial.visits.checks import active_forms
from trial.visits.models import Visit

NOT_READ = "(not read by this check)"


def current_edit_checks() -> tuple[Rule, ...]:
    """The protocol's rules: the built-ins as its ``[[edit_checks]]`` change them, and its own."""
    return current_protocol().edit_checks


def _key(rule: str, entity: str, record_id: str, field: str | None) -> tuple:
    return rule, entity, record_id, field


def _system_queries(
    participant: Participant, records: set[tuple[str, str]]
) -> dict[tuple, list[DataQuery]]:
    """The system queries on ``records`` (``(entity, record_id)`` pairs: a visit and its
    forms, the only records a visit's checks read), by key, oldest first. Not asked for a
    new visit (``run_visit_checks`` with ``earlier``): its records, just written, have none."""
    statement = (
        select(DataQuery)
        .where(
            DataQuery.participant_id == participant.id,
            DataQuery.origin == "system",
            tuple_(DataQuery.entity, DataQuery.record_id).in_(sorted(records)),
        )
        .order_by(DataQuery.id)
    )
    found: dict[tuple, list[DataQuery]] = {}
    for query in db.session.scalars(statement).unique():
        key = _key(query.rule, query.entity, query.record_id, query.field)
        found.setdefault(key, []).append(query)
    return found


def _unsettled(queries: list[DataQuery]) -> DataQuery | None:
    return next((q for q in reversed(queries) if q.status != "closed"), None)


def _settle(actor, participant, observation: Observation, queries) -> DataQuery | None:
    """Raise, note or leave the query of one observation; return the query a warning names."""
    unsettled = _unsettled(queries)
    if unsettled is not None:
        if unsettled.checked_value != observation.value:
            if observation.fires:
                text = f"Corrected to {observation.value}; still unusual: {observation.message}"
            else:
                text = (
                    f"Corrected to {observation.value}, which this check accepts; a monitor "
                    "may close this query."
                )
            note_system_query(actor, unsettled, text=text, value=observation.value)
        return unsettled
    if not observation.fires:
        return None
    accepted = [q for q in queries if q.checked_value == observation.value]
    if accepted:
        return accepted[-1]
    record = observation.record
    return raise_system_query(
        actor,
        participant,
        rule=observation.rule.id,
        entity=record.ENTITY,
        record_id=record.entity_id,
        field=observation.field,
        text=observation.message,
        value=observation.value,
    )


def _warning(observation: Observation, query: DataQuery) -> dict:
    return {
        "rule": observation.rule.id,
        "form": observation.rule.form,
        "field": observation.path,
        "message": observation.message,
        "entity": observation.record.ENTITY,
        "record_id": observation.record.entity_id,
        "query_id": query.id,
    }


def run_visit_checks(
    actor,
    participant: Participant,
    visit: Visit,
    *,
    rules: tuple[Rule, ...] | None = None,
    earlier: list | None = None,
) -> list[dict]:
    """Check a visit as written (new or corrected) and raise or note its system queries.

    ``actor``: the user whose entry is checked (named on each query and its audit rows);
    ``rules``: the protocol's unless given; ``earlier``: given for a new visit only, the
    participant's active visits as read before it was written (rows with ``id``,
    ``status`` and ``visit_date``): its calendar period is placed among them, and its
    records, just written, have no queries to look up. Returns the warnings of the rules
    that fire, ``{"rule", "form", "field", "message", "entity", "record_id", "query_id"}``,
    ``field`` being where the value sits in the visit's answer (``labs.0.value``).
    Flushes; the caller commits with the entry.
    """
    rules = current_edit_checks() if rules is None else rules
    observations = observe(rules, participant, visit, earlier)
    if earlier is None:
        records = {(r.ENTITY, r.entity_id) for r in [visit, *active_forms(visit)]}
        existing = _system_queries(participant, records)
    else:
        existing = {}
    warnings = []
    seen = set()
    for observation in observations:
        record = observation.record
        key = _key(observation.rule.id, record.ENTITY, record.entity_id, observation.field)
        seen.add(key)
        query = _settle(actor, participant, observation, existing.get(key, []))
        if observation.fires:
            warnings.append(_warning(observation, query))
    # A query on this visit's records that no rule read this time: the record was corrected
    # out of a rule's reach (a lab's test changed), or the rule was switched off.
    for key, queries in existing.items():
        unsettled = _unsettled(queries)
        if key not in seen and unsettled is not None and unsettled.checked_value != NOT_READ:
            note_system_query(
                actor,
                unsettled,
                text="The record as corrected is no longer read by this check; a monitor "
                "may close this query.",
                value=NOT_READ,
            )
    return warnings


def run_record_checks(
    actor, participant: Participant, record, *, rules: tuple[Rule, ...] | None = None
) -> list[dict]:
    """Check again after a correction or an entered-in-error mark of a visit or one of its
    forms: its visit, and the participant's next completed visit (whose calendar period
    starts at this visit's date, and whose weight is compared with this visit's). Returns
    the warnings of the record's own visit."""
    visit_id = record.id if isinstance(record, Visit) else getattr(record, "visit_id", None)
    visit = db.session.get(Visit, visit_id) if visit_id is not None else None
    if visit is None:  # a record of no visit (study drug, an AE): no edit check reads it
        return []
    warnings = run_visit_checks(actor, participant, visit, rules=rules)
    if visit.visit_date is not None:
        following = db.session.scalars(
            select(Visit)
            .where(
                Visit.participant_id == participant.id,
                Visit.entered_in_error.is_(False),
                Visit.status == "completed",
                Visit.visit_date > visit.visit_date,
            )
            .order_by(Visit.visit_date)
            .limit(1)
        ).first()
        if following is not None:
            run_visit_checks(actor, participant, following, rules=rules)
    return warnings
