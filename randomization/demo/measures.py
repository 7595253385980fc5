"""What a visit measures, given how much the participant has been drinking lately.

``drink_ratio`` is the participant's recent consumption (grams a day over the last four weeks)
over their baseline consumption: 1 while drinking as at entry, 0 when abstinent. Craving,
withdrawal signs, blood pressure and the liver markers (GGT above all, then %CDT and the
transaminases) follow it, as they do in treated heavy drinkers.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from datetime import date, timedelta

from trial.forms.models import CIWA_ITEMS, OCDS_ITEMS
from trial.protocol import current_protocol

# Upper limits of normal in U/L by sex; a site reporting in ukat/L divides by 60.
ULN = {
    "GGT": {"M": 55.0, "F": 38.0},
    "ALT": {"M": 45.0, "F": 35.0},
    "AST": {"M": 40.0, "F": 32.0},
}
BILIRUBIN_ULN = {"umol/L": 21.0, "mg/dL": 1.2}
CDT_ULN = 1.7
# Where an abstinent participant's marker settles, as a multiple of the ULN.
SETTLED = {"GGT": 0.55, "ALT": 0.55, "AST": 0.65, "bilirubin": 0.5}
SI_SITES = ("S03",)  # sites whose laboratory reports enzymes in ukat/L and bilirubin in mg/dL
CIWA_WEIGHTS = {
    "nausea_vomiting": 2,
    "tremor": 4,
    "paroxysmal_sweats": 3,
    "anxiety": 4,
    "agitation": 2,
    "tactile_disturbances": 1,
    "auditory_disturbances": 1,
    "visual_disturbances": 1,
    "headache": 2,
    "orientation": 1,
}

Level = Callable[[date], tuple[float, float]]


def drinks_on(
    rng: random.Random, day: date, probability: float, mean: float, limit: float
) -> float:
    """Standard drinks on one day (Timeline Followback, to the half drink), at most ``limit``
    (the protocol's limit for a day: the demo writes without the schema that checks it)."""
    weekday = day.weekday()
    weekend = weekday >= 4
    if rng.random() >= min(0.995, probability * (1.06 if weekend else 0.97)):
        return 0.0
    mean *= 1.25 if weekday in (4, 5) else 0.92
    drinks = rng.gammavariate(5.0, mean / 5.0)
    return min(max(round(drinks * 2) / 2, 0.5), limit)


def calendar(rng: random.Random, first: date, last: date, level: Level) -> dict[date, float]:
    """Every day from ``first`` to ``last`` with its drinks; ``level(day)`` gives the chance
    of drinking and the mean drinks on a drinking day."""
    days = {}
    limit = float(current_protocol().max_drinks_per_day)
    day = first
    while day <= last:
        probability, mean = level(day)
        days[day] = drinks_on(rng, day, probability, mean, limit)
        day += timedelta(days=1)
    return days


def recalled(rng: random.Random, days: Iterable[date], gap_rate: float) -> list[date]:
    """The days a participant can account for: a few forgotten, sometimes a run of them."""
    days = sorted(days)
    forgotten = {d for d in days if rng.random() < 0.015}
    if len(days) > 10 and rng.random() < gap_rate:
        start = rng.randrange(len(days) - 7)
        forgotten.update(days[start : start + rng.randint(2, 6)])
    return [d for d in days if d not in forgotten]


def ocds(rng: random.Random, total: float) -> dict:
    mean = total / len(OCDS_ITEMS)
    return {
        item: min(4, max(0, round(rng.gauss(mean + (0.4 if n < 6 else -0.3), 0.6))))
        for n, item in enumerate(OCDS_ITEMS)
    }


def ciwa(rng: random.Random, total: float) -> dict:
    scores = dict.fromkeys(CIWA_ITEMS, 0)
    items, weights = list(CIWA_WEIGHTS), list(CIWA_WEIGHTS.values())
    for _ in range(max(0, round(rng.gauss(total, 1.5)))):
        item = rng.choices(items, weights)[0]
        scores[item] = min(CIWA_ITEMS[item], scores[item] + 1)
    return scores


def vitals(rng: random.Random, profile, drink_ratio: float) -> dict:
    relief = 1.0 - min(drink_ratio, 1.0)
    systolic = round(min(max(rng.gauss(profile.systolic - 9 * relief, 6), 95), 200))
    diastolic = round(min(max(rng.gauss(profile.diastolic - 4 * relief, 5), 55), 115))
    return {
        "systolic_bp": systolic,
        "diastolic_bp": min(diastolic, systolic - 20),
        "heart_rate": round(min(max(rng.gauss(profile.heart_rate, 6), 48), 125)),
        "weight_kg": round(min(max(rng.gauss(profile.weight, 0.8), 40), 200), 1),
    }


def _toward(baseline: float, settled: float, drink_ratio: float) -> float:
    """Geometric path from the settled (abstinent) value to the baseline one."""
    ratio = min(max(drink_ratio, 0.0), 1.2)
    return settled * (baseline / settled) ** ratio if baseline > 0 else settled


def labs(
    rng: random.Random,
    profile,
    drink_ratio: float,
    tests: Iterable[str],
    *,
    alt_multiple: float | None = None,
) -> list[dict]:
    """Liver markers with the site laboratory's unit and upper limit of normal.

    ``alt_multiple`` forces a drug-induced or alcoholic hepatitis (ALT that many x ULN).
    """
    si = profile.participant.site_code in SI_SITES
    results = []
    for test in tests:
        noise = rng.lognormvariate(0.0, 0.1)
        if test in ULN:
            multiple = _toward(getattr(profile, test.lower()), SETTLED[test], drink_ratio) * noise
            if test == "ALT" and alt_multiple is not None:
                multiple = alt_multiple
            elif test == "AST" and alt_multiple is not None:
                multiple = max(multiple, alt_multiple * 0.6)
            uln = ULN[test][profile.sex]
            if si:
                results.append(_lab(test, multiple * uln / 60, "ukat/L", round(uln / 60, 2), 2))
            else:
                results.append(_lab(test, multiple * uln, "U/L", uln, 0))
        elif test == "bilirubin":
            multiple = _toward(profile.bilirubin, SETTLED[test], drink_ratio) * noise
            unit = "mg/dL" if si else "umol/L"
            uln = BILIRUBIN_ULN[unit]
            results.append(_lab(test, multiple * uln, unit, uln, 2 if si else 1))
        elif test == "CDT":
            value = (1.2 + (profile.cdt - 1.2) * min(max(drink_ratio, 0), 1.5)) * noise
            results.append(_lab(test, value, "%", CDT_ULN, 1))
    return results


def _lab(test: str, value: float, unit: str, uln: float, digits: int) -> dict:
    value = round(value, digits) if digits else float(round(value))
    return {
        "test": test,
        "value": max(value, 10.0**-digits if digits else 1.0),
        "unit": unit,
        "upper_limit_normal": float(uln),
    }
