"""The warning an edit check returns beside a saved entry (visit or form answers)."""

import marshmallow as ma
from marshmallow import fields as f


class EditCheckWarningSchema(ma.Schema):
    rule = f.String(dump_only=True, metadata={"description": "The edit check's id"})
    form = f.String(dump_only=True, metadata={"description": "drinking, labs, vitals, ocds, ciwa"})
    field = f.String(
        dump_only=True,
        metadata={"description": "Where the value sits in the visit's answer: labs.0.value"},
    )
    message = f.String(dump_only=True)
    entity = f.String(dump_only=True, metadata={"description": "The record type queried"})
    record_id = f.String(dump_only=True)
    query_id = f.Integer(
        dump_only=True, metadata={"description": "The data query raised (or already open)"}
    )
