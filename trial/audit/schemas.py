import json
from datetime import UTC

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


class _UTCInstant(f.AwareDateTime):
    """An ISO 8601 date-time (an offset, or UTC when none), as a UTC instant."""

    default_error_messages = {
        "invalid": "Give an ISO 8601 date-time, such as 2026-01-15T09:30:00Z.",
        "range": "Give a date-time between the years 1900 and 9999 (UTC).",
    }

    def __init__(self, **kwargs):
        super().__init__(default_timezone=UTC, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        instant = super()._deserialize(value, attr, data, **kwargs)
        try:
            instant = instant.astimezone(UTC)
        except OverflowError:  # 9999-12-31T23:00-05:00 is past the last representable year
            raise self.make_error("range") from None
        if not 1900 <= instant.year <= 9999:
            raise self.make_error("range")
        return instant


class AuditQuerySchema(ma.Schema):
    """Filters combine (all must hold); site staff and monitors read their sites' rows only."""

    entity_type = f.String(validate=v.Length(max=40))
    entity_id = f.String(validate=v.Length(max=80))
    site = f.String(validate=v.Length(max=10))
    action = f.String(validate=v.Length(max=40))
    username = f.String(
        validate=v.Length(min=1, max=150),
        metadata={"description": "Rows of this acting account (its name, any case)."},
    )
    participant = f.String(
        validate=v.Length(min=1, max=20),
        metadata={
            "description": "A participant id: rows about it and every record under it "
            "(visits, forms, dosing, dispositions, deviations, eligibility, adverse events, "
            "expedited reports, queries)."
        },
    )
    from_ = _UTCInstant(
        data_key="from",
        metadata={"description": "Rows that occurred at or after this instant (ISO 8601)."},
    )
    to = _UTCInstant(metadata={"description": "Rows that occurred before this instant (ISO 8601)."})
    order = f.String(
        validate=v.OneOf(["chain", "newest"]),
        metadata={
            "description": "chain (default): oldest first, as the chain runs; newest: "
            "newest first. Both page with the X-Next-Cursor header's cursor."
        },
    )
    cursor = f.String(
        validate=v.Length(min=1, max=40),
        metadata={"description": "The X-Next-Cursor of the previous page, unchanged."},
    )
    # Bounded by the seq column's range (32-bit INTEGER on PostgreSQL): anything larger was a 500.
    after_seq = f.Integer(
        validate=v.Range(min=0, max=2**31 - 1),
        metadata={"description": "Chain order only: rows after this seq (the older paging)."},
    )
    limit = f.Integer(load_default=100, validate=v.Range(min=1, max=1000))

    @ma.validates_schema(skip_on_field_errors=False)
    def _consistent(self, data, **kwargs):
        """Name every field at fault at once: a range that ends before it starts, paging
        two ways, and a participant the reader cannot see (as if it did not exist)."""
        from trial.audit.reading import participant_errors

        errors = {}
        if "from_" in data and "to" in data and data["from_"] >= data["to"]:
            errors["to"] = ["Must be later than from."]
        if "after_seq" in data and ("cursor" in data or data.get("order") == "newest"):
            errors["after_seq"] = ["Page with after_seq in chain order only, or with cursor."]
        if "participant" in data:
            errors.update(participant_errors(data["participant"]))
        if errors:
            raise ma.ValidationError(errors)
