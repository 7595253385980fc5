import marshmallow as ma
from flask import has_app_context
from marshmallow import fields as f
from marshmallow import validate as v

from trial.forms.models import (
    BLINDING_CONFIDENCE,
    BLINDING_RESPONDENTS,
    CIWA_ITEMS,
    DONT_KNOW,
    LAB_UNITS,
    OCDS_ITEM_MAX,
    OCDS_ITEMS,
    VITALS_RANGES,
)
from trial.protocol import current_protocol
from trial.records.schemas import RecordMetaSchema, patch_schema_for


def _score(maximum: int, **kwargs):
    return f.Integer(
        strict=True,
        validate=v.Range(min=0, max=maximum, error=f"Score {{input}} is outside 0 to {maximum}."),
        **kwargs,
    )


class DrinksInADay(v.Validator):
    """0 up to the protocol's ``drinking.max_drinks_per_day``, read when a value is checked
    (so the protocol file, not this module, sets the limit; the database only guards a wider
    range: ``trial.protocol.DRINKS_PER_DAY_CEILING``).

    The OpenAPI spec documents ``min`` and, when built inside an app context, ``max`` (the
    app's limit). The factory builds it outside one, so the spec shows the minimum and the
    field's description names the protocol setting."""

    min = 0

    @property
    def max(self) -> int | None:
        return current_protocol().max_drinks_per_day if has_app_context() else None

    def __call__(self, value: float) -> float:
        limit = current_protocol().max_drinks_per_day
        if not 0 <= value <= limit:
            raise ma.ValidationError(f"Standard drinks must be between 0 and {limit}.")
        return value


class DrinkingDayInput(ma.Schema):
    date = f.Date(required=True, attribute="day", data_key="date")
    standard_drinks = f.Float(
        required=True,
        allow_nan=False,
        validate=DrinksInADay(),
        metadata={"description": "From 0 up to the protocol's drinking.max_drinks_per_day."},
    )


OcdsInput = ma.Schema.from_dict(
    {item: _score(OCDS_ITEM_MAX, required=True) for item in OCDS_ITEMS}, name="OcdsInput"
)
CiwaInput = ma.Schema.from_dict(
    {item: _score(top, required=True) for item, top in CIWA_ITEMS.items()}, name="CiwaInput"
)


def _vital(name: str) -> v.Range:
    low, high = VITALS_RANGES[name]
    return v.Range(min=low, max=high)


class VitalsInput(ma.Schema):
    """Each value in its range; diastolic below systolic is a rule of the service
    (``trial.forms.services.check_vitals``), checked on a visit and on a correction."""

    systolic_bp = f.Integer(required=True, strict=True, validate=_vital("systolic_bp"))
    diastolic_bp = f.Integer(required=True, strict=True, validate=_vital("diastolic_bp"))
    heart_rate = f.Integer(required=True, strict=True, validate=_vital("heart_rate"))
    weight_kg = f.Float(
        load_default=None, allow_none=True, allow_nan=False, validate=_vital("weight_kg")
    )


class LabInput(ma.Schema):
    """A known test; its unit, and each test once per visit, are rules of the service
    (``trial.forms.services.check_labs``)."""

    test = f.String(required=True, validate=v.OneOf(list(LAB_UNITS)))
    value = f.Float(
        required=True, allow_nan=False, validate=v.Range(min=0, min_inclusive=False, max=100_000)
    )
    unit = f.String(required=True, validate=v.Length(min=1, max=20))
    upper_limit_normal = f.Float(
        required=True, allow_nan=False, validate=v.Range(min=0, min_inclusive=False, max=100_000)
    )


class ArmGuess(v.Validator):
    """One of the protocol's arm names or ``dont_know``, read when a value is checked (the
    protocol file names the arms). ``options`` are what a correction page offers. (Not called
    ``choices``: the OpenAPI spec, built outside an app context, would list that as an empty
    enum; the field's description names the values instead.)"""

    @property
    def options(self) -> tuple[str, ...]:
        return (*current_protocol().arms, DONT_KNOW)

    def __call__(self, value: str) -> str:
        if value not in self.options:
            raise ma.ValidationError(f"Must be one of: {', '.join(self.options)}.")
        return value


class BlindingInput(ma.Schema):
    """A guess of an arm carries its confidence, "don't know" none: a rule of the service
    (``trial.forms.services.check_blinding``), checked on a visit and on a correction."""

    respondent = f.String(required=True, validate=v.OneOf(BLINDING_RESPONDENTS))
    guess = f.String(
        required=True,
        validate=ArmGuess(),
        metadata={"description": "an arm's name (the protocol's arms.names) or dont_know"},
    )
    confidence = f.String(
        load_default=None,
        allow_none=True,
        validate=v.OneOf(BLINDING_CONFIDENCE),
        metadata={"description": "strongly or somewhat for a guess of an arm; none for dont_know"},
    )


class DrinkingDaySchema(RecordMetaSchema):
    visit_id = f.Integer(dump_only=True, allow_none=True)
    date = f.Date(dump_only=True, attribute="day")
    standard_drinks = f.Float(dump_only=True)


OcdsSchema = RecordMetaSchema.from_dict(
    {
        "visit_id": f.Integer(dump_only=True),
        **{item: f.Integer(dump_only=True) for item in OCDS_ITEMS},
        "total": f.Integer(dump_only=True),
        "obsessive_subscale": f.Integer(dump_only=True),
        "compulsive_subscale": f.Integer(dump_only=True),
    },
    name="Ocds",
)
CiwaSchema = RecordMetaSchema.from_dict(
    {
        "visit_id": f.Integer(dump_only=True),
        **{item: f.Integer(dump_only=True) for item in CIWA_ITEMS},
        "total": f.Integer(dump_only=True),
    },
    name="Ciwa",
)


class VitalsSchema(RecordMetaSchema):
    visit_id = f.Integer(dump_only=True)
    systolic_bp = f.Integer(dump_only=True)
    diastolic_bp = f.Integer(dump_only=True)
    heart_rate = f.Integer(dump_only=True)
    weight_kg = f.Float(dump_only=True, allow_none=True)


class BlindingSchema(RecordMetaSchema):
    visit_id = f.Integer(dump_only=True)
    respondent = f.String(dump_only=True)
    guess = f.String(dump_only=True)
    confidence = f.String(dump_only=True, allow_none=True)


class LabSchema(RecordMetaSchema):
    visit_id = f.Integer(dump_only=True)
    test = f.String(dump_only=True)
    value = f.Float(dump_only=True)
    unit = f.String(dump_only=True)
    upper_limit_normal = f.Float(dump_only=True)
    times_uln = f.Float(dump_only=True)


DrinkingDayPatchSchema = patch_schema_for(DrinkingDayInput, "DrinkingDayPatch")
OcdsPatchSchema = patch_schema_for(OcdsInput, "OcdsPatch")
CiwaPatchSchema = patch_schema_for(CiwaInput, "CiwaPatch")
VitalsPatchSchema = patch_schema_for(VitalsInput, "VitalsPatch")
LabPatchSchema = patch_schema_for(LabInput, "LabPatch")
BlindingPatchSchema = patch_schema_for(BlindingInput, "BlindingPatch")
