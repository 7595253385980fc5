import marshmallow as ma
from marshmallow import fields as f
from marshmallow import validate as v

from trial.forms.edit_checks.schemas import EditCheckWarningSchema
from trial.forms.schemas import (
    BlindingInput,
    BlindingSchema,
    CiwaInput,
    CiwaSchema,
    DrinkingDayInput,
    DrinkingDaySchema,
    LabInput,
    LabSchema,
    OcdsInput,
    OcdsSchema,
    VitalsInput,
    VitalsSchema,
)
from trial.reasons import ReasonField
from trial.records.schemas import RecordMetaSchema, version_field


class VisitCreateSchema(ma.Schema):
    visit_code = f.String(
        required=True,
        validate=v.Length(min=1, max=40),
        metadata={
            "description": "a visit code of the protocol, e.g. baseline, titration_w1, week_8"
        },
    )
    status = f.String(load_default="completed", validate=v.OneOf(["completed", "missed"]))
    visit_date = f.Date(
        load_default=None,
        allow_none=True,
        metadata={"description": "required for a completed visit"},
    )
    missed_reason = ReasonField(load_default=None, allow_none=True)
    out_of_window_reason = ReasonField(
        load_default=None,
        allow_none=True,
        metadata={
            "description": "required when a completed visit's date is outside its window: "
            "why it was done late or early (it is kept on the automatic deviation)"
        },
    )
    drinking = f.List(
        f.Nested(DrinkingDayInput),
        load_default=list,
        validate=v.Length(max=400),
        metadata={"description": "Timeline Followback days since the last visit"},
    )
    ocds = f.Nested(OcdsInput, load_default=None, allow_none=True)
    ciwa = f.Nested(CiwaInput, load_default=None, allow_none=True)
    vitals = f.Nested(VitalsInput, load_default=None, allow_none=True)
    labs = f.List(f.Nested(LabInput), load_default=list, validate=v.Length(max=20))
    blinding = f.List(
        f.Nested(BlindingInput),
        load_default=list,
        validate=v.Length(max=2),
        metadata={
            "description": "the blinding assessment: the participant's and the investigator's "
            "guess of the arm, each once"
        },
    )


class VisitPatchSchema(ma.Schema):
    visit_date = f.Date(allow_none=True)
    status = f.String(validate=v.OneOf(["completed", "missed"]))
    missed_reason = ReasonField(allow_none=True)
    out_of_window_reason = ReasonField(allow_none=True)
    reason = ReasonField(required=True, load_only=True)
    version = version_field()


class SignSchema(ma.Schema):
    password = f.String(required=True, load_only=True, validate=v.Length(min=1, max=1024))


class VisitSchema(RecordMetaSchema):
    visit_code = f.String(dump_only=True)
    visit_date = f.Date(dump_only=True, allow_none=True)
    status = f.String(dump_only=True)
    missed_reason = f.String(dump_only=True, allow_none=True)
    out_of_window_reason = f.String(dump_only=True, allow_none=True)
    expected_forms = f.List(
        f.String(),
        dump_only=True,
        metadata={"description": "the forms the protocol names for this visit"},
    )
    missing_forms = f.List(
        f.String(),
        dump_only=True,
        metadata={"description": "expected forms this completed visit does not hold"},
    )
    signature_status = f.String(dump_only=True)
    signed_at = f.AwareDateTime(dump_only=True, allow_none=True)
    signature_meaning = f.String(dump_only=True, allow_none=True)
    signed_by = f.String(dump_only=True, allow_none=True, attribute="signer_name")
    drinking = f.Nested(DrinkingDaySchema, many=True, dump_only=True, attribute="drinking_days")
    ocds = f.Nested(OcdsSchema, dump_only=True, allow_none=True)
    ciwa = f.Nested(CiwaSchema, dump_only=True, allow_none=True)
    vitals = f.Nested(VitalsSchema, dump_only=True, allow_none=True)
    labs = f.Nested(LabSchema, many=True, dump_only=True)
    blinding = f.Nested(BlindingSchema, many=True, dump_only=True)
    warnings = f.List(
        f.Nested(EditCheckWarningSchema),
        dump_only=True,
        metadata={
            "description": "unusual values saved and queried (edit checks); only on the "
            "answer to the change that raised them"
        },
    )


class ScheduledVisitSchema(ma.Schema):
    code = f.String(dump_only=True)
    label = f.String(dump_only=True)
    day = f.Integer(dump_only=True)
    forms = f.List(
        f.String(),
        dump_only=True,
        metadata={"description": "the forms the visit collects (drinking, ocds, ciwa, ...)"},
    )
    calendar_from = f.Date(
        dump_only=True,
        allow_none=True,
        metadata={
            "description": "first day the visit's drinking calendar must cover (if done on "
            "its target date, or on its recorded date)"
        },
    )
    calendar_to = f.Date(dump_only=True, allow_none=True)
    missing_forms = f.List(f.String(), dump_only=True)
    target_date = f.Date(dump_only=True, allow_none=True)
    earliest_date = f.Date(dump_only=True, allow_none=True)
    latest_date = f.Date(dump_only=True, allow_none=True)
    status = f.String(
        dump_only=True,
        metadata={
            "description": "upcoming, due, overdue, completed, missed, or not_expected (after "
            "a final disposition, or for a participant never randomized)"
        },
    )
    visit_id = f.Integer(dump_only=True, allow_none=True)
    visit_date = f.Date(dump_only=True, allow_none=True)
