"""Derived drinking outcomes by hand: WHO levels at and around every boundary, abstinence, and
one participant's periods worked out on paper (issue 28, item 3). No database.

The WHO drinking risk levels (WHO International Guide for Monitoring Alcohol Consumption,
2000) by mean grams of ethanol per day, written out here rather than read from the protocol:

    women: low 1-20, medium 21-40, high 41-60, very high above 60
    men:   low 1-40, medium 41-60, high 61-100, very high above 100

as inclusive upper bounds on the (4-decimal) mean, and 0 g/day is "abstinent".
"""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta
from pathlib import Path

import pytest

import trial
from exports import outcomes
from exports.outcomes import Period
from tests.mutants import mutant, negative_control
from trial.protocol import load_protocol

PROTOCOL = load_protocol(Path(trial.__file__).parent / "protocol.toml")
BOUNDS = {"F": (20, 40, 60), "M": (40, 60, 100)}
LEVELS = ("low", "medium", "high", "very high")


def boundary_cases():
    for sex, bounds in BOUNDS.items():
        yield sex, 0, "abstinent"
        yield sex, 0.0, "abstinent"
        yield sex, 0.0001, "low"
        for k, bound in enumerate(bounds):
            yield sex, bound - 0.0001, LEVELS[k]
            yield sex, bound, LEVELS[k]  # the bound itself is in the lower level
            yield sex, float(bound), LEVELS[k]
            yield sex, bound + 0.0001, LEVELS[k + 1]
        yield sex, 1000.0, "very high"


@pytest.mark.parametrize(("sex", "grams", "level"), list(boundary_cases()))
def test_who_level_at_and_around_every_boundary(sex, grams, level):
    assert outcomes.who_risk_level(PROTOCOL, sex, grams) == level


def test_no_assessed_day_has_no_level():
    assert outcomes.who_risk_level(PROTOCOL, "F", None) is None
    assert outcomes.who_risk_level(PROTOCOL, "M", None) is None


def test_the_protocol_states_the_who_bounds():
    assert [(lvl["level"], lvl["F"], lvl["M"]) for lvl in PROTOCOL.who_risk_levels] == [
        ("low", 20, 40),
        ("medium", 40, 60),
        ("high", 60, 100),
    ]


def test_the_levels_follow_the_protocol_file():
    """Another protocol's bounds are used as written (one level, women at 10 g)."""
    other = dataclasses.replace(PROTOCOL, who_risk_levels=({"level": "some", "F": 10, "M": 30},))
    assert outcomes.who_risk_level(other, "F", 10) == "some"
    assert outcomes.who_risk_level(other, "F", 10.0001) == "very high"
    assert outcomes.who_risk_level(other, "M", 30) == "some"


# --- one participant's periods, by hand ------------------------------------------------------

DAY0 = date(2026, 1, 1)  # randomization
SCREENING = date(2025, 12, 20)
CUTOFF = date(2026, 3, 10)  # study day 68


def test_periods_by_hand():
    periods = outcomes.periods_for(
        PROTOCOL, screening_date=SCREENING, randomization_date=DAY0, cutoff_date=CUTOFF
    )
    assert periods == [
        Period("baseline", date(2025, 11, 22), date(2025, 12, 19)),  # 28 days before screening
        Period("month_1", date(2026, 1, 2), date(2026, 1, 29)),  # study days 1-28
        Period("month_2", date(2026, 1, 30), date(2026, 2, 26)),  # 29-56
        Period("month_3", date(2026, 2, 27), date(2026, 3, 10)),  # 57-84, cut at the cut-off
        Period("treatment", date(2026, 1, 2), date(2026, 3, 10)),  # 1-168, cut
    ]  # month_4 (from day 85, 2026-03-27) has not started: no row


def test_periods_over_the_whole_treatment():
    periods = outcomes.periods_for(
        PROTOCOL, screening_date=None, randomization_date=DAY0, cutoff_date=date(2027, 1, 1)
    )
    assert [(p.name, p.start, p.end) for p in periods] == [
        ("baseline", date(2025, 12, 4), date(2025, 12, 31)),  # before randomization
        ("month_1", date(2026, 1, 2), date(2026, 1, 29)),
        ("month_2", date(2026, 1, 30), date(2026, 2, 26)),
        ("month_3", date(2026, 2, 27), date(2026, 3, 26)),
        ("month_4", date(2026, 3, 27), date(2026, 4, 23)),
        ("month_5", date(2026, 4, 24), date(2026, 5, 21)),
        ("month_6", date(2026, 5, 22), date(2026, 6, 18)),  # day 141-168
        ("treatment", date(2026, 1, 2), date(2026, 6, 18)),
    ]


