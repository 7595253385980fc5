"""Derived drinking outcomes per participant and period, from the Timeline Followback.

Periods (day 0 is the site-local date of randomization):
- ``baseline``: the 28 days (protocol ``baseline_days``) before the screening visit, or
  before randomization when no screening visit is recorded;
- ``month_1`` ... ``month_6``: study days 1-28, 29-56, ... up to the end-of-treatment day;
- ``treatment``: study days 1 to the end-of-treatment day.
Days after the cut-off date are not yet due: a period is cut there, and a period that has
not started by the cut-off has no row. A day is assessed when the calendar has a row for it.

The field's conventions, each a protocol setting (``[drinking]``, printed in the dictionary and
the manifest by ``conventions``):
- collectable days: a day after the participant's last possible collection is neither assessed
  nor missing (``days_not_collectable``): after a final disposition (completed, withdrew, lost
  to follow-up, death, screen failure) on its date; for a participant still in the study, after
  the day before the latest visit that collects the calendar and is due at the cut-off (recorded,
  or its window closed before the cut-off day). A day with a calendar row is always assessed.
- minimum: a period's outcomes are left empty, with the reason in ``empty_reason``, unless it
  has at least ``min_assessed_days`` assessed days and ``min_assessed_share`` of its
  collectable days assessed;
- heavy drinking day by standard drinks (>=, NIAAA/FDA) or by grams (>, EMA), grams being the
  day's drinks x the site's grams per standard drink (``Protocol.grams_per_drink``).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from trial.protocol import Protocol

PERIOD_DAYS = 28
DECIMALS = Decimal("0.0001")
# A final disposition ends the participant's collection on its date (a treatment
# discontinuation does not: follow-up goes on).
FINAL_DISPOSITIONS = ("screen_failure", "completed", "withdrew", "lost_to_follow_up", "death")
OUTCOME_FIELDS = (
    "pct_heavy_drinking_days",
    "pct_days_abstinent",
    "drinks_per_drinking_day",
    "grams_per_day",
    "who_risk_level",
)


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


def last_collectable_day(
    protocol: Protocol,
    *,
    randomization_date: date | None,
    cutoff_date: date,
    disposition: str | None = None,
    disposition_date: date | None = None,
    last_visit_date: date | None = None,
) -> date:
    """The last day whose drinks could have been collected by the cut-off.

    A final disposition ends collection on its date. Otherwise a visit collects the days
    before it, so the days are due up to the day before the latest visit that collects the
    calendar and is due: recorded (``last_visit_date``, its date) or its window closed before
    the cut-off day (its target day). Never after the cut-off date.
    """
    if disposition in FINAL_DISPOSITIONS and disposition_date is not None:
        return min(disposition_date, cutoff_date)
    if randomization_date is None:
        return cutoff_date  # only the baseline, collected at screening
    due = randomization_date  # day 0: the baseline is due once randomized
    for visit in protocol.visits:
        if "drinking" not in visit.forms or visit.day <= 0:
            continue
        if randomization_date + timedelta(days=visit.latest_day) < cutoff_date:
            due = max(due, randomization_date + timedelta(days=visit.day))
    if last_visit_date is not None:
        due = max(due, last_visit_date)
    return min(due - timedelta(days=1), cutoff_date)


def conventions(protocol: Protocol) -> dict:
    """The outcome conventions in force, for the manifest (and the dictionary's texts)."""
    sites = protocol.standard_drink_grams_by_site or {}
    heavy = (
        {
            "by": "drinks",
            "rule": "standard drinks in the day >= threshold",
            "threshold_drinks": dict(protocol.heavy_drinking_threshold),
        }
        if protocol.heavy_drinking_by == "drinks"
        else {
            "by": "grams",
            "rule": "grams of ethanol in the day > threshold",
            "threshold_grams": dict(protocol.heavy_drinking_grams),
        }
    )
    return {
        "heavy_drinking_day": heavy,
        "standard_drink_grams": {
            "default": protocol.standard_drink_grams,
            "by_site": dict(sorted(sites.items())),
        },
        "minimum_assessed": {
            "days": protocol.min_assessed_days,
            "share_of_collectable_days": protocol.min_assessed_share,
            "below": "the period's outcomes are empty; empty_reason says why",
        },
        "collectable_days": (
            "Days after the cut-off, after a final disposition "
            f"({', '.join(FINAL_DISPOSITIONS)}) or, in the study, after the day before the "
            "latest calendar visit recorded or whose window closed before the cut-off, are "
            "neither assessed nor missing (days_not_collectable)."
        ),
    }


def heavy_rule_text(protocol: Protocol) -> str:
    """The heavy-drinking-day rule in words, for the dictionary."""
    if protocol.heavy_drinking_by == "grams":
        limit = protocol.heavy_drinking_grams
        return (
            f"days with more than {limit['F']:g} g (F) / {limit['M']:g} g (M) of ethanol "
            "(standard_drinks x the site's grams per standard drink, 4 decimals; EMA)"
        )
    limit = protocol.heavy_drinking_threshold
    return f"days with >= {limit['F']} (F) / {limit['M']} (M) standard drinks (NIAAA/FDA)"


def grams_text(protocol: Protocol) -> str:
    """Grams per standard drink, the default and each site's own, in words."""
    sites = protocol.standard_drink_grams_by_site or {}
    text = f"{protocol.standard_drink_grams:g} g"
    if sites:
        text += " (" + ", ".join(f"{code}: {g:g} g" for code, g in sorted(sites.items())) + ")"
    return text


def minimum_text(protocol: Protocol) -> str:
    return (
        f"at least {protocol.min_assessed_days} assessed days and "
        f"at least {protocol.min_assessed_share:.0%} of its collectable days assessed"
    )


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
    protocol: Protocol,
    sex: str,
    periods: list[Period],
    dates: list[date],
    drinks: list[float],
    *,
    site: str | None = None,
    collectable_until: date | None = None,
) -> list[dict]:
    """One participant's outcomes, one dict per period in the order given.

    ``dates`` and ``drinks``: the calendar rows at the cut-off, one per day, in date order.
    ``site``: the participant's site (its grams per standard drink); ``collectable_until``:
    ``last_collectable_day`` (None: every day of a period is collectable). A day with a
    calendar row is always assessed, so collection runs at least to the last such day.
    A period's days are found by two binary searches; its counts and sum are taken over
    that slice by C loops (``math.fsum`` is the exactly rounded sum).
    """
    grams = protocol.grams_per_drink(site)
    if protocol.heavy_drinking_by == "grams":
        over = float(protocol.heavy_drinking_grams[sex])

        def is_heavy(day_drinks: float) -> bool:
            return round_half_up(day_drinks * grams) > over  # the calendar's grams_alcohol

    else:
        is_heavy = float(protocol.heavy_drinking_threshold[sex]).__le__  # drinks >= threshold
    if collectable_until is not None and dates:
        collectable_until = max(collectable_until, dates[-1])
    minimum, share = protocol.min_assessed_days, protocol.min_assessed_share
    exact_share = Fraction(repr(float(share)))  # 0.3 x 10 is 3, not 3.0000000000000004
    results = []
    for period in periods:
        span = drinks[bisect_left(dates, period.start) : bisect_right(dates, period.end)]
        assessed = len(span)
        heavy = sum(map(is_heavy, span))
        abstinent = sum(map((0.0).__eq__, span))
        drinking = sum(map((0.0).__lt__, span))  # drinks > 0
        total = math.fsum(span)
        length = (period.end - period.start).days + 1
        collectable = length
        if collectable_until is not None and period.name != "baseline":
            collectable = max(0, min(length, (collectable_until - period.start).days + 1))
        if collectable == 0:
            reason = "no collectable day"
        elif assessed == 0:
            reason = "no assessed day"
        elif assessed < minimum:
            reason = f"too few assessed days: {assessed} < {minimum}"
        elif assessed < exact_share * collectable:
            reason = (
                f"too few of the collectable days assessed: {assessed}/{collectable} < {share:.0%}"
            )
        else:
            reason = None
        row = {
            "period": period.name,
            "period_start": period.start,
            "period_end": period.end,
            "days_in_period": length,
            "days_assessed": assessed,
            "days_missing": collectable - assessed,
            "pct_heavy_drinking_days": None,
            "pct_days_abstinent": None,
            "drinks_per_drinking_day": None,
            "grams_per_day": None,
            "who_risk_level": None,
            "days_not_collectable": length - collectable,
            "empty_reason": reason,
        }
        if reason is None:
            grams_per_day = round_half_up(total * grams / assessed)
            row["pct_heavy_drinking_days"] = round_half_up(100 * heavy / assessed)
            row["pct_days_abstinent"] = round_half_up(100 * abstinent / assessed)
            row["drinks_per_drinking_day"] = round_half_up(total / drinking) if drinking else None
            row["grams_per_day"] = grams_per_day
            row["who_risk_level"] = who_risk_level(protocol, sex, grams_per_day)
        results.append(row)
    return results
