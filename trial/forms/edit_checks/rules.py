"""The edit checks as data: each rule an id, a form and field, a condition and a message.

A rule's condition is its ``kind`` with its ``threshold`` (and, for a lab, its ``test``):

- ``above`` / ``below``: the field's value is above / below the threshold;
- ``above_uln``: a lab's value is above threshold x the lab's upper limit of normal;
- ``change_since_previous``: a vital sign changed by more than the threshold (a fraction,
  0.10 = 10%) from the participant's previous visit where it was measured;
- ``calendar_coverage``: the drinking calendar records fewer than threshold (a fraction) of
  the days the visit's calendar must cover.

This module imports nothing of the forms' models: the protocol loader reads it
(``trial.forms.edit_checks.config``), and the models read the protocol.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

KINDS = ("above", "below", "above_uln", "change_since_previous", "calendar_coverage")
# The fields a rule of each form may read (labs: the value of the rule's ``test``). The
# vitals' names are those of trial.forms.models.VITALS_RANGES (checked by the config tests).
FORM_FIELDS = {
    "drinking": ("standard_drinks",),
    "vitals": ("systolic_bp", "diastolic_bp", "heart_rate", "weight_kg"),
    "labs": ("value",),
    "ocds": ("total", "obsessive_subscale", "compulsive_subscale"),
    "ciwa": ("total",),
}
# Which forms each kind of condition applies to.
KIND_FORMS = {
    "above": tuple(FORM_FIELDS),
    "below": tuple(FORM_FIELDS),
    "above_uln": ("labs",),
    "change_since_previous": ("vitals",),
    "calendar_coverage": ("drinking",),
}


@dataclass(frozen=True)
class Rule:
    id: str
    kind: str
    form: str
    field: str
    threshold: float
    message: str  # a str.format template over the kind's placeholders (``message_values``)
    test: str | None = None  # labs: the test the rule reads
    enabled: bool = True


def required_days(rule: Rule, expected: int) -> int:
    """The days a calendar of ``expected`` days must record not to fire ``rule``."""
    return math.ceil(rule.threshold * expected - 1e-9)


def kind_fields(kind: str, form: str) -> tuple[str, ...]:
    """The fields a rule of ``kind`` on ``form`` may name."""
    return ("day",) if kind == "calendar_coverage" else FORM_FIELDS[form]


# The placeholders a message may use, by kind, with an example of each (``threshold`` too,
# always): a protocol's message is formatted with these at start, so an unknown placeholder
# or a bad format is refused then, not at the first warning. ``day`` is the drinking day, or
# the visit's date for another form.
SAMPLE_VALUES = {
    "above": {"subject": "Standard drinks", "value": 31.0, "unit": "", "day": date(2026, 1, 1)},
    "below": {"subject": "Heart rate", "value": 40.0, "unit": "", "day": date(2026, 1, 1)},
    "above_uln": {"test": "ALT", "value": 450.0, "unit": "U/L", "uln": 40.0, "times": 11.25},
    "change_since_previous": {
        "subject": "Weight",
        "value": 70.0,
        "unit": "kg",
        "day": date(2026, 1, 1),
        "previous": 80.0,
        "previous_date": date(2026, 1, 1),
        "change": -0.125,
    },
    "calendar_coverage": {
        "recorded": 10,
        "expected": 28,
        "required": 28,
        "first": date(2026, 1, 1),
        "last": date(2026, 1, 28),
    },
}

_CONFIRM = "Please check it against the source and confirm or correct it."

BUILT_IN_RULES: tuple[Rule, ...] = (
    Rule(
        id="calendar_incomplete",
        kind="calendar_coverage",
        form="drinking",
        field="day",
        threshold=1.0,
        message="The drinking calendar records {recorded} of the {expected} days this visit "
        "must cover ({first} to {last}); {required} are expected. Please complete it or say "
        "why days are missing.",
    ),
    Rule(
        id="drinks_per_day_high",
        kind="above",
        form="drinking",
        field="standard_drinks",
        threshold=30,
        message="{value:g} standard drinks on {day}: more than {threshold:g} in a day. " + _CONFIRM,
    ),
    *(
        Rule(
            id=f"{test.lower()}_above_uln",
            kind="above_uln",
            form="labs",
            field="value",
            test=test,
            threshold=times,
            message="{test} {value:g} {unit} is {times:.1f} times the upper limit of normal "
            "({uln:g} {unit}): above {threshold:g} times. " + _CONFIRM,
        )
        # ALT and AST above 10 x ULN (CTCAE grade 3 begins at 5 x, 4 at 20 x); bilirubin above
        # 3 x ULN (grade 3). GGT is not checked by default: in alcohol use disorder a GGT many
        # times its limit is common and expected, so a query on each would be noise.
        for test, times in (("ALT", 10), ("AST", 10), ("bilirubin", 3))
    ),
    Rule(
        id="weight_change",
        kind="change_since_previous",
        form="vitals",
        field="weight_kg",
        threshold=0.10,
        message="Weight {value:g} kg is {change:+.1%} from {previous:g} kg at the previous "
        "visit with a weight ({previous_date}): more than {threshold:.0%}. " + _CONFIRM,
    ),
)
