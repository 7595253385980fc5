"""Request and response schemas of the safety endpoints; bodies refuse unknown fields."""

import marshmallow as ma
from marshmallow import fields as f
from marshmallow import validate as v

from trial.reasons import ReasonField
from trial.records.schemas import version_field
from trial.safety.definitions import TREATMENT_EMERGENT
from trial.safety.models import (
    ACTIONS_TAKEN,
    CODING_SOURCES,
    EXPEDITED_STATUSES,
    OUTCOMES,
    RELATEDNESS,
    SERIOUSNESS_CRITERIA,
    TERM_MAX,
)


def _one_of(values, what: str):
    return v.OneOf(values, error=f"Use one of {', '.join(values)} for the {what}.")


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ma.ValidationError("Cannot be blank.")


class StrictBoolean(f.Boolean):
    """Only JSON true or false: 1, "yes" or "true" are refused rather than guessed at."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


def _unique(values) -> None:
    if len(set(values)) != len(values):
        raise ma.ValidationError("Name each seriousness criterion once.")


class _Body(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    @ma.post_load
    def _trim_term(self, data, **_):
        if "term" in data:
            data["term"] = data["term"].strip()
        return data


def _entry_fields(required: bool) -> dict:
    """The fields a site enters; required on create, optional on a correction."""
    return {
        "term": f.String(
            required=required,
            validate=[v.Length(min=1, max=TERM_MAX), _not_blank],
            metadata={"description": "Verbatim term as reported (coded to MedDRA on save)"},
        ),
        "onset_date": f.Date(required=required, metadata={"description": "Site-local date"}),
        "end_date": f.Date(
            allow_none=True,
            load_default=None if required else ma.missing,
            metadata={"description": "Empty while ongoing; not before onset"},
        ),
        "grade": f.Integer(
            required=required,
            strict=True,
            validate=v.Range(min=1, max=5, error="CTCAE grade is 1 to 5."),
        ),
        "serious": StrictBoolean(required=required),
        "seriousness_criteria": f.List(
            f.String(validate=_one_of(SERIOUSNESS_CRITERIA, "seriousness criterion")),
            validate=_unique,
            load_default=list if required else ma.missing,
            metadata={"description": "Required (at least one) when serious; empty otherwise"},
        ),
        "awareness_date": f.Date(
            allow_none=True,
            load_default=None if required else ma.missing,
            metadata={
                "description": "Site-local date the site learned of the event (of a serious "
                "one: that it was serious); required when serious, not before onset, not in "
                "the future. The 24-hour expedited clock runs from it."
            },
        ),
        "relatedness": f.String(
            required=required, validate=_one_of(RELATEDNESS, "relatedness to study drug")
        ),
        "action_taken": f.String(
            required=required, validate=_one_of(ACTIONS_TAKEN, "action taken with study drug")
        ),
        "outcome": f.String(required=required, validate=_one_of(OUTCOMES, "outcome")),
    }


AdverseEventCreateSchema = _Body.from_dict(_entry_fields(True), name="AdverseEventCreate")

AdverseEventCorrectionSchema = _Body.from_dict(
    {
        **_entry_fields(False),
        "reason": ReasonField(
            required=True, metadata={"description": "Why the record is changed (audited)"}
        ),
        "version": version_field(),
    },
    name="AdverseEventCorrection",
)


class EnteredInErrorSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    reason = ReasonField(required=True)
    version = version_field()


class EmptyBodySchema(ma.Schema):
    """A step that takes no input: any field sent is refused, not ignored."""

    class Meta:
        unknown = ma.RAISE


class AdverseEventListQuerySchema(ma.Schema):
    include_entered_in_error = f.Boolean(load_default=False)


class AdverseEventSchema(ma.Schema):
    id = f.Integer(dump_only=True)
    participant_id = f.String(dump_only=True)
    site = f.String(dump_only=True)
    term = f.String(dump_only=True)
    onset_date = f.Date(dump_only=True)
    end_date = f.Date(dump_only=True, allow_none=True)
    grade = f.Integer(dump_only=True)
    serious = f.Boolean(dump_only=True)
    seriousness_criteria = f.List(f.String(), dump_only=True)
    awareness_date = f.Date(dump_only=True, allow_none=True)
    relatedness = f.String(dump_only=True)
    action_taken = f.String(dump_only=True)
    outcome = f.String(dump_only=True)
    preferred_term = f.String(
        dump_only=True, allow_none=True, metadata={"description": "MedDRA PT; null if uncoded"}
    )
    system_organ_class = f.String(
        dump_only=True, allow_none=True, metadata={"description": "Primary MedDRA SOC"}
    )
    coded = f.Boolean(dump_only=True)
    coding_source = f.String(dump_only=True, metadata={"enum": list(CODING_SOURCES)})
    treatment_emergent = f.Boolean(
        dump_only=True, metadata={"description": f"{TREATMENT_EMERGENT.capitalize()} date"}
    )
    version = f.Integer(dump_only=True)
    entered_in_error = f.Boolean(dump_only=True)
    error_reason = f.String(dump_only=True, allow_none=True)
    created_at = f.AwareDateTime(dump_only=True)
    updated_at = f.AwareDateTime(dump_only=True)


class ExpeditedReportQuerySchema(ma.Schema):
    status = f.String(validate=_one_of(EXPEDITED_STATUSES, "report status"))
    site = f.String(validate=v.Length(min=1, max=10), metadata={"description": "Site code"})


class ExpeditedReportSchema(ma.Schema):
    """A serious AE's report and its clock; the same fields for every report, no arm."""

    id = f.Integer(dump_only=True)
    adverse_event_id = f.Integer(dump_only=True)
    participant_id = f.String(dump_only=True)
    site = f.String(dump_only=True)
    term = f.String(dump_only=True)
    preferred_term = f.String(dump_only=True, allow_none=True)
    system_organ_class = f.String(dump_only=True, allow_none=True)
    onset_date = f.Date(dump_only=True)
    awareness_date = f.Date(dump_only=True, allow_none=True)
    grade = f.Integer(dump_only=True)
    serious = f.Boolean(dump_only=True)
    seriousness_criteria = f.List(f.String(), dump_only=True)
    relatedness = f.String(dump_only=True)
    outcome = f.String(dump_only=True)
    status = f.String(dump_only=True, metadata={"enum": list(EXPEDITED_STATUSES)})
    created_at = f.AwareDateTime(dump_only=True)
    due_at = f.AwareDateTime(
        dump_only=True,
        metadata={"description": "00:00 at the site two days after the awareness date (UTC)"},
    )
    overdue = f.Boolean(dump_only=True, metadata={"description": "Open and past due"})
    submitted_at = f.AwareDateTime(dump_only=True, allow_none=True)
    submitted_by = f.String(dump_only=True, allow_none=True)
    submitted_late = f.Boolean(
        dump_only=True, allow_none=True, metadata={"description": "Null until submitted"}
    )
    acknowledged_at = f.AwareDateTime(dump_only=True, allow_none=True)
    acknowledged_by = f.String(dump_only=True, allow_none=True)


