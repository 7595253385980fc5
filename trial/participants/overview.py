"""What a participant's page shows, read through the services and dumped by the API's own
blinded schemas, so the page shows site staff exactly what the API shows them."""

from __future__ import annotations

from functools import cache

_VISIT_FIELDS = ("id", "visit_code", "visit_date", "status", "signature_status")


@cache
def _schemas() -> dict:
    """The API's output schemas, built once (building one costs more than dumping a record;
    marshmallow schemas keep no state between dumps)."""
    from trial.conduct.schemas import DeviationSchema, DispositionSchema
    from trial.dosing.schemas import DosingSchema
    from trial.queries.schemas import QuerySchema
    from trial.safety.schemas import AdverseEventSchema
    from trial.visits.schemas import ScheduledVisitSchema, VisitSchema

    return {
        "schedule": ScheduledVisitSchema(many=True),
        "visits": VisitSchema(many=True, only=_VISIT_FIELDS),
        "dosing": DosingSchema(many=True),
        "adverse_events": AdverseEventSchema(many=True),
        "dispositions": DispositionSchema(many=True),
        "deviations": DeviationSchema(many=True),
        "queries": QuerySchema(many=True),
    }


def participant_overview(actor, participant) -> dict:
    """The participant's schedule, visits, study drug, adverse events, dispositions,
    deviations and open queries, each as the API's schema dumps it."""
    from trial.conduct.models import Disposition, ProtocolDeviation
    from trial.dosing.models import DosingRecord
    from trial.queries.services import visible_queries
    from trial.records.services import records_of
    from trial.safety.services import adverse_events_of, present
    from trial.visits.models import Visit
    from trial.visits.schedule import build_schedule, forms_held, missing_forms_from

    schemas = _schemas()
    visits = records_of(Visit, participant)
    gaps = missing_forms_from(forms_held([participant.id]))
    dumped = schemas["visits"].dump(visits)
    return {
        "schedule": schemas["schedule"].dump(build_schedule(participant, visits, None, gaps)),
        "visits": [
            {**row, "missing_forms": gaps(visit)} for row, visit in zip(dumped, visits, strict=True)
        ],
        "dosing": schemas["dosing"].dump(records_of(DosingRecord, participant)),
        "adverse_events": schemas["adverse_events"].dump(
            present(adverse_events_of(actor, participant.participant_id))
        ),
        "dispositions": schemas["dispositions"].dump(records_of(Disposition, participant)),
        "deviations": schemas["deviations"].dump(records_of(ProtocolDeviation, participant)),
        "queries": schemas["queries"].dump(
            visible_queries(actor, participant_id=participant.participant_id, status="open")
        ),
    }
