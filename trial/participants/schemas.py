import marshmallow as ma
from marshmallow import fields as f
from marshmallow import validate as v

from trial.participants.models import PARTICIPANT_STATUSES


class ParticipantCreateSchema(ma.Schema):
    site = f.String(required=True, load_only=True, validate=v.Length(min=1, max=10))
    sex = f.String(required=True, load_only=True, validate=v.OneOf(["F", "M"], error="Use F or M."))
    year_of_birth = f.Integer(
        required=True, load_only=True, strict=True, validate=v.Range(min=1900, max=2100)
    )
    consent_date = f.Date(
        required=True,
        load_only=True,
        metadata={"description": "ISO date the informed consent was signed"},
    )


class ParticipantSchema(ma.Schema):
    participant_id = f.String(dump_only=True)
    site = f.String(dump_only=True, attribute="site_code")
    sex = f.String(dump_only=True)
    year_of_birth = f.Integer(dump_only=True)
    consent_date = f.Date(dump_only=True)
    status = f.String(dump_only=True)
    randomized_at = f.AwareDateTime(dump_only=True, allow_none=True)
    unblinded = f.Boolean(dump_only=True)
    created_at = f.AwareDateTime(dump_only=True)


class ParticipantQuerySchema(ma.Schema):
    site = f.String(validate=v.Length(min=1, max=10))
    status = f.String(validate=v.OneOf(PARTICIPANT_STATUSES))
