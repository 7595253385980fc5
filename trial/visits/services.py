"""Visit operations: record, correct, mark in error, sign (each change voids a signature).

A visit is refused whole when any part is wrong (the errors name each field, forms
prefixed: ``drinking.2.date``, ``vitals.diastolic_bp``). A visit outside its window is
accepted and raises an automatic protocol deviation. The rules are in ``checks``, the new
visit's write in ``recording``, the window deviation in ``deviations``.
"""

from __future__ import annotations

from sqlalchemy import select

from trial.audit.services import record_event
from trial.auth.passwords import verify_password
from trial.conduct.models import ProtocolDeviation
from trial.database import utcnow
from trial.errors import Conflict, Forbidden, ForbiddenRecorded
from trial.extensions import db
from trial.forms.edit_checks.run import run_record_checks
from trial.reasons import require_reason
from trial.records.registry import get_visible_record
from trial.records.services import (
    correct_record,
    ensure_correctable,
    invalidate_signature,
    mark_entered_in_error,
)
from trial.records.versions import check_version
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
from trial.visits.recording import record_visit
from trial.visits.schemas import VisitPatchSchema

__all__ = [
    "correct_visit",
    "flag_visits_in_new_schedule",
    "invalidate_signature",
    "mark_visit_in_error",
    "record_visit",
    "sign_visit",
]


@checks_body(VisitPatchSchema)
def _check_visit_correction(actor, values, failed, visit_id):
    """The rules of a visit correction whose body failed its schema, on the part that loaded
    (``correct_visit`` applies the same steps to a body that loads)."""
    visit, participant = get_visible_record(actor, "visit", visit_id)
    ensure_correctable(visit)
    changes = coherent_visit_changes(visit, {k: v for k, v in values.items() if k in VISIT_FIELDS})
    merged = {field: getattr(visit, field) for field in Visit.AUDITED_FIELDS if field not in failed}
    merged.update(changes)
    revalidate_visit(actor, participant, visit, merged)


def correct_visit(
    actor,
    visit_id: int,
    body: dict,
    reason: str | None,
    *,
    expected_version: int | None = None,
) -> Visit:
    """Correct a visit's date, status or missed reason with a reason, from the version the
    change was made from (``expected_version``; None: as it is now).

    In the order a person is told: a visit not found or at another site (404), entered in
    error (409), a stale version (412, naming the current value of each field sent), the
    visit as corrected (422), a body that changes nothing (422 ``no_change``). Keeps the
    automatic out-of-window deviation true and voids the signature. Returns the visit, its
    row held to the end of the transaction.
    """
    visit, participant = get_visible_record(actor, "visit", visit_id, lock=True)
    ensure_correctable(visit)
    check_version(visit, expected_version, {field: getattr(visit, field) for field in body})
    changes = coherent_visit_changes(visit, body)
    merged = {field: getattr(visit, field) for field in Visit.AUDITED_FIELDS}
    merged.update(changes)
    revalidate_visit(actor, participant, visit, merged)
    correct_record(
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
    visit.warnings = run_record_checks(actor, participant, visit)
    return visit


def mark_visit_in_error(
    actor, visit_id: int, reason: str | None, *, expected_version: int | None = None
) -> Visit:
    """Mark a visit in error with its forms and its automatic deviation, each audited, and
    void its signature.

    The forms and the deviation describe the visit; left active they would stay in every
    output and block the days and the visit from being entered again correctly.
    ``expected_version``: the visit's version the mark was made from (412 if stale).
    """
    visit, participant = get_visible_record(actor, "visit", visit_id, lock=True)
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
    invalidate_signature(actor, visit)
    run_record_checks(actor, participant, visit)
    return visit


def require_signer(actor) -> None:
    """Only an investigator signs. The route's policy refuses other roles first; this is the
    rule for every other caller (a page, a command)."""
    if actor.role != "investigator":
        raise Forbidden("Only an investigator signs visits.")


def sign_visit(actor, visit_id: int, password: str) -> Visit:
    """An investigator signs a visit: name, server UTC time, meaning.

    The password is typed again; a wrong one is refused (403) and the attempt kept on
    record (``ForbiddenRecorded``).
    """
    visit, participant = get_visible_record(actor, "visit", visit_id)
    require_signer(actor)
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
        raise ForbiddenRecorded(
            "Password incorrect: the visit was not signed. The attempt was recorded.",
            {"password": ["Incorrect password."]},
        )
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
    return visit
