import marshmallow as ma
from marshmallow import fields as f
from marshmallow import validate as v

from trial.conduct.models import DEVIATION_CATEGORIES, DISPOSITIONS
from trial.reasons import ReasonField
from trial.records.schemas import RecordMetaSchema, patch_schema_for


class DispositionCreateSchema(ma.Schema):
    status = f.String(required=True, validate=v.OneOf(DISPOSITIONS))
    date = f.Date(required=True)
    reason = ReasonField(
        load_default=None,
        allow_none=True,
        metadata={
            "description": "required for screen_failure, discontinued_treatment and withdrew"
        },
    )


class DispositionSchema(RecordMetaSchema):
    status = f.String(dump_only=True)
    date = f.Date(dump_only=True)
    reason = f.String(dump_only=True, allow_none=True)


class DeviationCreateSchema(ma.Schema):
    category = f.String(required=True, validate=v.OneOf(DEVIATION_CATEGORIES))
    description = f.String(required=True, validate=v.Length(min=1, max=4000))
    date = f.Date(required=True)


class DeviationSchema(RecordMetaSchema):
    category = f.String(dump_only=True)
    description = f.String(dump_only=True)
    date = f.Date(dump_only=True)
    automatic = f.Boolean(dump_only=True)
    visit_id = f.Integer(dump_only=True, allow_none=True)


# In a PATCH body "reason" says why the record changes; the disposition's own reason is
# corrected under this key.
DISPOSITION_PATCH_KEYS = {"reason": "disposition_reason"}
DispositionPatchSchema = patch_schema_for(
    DispositionCreateSchema, "DispositionPatch", DISPOSITION_PATCH_KEYS
)
DeviationPatchSchema = patch_schema_for(DeviationCreateSchema, "DeviationPatch")


class EligibilityAnswersSchema(ma.Schema):
    answers = f.Dict(
        keys=f.String(validate=v.Length(min=1, max=40)),
        values=f.Raw(),
        required=True,
        metadata={
            "description": 'criterion code -> true (met) or false (not met), e.g. {"I1": true, '
            '"E1": false}; the criteria are in GET .../eligibility'
        },
    )


class EligibilityAnswerCreateSchema(ma.Schema):
    criterion = f.String(required=True, validate=v.Length(min=1, max=40))
    met = f.Boolean(required=True, truthy={True}, falsy={False})


class EligibilityAnswerSchema(RecordMetaSchema):
    criterion = f.String(dump_only=True)
    met = f.Boolean(dump_only=True)


class CriterionAnswerSchema(ma.Schema):
    code = f.String(dump_only=True)
    kind = f.String(dump_only=True)
    text = f.String(dump_only=True)
    met = f.Boolean(dump_only=True, allow_none=True)
    record_id = f.Integer(dump_only=True, allow_none=True)
    version = f.Integer(dump_only=True, allow_none=True)


class EligibilitySchema(ma.Schema):
    criteria = f.List(f.Nested(CriterionAnswerSchema), dump_only=True)
    eligible = f.Boolean(
        dump_only=True,
        allow_none=True,
        metadata={"description": "null until every criterion is answered"},
    )


EligibilityAnswerPatchSchema = patch_schema_for(
    EligibilityAnswerCreateSchema, "EligibilityAnswerPatch"
)
