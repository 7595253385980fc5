"""Register participants and read them, within the caller's sites."""

from flask import g

from trial.auth.policy import allow
from trial.auth.roles import Role
from trial.blueprint import Blueprint
from trial.extensions import db
from trial.participants import services
from trial.participants.schemas import (
    ParticipantCreateSchema,
    ParticipantQuerySchema,
    ParticipantSchema,
)

blp = Blueprint("participants", __name__, url_prefix="/api/v1", description="Participants")

SITE_STAFF = (Role.COORDINATOR, Role.INVESTIGATOR)
READERS = (*SITE_STAFF, Role.MONITOR, Role.DATA_MANAGER)


@blp.route("/participants", methods=["POST"])
@allow(*SITE_STAFF)
@blp.arguments(ParticipantCreateSchema)
@blp.response(201, ParticipantSchema)
def register_participant(body):
    """Register a consented participant at your site; the response carries its id."""
    participant = services.register_participant(g.current_user, **body)
    db.session.commit()
    return participant


@blp.route("/participants", methods=["GET"])
@allow(*READERS)
@blp.arguments(ParticipantQuerySchema, location="query")
@blp.response(200, ParticipantSchema(many=True))
def list_participants(args):
    """List participants of the sites you may see, by participant id."""
    return services.visible_participants(g.current_user, **args)


@blp.route("/participants/<participant_id>", methods=["GET"])
@allow(*READERS)
@blp.response(200, ParticipantSchema)
def get_participant(participant_id):
    """Show one participant; another site's participant is a 404."""
    return services.get_visible_participant(g.current_user, participant_id)
