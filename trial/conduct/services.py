"""Record dispositions and protocol deviations."""

from __future__ import annotations

from trial.conduct.models import DISPOSITIONS_NEEDING_REASON, Disposition, ProtocolDeviation
from trial.errors import Conflict
from trial.participants.models import Participant
from trial.participants.services import site_today
from trial.records.services import create_record, raise_if_errors, records_of


def check_disposition(
    participant: Participant, values: dict, *, exclude_id: int | None = None
) -> None:
    if any(r.id != exclude_id for r in records_of(Disposition, participant)):
        raise Conflict(
            "A final disposition is already recorded; correct it (PATCH) or mark it "
            "entered in error instead.",
            {"status": ["A final disposition is already recorded."]},
        )
    errors: dict[str, list[str]] = {}
    if values["date"] > site_today(participant.site):
        errors["date"] = ["The date is in the future."]
    elif values["date"] < participant.consent_date:
        errors["date"] = [f"The date is before consent ({participant.consent_date})."]
    if values["status"] in DISPOSITIONS_NEEDING_REASON and not values.get("reason"):
        errors["reason"] = [f"Give the reason for '{values['status']}'."]
    raise_if_errors(errors)


def record_disposition(actor, participant: Participant, values: dict) -> Disposition:
    check_disposition(participant, values)
    return create_record(actor, Disposition, participant, values)


def check_deviation(participant: Participant, values: dict) -> None:
    if values["date"] > site_today(participant.site):
        raise_if_errors({"date": ["The date is in the future."]})


def record_deviation(
    actor, participant: Participant, values: dict, *, automatic=False, visit_id: int | None = None
) -> ProtocolDeviation:
    check_deviation(participant, values)
    return create_record(
        actor, ProtocolDeviation, participant, values, automatic=automatic, visit_id=visit_id
    )
