import marshmallow as ma
from marshmallow import fields as f
from marshmallow import validate as v

from trial.records.schemas import version_field


class VerifySchema(ma.Schema):
    """A monitor's mark: optionally the visit's version they read (412 if it changed)."""

    version = version_field()


class VerificationSchema(ma.Schema):
    verification_id = f.Integer(dump_only=True, attribute="id")
    visit_id = f.Integer(dump_only=True)
    visit_version = f.Integer(
        dump_only=True, metadata={"description": "The visit's version that was verified"}
    )
    status = f.String(dump_only=True, metadata={"description": "verified or voided"})
    verified_by = f.String(dump_only=True)
    verified_at = f.AwareDateTime(dump_only=True)
    voided_at = f.AwareDateTime(dump_only=True, allow_none=True)
    voided_by = f.String(
        dump_only=True,
        allow_none=True,
        metadata={"description": "Who changed the visit or its form, voiding the mark"},
    )
    void_reason = f.String(dump_only=True, allow_none=True)


class SiteVerificationSchema(ma.Schema):
    site = f.String(dump_only=True)
    completed = f.Integer(
        dump_only=True,
        metadata={"description": "Completed visits not entered in error"},
    )
    verified = f.Integer(
        dump_only=True, metadata={"description": "Of those, visits with a standing mark"}
    )
    left_to_verify = f.Integer(dump_only=True, metadata={"description": "completed - verified"})


class VerificationProgressSchema(ma.Schema):
    counting_rule = f.String(dump_only=True)
    sites = f.List(f.Nested(SiteVerificationSchema), dump_only=True)


class PendingVisitSchema(ma.Schema):
    visit_id = f.Integer(dump_only=True)
    visit_code = f.String(dump_only=True)
    visit_date = f.Date(dump_only=True)
    version = f.Integer(dump_only=True)
    participant_id = f.String(dump_only=True)
    site = f.String(dump_only=True)
    voided_before = f.Boolean(
        dump_only=True,
        metadata={"description": "Verified once; a later change voided the mark"},
    )


class VerificationArgsSchema(ma.Schema):
    site = f.String(validate=v.Length(min=1, max=10))
