"""What a valid protocol file looks like: one strict marshmallow schema per section.

Unknown keys are refused and every bound is checked here, so ``trial.protocol.loader`` can
name each bad setting in one message and the service never starts on a wrong protocol.
"""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields as f
from marshmallow import validate as v

from trial.forms.edit_checks.config import EditChecksField
from trial.protocol import (
    CRITERION_KINDS,
    DEFAULT_MIN_ASSESSED_DAYS,
    DEFAULT_MIN_ASSESSED_SHARE,
    DRINKS_PER_DAY_CEILING,
    HEAVY_DRINKING_RULES,
    SEXES,
    STRATUM_FACTORS,
    VISIT_FORMS,
)

# The outcome periods are 28 days long (exports.outcomes.PERIOD_DAYS): a minimum of assessed
# days above it would leave every month empty.
LONGEST_MINIMUM_DAYS = 28
SITE_CODE = r"^[A-Za-z0-9_-]{1,10}$"  # sites.code is String(10)


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
