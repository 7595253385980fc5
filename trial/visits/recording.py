"""Record a new visit with its forms: checked whole, written with its audit rows."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, select

from trial.conduct.models import ProtocolDeviation
from trial.extensions import db
from trial.forms import services as forms
from trial.participants.models import Participant
from trial.participants.services import (
    get_visible_participant,
)
from trial.records.bulk import add_records, audit_creations
from trial.records.services import (
    raise_if_errors,
)
from trial.validation import checks_body
from trial.visits.checks import (
    VISIT_FIELDS,
    visit_errors,
)
from trial.visits.deviations import (
    out_of_window_deviation,
)
from trial.visits.models import Visit
from trial.visits.schemas import VisitCreateSchema

# What a new visit's body holds when a field is left out (VisitCreateSchema's defaults).
VISIT_DEFAULTS = {
    "status": "completed",
    "visit_date": None,
    "missed_reason": None,
    "drinking": [],
    "labs": [],
    "ocds": None,
    "ciwa": None,
    "vitals": None,
}
# What a new visit is checked against (its code not taken, its calendar period): the
# participant's active visits, as plain rows (read once for both rules).
_VISITS_TO_CHECK = select(Visit.id, Visit.visit_code, Visit.visit_date, Visit.status).where(
    Visit.participant_id == bindparam("participant"), Visit.entered_in_error.is_(False)
)


@checks_body(VisitCreateSchema)
def _check_new_visit(actor, values, failed, participant_id):
    raise_if_errors(visit_errors(get_visible_participant(actor, participant_id), values))


def record_visit(actor, participant: Participant, data: dict) -> Visit:
    """Create a visit and its forms in one step; refuse everything if anything is wrong."""
    data = {**VISIT_DEFAULTS, **data}  # as the schema loads them: every rule applies
    visits = db.session.execute(_VISITS_TO_CHECK, {"participant": participant.id}).all()
    raise_if_errors(visit_errors(participant, data, visits=visits))
    [visit] = record_visits(actor, [(participant, data)])
    return visit


def record_visits(actor, entries: Sequence[tuple[Participant, dict]]) -> list[Visit]:
    """Write checked visits, each ``(participant, data)`` with ``data`` as a loaded visit
    body: the visits, then for each completed one its automatic out-of-window deviation (if
    it is outside its window) and its forms; then their audit rows, field by field, in that
    order (``create_records``, in two steps: the forms need their visit's id)."""
    visit_items = [
        (
            Visit,
            participant,
            {**{k: data.get(k) for k in VISIT_FIELDS}, "signature_status": "unsigned"},
        )
        for participant, data in entries
    ]
    visits = add_records(actor, visit_items)
    items = []
    for visit, (participant, data) in zip(visits, entries, strict=True):
        if data.get("status", "completed") != "completed":
            continue
        values = out_of_window_deviation(participant, data["visit_code"], data["visit_date"])
        if values is not None:
            automatic = {**values, "automatic": True, "visit_id": visit.id}
            items.append((ProtocolDeviation, participant, automatic))
        items.extend(forms.form_records(participant, visit.id, data))
    records = add_records(actor, items)
    audit_creations(
        actor,
        [
            *zip(visits, [participant for participant, _ in entries], strict=True),
            *zip(records, [participant for _, participant, _ in items], strict=True),
        ],
    )
    return visits


# Re-exported by trial.visits.services until its import is updated (no caller uses it).
queue_visit = record_visits
