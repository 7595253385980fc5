"""How a file of the bundle is declared: its columns, each a variable (name, label, type,
unit, origin: what the data dictionary says) with the function that gives its values.

A file's rows come in groups (a participant's rows of a record table, or the participants);
each column's function turns a group into that column's values, and a row is the columns'
values side by side. Nothing is lined up by position outside one declaration: a column names
the database field it reads (``field``) or computes its values from named fields. Values are
made a column at a time (``map`` and ``zip`` loop in C): the calendar is the largest file of
a bundle, and a Python loop per calendar day was a third of the whole bundle's time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from itertools import groupby, repeat
from operator import attrgetter, itemgetter, sub

from exports.context import Context, ParticipantFacts, rows_as_of
from exports.variables import Variable


class Group:
    """Rows of one file that belong together, as columns by name: ``group["day"]``."""

    __slots__ = ("_columns", "ctx", "facts", "size")

    def __init__(self, ctx: Context, facts, names: Sequence[str], rows: Sequence[tuple]):
        self.ctx = ctx
        self.facts: ParticipantFacts | None = facts
        self.size = len(rows)
        self._columns = dict(zip(names, zip(*rows, strict=True), strict=True))

    def __getitem__(self, name: str) -> tuple:
        return self._columns[name]


Values = Callable[[Group], Iterable]


@dataclass(frozen=True)
class Column:
    variable: Variable
    values: Values


@dataclass(frozen=True)
class Table:
    name: str
    label: str
    columns: tuple[Column, ...]
    groups: Callable[[Context], Iterator[Group]]
    # A record file: its rows follow the database's order of participant ids and read only
    # the context's participant range, so it can be written range by range (exports.helpers).
    splits: bool = False
    # What the bundle's README.txt says of the file (exports.readme), from here alone:
    row: str = ""  # what one row is
    key: tuple[str, ...] = ()  # the columns unique together on every row; () when none are
    no_key: str = ""  # why no columns are (and how the rows are ordered), when key is ()
    joins: tuple[str, ...] = ()  # the files whose key columns this file holds (its parents)
    notes: tuple[str, ...] = ()  # other relations, said in words

    def __post_init__(self):
        names = {column.variable.name for column in self.columns}
        if not self.row or bool(self.key) == bool(self.no_key):
            raise ValueError(f"{self.name}: say what a row is, and its key or why it has none")
        if not set(self.key) <= names:
            raise ValueError(f"{self.name}: its key names a column it does not have")

    @property
    def variables(self) -> tuple[Variable, ...]:
        return tuple(column.variable for column in self.columns)

    def rows(self, ctx: Context) -> Iterator[tuple]:
        makers = [column.values for column in self.columns]
        for group in self.groups(ctx):
            yield from zip(*[make(group) for make in makers], strict=True)


def one_of(values) -> str:
    """A variable's allowed values as the dictionary lists them."""
    return ", ".join(values)


# --- what a column's values are made from -----------------------------------------------------


def field(name: str) -> Values:
    """The values of a database field (or a group's named column) as they are."""
    return itemgetter(name)


def fact(name: str) -> Values:
    """An attribute of each participant's facts (the participants file)."""
    get = attrgetter(name)
    return lambda group: map(get, group["facts"])


def participant_id(group: Group) -> Iterable:
    """The group's participant identifier, on each of its rows."""
    return repeat(group.facts.participant_id, group.size)


def study_days(name: str) -> Values:
    """The field's date minus the randomization date (day 0); empty before randomization."""

    def values(group: Group) -> Iterable:
        start = group.facts.randomization_date
        if start is None:
            return repeat(None, group.size)
        days = group[name]
        if None in days:
            return map(group.facts.study_day, days)
        return map(sub, map(date.toordinal, days), repeat(start.toordinal()))

    return values


def visit_codes(name: str = "visit_id") -> Values:
    """The code of the visit each row names (empty when it names none at the cut-off)."""
    return lambda group: map(group.ctx.visit_codes.get, group[name])


def each(function: Callable, *names: str) -> Values:
    """``function`` of the named fields, row by row."""
    return lambda group: map(function, *(group[name] for name in names))


# --- how a file's groups are read -----------------------------------------------------------


def by_participant(ctx: Context, model, fields: list[str], order: Callable):
    """A record table at the cut-off as (participant facts, that participant's rows sorted
    by ``order``), participant by participant in id order. Rows are
    ``(id, participant_row_id, *fields)``."""
    participants = ctx.participants
    rows = rows_as_of(ctx.cut, model, fields, ctx.part)
    for row_id, group in groupby(rows, key=itemgetter(1)):
        facts = participants.get(row_id)
        if facts is not None:
            yield facts, sorted(group, key=order)


def record_groups(
    model,
    fields: list[str],
    order_by: tuple[str, ...],
    rank: dict[str, Callable[[Context, object], object]] | None = None,
    known_visits_only: bool = False,
) -> Callable[[Context], Iterator[Group]]:
    """A participant's rows of ``model`` at the cut-off per group, sorted by the fields
    ``order_by`` names (``id``: the entry), a field in ``rank`` by the rank it gives its
    value; with ``known_visits_only``, rows whose visit is not in the cut are left out."""
    names = ["id", "participant_row_id", *fields]
    at = {name: index for index, name in enumerate(names)}
    positions = [at[name] for name in order_by]
    visit = at.get("visit_id")

    def groups(ctx: Context) -> Iterator[Group]:
        if rank:
            ranked = [(rank.get(name), at[name]) for name in order_by]

            def key(row):
                return tuple(row[p] if r is None else r(ctx, row[p]) for r, p in ranked)
        else:
            key = itemgetter(*positions)
        for facts, rows in by_participant(ctx, model, fields, key):
            if known_visits_only:
                rows = [row for row in rows if row[visit] in ctx.visits]
            if rows:
                yield Group(ctx, facts, names, rows)

    return groups


STUDY_DAY = "Date minus the randomization date (day 0); empty before randomization."


def study_day_column(name: str, label: str, date_field: str) -> Column:
    """A derived study-day column: ``date_field`` counted from day 0."""
    variable = Variable(name, label, "integer", "days", origin="derived", derivation=STUDY_DAY)
    return Column(variable, study_days(date_field))
