"""Per-participant facts every file of a bundle needs, as they stood at the cut-off.

Held in memory for the whole export: a few hundred bytes per participant and per visit,
while the big tables (the drinking calendar above all) only ever stream through.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property
from operator import attrgetter
from zoneinfo import ZoneInfo

from sqlalchemy import select

from exports.snapshot import Cut, stream
from randomization.outputs import blinded_allocations
from trial.conduct.models import TREATMENT_DISCONTINUATION, Disposition
from trial.dosing.models import DosingRecord
from trial.participants.models import Participant
from trial.protocol import Protocol
from trial.sites.models import Site
from trial.visits.models import Visit


@dataclass
class ParticipantFacts:
    row_id: int
    participant_id: str
    site: str
    timezone: str
    sex: str
    year_of_birth: int
    consent_date: date
    randomization_number: str | None = None
    kit_number: str | None = None
    randomized_at: datetime | None = None
    unblinded: bool = False
    unblinded_at: datetime | None = None
    first_dose_date: date | None = None
    screening_date: date | None = None
    disposition: str | None = None
    disposition_date: date | None = None
    disposition_reason: str | None = None
    # A treatment discontinuation (the study drug stopped; follow-up goes on), if recorded.
    treatment_stop_date: date | None = None
    treatment_stop_reason: str | None = None
    # The latest recorded visit that collects the drinking calendar (exports.outcomes).
    last_drinking_visit_date: date | None = None

    @cached_property
    def randomization_date(self) -> date | None:
        if self.randomized_at is None:
            return None
        return self.randomized_at.astimezone(ZoneInfo(self.timezone)).date()

    def study_day(self, day: date | None) -> int | None:
        start = self.randomization_date
        return None if start is None or day is None else (day - start).days


@dataclass(slots=True)
class VisitFacts:
    participant_row_id: int
    visit_code: str
    visit_date: date | None
    status: str


@dataclass(frozen=True)
class ParticipantRange:
    """Participants whose id is from ``first`` (inclusive) to ``end`` (exclusive), compared
    by the database, which also orders the record tables by that id: the record files of
    consecutive ranges, put end to end, are the files of the whole trial. None: unbounded."""

    first: str | None = None
    end: str | None = None

    def restrict(self, statement):
        if self.first is not None:
            statement = statement.where(Participant.participant_id >= self.first)
        if self.end is not None:
            statement = statement.where(Participant.participant_id < self.end)
        return statement


EVERYONE = ParticipantRange()


@dataclass
class Context:
    protocol: Protocol
    cut: Cut
    participants: dict[int, ParticipantFacts]
    visits: dict[int, VisitFacts]
    visit_order: dict[str, int]
    # The participants whose records this context reads (a helper process reads a range).
    part: ParticipantRange = EVERYONE

    @cached_property
    def visit_codes(self) -> dict[int, str]:
        """Each visit's code by its row id."""
        return {row_id: visit.visit_code for row_id, visit in self.visits.items()}

    def ordered_participants(self) -> list[ParticipantFacts]:
        return sorted(self.participants.values(), key=lambda p: p.participant_id)


def rows_as_of(
    cut: Cut, model, columns: list[str], part: ParticipantRange = EVERYONE
) -> Iterator[tuple]:
    """Active rows of a record table at the cut-off as ``(id, participant_row_id, *columns)``,
    ordered by participant id, then by entry; only ``part``'s participants.

    When no row of the table was created or changed after the cut-off (a cut of "now"),
    rows come straight from the database, entered-in-error ones filtered there; otherwise
    each row is rewound. (Ordering by entry lets SQLite walk the participants' index and
    each one's rows in turn; a clinical order is the caller's sort, a participant at a time.)
    """
    table = model.__table__.c
    statement = part.restrict(
        select(table.id, table.participant_id, *(table[name] for name in columns))
        .join(Participant, Participant.id == table.participant_id)
        .order_by(Participant.participant_id, table.id)
    )
    entity = model.ENTITY
    if not cut.touches(entity):
        # "IS NOT true" rather than "= false" (the column is never empty): SQLite's planner
        # takes an equality for a selective filter and would then sort the whole table.
        yield from stream(statement.where(table.entered_in_error.is_not(True)))
        return
    keys = ["id", "participant_row_id", *columns, "entered_in_error"]
    for row in stream(statement.add_columns(table.entered_in_error)):
        values = _rewound(cut, entity, keys, row)
        if values is not None:
            yield values


def _rewound(cut: Cut, entity: str, keys: list[str], row) -> tuple | None:
    """One row as it stood at the cut-off (without its entered-in-error flag), or None."""
    values = cut.rewind(entity, str(row[0]), dict(zip(keys, row, strict=True)))
    if values is None or values["entered_in_error"]:
        return None
    return tuple(values[key] for key in keys[:-1])


def records_as_of(
    cut: Cut, model, columns: list[str], part: ParticipantRange = EVERYONE
) -> Iterator[dict]:
    """``rows_as_of`` as dicts keyed ``id``, ``participant_row_id`` and the column names."""
    keys = ["id", "participant_row_id", *columns]
    for row in rows_as_of(cut, model, columns, part):
        yield dict(zip(keys, row, strict=True))


