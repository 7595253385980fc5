"""Record and read study-drug dosing (tablets per day)."""

from flask import g

from trial.auth.policy import allow
from trial.blueprint import Blueprint
from trial.dosing import services
from trial.dosing.models import DosingRecord
from trial.dosing.schemas import DosingCreateSchema, DosingPatchSchema, DosingSchema
from trial.extensions import db
from trial.participants.services import get_visible_participant
from trial.records.registry import records_of
from trial.records.views import READERS, SITE_STAFF, add_record_endpoints
from trial.validation import checks_correction

blp = Blueprint("dosing", __name__, url_prefix="/api/v1", description="Study drug")


@blp.route("/participants/<participant_id>/dosing", methods=["POST"])
@allow(*SITE_STAFF)
@blp.arguments(DosingCreateSchema)
@blp.response(201, DosingSchema)
def record_dosing(body, participant_id):
    """Record tablets per day from a date on; a change of dose needs a reason."""
    participant = get_visible_participant(g.current_user, participant_id)
    record = services.record_dosing(g.current_user, participant, body)
    db.session.commit()
    return record


@blp.route("/participants/<participant_id>/dosing", methods=["GET"])
@allow(*READERS)
@blp.response(200, DosingSchema(many=True))
def list_dosing(participant_id):
    """List a participant's dosing records (entered-in-error ones excluded)."""
    participant = get_visible_participant(g.current_user, participant_id)
    return sorted(records_of(DosingRecord, participant), key=lambda r: r.date)


add_record_endpoints(
    blp, model=DosingRecord, path="dosing", dump_schema=DosingSchema, patch_schema=DosingPatchSchema
)
checks_correction(DosingPatchSchema, DosingRecord, services.revalidate_dosing)
