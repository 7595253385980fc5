import json

import marshmallow as ma
from marshmallow import fields as f
from marshmallow import validate as v


class _JsonText(f.Field):
    """Dump a JSON-encoded text column as the value it encodes."""

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else json.loads(value)


class AuditEventSchema(ma.Schema):
    seq = f.Integer(dump_only=True)
    occurred_at = f.AwareDateTime(dump_only=True)
    username = f.String(dump_only=True, allow_none=True)
    role = f.String(dump_only=True, allow_none=True)
    user_site = f.String(dump_only=True, allow_none=True)
    action = f.String(dump_only=True)
    entity_type = f.String(dump_only=True, allow_none=True)
    entity_id = f.String(dump_only=True, allow_none=True)
    entity_site = f.String(dump_only=True, allow_none=True)
    field = f.String(dump_only=True, allow_none=True)
    old_value = _JsonText(dump_only=True, allow_none=True)
    new_value = _JsonText(dump_only=True, allow_none=True)
    reason = f.String(dump_only=True, allow_none=True)
    detail = _JsonText(dump_only=True, allow_none=True)
    hash = f.String(dump_only=True)


class AuditQuerySchema(ma.Schema):
    entity_type = f.String(validate=v.Length(max=40))
    entity_id = f.String(validate=v.Length(max=80))
    site = f.String(validate=v.Length(max=10))
    action = f.String(validate=v.Length(max=40))
    # Bounded by the seq column's range (32-bit INTEGER on PostgreSQL): anything larger was a 500.
    after_seq = f.Integer(load_default=0, validate=v.Range(min=0, max=2**31 - 1))
    limit = f.Integer(load_default=100, validate=v.Range(min=1, max=1000))
