"""Record many visits with their forms at once: the bulk path of ``record_visit``.

For loads of data already checked against the rules ``record_visit`` applies (the demo
trial). Each visit, form and automatic out-of-window deviation gets the same rows and the
same field-by-field audit rows as through ``record_visit``; only the number of round trips
differs: the visits, deviations and forms go in as one batch (``queue_visit``).
"""

from __future__ import annotations

from collections.abc import Sequence

from trial.participants.models import Participant
from trial.records.bulk import RecordBatch
from trial.visits.models import Visit
from trial.visits.services import queue_visit


def record_visits_bulk(actor, entries: Sequence[tuple[Participant, dict]]) -> list[int]:
    """Create each ``(participant, data)`` visit; ``data`` has the shape of a visit POST body
    after loading (``drinking`` entries keyed ``day``). Returns the visit ids in order."""
    batch = RecordBatch(actor)
    for participant, data in entries:
        queue_visit(batch, participant, data)
    return [row["id"] for row in batch.write().get(Visit, ())]
