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

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd

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
    if value is None or pd.isna(value):
        return None
    return float(Decimal(repr(float(value))).quantize(DECIMALS, rounding=ROUND_HALF_UP))


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
    protocol: Protocol, period_rows: list[dict], day_rows: list[tuple[str, date, float]]
) -> list[dict]:
    """Outcomes for a batch of participants.

    ``period_rows``: dicts with participant_id, sex, period, start, end (one per period);
    ``day_rows``: (participant_id, day, standard_drinks). Returns one dict per period row,
    in the order given.
    """
    periods = pd.DataFrame(period_rows, columns=["participant_id", "sex", "period", "start", "end"])
    if periods.empty:
        return []
    periods["row"] = range(len(periods))
    days = pd.DataFrame(day_rows, columns=["participant_id", "day", "drinks"])
    joined = periods.merge(days, on="participant_id", how="inner")
    joined = joined[(joined["day"] >= joined["start"]) & (joined["day"] <= joined["end"])]
    thresholds = joined["sex"].map(protocol.heavy_drinking_threshold)
    joined = joined.assign(
        heavy=(joined["drinks"] >= thresholds).astype(int),
        abstinent=(joined["drinks"] == 0).astype(int),
        drinking=(joined["drinks"] > 0).astype(int),
    )
    sums = joined.groupby("row").agg(
        assessed=("day", "count"),
        heavy=("heavy", "sum"),
        abstinent=("abstinent", "sum"),
        drinking=("drinking", "sum"),
        drinks=("drinks", "sum"),
    )
    table = periods.join(sums, on="row").fillna(
        {"assessed": 0, "heavy": 0, "abstinent": 0, "drinking": 0, "drinks": 0.0}
    )
    length = (pd.to_datetime(table["end"]) - pd.to_datetime(table["start"])).dt.days + 1
    grams = protocol.standard_drink_grams
    results = []
    for row, days_in_period in zip(table.itertuples(index=False), length, strict=True):
        assessed, drinking = int(row.assessed), int(row.drinking)
        has_days = assessed > 0
        grams_per_day = round_half_up(row.drinks * grams / assessed) if has_days else None
        results.append(
            {
                "participant_id": row.participant_id,
                "period": row.period,
                "period_start": row.start,
                "period_end": row.end,
                "days_in_period": int(days_in_period),
                "days_assessed": assessed,
                "days_missing": int(days_in_period) - assessed,
                "pct_heavy_drinking_days": (
                    round_half_up(100 * row.heavy / assessed) if has_days else None
                ),
                "pct_days_abstinent": (
                    round_half_up(100 * row.abstinent / assessed) if has_days else None
                ),
                "drinks_per_drinking_day": (
                    round_half_up(row.drinks / drinking) if drinking else None
                ),
                "grams_per_day": grams_per_day,
                "who_risk_level": who_risk_level(protocol, row.sex, grams_per_day),
            }
        )
    return results
