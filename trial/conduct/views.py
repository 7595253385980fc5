"""Record and read dispositions and protocol deviations."""

from flask import g

from trial.auth.policy import allow
from trial.blueprint import Blueprint
from trial.conduct import eligibility, services
from trial.conduct.models import Disposition, EligibilityAnswer, ProtocolDeviation
from trial.conduct.schemas import (
    DISPOSITION_PATCH_KEYS,
    DeviationCreateSchema,
    DeviationPatchSchema,
    DeviationSchema,
    DispositionCreateSchema,
    DispositionPatchSchema,
    DispositionSchema,
    EligibilityAnswerPatchSchema,
    EligibilityAnswerSchema,
    EligibilityAnswersSchema,
    EligibilitySchema,
)
from trial.extensions import db
from trial.participants.services import get_visible_participant
from trial.records.registry import records_of
from trial.records.views import READERS, SITE_STAFF, add_record_endpoints
from trial.validation import checks_correction

blp = Blueprint(
    "conduct",
    __name__,
    url_prefix="/api/v1",
    description="Eligibility, disposition and protocol deviations",
)


@blp.route("/participants/<participant_id>/eligibility", methods=["GET"])
@allow(*READERS)
@blp.response(200, EligibilitySchema)
def show_eligibility(participant_id):
    """The protocol's eligibility criteria with the participant's answers."""
    participant = get_visible_participant(g.current_user, participant_id)
    return eligibility.eligibility_of(participant)


@blp.route("/participants/<participant_id>/eligibility", methods=["POST"])
@allow(*SITE_STAFF)
@blp.arguments(EligibilityAnswersSchema)
@blp.response(201, EligibilitySchema)
def answer_eligibility(body, participant_id):
    """Answer eligibility criteria (each answer an audited record); correct one with PATCH
    /eligibility-answers/{id} and a reason."""
    participant = get_visible_participant(g.current_user, participant_id, lock=True)
    eligibility.record_answers(g.current_user, participant, body["answers"])
    db.session.commit()
    return eligibility.eligibility_of(participant)


@blp.route("/participants/<participant_id>/disposition", methods=["POST"])
@allow(*SITE_STAFF)
@blp.arguments(DispositionCreateSchema)
@blp.response(201, DispositionSchema)
def record_disposition(body, participant_id):
    """Record a disposition: the final one (screen_failure before randomization; completed,
    withdrew, lost_to_follow_up or death after it), or discontinued_treatment (the study drug
    stops, follow-up goes on). The participant's status follows."""
    participant = get_visible_participant(g.current_user, participant_id, lock=True)
    record = services.record_disposition(g.current_user, participant, body)
    db.session.commit()
    return record


@blp.route("/participants/<participant_id>/disposition", methods=["GET"])
@allow(*READERS)
@blp.response(200, DispositionSchema(many=True))
def list_disposition(participant_id):
    """The participant's dispositions (an empty list until one is recorded)."""
    participant = get_visible_participant(g.current_user, participant_id)
    return records_of(Disposition, participant)


@blp.route("/participants/<participant_id>/deviations", methods=["POST"])
@allow(*SITE_STAFF)
@blp.arguments(DeviationCreateSchema)
@blp.response(201, DeviationSchema)
def record_deviation(body, participant_id):
    """Record a protocol deviation."""
    participant = get_visible_participant(g.current_user, participant_id)
    record = services.record_deviation(g.current_user, participant, body)
    db.session.commit()
    return record


@blp.route("/participants/<participant_id>/deviations", methods=["GET"])
@allow(*READERS)
@blp.response(200, DeviationSchema(many=True))
def list_deviations(participant_id):
    """List protocol deviations, including those raised automatically for late visits."""
    participant = get_visible_participant(g.current_user, participant_id)
    return records_of(ProtocolDeviation, participant)


add_record_endpoints(
    blp,
    model=Disposition,
    path="dispositions",
    dump_schema=DispositionSchema,
    patch_schema=DispositionPatchSchema,
    patch_keys=DISPOSITION_PATCH_KEYS,
)
checks_correction(
    DispositionPatchSchema, Disposition, services.revalidate_disposition, DISPOSITION_PATCH_KEYS
)
add_record_endpoints(
    blp,
    model=ProtocolDeviation,
    path="deviations",
    dump_schema=DeviationSchema,
    patch_schema=DeviationPatchSchema,
)
checks_correction(DeviationPatchSchema, ProtocolDeviation, services.revalidate_deviation)
add_record_endpoints(
    blp,
    model=EligibilityAnswer,
    path="eligibility-answers",
    dump_schema=EligibilityAnswerSchema,
    patch_schema=EligibilityAnswerPatchSchema,
)
checks_correction(EligibilityAnswerPatchSchema, EligibilityAnswer, eligibility.revalidate_answer)