def _participants(cut: Cut, part: ParticipantRange) -> dict[int, ParticipantFacts]:
    """``part``'s participants at the cut-off, in the database's order of their ids."""
    slots = {row[0]: row for row in blinded_allocations()}
    statement = select(
        Participant.id,
        Participant.participant_id,
        Site.code,
        Site.timezone,
        Participant.sex,
        Participant.year_of_birth,
        Participant.consent_date,
        Participant.randomized_at,
        Participant.unblinded,
        Participant.unblinded_at,
    ).join(Site, Site.id == Participant.site_id)
    statement = part.restrict(statement.order_by(Participant.participant_id))
    facts = {}
    rows = stream(statement)
    for row_id, code, site, timezone, sex, born, consent, day0, unblinded, broken_at in rows:
        slot = slots.get(row_id)
        current = {
            "site": site,
            "sex": sex,
            "year_of_birth": born,
            "consent_date": consent,
            "randomization_number": slot[1] if slot else None,
            "kit_number": slot[2] if slot else None,
            "randomized_at": day0 if slot else None,
            "unblinded": unblinded,
        }
        values = cut.rewind("participant", code, current)
        if values is None:
            continue
        if values["randomization_number"] is None:
            values["kit_number"] = values["randomized_at"] = None
        facts[row_id] = ParticipantFacts(
            row_id=row_id,
            participant_id=code,
            timezone=timezone,
            unblinded_at=broken_at if values["unblinded"] else None,
            **{k: values[k] for k in current},
        )
    return facts


# The facts a participant's records give (visits, study drug, disposition), as a process that
# read those records hands them to one that did not.
RECORD_FACTS = (
    "screening_date",
    "first_dose_date",
    "disposition",
    "disposition_date",
    "disposition_reason",
    "treatment_stop_date",
    "treatment_stop_reason",
    "last_drinking_visit_date",
)
_record_facts_of = attrgetter(*RECORD_FACTS)


def build_context(
    protocol: Protocol, cut: Cut, part: ParticipantRange = EVERYONE, *, records: bool = True
) -> Context:
    """``part``'s participants with their facts, in the database's order of their ids; and
    unless ``records`` is false, their visits, first doses and dispositions. (Without them,
    the record facts come from the processes that read them: ``adopt_record_facts``.)"""
    participants = _participants(cut, part)
    order = {visit.code: index for index, visit in enumerate(protocol.visits)}
    ctx = Context(protocol, cut, participants, {}, order, part)
    if records:
        _read_records(ctx)
    return ctx


def _read_records(ctx: Context) -> None:
    protocol, cut, part = ctx.protocol, ctx.cut, ctx.part
    participants, visits = ctx.participants, ctx.visits
    calendar_visits = {visit.code for visit in protocol.visits if "drinking" in visit.forms}
    for row in records_as_of(cut, Visit, ["visit_code", "visit_date", "status"], part):
        facts = participants.get(row["participant_row_id"])
        if facts is None:
            continue
        visits[row["id"]] = VisitFacts(
            row["participant_row_id"],
            sys.intern(row["visit_code"]),  # a few codes, repeated on every visit
            row["visit_date"],
            sys.intern(row["status"]),
        )
        if row["visit_code"] == protocol.visits[0].code and row["status"] == "completed":
            facts.screening_date = row["visit_date"]
        if (
            row["status"] == "completed"
            and row["visit_code"] in calendar_visits
            and row["visit_date"] is not None
            and (
                facts.last_drinking_visit_date is None
                or row["visit_date"] > facts.last_drinking_visit_date
            )
        ):
            facts.last_drinking_visit_date = row["visit_date"]
    for row in records_as_of(cut, DosingRecord, ["date", "tablets_per_day"], part):
        facts = participants.get(row["participant_row_id"])
        if facts is None or row["tablets_per_day"] <= 0:
            continue
        if facts.first_dose_date is None or row["date"] < facts.first_dose_date:
            facts.first_dose_date = row["date"]
    for row in records_as_of(cut, Disposition, ["status", "date", "reason"], part):
        facts = participants.get(row["participant_row_id"])
        if facts is None:
            continue
        if row["status"] == TREATMENT_DISCONTINUATION:
            facts.treatment_stop_date, facts.treatment_stop_reason = row["date"], row["reason"]
        else:
            facts.disposition = row["status"]
            facts.disposition_date = row["date"]
            facts.disposition_reason = row["reason"]


def record_facts(ctx: Context) -> dict[int, tuple]:
    """The record facts of the context's participants that have any, by participant row id."""
    found = {}
    for row_id, facts in ctx.participants.items():
        values = _record_facts_of(facts)
        if any(value is not None for value in values):
            found[row_id] = values
    return found


def adopt_record_facts(ctx: Context, found: dict[int, tuple]) -> None:
    """Set the record facts another process read (``record_facts``) on our participants."""
    for row_id, values in found.items():
        facts = ctx.participants.get(row_id)
        if facts is not None:
            for name, value in zip(RECORD_FACTS, values, strict=True):
                setattr(facts, name, value)
