"""Record a new visit with its forms: checked whole, written with its audit rows."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, select
from sqlalchemy.orm.attributes import set_committed_value

from trial.conduct.models import ProtocolDeviation
from trial.extensions import db
from trial.forms import services as forms
from trial.forms.edit_checks.run import run_visit_checks
from trial.forms.models import (
    BLINDING_RESPONDENTS,
    BlindingAssessment,
    CiwaAssessment,
    DrinkingDay,
    LabResult,
    OcdsAssessment,
    Vitals,
)
from trial.participants.models import Participant
from trial.participants.services import (
    get_visible_participant,
)
from trial.records.bulk import add_records, audit_creations, audit_inserted, insert_records
from trial.records.services import raise_if_errors
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
    "out_of_window_reason": None,
    "drinking": [],
    "labs": [],
    "blinding": [],
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
    visit.warnings = run_visit_checks(actor, participant, visit, earlier=visits)
    return visit


def record_visits(actor, entries: Sequence[tuple[Participant, dict]]) -> list[Visit]:
    """Write checked visits, each ``(participant, data)`` with ``data`` as a loaded visit
    body: the visits, then for each completed one its automatic out-of-window deviation (if
    it is outside its window) and its forms; then their audit rows, field by field, in that
    order (``create_records``, in two steps: the forms need their visit's id). Each visit
    holds its forms as written (``_hold_written``): its answer needs no read-back."""
    visit_items = _visit_items(entries)
    visits = add_records(actor, visit_items)
    items = _form_items([visit.id for visit in visits], entries)
    records = add_records(actor, items)
    held: dict[int, list] = {visit.id: [] for visit in visits}
    for record in records:
        held[record.visit_id].append(record)
    for visit, (participant, _) in zip(visits, entries, strict=True):
        _hold_written(visit, participant, held[visit.id])
    audit_creations(
        actor,
        [
            *zip(visits, [participant for participant, _ in entries], strict=True),
            *zip(records, [participant for _, participant, _ in items], strict=True),
        ],
    )
    return visits


def store_visits(actor, entries: Sequence[tuple[Participant, dict]]) -> None:
    """Write checked visits as ``record_visits`` does (the same rows and audit rows, in the
    same order) as plain rows, for a bulk load that needs no visit back (the demo)."""
    visit_items = _visit_items(entries)
    visits = insert_records(actor, visit_items)
    items = _form_items([visit["id"] for visit in visits], entries)
    records = insert_records(actor, items)
    audit_inserted(
        actor,
        [
            (model, participant, row)
            for (model, participant, _), row in zip(
                [*visit_items, *items], [*visits, *records], strict=True
            )
        ],
    )


def _visit_items(entries: Sequence[tuple[Participant, dict]]) -> list[tuple]:
    return [
        (
            Visit,
            participant,
            {**{k: data.get(k) for k in VISIT_FIELDS}, "signature_status": "unsigned"},
        )
        for participant, data in entries
    ]


def _form_items(visit_ids: list[int], entries: Sequence[tuple[Participant, dict]]) -> list[tuple]:
    """Each completed visit's automatic out-of-window deviation (if any) and forms, as
    ``create_records`` items, visit by visit."""
    items = []
    for visit_id, (participant, data) in zip(visit_ids, entries, strict=True):
        if data.get("status", "completed") != "completed":
            continue
        values = out_of_window_deviation(
            participant, data["visit_code"], data["visit_date"], data.get("out_of_window_reason")
        )
        if values is not None:
            automatic = {**values, "automatic": True, "visit_id": visit_id}
            items.append((ProtocolDeviation, participant, automatic))
        items.extend(forms.form_records(participant, visit_id, data))
    return items


def _hold_written(visit: Visit, participant: Participant, records: list) -> None:
    """Give a new visit its participant and forms as just written, as its relationships
    would load them (drinking days by day, labs by test, guesses by respondent, one OCDS,
    CIWA-Ar and vitals or none), and each form its participant: the visit's answer needs no
    read-back."""

    def of(model):
        return [record for record in records if type(record) is model]

    for record in (visit, *records):
        set_committed_value(record, "participant", participant)
    set_committed_value(visit, "drinking_days", sorted(of(DrinkingDay), key=lambda d: d.day))
    set_committed_value(visit, "labs", sorted(of(LabResult), key=lambda lab: lab.test))
    set_committed_value(
        visit,
        "blinding",
        sorted(
            of(BlindingAssessment), key=lambda guess: BLINDING_RESPONDENTS.index(guess.respondent)
        ),
    )
    for name, model in (("ocds", OcdsAssessment), ("ciwa", CiwaAssessment), ("vitals", Vitals)):
        set_committed_value(visit, name, next(iter(of(model)), None))
