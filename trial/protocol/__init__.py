"""The protocol's definition: what the trial's one protocol file says, as frozen dataclasses.

The protocol (DESIGN section 3) is data, not code: arms, ratio, strata, blocks, visit windows,
titration and drinking thresholds all come from one TOML file (``trial/protocol.toml``), read
and checked at start by ``trial.protocol.loader`` against ``trial.protocol.schemas``, which
refuse to start on any bad setting, naming it. Later features read ``current_protocol()``;
nothing else hard-codes these values.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

SEXES = ("F", "M")
STRATUM_FACTORS = ("site", "sex")
# The database's own bound on a day's standard drinks (CHECK drinks_range, migration 0011): a
# last guard, wide on purpose. The limit the service enforces is the protocol's
# ``drinking.max_drinks_per_day``, which may be set anywhere up to it.
DRINKS_PER_DAY_CEILING = 100
# The forms a visit can collect, by their key in a visit's body.
VISIT_FORMS = ("drinking", "ocds", "ciwa", "vitals", "labs", "blinding")
CRITERION_KINDS = ("inclusion", "exclusion")
# How a heavy drinking day is told: by standard drinks (NIAAA / FDA 2015: >= 4 women, >= 5 men)
# or by grams of ethanol (EMA 2010: more than 40 g women, more than 60 g men).
HEAVY_DRINKING_RULES = ("drinks", "grams")
# A period's percentages need at least this many assessed days and this share of its
# collectable days (the protocol file's comments say why).
DEFAULT_MIN_ASSESSED_DAYS = 7
DEFAULT_MIN_ASSESSED_SHARE = 0.5


@dataclass(frozen=True)
class VisitDefinition:
    code: str
    label: str
    day: int
    window_before: int
    window_after: int
    # The forms the visit collects (``VISIT_FORMS``), in the protocol's order.
    forms: tuple[str, ...] = ()

    @property
    def earliest_day(self) -> int:
        return self.day - self.window_before

    @property
    def latest_day(self) -> int:
        return self.day + self.window_after


@dataclass(frozen=True)
class Criterion:
    """An eligibility criterion: an inclusion one must be met, an exclusion one must not."""

    code: str
    kind: str
    text: str

    @property
    def required_answer(self) -> bool:
        return self.kind == "inclusion"


@dataclass(frozen=True)
class Protocol:
    trial_code: str
    title: str
    planned_enrollment_per_site: int
    min_age: int
    max_age: int
    eligibility_criteria: tuple[Criterion, ...]
    arms: tuple[str, ...]
    ratio: tuple[int, ...]
    randomization_method: str
    strata: tuple[str, ...]
    block_sizes: tuple[int, ...]
    list_margin: float
    low_remaining_warning: float
    minimization_factors: tuple[str, ...]
    minimization_probability_best: float
    kit_digits: int
    dosing: dict
    standard_drink_grams: float
    heavy_drinking_threshold: dict[str, int]
    max_drinks_per_day: int
    baseline_days: int
    who_risk_levels: tuple[dict, ...]
    visits: tuple[VisitDefinition, ...]
    # trial.forms.edit_checks.rules.Rule: the built-ins as the file changes them, then its own.
    edit_checks: tuple
    source: str
    # The drinking outcomes' conventions (exports.outcomes). Defaults: heavy by drinks, every
    # site at ``standard_drink_grams``, percentages from 7 assessed days and half the period.
    heavy_drinking_by: str = "drinks"
    heavy_drinking_grams: dict | None = None  # {"F": 40, "M": 60}: heavy when over
    standard_drink_grams_by_site: dict | None = None  # site code -> grams per standard drink
    min_assessed_days: int = DEFAULT_MIN_ASSESSED_DAYS
    min_assessed_share: float = DEFAULT_MIN_ASSESSED_SHARE

    def visit(self, code: str) -> VisitDefinition:
        for visit in self.visits:
            if visit.code == code:
                return visit
        raise KeyError(code)

    def grams_per_drink(self, site: str | None) -> float:
        """Grams of ethanol in one standard drink as the site's calendar counts it."""
        return (self.standard_drink_grams_by_site or {}).get(site, self.standard_drink_grams)


def current_protocol() -> Protocol:
    return current_app.extensions["trial_protocol"]
