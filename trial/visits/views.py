"""Record, read, correct and sign visits; the participant's schedule."""

from flask import g

from trial.auth.policy import allow
from trial.auth.roles import Role
from trial.blueprint import Blueprint
from trial.extensions import db
from trial.participants.services import get_visible_participant
from trial.records.registry import get_visible_record, records_of
from trial.records.schemas import ReasonSchema
from trial.records.views import (
    ETAG,
    IF_MATCH,
    READERS,
    SITE_STAFF,
    requested_version,
    with_etag,
)
from trial.visits import services
from trial.visits.models import Visit
from trial.visits.schedule import build_schedule
from trial.visits.schemas import (
    ScheduledVisitSchema,
    SignSchema,
    VisitCreateSchema,
    VisitPatchSchema,
    VisitSchema,
)

blp = Blueprint("visits", __name__, url_prefix="/api/v1", description="Visits and schedule")


@blp.route("/participants/<participant_id>/schedule", methods=["GET"])
@allow(*READERS)
@blp.response(200, ScheduledVisitSchema(many=True))
def schedule(participant_id):
    """Each protocol visit with its target date, window and status."""
    participant = get_visible_participant(g.current_user, participant_id)
    return build_schedule(participant, records_of(Visit, participant))


@blp.route("/participants/<participant_id>/visits", methods=["POST"])
@allow(*SITE_STAFF)
@blp.arguments(VisitCreateSchema)
@blp.response(201, VisitSchema)
def record_visit(body, participant_id):
    """Record a visit with its forms (drinking calendar, OCDS, CIWA-Ar, vitals, labs).

    Refused whole when any part is wrong; a visit outside its window is accepted and
    raises a protocol deviation.
    """
    # Locked like randomization locks it: a visit and day 0 are never decided side by side,
    # so a screening visit is window-checked by one of the two, whichever commits second.
    participant = get_visible_participant(g.current_user, participant_id, lock=True)
    visit = services.record_visit(g.current_user, participant, body)
    # The answer is the visit as written, its forms held by the service: committed without
    # expiring it, so it is not read back.
    session = db.session()
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = True
    return visit


@blp.route("/participants/<participant_id>/visits", methods=["GET"])
@allow(*READERS)
@blp.response(200, VisitSchema(many=True))
def list_visits(participant_id):
    """List a participant's visits with their forms (entered-in-error ones excluded)."""
    participant = get_visible_participant(g.current_user, participant_id)
    return records_of(Visit, participant)


@blp.route("/visits/<int:visit_id>", methods=["GET"])
@allow(*READERS)
@blp.response(200, VisitSchema, headers=ETAG)
def get_visit(visit_id):
    """Show one visit with its forms (the ETag is the visit's own version; each form has its
    own)."""
    visit = get_visible_record(g.current_user, "visit", visit_id)[0]
    return with_etag(visit, visit.version)


@blp.route("/visits/<int:visit_id>", methods=["PATCH"])
@allow(*SITE_STAFF)
@blp.arguments(VisitPatchSchema)
@blp.response(200, VisitSchema, headers=ETAG)
@blp.doc(parameters=[IF_MATCH])
def correct_visit(body, visit_id):
    """Correct a visit (date, status, missed reason) with a reason; voids its signature. A
    stale If-Match or version is refused with 412; a body that changes nothing with 422
    no_change."""
    expected = requested_version(body)
    reason = body.pop("reason")
    visit = services.correct_visit(
        g.current_user, visit_id, body, reason, expected_version=expected
    )
    db.session.commit()
    return with_etag(visit, visit.version)


@blp.route("/visits/<int:visit_id>/entered-in-error", methods=["POST"])
@allow(*SITE_STAFF)
@blp.arguments(ReasonSchema)
@blp.response(200, VisitSchema, headers=ETAG)
@blp.doc(parameters=[IF_MATCH])
def mark_visit_in_error(body, visit_id):
    """Mark a visit as entered in error with its forms (kept, audited, out of every output);
    voids its signature. A stale If-Match or version is refused with 412."""
    expected = requested_version(body)
    visit = services.mark_visit_in_error(
        g.current_user, visit_id, body["reason"], expected_version=expected
    )
    db.session.commit()
    return with_etag(visit, visit.version)


@blp.route("/visits/<int:visit_id>/sign", methods=["POST"])
@allow(Role.INVESTIGATOR)
@blp.arguments(SignSchema)
@blp.response(200, VisitSchema)
def sign_visit(body, visit_id):
    """Sign a visit as reviewed and approved (investigator, password re-entered)."""
    visit = services.sign_visit(g.current_user, visit_id, body["password"])
    db.session.commit()
    return visit
