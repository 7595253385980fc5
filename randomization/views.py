"""Randomize, read a blinded allocation, break the code, and (unblinded) read the list."""

from flask import g

from randomization import code_break, lists, outputs, services
from randomization.release import padded_json_response
from randomization.schemas import (
    AllocationSchema,
    CodeBreakResultSchema,
    CodeBreakSchema,
    NoticeSchema,
    RandomizeSchema,
    StratumSummarySchema,
    UnblindedSlotSchema,
)
from trial.auth.policy import allow
from trial.auth.roles import Role
from trial.blueprint import Blueprint
from trial.database import writes_on_read
from trial.errors import NotFound
from trial.extensions import db
from trial.participants.services import get_visible_participant
from trial.protocol import current_protocol

blp = Blueprint(
    "randomization",
    __name__,
    url_prefix="/api/v1",
    description="Randomization and emergency unblinding",
)

SITE_STAFF = (Role.COORDINATOR, Role.INVESTIGATOR)


def _blinded(participant, slot) -> dict:
    return {
        "participant_id": participant.participant_id,
        "randomization_number": slot.randomization_number,
        "kit_number": slot.kit_number,
        "randomized_at": slot.allocated_at,
    }


@blp.route("/participants/<participant_id>/randomize", methods=["POST"])
@allow(*SITE_STAFF)
@blp.arguments(RandomizeSchema)
@blp.response(201, AllocationSchema)
@blp.alt_response(
    200, schema=AllocationSchema, description="Already randomized: the same allocation again"
)
def randomize(body, participant_id):
    """Randomize a consented, eligible participant of your site (idempotent)."""
    allocation, created = services.randomize(
        g.current_user, participant_id, eligibility_confirmed=body["eligibility_confirmed"]
    )
    db.session.commit()
    return {"participant_id": participant_id, **allocation._asdict()}, 201 if created else 200


@blp.route("/participants/<participant_id>/randomization", methods=["GET"])
@allow(*SITE_STAFF, Role.MONITOR, Role.DATA_MANAGER)
@blp.response(200, AllocationSchema)
def get_allocation(participant_id):
    """Show a participant's blinded allocation (number, kit, time)."""
    participant = get_visible_participant(g.current_user, participant_id)
    slot = services.allocation_of(participant)
    if slot is None:
        raise NotFound(f"Participant {participant_id} is not randomized.")
    return _blinded(participant, slot)


@blp.route("/participants/<participant_id>/code-break", methods=["POST"])
@allow(Role.INVESTIGATOR)
@blp.arguments(CodeBreakSchema)
@blp.response(200, CodeBreakResultSchema)
def break_code(body, participant_id):
    """Emergency unblinding of one participant by an investigator of their site.

    Needs the investigator's password again and a reason; recorded (without the arm), flags
    the participant as unblinded, and notifies the unblinded statistician and the DSMB.
    """
    participant, arm = code_break.break_code(
        g.current_user, participant_id, reason=body["reason"], password=body["password"]
    )
    db.session.commit()
    answer = CodeBreakResultSchema().dump(
        {"participant_id": participant.participant_id, "arm": arm,
         "unblinded_at": participant.unblinded_at}
    )  # fmt: skip
    # The same length whatever the arm: in the access log and on the wire alike.
    return padded_json_response(answer, ["arm"], current_protocol().arms)


@blp.route("/randomization/list", methods=["GET"])
@allow(Role.UNBLINDED_STATISTICIAN)
@blp.response(200, UnblindedSlotSchema(many=True))
@writes_on_read
def unblinded_list():
    """The allocation list with arms and kits (unblinded statistician; every read audited)."""
    rows = outputs.unblinded_slots(g.current_user)
    db.session.commit()
    answer = UnblindedSlotSchema(many=True).dump(rows)
    return padded_json_response(answer, ["arm"], current_protocol().arms)


@blp.route("/randomization/summary", methods=["GET"])
@allow(Role.UNBLINDED_STATISTICIAN)
@blp.response(200, StratumSummarySchema(many=True))
def summary():
    """Slots, used, remaining and block sizes per stratum (unblinded statistician)."""
    return lists.summary(g.current_user, simulations=0)


@blp.route("/randomization/notices", methods=["GET"])
@allow(Role.UNBLINDED_STATISTICIAN, Role.DSMB)
@blp.response(200, NoticeSchema(many=True))
def notices():
    """Low or exhausted strata and emergency code-breaks, newest first (no arms)."""
    return outputs.list_notices(g.current_user)
