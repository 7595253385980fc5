import marshmallow as ma
from marshmallow import fields as f
from marshmallow import validate as v


class SiteSchema(ma.Schema):
    code = f.String(
        required=True,
        validate=v.Regexp(
            r"^[A-Z0-9]{2,10}$", error="Use 2 to 10 capital letters or digits, such as S01."
        ),
    )
    name = f.String(required=True, validate=v.Length(min=1, max=200))
    timezone = f.String(load_default="UTC", validate=v.Length(min=1, max=64))
    planned_enrollment = f.Integer(
        load_default=None, allow_none=True, strict=True, validate=v.Range(min=0, max=100_000)
    )
    created_at = f.AwareDateTime(dump_only=True)
