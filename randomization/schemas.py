import marshmallow as ma
from marshmallow import fields as f
from marshmallow import validate as v

from trial.reasons import ReasonField


class FixedTimestamp(f.Field):
    """ISO 8601 UTC with microseconds always present, so the length never varies."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class RandomizeSchema(ma.Schema):
    eligibility_confirmed = f.Boolean(
        required=True,
        load_only=True,
        metadata={"description": "true once every eligibility criterion is confirmed"},
    )


class AllocationSchema(ma.Schema):
    """The blinded allocation: identical shape and length whatever the arm."""

    participant_id = f.String(dump_only=True)
    randomization_number = f.String(dump_only=True)
    kit_number = f.String(dump_only=True)
    randomized_at = FixedTimestamp(
        dump_only=True, metadata={"type": "string", "format": "date-time"}
    )


class CodeBreakSchema(ma.Schema):
    reason = ReasonField(required=True, load_only=True)
    password = f.String(required=True, load_only=True, validate=v.Length(min=1, max=1024))


class CodeBreakResultSchema(ma.Schema):
    participant_id = f.String(dump_only=True)
    arm = f.String(dump_only=True)
    unblinded_at = FixedTimestamp(
        dump_only=True, metadata={"type": "string", "format": "date-time"}
    )


class UnblindedSlotSchema(ma.Schema):
    stratum = f.String(dump_only=True)
    sequence = f.Integer(dump_only=True)
    block = f.Integer(dump_only=True, allow_none=True)
    block_size = f.Integer(dump_only=True, allow_none=True)
    arm = f.String(dump_only=True)
    kit_number = f.String(dump_only=True)
    participant_id = f.String(dump_only=True, allow_none=True)
    randomization_number = f.String(dump_only=True, allow_none=True)
    allocated_at = f.AwareDateTime(dump_only=True, allow_none=True)


class StratumSummarySchema(ma.Schema):
    stratum = f.String(dump_only=True)
    slots = f.Integer(dump_only=True)
    used = f.Integer(dump_only=True)
    remaining = f.Integer(dump_only=True)
    block_sizes = f.Dict(keys=f.String(), values=f.Integer(), dump_only=True)


class NoticeSchema(ma.Schema):
    id = f.Integer(dump_only=True)
    kind = f.String(dump_only=True)
    created_at = f.AwareDateTime(dump_only=True)
    stratum = f.String(dump_only=True, allow_none=True)
    message = f.String(dump_only=True)
