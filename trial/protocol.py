"""Load the protocol file and refuse to start on any bad setting, naming it.

The protocol (DESIGN section 3) is data, not code: arms, ratio, strata, blocks, visit windows,
titration and drinking thresholds all come from one TOML file. Later features read
``current_protocol()``; nothing else hard-codes these values.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import marshmallow as ma
from flask import current_app
from marshmallow import fields as f
from marshmallow import validate as v

from trial.errors import ConfigurationError
from trial.forms.edit_checks.config import EditChecksField

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
# The outcome periods are 28 days long (exports.outcomes.PERIOD_DAYS): a minimum of assessed
# days above it would leave every month empty.
LONGEST_MINIMUM_DAYS = 28
SITE_CODE = r"^[A-Za-z0-9_-]{1,10}$"  # sites.code is String(10)
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


class _Strict(ma.Schema):
    class Meta:
        unknown = ma.RAISE


def _positive_int(**kw):
    return f.Integer(required=True, strict=True, validate=v.Range(min=1), **kw)


class TrialSection(_Strict):
    code = f.String(required=True, validate=v.Length(min=1, max=40))
    title = f.String(required=True, validate=v.Length(min=1))
    planned_enrollment_per_site = _positive_int()


class CriterionSection(_Strict):
    code = f.String(required=True, validate=v.Regexp(r"^[A-Za-z][A-Za-z0-9_]{0,39}$"))
    kind = f.String(required=True, validate=v.OneOf(CRITERION_KINDS))
    text = f.String(required=True, validate=v.Length(min=1, max=500))


class EligibilitySection(_Strict):
    min_age = f.Integer(required=True, strict=True, validate=v.Range(min=0, max=130))
    max_age = f.Integer(required=True, strict=True, validate=v.Range(min=0, max=130))
    # Answered per participant before randomization; none: only the age rule and the
    # coordinator's confirmation.
    criteria = f.List(f.Nested(CriterionSection), load_default=list)

    @ma.validates_schema
    def _ordered(self, data, **_):
        if data["min_age"] > data["max_age"]:
            raise ma.ValidationError("must not exceed max_age", "min_age")
        codes = [c["code"] for c in data.get("criteria", []) if "code" in c]
        if len(set(codes)) != len(codes):
            raise ma.ValidationError("criterion codes must be unique", "criteria")


class ArmsSection(_Strict):
    names = f.List(
        f.String(validate=v.Length(min=1, max=40)), required=True, validate=v.Length(min=2)
    )
    ratio = f.List(f.Integer(strict=True, validate=v.Range(min=1)), required=True)

    @ma.validates_schema
    def _consistent(self, data, **_):
        if len(data["ratio"]) != len(data["names"]):
            raise ma.ValidationError("needs one integer per arm name", "ratio")
        if len(set(data["names"])) != len(data["names"]):
            raise ma.ValidationError("arm names must be distinct", "names")
        if "dont_know" in data["names"]:  # the blinding assessment's "don't know" answer
            raise ma.ValidationError("an arm cannot be named dont_know", "names")


class MinimizationSection(_Strict):
    factors = f.List(
        f.String(validate=v.OneOf(STRATUM_FACTORS)), required=True, validate=v.Length(min=1)
    )
    probability_best = f.Float(required=True, validate=v.Range(min=0.5, max=1.0))


class RandomizationSection(_Strict):
    method = f.String(required=True, validate=v.OneOf(["blocks", "minimization"]))
    strata = f.List(f.String(validate=v.OneOf(STRATUM_FACTORS)), required=True)
    block_size_multiples = f.List(
        f.Integer(strict=True, validate=v.Range(min=1)), required=True, validate=v.Length(min=1)
    )
    list_margin = f.Float(required=True, validate=v.Range(min=0.20))
    low_remaining_warning = f.Float(required=True, validate=v.Range(min=0.0, max=1.0))
    minimization = f.Nested(MinimizationSection, required=True)


class KitsSection(_Strict):
    digits = f.Integer(required=True, strict=True, validate=v.Range(min=4, max=12))


class DosingSection(_Strict):
    tablet_strength_mg = f.Float(required=True, validate=v.Range(min=0, min_inclusive=False))
    start_tablets_per_day = f.Integer(required=True, strict=True, validate=v.Range(min=0))
    step_tablets_per_day = _positive_int()
    step_interval_days = f.List(
        f.Integer(strict=True, validate=v.Range(min=1)), required=True, validate=v.Length(min=1)
    )
    max_tablets_per_day = _positive_int()
    taper_weeks = f.Integer(required=True, strict=True, validate=v.Range(min=0))

    @ma.validates_schema
    def _ordered(self, data, **_):
        if data["start_tablets_per_day"] > data["max_tablets_per_day"]:
            raise ma.ValidationError("must not exceed max_tablets_per_day", "start_tablets_per_day")


class BySex(_Strict):
    F = f.Integer(required=True, strict=True, validate=v.Range(min=1))
    M = f.Integer(required=True, strict=True, validate=v.Range(min=1))


class RiskLevel(_Strict):
    level = f.String(required=True, validate=v.Length(min=1))
    F = f.Float(required=True, validate=v.Range(min=0, min_inclusive=False))
    M = f.Float(required=True, validate=v.Range(min=0, min_inclusive=False))


class GramsBySex(_Strict):
    F = f.Float(required=True, validate=v.Range(min=0, min_inclusive=False))
    M = f.Float(required=True, validate=v.Range(min=0, min_inclusive=False))


class DrinkingSection(_Strict):
    standard_drink_grams = f.Float(required=True, validate=v.Range(min=0, min_inclusive=False))
    # Site code -> grams per standard drink at that site (its country's standard drink).
    standard_drink_grams_by_site = f.Dict(
        keys=f.String(validate=v.Regexp(SITE_CODE, error="is not a site code")),
        values=f.Float(validate=v.Range(min=0, min_inclusive=False)),
        load_default=dict,
    )
    heavy_drinking_by = f.String(load_default="drinks", validate=v.OneOf(HEAVY_DRINKING_RULES))
    heavy_drinking_threshold = f.Nested(BySex, required=True)
    heavy_drinking_grams = f.Nested(GramsBySex, load_default=None)
    min_assessed_days = f.Integer(
        load_default=DEFAULT_MIN_ASSESSED_DAYS,
        strict=True,
        validate=v.Range(min=1, max=LONGEST_MINIMUM_DAYS),
    )
    min_assessed_share = f.Float(
        load_default=DEFAULT_MIN_ASSESSED_SHARE, validate=v.Range(min=0.0, max=1.0)
    )
    max_drinks_per_day = f.Integer(
        required=True, strict=True, validate=v.Range(min=1, max=DRINKS_PER_DAY_CEILING)
    )
    baseline_days = _positive_int()
    who_risk_levels = f.List(f.Nested(RiskLevel), required=True, validate=v.Length(min=1))

    @ma.validates_schema
    def _heavy_by_grams_needs_grams(self, data, **_):
        if data.get("heavy_drinking_by") == "grams" and not data.get("heavy_drinking_grams"):
            raise ma.ValidationError(
                'is required when heavy_drinking_by = "grams"', "heavy_drinking_grams"
            )

    @ma.validates_schema
    def _minimum_within_baseline(self, data, **_):
        if data.get("min_assessed_days", 1) > data.get("baseline_days", LONGEST_MINIMUM_DAYS):
            raise ma.ValidationError("must not exceed baseline_days", "min_assessed_days")

    @ma.validates_schema
    def _ascending(self, data, **_):
        levels = data["who_risk_levels"]
        for sex in SEXES:
            bounds = [level[sex] for level in levels]
            if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
                raise ma.ValidationError(f"{sex} bounds must strictly increase", "who_risk_levels")


class VisitSection(_Strict):
    code = f.String(required=True, validate=v.Regexp(r"^[a-z][a-z0-9_]{0,39}$"))
    label = f.String(required=True, validate=v.Length(min=1))
    day = f.Integer(required=True, strict=True)
    window_before = f.Integer(required=True, strict=True, validate=v.Range(min=0))
    window_after = f.Integer(required=True, strict=True, validate=v.Range(min=0))
    forms = f.List(f.String(validate=v.OneOf(VISIT_FORMS)), load_default=list)

    @ma.validates_schema
    def _forms_once(self, data, **_):
        forms = data.get("forms", [])
        if len(set(forms)) != len(forms):
            raise ma.ValidationError("a form is listed twice", "forms")


class ProtocolSchema(_Strict):
    trial = f.Nested(TrialSection, required=True)
    eligibility = f.Nested(EligibilitySection, required=True)
    arms = f.Nested(ArmsSection, required=True)
    randomization = f.Nested(RandomizationSection, required=True)
    kits = f.Nested(KitsSection, required=True)
    dosing = f.Nested(DosingSection, required=True)
    drinking = f.Nested(DrinkingSection, required=True)
    visits = f.List(f.Nested(VisitSection), required=True, validate=v.Length(min=2))
    edit_checks = EditChecksField()

    # Run even when other sections are bad, so one message names every bad setting.
    @ma.validates_schema(skip_on_field_errors=False)
    def _visits_consistent(self, data, **_):
        visits = data.get("visits")
        if not visits or any(not {"code", "day"} <= visit.keys() for visit in visits):
            return  # absent or itself invalid: already reported
        problems = []
        codes = [visit["code"] for visit in visits]
        if len(set(codes)) != len(codes):
            problems.append("visit codes must be unique")
        days = [visit["day"] for visit in visits]
        if days != sorted(days):
            problems.append("visits must be listed in order of day")
        if 0 not in days:
            problems.append("one visit must fall on day 0 (randomization)")
        if problems:
            raise ma.ValidationError(problems, "visits")


def _flatten(messages, prefix="") -> list[str]:
    out = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if key == "_schema":
                name = prefix or "(file)"
            out.extend(_flatten(value, name))
    elif isinstance(messages, list):
        for message in messages:
            out.extend(_flatten(message, prefix))
    else:
        out.append(f"{prefix}: {messages}")
    return out


def load_protocol(path: str | Path) -> Protocol:
    """Read and validate a protocol file; raise ConfigurationError naming each bad setting."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigurationError(f"protocol file {path} does not exist") from exc
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"protocol file {path} is not UTF-8 text: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"protocol file {path} is not valid TOML: {exc}") from exc
    try:
        data = ProtocolSchema().load(raw)
    except ma.ValidationError as exc:
        problems = "; ".join(sorted(_flatten(exc.messages)))
        raise ConfigurationError(f"protocol file {path} has bad settings: {problems}") from exc

    arms, rand = data["arms"], data["randomization"]
    return Protocol(
        trial_code=data["trial"]["code"],
        title=data["trial"]["title"],
        planned_enrollment_per_site=data["trial"]["planned_enrollment_per_site"],
        min_age=data["eligibility"]["min_age"],
        max_age=data["eligibility"]["max_age"],
        eligibility_criteria=tuple(
            Criterion(**criterion) for criterion in data["eligibility"]["criteria"]
        ),
        arms=tuple(arms["names"]),
        ratio=tuple(arms["ratio"]),
        randomization_method=rand["method"],
        strata=tuple(rand["strata"]),
        block_sizes=tuple(m * sum(arms["ratio"]) for m in rand["block_size_multiples"]),
        list_margin=rand["list_margin"],
        low_remaining_warning=rand["low_remaining_warning"],
        minimization_factors=tuple(rand["minimization"]["factors"]),
        minimization_probability_best=rand["minimization"]["probability_best"],
        kit_digits=data["kits"]["digits"],
        dosing=dict(data["dosing"]),
        standard_drink_grams=data["drinking"]["standard_drink_grams"],
        heavy_drinking_threshold=dict(data["drinking"]["heavy_drinking_threshold"]),
        max_drinks_per_day=data["drinking"]["max_drinks_per_day"],
        baseline_days=data["drinking"]["baseline_days"],
        who_risk_levels=tuple(dict(level) for level in data["drinking"]["who_risk_levels"]),
        visits=tuple(
            VisitDefinition(**{**visit, "forms": tuple(visit["forms"])}) for visit in data["visits"]
        ),
        edit_checks=data["edit_checks"],
        source=str(path),
        heavy_drinking_by=data["drinking"]["heavy_drinking_by"],
        heavy_drinking_grams=(
            dict(data["drinking"]["heavy_drinking_grams"])
            if data["drinking"]["heavy_drinking_grams"]
            else None
        ),
        standard_drink_grams_by_site=dict(data["drinking"]["standard_drink_grams_by_site"]),
        min_assessed_days=data["drinking"]["min_assessed_days"],
        min_assessed_share=data["drinking"]["min_assessed_share"],
    )


def current_protocol() -> Protocol:
    return current_app.extensions["trial_protocol"]
