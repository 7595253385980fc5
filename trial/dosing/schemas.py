import marshmallow as ma
from marshmallow import fields as f
from marshmallow import validate as v

from trial.reasons import ReasonField
from trial.records.schemas import RecordMetaSchema, patch_schema_for


class DosingCreateSchema(ma.Schema):
    date = f.Date(required=True, metadata={"description": "first day of this dose"})
    tablets_per_day = f.Integer(
        required=True,
        strict=True,
        validate=v.Range(min=0, max=20),
        metadata={"description": "tablets per day (never mg)"},
    )
    change_reason = ReasonField(
        load_default=None,
        allow_none=True,
        metadata={"description": "required when the dose changes"},
    )
    tablets_returned = f.Integer(
        load_default=None, allow_none=True, strict=True, validate=v.Range(min=0, max=10_000)
    )


class DosingSchema(RecordMetaSchema):
    date = f.Date(dump_only=True)
    tablets_per_day = f.Integer(dump_only=True)
    change_reason = f.String(dump_only=True, allow_none=True)
    tablets_returned = f.Integer(dump_only=True, allow_none=True)


DosingPatchSchema = patch_schema_for(DosingCreateSchema, "DosingPatch")