def test_a_treatment_not_a_multiple_of_28_days_ends_with_a_short_month():
    visits = tuple(
        dataclasses.replace(v, day=170) if v.code == "end_of_treatment" else v
        for v in PROTOCOL.visits
    )
    longer = dataclasses.replace(PROTOCOL, visits=visits)
    periods = outcomes.periods_for(
        longer, screening_date=None, randomization_date=DAY0, cutoff_date=date(2027, 1, 1)
    )
    assert [(p.name, p.start, p.end) for p in periods][-2:] == [
        ("month_7", date(2026, 6, 19), date(2026, 6, 20)),  # days 169-170
        ("treatment", date(2026, 1, 2), date(2026, 6, 20)),
    ]


def test_periods_without_randomization_or_screening():
    only_baseline = outcomes.periods_for(
        PROTOCOL, screening_date=SCREENING, randomization_date=None, cutoff_date=CUTOFF
    )
    assert only_baseline == [Period("baseline", date(2025, 11, 22), date(2025, 12, 19))]
    assert (
        outcomes.periods_for(
            PROTOCOL, screening_date=None, randomization_date=None, cutoff_date=CUTOFF
        )
        == []
    )
    # a cut-off inside the baseline cuts it; a cut-off on a period's first day keeps one day
    cut = outcomes.periods_for(
        PROTOCOL, screening_date=SCREENING, randomization_date=None, cutoff_date=date(2025, 11, 22)
    )
    assert cut == [Period("baseline", date(2025, 11, 22), date(2025, 11, 22))]
    assert (
        outcomes.periods_for(
            PROTOCOL,
            screening_date=SCREENING,
            randomization_date=None,
            cutoff_date=date(2025, 11, 21),
        )
        == []
    )


def days(start: date, drinks: list[float]) -> tuple[list[date], list[float]]:
    return [start + timedelta(i) for i in range(len(drinks))], list(drinks)


def row_of(results, name):
    (row,) = [r for r in results if r["period"] == name]
    return row


def test_one_womans_month_by_hand():
    """Month 1 (28 days), 10 assessed: drinks 0 0 4 6 2 0 4 3 0 1 (heavy for a woman >= 4).

    assessed 10, missing 18; heavy 3 (4, 6, 4) -> 30%; abstinent 4 -> 40%; drinking days 6,
    20 drinks -> 3.3333 per drinking day; 20 drinks * 14 g / 10 days = 28 g/day -> medium."""
    period = Period("month_1", date(2026, 1, 2), date(2026, 1, 29))
    dates, drinks = days(date(2026, 1, 5), [0, 0, 4, 6, 2, 0, 4, 3, 0, 1])
    (row,) = outcomes.compute(PROTOCOL, "F", [period], dates, drinks)
    assert row == {
        "period": "month_1",
        "period_start": date(2026, 1, 2),
        "period_end": date(2026, 1, 29),
        "days_in_period": 28,
        "days_assessed": 10,
        "days_missing": 18,
        "pct_heavy_drinking_days": 30.0,
        "pct_days_abstinent": 40.0,
        "drinks_per_drinking_day": 3.3333,
        "grams_per_day": 28.0,
        "who_risk_level": "medium",
    }
    # the same days for a man: heavy from 5 drinks (one day: 6) -> 10%; 28 g/day is low
    (man,) = outcomes.compute(PROTOCOL, "M", [period], dates, drinks)
    assert (man["pct_heavy_drinking_days"], man["who_risk_level"]) == (10.0, "low")


def test_only_days_inside_the_period_count():
    """Rows before the start and after the end are not the period's (binary search edges)."""
    period = Period("p", date(2026, 1, 10), date(2026, 1, 12))
    dates, drinks = days(date(2026, 1, 8), [9, 9, 1, 2, 3, 9, 9])  # 8th..14th
    (row,) = outcomes.compute(PROTOCOL, "F", [period], dates, drinks)
    assert (row["days_assessed"], row["days_missing"], row["days_in_period"]) == (3, 0, 3)
    assert row["grams_per_day"] == 28.0  # (1 + 2 + 3) * 14 / 3
    assert row["drinks_per_drinking_day"] == 2.0


