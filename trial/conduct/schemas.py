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
        metadata={"description": "required for discontinued_treatment and withdrew"},
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
