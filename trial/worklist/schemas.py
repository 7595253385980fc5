import marshmallow as ma
from marshmallow import fields as f
from marshmallow import validate as v


class WorklistQuerySchema(ma.Schema):
    site = f.String(validate=v.Length(min=1, max=10))
    start = f.Date(
        data_key="from",
        metadata={"description": "visits whose window closes on or after this date"},
    )
    end = f.Date(
        data_key="to",
        metadata={"description": "visits whose window opens on or before this date"},
    )

    @ma.validates_schema
    def _ordered(self, data, **_):
        if data.get("start") and data.get("end") and data["start"] > data["end"]:
            raise ma.ValidationError("from is after to", "from")


class SiteDaySchema(ma.Schema):
    site = f.String()
    today = f.Date(metadata={"description": "today's date where the site is"})


class DueVisitSchema(ma.Schema):
    participant_id = f.String()
    site = f.String()
    participant_status = f.String()
    visit_code = f.String()
    label = f.String()
    day = f.Integer()
    status = f.String(metadata={"description": "due or overdue"})
    target_date = f.Date()
    earliest_date = f.Date()
    latest_date = f.Date()
    days_overdue = f.Integer()
    forms = f.List(f.String())
    calendar_from = f.Date(allow_none=True)
    calendar_to = f.Date(allow_none=True)


class VisitItemSchema(ma.Schema):
    participant_id = f.String()
    site = f.String()
    visit_id = f.Integer()
    visit_code = f.String()
    visit_date = f.Date()


class MissingFormsSchema(VisitItemSchema):
    missing_forms = f.List(f.String())


class UnsignedVisitSchema(VisitItemSchema):
    signature_status = f.String(metadata={"description": "unsigned or invalidated"})


class OpenQuerySchema(ma.Schema):
    query_id = f.Integer()
    participant_id = f.String()
    site = f.String()
    entity = f.String()
    record_id = f.String()
    field = f.String(allow_none=True)
    text = f.String()
    opened_at = f.AwareDateTime()
    age_days = f.Integer()


class SaeClockSchema(ma.Schema):
    report_id = f.Integer()
    adverse_event_id = f.Integer()
    participant_id = f.String()
    site = f.String()
    term = f.String()
    status = f.String()
    due_at = f.AwareDateTime()
    overdue = f.Boolean()


class WorklistSchema(ma.Schema):
    sites = f.List(f.Nested(SiteDaySchema))
    start = f.Date(data_key="from", allow_none=True)
    end = f.Date(data_key="to", allow_none=True)
    visits_due = f.List(f.Nested(DueVisitSchema))
    missing_forms = f.List(f.Nested(MissingFormsSchema))
    awaiting_signature = f.List(f.Nested(UnsignedVisitSchema))
    open_queries = f.List(f.Nested(OpenQuerySchema))
    serious_adverse_events = f.List(f.Nested(SaeClockSchema))
