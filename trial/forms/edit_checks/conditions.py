"""Read a visit's forms and test each rule's condition: one observation per value a rule reads.

An observation is made whether or not the rule fires, so that a value corrected back into
range can be noted on the query it had raised (``run``). Nothing here depends on arm.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property

from sqlalchemy import select

from trial.extensions import db
from trial.forms.edit_checks.rules import Rule, required_days
from trial.forms.models import Vitals
from trial.participants.models import Participant
from trial.visits.checks import calendar_period
from trial.visits.models import Visit

_SUBJECTS = {
    "standard_drinks": "Standard drinks",
    "systolic_bp": "Systolic blood pressure",
    "diastolic_bp": "Diastolic blood pressure",
    "heart_rate": "Heart rate",
    "weight_kg": "Weight",
    "total": "Total score",
    "obsessive_subscale": "Obsessive subscale",
    "compulsive_subscale": "Compulsive subscale",
}
_UNITS = {"systolic_bp": "mmHg", "diastolic_bp": "mmHg", "heart_rate": "/min", "weight_kg": "kg"}


@dataclass
class Observation:
    rule: Rule
    record: object  # the captured record a query on this value is raised on
    field: str | None  # the record's field the query names (None: the whole record)
    path: str  # where the value sits in the visit's answer: "labs.0.value"
    value: str  # the value as a note quotes it; a change of it is what a note reports
    fires: bool
    values: dict = field(default_factory=dict)  # the message's placeholders

    @property
    def message(self) -> str:
        return self.rule.message.format(threshold=self.rule.threshold, **self.values)


class VisitFacts:
    """What the rules read of one completed visit, each read at most once.

    ``earlier``: the participant's other active visits (any rows with ``id``, ``status`` and
    ``visit_date``) when the caller has read them already (a new visit's were read to check
    it); else they are read when the calendar period is needed."""

    def __init__(self, participant: Participant, visit: Visit, earlier: list | None = None):
        self.participant, self.visit, self.earlier = participant, visit, earlier

    @cached_property
    def period(self) -> tuple[date, date]:
        visit = self.visit
        return calendar_period(
            self.participant,
            visit.visit_code,
            visit.visit_date,
            exclude_visit_id=visit.id,
            visits=self.earlier,
        )

    def previous(self, name: str) -> tuple[float, date] | None:
        """The vital sign ``name`` at the participant's latest earlier visit that has it."""
        column = getattr(Vitals, name)
        row = db.session.execute(
            select(column, Visit.visit_date)
            .join(Visit, Visit.id == Vitals.visit_id)
            .where(
                Vitals.participant_id == self.participant.id,
                Vitals.entered_in_error.is_(False),
                Visit.entered_in_error.is_(False),
                Visit.status == "completed",
                Visit.visit_date < self.visit.visit_date,
                column.is_not(None),
            )
            .order_by(Visit.visit_date.desc())
            .limit(1)
        ).first()
        return None if row is None else (row[0], row[1])


def _readings(rule: Rule, facts: VisitFacts) -> Iterator[tuple]:
    """(record, queried field, path, value, placeholders) of each value ``rule`` reads."""
    visit = facts.visit
    if rule.form == "drinking":
        for index, day in enumerate(visit.drinking_days):
            yield (
                day,
                rule.field,
                f"drinking.{index}.{rule.field}",
                day.standard_drinks,
                {"subject": _SUBJECTS[rule.field], "unit": "", "day": day.day},
            )
    elif rule.form == "labs":
        for index, lab in enumerate(visit.labs):
            if lab.test == rule.test:
                yield lab, "value", f"labs.{index}.value", lab.value, {"unit": lab.unit}
    else:
        record = getattr(visit, rule.form)
        value = None if record is None else getattr(record, rule.field)
        if value is not None:
            # A score's total is derived, not a field of the record: the query names the form.
            queried = rule.field if rule.field in type(record).AUDITED_FIELDS else None
            placeholders = {
                "subject": _SUBJECTS[rule.field],
                "unit": _UNITS.get(rule.field, ""),
                "day": visit.visit_date,
            }
            yield record, queried, f"{rule.form}.{rule.field}", value, placeholders


def _compare(rule: Rule, facts: VisitFacts) -> Iterator[Observation]:
    for record, queried, path, value, placeholders in _readings(rule, facts):
        if rule.form == "labs":
            placeholders = {"subject": rule.test, "day": facts.visit.visit_date, **placeholders}
        fires = value > rule.threshold if rule.kind == "above" else value < rule.threshold
        yield Observation(
            rule, record, queried, path, f"{value:g}", fires, {**placeholders, "value": value}
        )


def _above_uln(rule: Rule, facts: VisitFacts) -> Iterator[Observation]:
    for lab, queried, path, value, _ in _readings(rule, facts):
        times = lab.times_uln
        yield Observation(
            rule,
            lab,
            queried,
            path,
            f"{value:g} {lab.unit} (upper limit {lab.upper_limit_normal:g})",
            times > rule.threshold,
            {
                "test": lab.test,
                "value": value,
                "unit": lab.unit,
                "uln": lab.upper_limit_normal,
                "times": times,
            },
        )


def _change(rule: Rule, facts: VisitFacts) -> Iterator[Observation]:
    for record, queried, path, value, placeholders in _readings(rule, facts):
        before = facts.previous(rule.field)
        if before is None:
            continue
        previous, previous_date = before
        change = (value - previous) / previous
        yield Observation(
            rule,
            record,
            queried,
            path,
            f"{value:g} (previous {previous:g} on {previous_date})",
            abs(change) > rule.threshold,
            {
                **placeholders,
                "value": value,
                "previous": previous,
                "previous_date": previous_date,
                "change": change,
            },
        )


def _coverage(rule: Rule, facts: VisitFacts) -> Iterator[Observation]:
    """A calendar that is there but short (a visit with none lacks a form: another rule)."""
    days = facts.visit.drinking_days
    if not days:
        return
    first, last = facts.period
    expected = (last - first).days + 1
    if expected <= 0:
        return
    recorded = sum(1 for day in days if first <= day.day <= last)
    required = required_days(rule, expected)
    yield Observation(
        rule,
        facts.visit,
        None,
        "drinking",
        f"{recorded} of {expected} days",
        recorded < required,
        {
            "recorded": recorded,
            "expected": expected,
            "required": required,
            "first": first,
            "last": last,
        },
    )


CONDITIONS = {
    "above": _compare,
    "below": _compare,
    "above_uln": _above_uln,
    "change_since_previous": _change,
    "calendar_coverage": _coverage,
}


def observe(
    rules, participant: Participant, visit: Visit, earlier: list | None = None
) -> list[Observation]:
    """Every enabled rule's observations on a completed visit (none on a missed one);
    ``earlier``: as ``VisitFacts`` takes it."""
    if visit.status != "completed" or visit.entered_in_error or visit.visit_date is None:
        return []
    facts = VisitFacts(participant, visit, earlier)
    return [
        observation
        for rule in rules
        if rule.enabled
        for observation in CONDITIONS[rule.kind](rule, facts)
    ]