class CodingSchema(ma.Schema):
    """A data manager's coding of an AE's verbatim term (a first coding or a re-coding)."""

    class Meta:
        unknown = ma.RAISE

    preferred_term = f.String(
        required=True,
        validate=[v.Length(min=1, max=TERM_MAX), _not_blank],
        metadata={"description": "A preferred term of the loaded dictionary (any case)"},
    )
    reason = ReasonField(
        required=True, metadata={"description": "Why the term is coded so (audited)"}
    )
    version = version_field()


TERM_QUERY_MAX = 100


class TermSearchQuerySchema(ma.Schema):
    q = f.String(
        required=True,
        validate=[v.Length(min=1, max=TERM_QUERY_MAX), _not_blank],
        metadata={"description": "Start of a term or of one of its words (any case)"},
    )
    limit = f.Integer(load_default=20, validate=v.Range(min=1, max=50))


class TermMatchSchema(ma.Schema):
    preferred_term = f.String(dump_only=True)
    system_organ_class = f.String(dump_only=True)
    matched_term = f.String(
        dump_only=True,
        allow_none=True,
        metadata={
            "description": "The synonym (lowest level term) that matched; null when "
            "the preferred term itself did"
        },
    )
    source = f.String(dump_only=True, metadata={"enum": ["sponsor", "builtin"]})
