"""Visit operations: record, correct, mark in error, sign, and void a signature.

A visit is refused whole when any part is wrong (the errors name each field, forms
prefixed: ``drinking.2.date``, ``vitals.diastolic_bp``). A visit outside its window is
accepted and raises an automatic protocol deviation. The rules are in ``checks``, the new
visit's write in ``recording``, the window deviation in ``deviations``.
"""

from __future__ import annotations

from sqlalchemy import select

from trial.audit.services import record_event
from trial.auth.services import verify_password
from trial.conduct.models import ProtocolDeviation
from trial.database import utcnow
from trial.errors import Conflict, Forbidden
from trial.extensions import db
from trial.participants.models import Participant
from trial.reasons import require_reason
from trial.records.services import (
    check_version,
    correct_record,
    ensure_correctable,
    get_visible_record,
    mark_entered_in_error,
)
from trial.validation import checks_body
from trial.visits.checks import (
    VISIT_FIELDS,
    active_forms,
    coherent_visit_changes,
    revalidate_visit,
)
from trial.visits.deviations import (
    after_visit_corrected,
    flag_visits_in_new_schedule,
)
from trial.visits.models import SIGNATURE_MEANING, Visit
from trial.visits.recording import queue_visit, record_visit
from trial.visits.schemas import VisitPatchSchema

__all__ = [
    "correct_visit",
    "flag_visits_in_new_schedule",
    "invalidate_signature",
    "mark_visit_in_error",
    "queue_visit",
    "record_visit",
    "sign_visit",
]


@checks_body(VisitPatchSchema)
def _check_visit_correction(actor, values, failed, visit_id):
    """The rules of a visit correction whose body failed its schema, on the part that loaded
    (the correction view applies the same steps to a body that loads)."""
    visit, participant = get_visible_record(actor, "visit", visit_id)
    ensure_correctable(visit)
    changes = coherent_visit_changes(visit, {k: v for k, v in values.items() if k in VISIT_FIELDS})
    merged = {field: getattr(visit, field) for field in Visit.AUDITED_FIELDS if field not in failed}
    merged.update(changes)
    revalidate_visit(actor, participant, visit, merged)


def correct_visit(
    actor,
    visit: Visit,
    participant: Participant,
    body: dict,
    reason: str | None,
    *,
    expected_version: int | None = None,
) -> int:
    """Correct a visit's date, status or missed reason with a reason, from the version the
    change was made from (``expected_version``; None: as it is now).

    In the order a person is told: a visit entered in error (409), a stale version (412,
    naming the current value of each field sent), the visit as corrected (422), a body that
    changes nothing (422 ``no_change``). Keeps the automatic out-of-window deviation true and
    voids the signature. The caller holds the visit's row (``get_visible_record(...,
    lock=True)``). Returns the number of fields changed.
    """
    ensure_correctable(visit)
    check_version(visit, expected_version, {field: getattr(visit, field) for field in body})
    changes = coherent_visit_changes(visit, body)
    merged = {field: getattr(visit, field) for field in Visit.AUDITED_FIELDS}
    merged.update(changes)
    revalidate_visit(actor, participant, visit, merged)
    count = correct_record(
        actor,
        visit,
        participant,
        changes,
        reason,
        expected_version=expected_version,
        require_change=True,
    )
    after_visit_corrected(actor, participant, visit)
    invalidate_signature(actor, visit)
    return count


def mark_visit_in_error(
    actor,
    visit: Visit,
    participant: Participant,
    reason: str,
    *,
    expected_version: int | None = None,
) -> None:
    """Mark a visit in error with its forms and its automatic deviation, each audited.

    The forms and the deviation describe the visit; left active they would stay in every
    output and block the days and the visit from being entered again correctly.
    ``expected_version``: the visit's version the mark was made from (412 if stale).
    """
    reason = require_reason(reason, what="marking a record entered in error")
    mark_entered_in_error(actor, visit, participant, reason, expected_version=expected_version)
    deviations = db.session.scalars(
        select(ProtocolDeviation).where(
            ProtocolDeviation.visit_id == visit.id,
            ProtocolDeviation.automatic.is_(True),
            ProtocolDeviation.entered_in_error.is_(False),
        )
    )
    because = f"Visit {visit.id} was entered in error: {reason}"
    for record in [*active_forms(visit), *deviations]:
        mark_entered_in_error(actor, record, participant, because)


def sign_visit(actor, visit: Visit, participant: Participant, password: str) -> bool:
    """An investigator signs a visit: name, server UTC time, meaning. False: bad password."""
    if actor.role != "investigator":
        raise Forbidden("Only an investigator signs visits.")
    if visit.entered_in_error:
        raise Conflict("A visit marked as entered in error cannot be signed.")
    if not verify_password(actor, password):
        record_event(
            actor,
            "sign_refused",
            entity_type="visit",
            entity_id=visit.entity_id,
            entity_site=participant.site_code,
            detail={"cause": "password incorrect"},
        )
        return False
    old = visit.signature_status
    visit.signature_status = "signed"
    visit.signed_by_id, visit.signed_at = actor.id, utcnow()
    visit.signature_meaning = SIGNATURE_MEANING
    db.session.flush()
    record_event(
        actor,
        "sign",
        entity_type="visit",
        entity_id=visit.entity_id,
        entity_site=participant.site_code,
        field="signature_status",
        old=old,
        new="signed",
        detail={"meaning": SIGNATURE_MEANING, "signed_at": visit.signed_at.isoformat()},
    )
    return True


def invalidate_signature(actor, record) -> None:
    """Any change to a signed visit or to one of its forms voids the signature."""
    visit = (
        record
        if isinstance(record, Visit)
        else (db.session.get(Visit, record.visit_id) if getattr(record, "visit_id", None) else None)
    )
    if visit is None or visit.signature_status != "signed":
        return
    visit.signature_status = "invalidated"
    db.session.flush()
    record_event(
        actor,
        "signature_invalidated",
        entity_type="visit",
        entity_id=visit.entity_id,
        entity_site=visit.participant.site_code,
        field="signature_status",
        old="signed",
        new="invalidated",
        reason=f"{record.ENTITY} {record.id} changed after signature",
    )
