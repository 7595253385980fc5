import copy

import marshmallow as ma
from marshmallow import fields as f
from marshmallow import validate as v

from trial.reasons import ReasonField
from trial.records.versions import MAX_VERSION

# The body key of the version a change is made from (the precondition ``If-Match`` also gives).
VERSION = "version"


def version_field() -> f.Integer:
    """The optional precondition of a correction or an entered-in-error mark."""
    return f.Integer(
        load_only=True,
        strict=True,
        validate=v.Range(min=1, max=MAX_VERSION),
        metadata={
            "description": "The record's version you are changing (its `version`, or its ETag "
            "without the quotes); if the record has changed since, the request is refused "
            "with 412 naming the current version and values, and nothing is written. "
            "Optional, like `If-Match`, which says the same."
        },
    )


class ReasonSchema(ma.Schema):
    reason = ReasonField(required=True, load_only=True)
    version = version_field()


class RecordMetaSchema(ma.Schema):
    """The columns every captured record shows."""

    id = f.Integer(dump_only=True)
    participant_id = f.String(dump_only=True, attribute="participant_code")
    version = f.Integer(dump_only=True)
    entered_in_error = f.Boolean(dump_only=True)
    error_reason = f.String(dump_only=True, allow_none=True)
    created_at = f.AwareDateTime(dump_only=True)
    updated_at = f.AwareDateTime(dump_only=True)


# Where a PATCH body's "reason" (why the record changes) lands after loading: not under
# "reason", which a form may use for a field of its own (a disposition's reason).
CHANGE_REASON = "reason_for_change"


def patch_schema_for(
    create_schema: type[ma.Schema], name: str, keys: dict[str, str] | None = None
) -> type[ma.Schema]:
    """The PATCH body of a form: any of its fields, none required, plus a required reason
    and the optional ``version`` it corrects.

    ``keys`` gives a field another JSON key in the PATCH body when its own is taken by the
    reason for the change (a disposition's ``reason`` is corrected as ``disposition_reason``).
    """
    keys = keys or {}
    fields = {}
    for field_name, field in create_schema().load_fields.items():
        clone = copy.deepcopy(field)
        clone.required = False
        clone.load_default = ma.missing
        if field_name in keys:
            clone.data_key = keys[field_name]
        fields[field_name] = clone
    fields[CHANGE_REASON] = ReasonField(required=True, load_only=True, data_key="reason")
    fields[VERSION] = version_field()
    return ma.Schema.from_dict(fields, name=name)
