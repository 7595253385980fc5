"""What a participant's page shows, read through the services and dumped by the API's own
blinded schemas, so the page shows site staff exactly what the API shows them.

The records (schedule, visits, study drug, adverse events, dispositions, deviations) are
kept per process for the state of the trial they were read in (``trial.worklist.kept``: the
audit chain's head) and the site's date (a visit becomes due, overdue or missed as days
pass), so a page opened again while nothing changed reads only its open queries, whose age
moves by the hour. Nothing kept depends on who reads it: the page has checked that the
reader may see the participant, and every reader of it gets the same blinded records.
"""

from __future__ import annotations

from functools import cache

from trial.participants.services import site_today
from trial.worklist.kept import kept, trail_head

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
    return {**kept_records(actor, participant)[1], "queries": open_queries(actor, participant)}


def kept_records(actor, participant) -> tuple[tuple, dict]:
    """The participant's records as dumped (all but the queries), and the key of the trial's
    state they were read in. ``actor`` must be allowed to see the participant."""
    key = (participant.id, site_today(participant.site), trail_head())
    return key, kept("participant", key, lambda: _records(actor, participant))


def open_queries(actor, participant) -> list[dict]:
    from trial.queries.services import visible_queries

    return _schemas()["queries"].dump(
        visible_queries(actor, participant_id=participant.participant_id, status="open")
    )


def _records(actor, participant) -> dict:
    from trial.conduct.course import course_from
    from trial.conduct.models import Disposition, ProtocolDeviation
    from trial.dosing.models import DosingRecord
    from trial.records.registry import records_of
    from trial.safety.services import adverse_events_of, present
    from trial.visits.models import Visit
    from trial.visits.schedule import build_schedule, forms_held, missing_forms_from

    schemas = _schemas()
    visits = records_of(Visit, participant)
    dispositions = records_of(Disposition, participant)
    gaps = missing_forms_from(forms_held([participant.id]))
    # The course from the dispositions read here (the schedule would read them again).
    schedule = build_schedule(participant, visits, course_from(participant, dispositions), gaps)
    dumped = schemas["visits"].dump(visits)
    return {
        "schedule": schemas["schedule"].dump(schedule),
        "visits": [
            {**row, "missing_forms": gaps(visit)} for row, visit in zip(dumped, visits, strict=True)
        ],
        "dosing": schemas["dosing"].dump(records_of(DosingRecord, participant)),
        "adverse_events": schemas["adverse_events"].dump(
            present(adverse_events_of(actor, participant.participant_id))
        ),
        "dispositions": schemas["dispositions"].dump(dispositions),
        "deviations": schemas["deviations"].dump(records_of(ProtocolDeviation, participant)),
    }
