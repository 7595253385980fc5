"""Read and correct visit forms; the drinking calendar of a participant."""

from flask import g

from trial.auth.policy import allow
from trial.blueprint import Blueprint
from trial.forms import services
from trial.forms.models import (
    BlindingAssessment,
    CiwaAssessment,
    DrinkingDay,
    LabResult,
    OcdsAssessment,
    Vitals,
)
from trial.forms.schemas import (
    BlindingPatchSchema,
    BlindingSchema,
    CiwaPatchSchema,
    CiwaSchema,
    DrinkingDayPatchSchema,
    DrinkingDaySchema,
    LabPatchSchema,
    LabSchema,
    OcdsPatchSchema,
    OcdsSchema,
    VitalsPatchSchema,
    VitalsSchema,
)
from trial.participants.services import get_visible_participant
from trial.records.registry import records_of
from trial.records.views import READERS, add_record_endpoints
from trial.validation import checks_correction

blp = Blueprint("forms", __name__, url_prefix="/api/v1", description="Visit forms")


@blp.route("/participants/<participant_id>/drinking", methods=["GET"])
@allow(*READERS)
@blp.response(200, DrinkingDaySchema(many=True))
def drinking_calendar(participant_id):
    """The participant's Timeline Followback calendar, by day (days in error excluded)."""
    participant = get_visible_participant(g.current_user, participant_id)
    return sorted(records_of(DrinkingDay, participant), key=lambda r: r.day)


for model, path, dump, patch, check in (
    (
        DrinkingDay,
        "drinking-days",
        DrinkingDaySchema,
        DrinkingDayPatchSchema,
        services.revalidate_drinking_day,
    ),
    (OcdsAssessment, "ocds", OcdsSchema, OcdsPatchSchema, services.no_cross_field_rules),
    (CiwaAssessment, "ciwa", CiwaSchema, CiwaPatchSchema, services.no_cross_field_rules),
    (Vitals, "vitals", VitalsSchema, VitalsPatchSchema, services.revalidate_vitals),
    (LabResult, "labs", LabSchema, LabPatchSchema, services.revalidate_lab),
    (
        BlindingAssessment,
        "blinding-assessments",
        BlindingSchema,
        BlindingPatchSchema,
        services.revalidate_blinding,
    ),
):
    add_record_endpoints(
        blp, model=model, path=path, dump_schema=dump, patch_schema=patch, revalidate=check
    )
    checks_correction(patch, model, check)
