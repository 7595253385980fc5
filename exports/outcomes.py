"""Derived drinking outcomes per participant and period, from the Timeline Followback.

Periods (day 0 is the site-local date of randomization):
- ``baseline``: the 28 days (protocol ``baseline_days``) before the screening visit, or
  before randomization when no screening visit is recorded;
- ``month_1`` ... ``month_6``: study days 1-28, 29-56, ... up to the end-of-treatment day;
- ``treatment``: study days 1 to the end-of-treatment day.
Days after the cut-off date are not yet due: a period is cut there, and a period that has
not started by the cut-off has no row. A day is assessed when the calendar has a row for it.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from trial.protocol import Protocol

PERIOD_DAYS = 28
DECIMALS = Decimal("0.0001")


@dataclass(frozen=True)
class Period:
    name: str
    start: date
    end: date  # inclusive, already cut at the cut-off date


def treatment_end_day(protocol: Protocol) -> int:
    return protocol.visit("end_of_treatment").day


def periods_for(
    protocol: Protocol,
    *,
    screening_date: date | None,
    randomization_date: date | None,
    cutoff_date: date,
) -> list[Period]:
    periods = []
    anchor = screening_date or randomization_date
    if anchor is not None:
        days = protocol.baseline_days
        periods.append(Period("baseline", anchor - timedelta(days=days), anchor - timedelta(1)))
    if randomization_date is not None:
        last_day = treatment_end_day(protocol)
        for number, first in enumerate(range(1, last_day + 1, PERIOD_DAYS), start=1):
            final = min(first + PERIOD_DAYS - 1, last_day)
            periods.append(
                Period(
                    f"month_{number}",
                    randomization_date + timedelta(days=first),
                    randomization_date + timedelta(days=final),
                )
            )
        periods.append(
            Period(
                "treatment",
                randomization_date + timedelta(days=1),
                randomization_date + timedelta(days=last_day),
            )
        )
    cut = []
    for period in periods:
        if period.start > cutoff_date:
            continue
        cut.append(Period(period.name, period.start, min(period.end, cutoff_date)))
    return cut


def round_half_up(value: float | None) -> float | None:
    """The value's decimal form (its repr) rounded to 4 decimals, halves away from zero.

    ``round`` rounds the binary value to nearest, which is the same result unless the repr
    ends exactly on a half at the fifth decimal: the repr is the shortest decimal that reads
    back as the value, so no 5-decimal half lies between the two (it would be shorter).
    Those halves, and exponent forms, go through Decimal.
    """
    if value is None:
        return None
    value = float(value)
    rounded = round(value, 4)
    if rounded == value:  # already at 4 decimals or fewer
        return value
    text = repr(value)
    decimals = text.partition(".")[2]
    if "e" in text or (len(decimals) == 5 and decimals[4] == "5"):
        return float(Decimal(text).quantize(DECIMALS, rounding=ROUND_HALF_UP))
    return rounded


def who_risk_level(protocol: Protocol, sex: str, grams_per_day: float | None) -> str | None:
    """The WHO level for a mean daily intake: abstinent at 0, then the protocol's bounds."""
    if grams_per_day is None:
        return None
    if grams_per_day == 0:
        return "abstinent"
    for level in protocol.who_risk_levels:
        if grams_per_day <= level[sex]:
            return level["level"]
    return "very high"


def compute(
    protocol: Protocol, sex: str, periods: list[Period], dates: list[date], drinks: list[float]
) -> list[dict]:
    """One participant's outcomes, one dict per period in the order given.

    ``dates`` and ``drinks``: the calendar rows at the cut-off, one per day, in date order.
    A period's days are found by two binary searches; its counts and sum are taken over
    that slice by C loops (``math.fsum`` is the exactly rounded sum).
    """
    heavy_from = float(protocol.heavy_drinking_threshold[sex])
    grams = protocol.standard_drink_grams
    results = []
    for period in periods:
        span = drinks[bisect_left(dates, period.start) : bisect_right(dates, period.end)]
        assessed = len(span)
        heavy = sum(map(heavy_from.__le__, span))  # drinks >= threshold
        abstinent = sum(map((0.0).__eq__, span))
        drinking = sum(map((0.0).__lt__, span))  # drinks > 0
        total = math.fsum(span)
        length = (period.end - period.start).days + 1
        has_days = assessed > 0
        grams_per_day = round_half_up(total * grams / assessed) if has_days else None
        results.append(
            {
                "period": period.name,
                "period_start": period.start,
                "period_end": period.end,
                "days_in_period": length,
                "days_assessed": assessed,
                "days_missing": length - assessed,
                "pct_heavy_drinking_days": (
                    round_half_up(100 * heavy / assessed) if has_days else None
                ),
                "pct_days_abstinent": (
                    round_half_up(100 * abstinent / assessed) if has_days else None
                ),
                "drinks_per_drinking_day": round_half_up(total / drinking) if drinking else None,
                "grams_per_day": grams_per_day,
                "who_risk_level": who_risk_level(protocol, sex, grams_per_day),
            }
        )
    return results
