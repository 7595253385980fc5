"""Source data verification over HTTP: a monitor marks a visit verified; monitors, data
managers and site staff read the marks and what is left to verify, each at their sites."""

from flask import g

from trial.auth.policy import allow
from trial.auth.roles import Role
from trial.blueprint import Blueprint
from trial.extensions import db
from trial.records.views import IF_MATCH, READERS, requested_version
from trial.verification import services
from trial.verification.schemas import (
    PendingVisitSchema,
    VerificationArgsSchema,
    VerificationProgressSchema,
    VerificationSchema,
    VerifySchema,
)

blp = Blueprint(
    "verification", __name__, url_prefix="/api/v1", description="Source data verification"
)


@blp.route("/visits/<int:visit_id>/verify", methods=["POST"])
@allow(Role.MONITOR)
@blp.arguments(VerifySchema, required=False)
@blp.response(201, VerificationSchema)
@blp.doc(parameters=[IF_MATCH])
def verify_visit(body, visit_id):
    """Mark a completed visit of your sites verified against source (monitor). A stale
    If-Match or version is refused with 412; a visit verified already, missed or entered in
    error with 409. A later change to the visit or its forms voids the mark."""
    expected = requested_version(body or {})
    mark = services.verify_visit(g.current_user, visit_id, expected_version=expected)
    db.session.commit()
    return mark


@blp.route("/visits/<int:visit_id>/verifications", methods=["GET"])
@allow(*READERS)
@blp.response(200, VerificationSchema(many=True))
def list_visit_verifications(visit_id):
    """Every source verification mark of a visit, newest first (voided ones say why)."""
    return services.marks_of(g.current_user, visit_id)


@blp.route("/verification", methods=["GET"])
@allow(Role.MONITOR, Role.DATA_MANAGER)
@blp.arguments(VerificationArgsSchema, location="query")
@blp.response(200, VerificationProgressSchema)
def verification_progress(args):
    """Per site you can see: completed visits, verified ones, and those left to verify."""
    return {
        "counting_rule": services.COUNTING_RULE,
        "sites": services.verification_progress(g.current_user, args.get("site")),
    }


@blp.route("/verification/pending", methods=["GET"])
@allow(Role.MONITOR, Role.DATA_MANAGER)
@blp.arguments(VerificationArgsSchema, location="query")
@blp.response(200, PendingVisitSchema(many=True))
def visits_left_to_verify(args):
    """Completed visits of your sites left to verify, oldest visit first."""
    return services.visits_left_to_verify(g.current_user, args.get("site"))
