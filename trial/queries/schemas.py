import marshmallow as ma
from marshmallow import fields as f
from marshmallow import validate as v

from trial.queries.models import QUERY_ORIGINS, QUERY_STATUSES
from trial.validation import checks_body

TEXT_MAX = 4000


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ma.ValidationError("Write the text of the message; it cannot be blank.")


def _text(required: bool, description: str) -> f.String:
    return f.String(
        required=required,
        load_only=True,
        validate=[v.Length(min=1, max=TEXT_MAX), _not_blank],
        metadata={"description": description},
    )


class QueryRaiseSchema(ma.Schema):
    entity = f.String(
        required=True,
        load_only=True,
        validate=v.Length(min=1, max=40),
        metadata={"description": '"participant" or a captured record type, e.g. "visit"'},
    )
    record_id = f.String(
        required=True,
        load_only=True,
        validate=v.Length(min=1, max=80),
        metadata={
            "description": 'The record\'s id as text: a participant id ("S01-0001") or the '
            'record\'s number ("42")'
        },
    )
    field = f.String(
        load_only=True,
        validate=v.Length(min=1, max=80),
        metadata={"description": "The queried field (optional; the whole record if absent)"},
    )
    text = _text(True, "The question to the site")


@checks_body(QueryRaiseSchema)
def _check_query_target(actor, values, failed, **_):
    """The record type and field of a query whose body failed its schema (the service's
    rule: ``trial.queries.services._check_target``), so both kinds of error come at once."""
    from trial.queries.services import _check_target

    if "entity" in values:
        _check_target(values["entity"], None if "field" in failed else values.get("field"))


class QueryAnswerSchema(ma.Schema):
    text = _text(True, "The site's answer")


class QueryCloseSchema(ma.Schema):
    text = _text(False, "Optional closing remark")


class QueryReopenSchema(ma.Schema):
    text = _text(True, "Why the query is re-opened")


class QueryListArgsSchema(ma.Schema):
    site = f.String(validate=v.Length(min=1, max=10))
    status = f.String(validate=v.OneOf(QUERY_STATUSES))
    entity = f.String(validate=v.Length(min=1, max=40))
    participant_id = f.String(validate=v.Length(min=1, max=20))
    origin = f.String(
        validate=v.OneOf(QUERY_ORIGINS),
        metadata={"description": "manual (raised by a person) or system (by an edit check)"},
    )


class QueryMessageSchema(ma.Schema):
    kind = f.String(dump_only=True)
    text = f.String(dump_only=True, allow_none=True)
    at = f.AwareDateTime(dump_only=True)
    by = f.String(dump_only=True, attribute="by_username")
    role = f.String(dump_only=True, attribute="by_role")
    automatic = f.Boolean(
        dump_only=True,
        metadata={
            "description": "Written by the system (an edit check) on the entry of the user "
            "named in by"
        },
    )


class QuerySchema(ma.Schema):
    query_id = f.Integer(dump_only=True, attribute="id")
    entity = f.String(dump_only=True)
    record_id = f.String(dump_only=True)
    field = f.String(dump_only=True, allow_none=True)
    participant_id = f.String(dump_only=True, attribute="participant_code")
    site = f.String(dump_only=True, attribute="site_code")
    text = f.String(dump_only=True)
    status = f.String(dump_only=True)
    opened_at = f.AwareDateTime(dump_only=True)
    origin = f.String(
        dump_only=True,
        metadata={"description": "manual (raised by a person) or system (by an edit check)"},
    )
    rule = f.String(
        dump_only=True,
        allow_none=True,
        metadata={"description": "The edit check that raised a system query (null if manual)"},
    )
    opened_by = f.String(
        dump_only=True,
        attribute="opened_by_username",
        metadata={
            "description": "Who raised it; for a system query, the user whose entry fired the check"
        },
    )
    updated_at = f.AwareDateTime(dump_only=True)
    closed_at = f.AwareDateTime(dump_only=True, allow_none=True)
    age_days = f.Integer(
        dump_only=True,
        metadata={
            "description": "Whole days (server UTC) from opening to now, or to closing for a "
            "closed query"
        },
    )


class QueryDetailSchema(QuerySchema):
    messages = f.List(f.Nested(QueryMessageSchema), dump_only=True)


class SiteQuerySummarySchema(ma.Schema):
    site = f.String(dump_only=True)
    open = f.Integer(dump_only=True, metadata={"description": "Queries awaiting the site"})
    oldest_open_age_days = f.Integer(
        dump_only=True,
        allow_none=True,
        metadata={"description": "Age in whole days of the oldest open query (null if none)"},
    )
    answered = f.Integer(
        dump_only=True, metadata={"description": "Answered queries awaiting the monitor"}
    )
