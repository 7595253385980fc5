"""Read the audit trail: trial-wide for admins and data managers, by site for site staff."""

from flask import g
from sqlalchemy import select

from trial.audit.models import AuditEvent
from trial.audit.schemas import AuditEventSchema, AuditQuerySchema
from trial.auth.policy import allow
from trial.auth.roles import Role
from trial.blueprint import Blueprint
from trial.extensions import db

blp = Blueprint("audit", __name__, url_prefix="/api/v1", description="Audit trail")


@blp.route("/audit", methods=["GET"])
@allow(Role.ADMIN, Role.DATA_MANAGER, Role.MONITOR, Role.COORDINATOR, Role.INVESTIGATOR)
@blp.arguments(AuditQuerySchema, location="query")
@blp.response(200, AuditEventSchema(many=True))
def list_audit_events(args):
    """List audit events in chain order; page with ``after_seq``.

    Site staff and monitors see only events about records of their own sites.
    """
    user = g.current_user
    statement = select(AuditEvent).where(AuditEvent.seq > args["after_seq"])
    if user.is_site_bound:
        statement = statement.where(AuditEvent.entity_site.in_(user.site_codes))
    for column in ("entity_type", "entity_id", "action"):
        if column in args:
            statement = statement.where(getattr(AuditEvent, column) == args[column])
    if "site" in args:
        statement = statement.where(AuditEvent.entity_site == args["site"])
    statement = statement.order_by(AuditEvent.seq).limit(args["limit"])
    return list(db.session.scalars(statement))
