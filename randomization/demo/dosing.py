"""The study-drug record of one participant: titration, reductions, interruptions, taper.

From the protocol: start at 3 tablets a day, one more every 3 or 4 days as tolerated up to 9;
a sedating adverse event brings the dose down (and keeps it there), an interruption stops it
for a few days, and after the end of treatment the dose is tapered to nothing over two weeks.
Every change after the first record carries its reason, as the dosing service requires.
"""

from __future__ import annotations

import math
from datetime import date, timedelta

from trial.protocol import Protocol


def _changes_from_events(rng, events) -> list[tuple[date, str, str]]:
    points = []
    for event in events:
        lag = timedelta(days=rng.randint(0, 2))
        if event.action == "dose_reduced":
            points.append((event.onset + lag, "reduce", event.term))
        elif event.action == "drug_interrupted":
            points.append((event.onset + lag, "interrupt", event.term))
        elif event.action == "drug_withdrawn":
            points.append((event.onset + lag, "stop", f"adverse event ({event.term})"))
    return sorted(points)


def dosing_records(
    rng,
    protocol: Protocol,
    day0: date,
    target: int,
    events,
    taper_start: date,
    stop: tuple[date, str] | None,
    limit: date,
) -> list[dict]:
    """Dose records from the first dose up to ``limit`` (today or the last contact)."""
    dosing = protocol.dosing
    first = day0 + timedelta(days=0 if rng.random() < 0.8 else 1)
    if first > limit:
        return []
    records: list[dict] = []

    def add(day: date, tablets: int, reason: str | None) -> date | None:
        if records and day <= records[-1]["date"]:
            day = records[-1]["date"] + timedelta(days=1)
        if day > limit:
            return None
        returned = rng.randint(0, 12) if records and rng.random() < 0.5 else None
        records.append(
            {
                "date": day,
                "tablets_per_day": tablets,
                "change_reason": reason,
                "tablets_returned": returned,
            }
        )
        return day

    dose, cap = dosing["start_tablets_per_day"], target
    add(first, dose, None)
    points = _changes_from_events(rng, events)
    if stop is not None:
        points.append((stop[0], "stop", stop[1]))
        points.sort()
    step_day = first + timedelta(days=rng.choice(dosing["step_interval_days"]))
    resume: tuple[date, int, str] | None = None
    while True:
        candidates = [(taper_start, 2, "taper", "")]
        if points:
            candidates.append((points[0][0], 1, points[0][1], points[0][2]))
        if resume is not None:
            candidates.append((resume[0], 0, "resume", resume[2]))
        elif dose < cap:
            candidates.append((step_day, 3, "step", ""))
        when, _, kind, term = min(candidates)
        if when > limit:
            break
        if kind == "taper":
            _taper(add, dose if resume is None else resume[1], when, dosing["taper_weeks"])
            break
        if kind == "stop":
            add(when, 0, f"Study drug stopped: {term}" if "adverse" in term else term)
            break
        if kind == "step":
            dose += dosing["step_tablets_per_day"]
            dose = min(dose, cap)
            add(when, dose, "Titration step: +1 tablet/day as tolerated")
            step_day = when + timedelta(days=rng.choice(dosing["step_interval_days"]))
        elif kind == "resume":
            dose, resume = resume[1], None
            add(when, dose, f"Restarted after interruption for {term}")
            step_day = when + timedelta(days=rng.choice(dosing["step_interval_days"]))
        else:
            points.pop(0)
            if resume is not None or dose == 0:
                continue  # already off the drug: nothing to reduce or interrupt
            if kind == "reduce":
                dose = cap = max(1, dose - rng.choice((1, 2)))
                add(when, dose, f"Dose reduced for {term} (adverse event)")
            elif kind == "interrupt":
                back = when + timedelta(days=rng.randint(3, 7))
                if add(when, 0, f"Interrupted for {term} (adverse event)") is not None:
                    resume = (back, dose, term)
    return records


def _taper(add, dose: int, start: date, weeks: int) -> None:
    """Step the dose down over ``weeks`` weeks, then stop."""
    for week in range(weeks):
        tablets = math.ceil(dose * (weeks - week) / (weeks + 1))
        if add(start + timedelta(weeks=week), tablets, f"Taper: week {week + 1}") is None:
            return
    add(start + timedelta(weeks=weeks), 0, "End of taper: study drug stopped")
