"""Record many visits with their forms at once: the bulk path of ``record_visit``.

For loads of data already checked against the rules ``record_visit`` applies (the demo
trial). Each visit, form and automatic out-of-window deviation gets the same rows and the
same field-by-field audit rows as through ``record_visit``; only the number of round trips
differs. Forms need their visit's id, so the visits go in first, then every form type in
one batch.
"""

from __future__ import annotations

from collections.abc import Sequence

from trial.conduct.models import ProtocolDeviation
from trial.forms.services import add_forms
from trial.participants.models import Participant
from trial.records.bulk import RecordBatch, create_records_bulk
from trial.visits.models import Visit
from trial.visits.services import out_of_window_deviation

VISIT_FIELDS = ("visit_code", "visit_date", "status", "missed_reason")


def record_visits_bulk(actor, entries: Sequence[tuple[Participant, dict]]) -> list[int]:
    """Create each ``(participant, data)`` visit; ``data`` has the shape of a visit POST body
    after loading (``drinking`` entries keyed ``day``). Returns the visit ids in order."""
    visits = [
        (participant, {**{k: data.get(k) for k in VISIT_FIELDS}, "signature_status": "unsigned"})
        for participant, data in entries
    ]
    visit_ids = create_records_bulk(actor, Visit, visits)
    deviations, forms = RecordBatch(actor), RecordBatch(actor)
    for visit_id, (participant, data) in zip(visit_ids, entries, strict=True):
        if data.get("status", "completed") != "completed":
            continue
        values = out_of_window_deviation(participant, data["visit_code"], data["visit_date"])
        if values is not None:
            deviations.add(
                ProtocolDeviation, participant, {**values, "automatic": True, "visit_id": visit_id}
            )
        add_forms(forms, participant, visit_id, data)
    deviations.write()
    forms.write()
    return visit_ids
