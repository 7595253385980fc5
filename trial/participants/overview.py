"""What a participant's page shows, read through the services and dumped by the API's own
blinded schemas, so the page shows site staff exactly what the API shows them."""

from __future__ import annotations


def participant_overview(actor, participant) -> dict:
    """The participant's schedule, visits, study drug, adverse events, dispositions,
    deviations and open queries, each as the API's schema dumps it."""
    from trial.conduct.models import Disposition, ProtocolDeviation
    from trial.conduct.schemas import DeviationSchema, DispositionSchema
    from trial.dosing.models import DosingRecord
    from trial.dosing.schemas import DosingSchema
    from trial.queries.schemas import QuerySchema
    from trial.queries.services import visible_queries
    from trial.records.services import records_of
    from trial.safety.schemas import AdverseEventSchema
    from trial.safety.services import adverse_events_of, present
    from trial.visits.models import Visit
    from trial.visits.schedule import build_schedule, forms_held, missing_forms_from
    from trial.visits.schemas import ScheduledVisitSchema, VisitSchema

    visits = records_of(Visit, participant)
    gaps = missing_forms_from(forms_held([participant.id]))
    schedule = build_schedule(participant, visits, missing_forms=gaps)
    return {
        "schedule": ScheduledVisitSchema(many=True).dump(schedule),
        "visits": [
            {**VisitSchema(only=_VISIT_FIELDS).dump(v), "missing_forms": gaps(v)} for v in visits
        ],
        "dosing": DosingSchema(many=True).dump(records_of(DosingRecord, participant)),
        "adverse_events": AdverseEventSchema(many=True).dump(
            present(adverse_events_of(actor, participant.participant_id))
        ),
        "dispositions": DispositionSchema(many=True).dump(records_of(Disposition, participant)),
        "deviations": DeviationSchema(many=True).dump(records_of(ProtocolDeviation, participant)),
        "queries": QuerySchema(many=True).dump(
            visible_queries(actor, participant_id=participant.participant_id, status="open")
        ),
    }


_VISIT_FIELDS = ("id", "visit_code", "visit_date", "status", "signature_status")