def test_a_fully_abstinent_period_is_abstinent_not_blank():
    period = Period("month_2", date(2026, 1, 30), date(2026, 2, 26))
    dates, drinks = days(date(2026, 1, 30), [0.0] * 28)
    (row,) = outcomes.compute(PROTOCOL, "M", [period], dates, drinks)
    assert row["grams_per_day"] == 0.0 and row["who_risk_level"] == "abstinent"
    assert row["pct_days_abstinent"] == 100.0 and row["pct_heavy_drinking_days"] == 0.0
    assert row["drinks_per_drinking_day"] is None  # no drinking day to divide by
    assert (row["days_assessed"], row["days_missing"]) == (28, 0)


def test_a_period_with_no_assessed_day_is_blank():
    period = Period("month_3", date(2026, 2, 27), date(2026, 3, 10))
    (row,) = outcomes.compute(PROTOCOL, "F", [period], [], [])
    assert row["days_in_period"] == 12 and row["days_missing"] == 12
    for field in (
        "pct_heavy_drinking_days",
        "pct_days_abstinent",
        "drinks_per_drinking_day",
        "grams_per_day",
        "who_risk_level",
    ):
        assert row[field] is None, field


@pytest.mark.parametrize(
    ("sex", "total_drinks", "level"),
    [
        ("F", 10, "low"),  # 10 * 14 / 7 = 20 g/day exactly: the top of "low"
        ("F", 20, "medium"),  # 40 exactly
        ("F", 30, "high"),  # 60 exactly
        ("M", 20, "low"),  # 40 exactly
        ("M", 30, "medium"),  # 60 exactly
        ("M", 50, "high"),  # 100 exactly
    ],
)
def test_an_intake_exactly_on_a_boundary_through_compute(sex, total_drinks, level):
    period = Period("w", date(2026, 1, 2), date(2026, 1, 8))
    per_day = [total_drinks // 7] * 7
    per_day[0] += total_drinks - sum(per_day)
    dates, drinks = days(date(2026, 1, 2), per_day)
    (row,) = outcomes.compute(PROTOCOL, sex, [period], dates, drinks)
    assert row["grams_per_day"] == total_drinks * 14 / 7
    assert row["who_risk_level"] == level


def test_fractional_drinks_and_rounding_by_hand():
    """1.5 + 0.5 + 0 = 2 drinks over 3 days: 9.3333 g/day, 1 drink per drinking day, 33.3333%
    abstinent; 2/3 of a percent heavy is 0 here (no day at 4)."""
    period = Period("p", date(2026, 1, 2), date(2026, 1, 4))
    dates, drinks = days(date(2026, 1, 2), [1.5, 0.5, 0.0])
    (row,) = outcomes.compute(PROTOCOL, "F", [period], dates, drinks)
    assert row["grams_per_day"] == 9.3333
    assert row["drinks_per_drinking_day"] == 1.0
    assert row["pct_days_abstinent"] == 33.3333
    assert row["pct_heavy_drinking_days"] == 0.0
    assert row["who_risk_level"] == "low"


# --- negative controls -------------------------------------------------------------------------

WHO_MUTANTS = {
    "abstinent level blank": ("who_risk_level", 'return "abstinent"', "return None"),
    "zero not abstinent": ("who_risk_level", "grams_per_day == 0", "grams_per_day == 1"),
    "boundary one level too high": ("who_risk_level", "<= level", "< level"),
    "no very high": ("who_risk_level", 'return "very high"', 'return "high"'),
}  # fmt: skip


@negative_control
@pytest.mark.parametrize("name", sorted(WHO_MUTANTS))
def test_negative_control_who_mutants_fail_the_boundaries(monkeypatch, name):
    function, old, new = WHO_MUTANTS[name]
    monkeypatch.setattr(outcomes, function, mutant(outcomes, function, old, new))
    failed = 0
    for sex, grams, level in boundary_cases():
        try:
            test_who_level_at_and_around_every_boundary(sex, grams, level)
        except AssertionError:
            failed += 1
    if name == "abstinent level blank":
        with pytest.raises(AssertionError):
            test_a_fully_abstinent_period_is_abstinent_not_blank()
    assert failed, name
