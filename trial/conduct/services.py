"""Record dispositions and protocol deviations."""

from __future__ import annotations

from trial.conduct.models import DISPOSITIONS_NEEDING_REASON, Disposition, ProtocolDeviation
from trial.conduct.schemas import DeviationCreateSchema, DispositionCreateSchema
from trial.errors import Conflict
from trial.participants.models import Participant
from trial.participants.services import get_visible_participant, site_today
from trial.reasons import clean_reason
from trial.records.services import (
    create_record,
    raise_if_errors,
    records_of,
    register_revalidation,
)
from trial.validation import checks_body


def check_disposition(
    participant: Participant, values: dict, *, exclude_id: int | None = None
) -> None:
    """One final disposition; its date known and not in the future; a reason where the
    status needs one. A rule whose inputs are not in ``values`` is skipped."""
    if any(r.id != exclude_id for r in records_of(Disposition, participant)):
        raise Conflict(
            "A final disposition is already recorded; correct it (PATCH) or mark it "
            "entered in error instead.",
            {"status": ["A final disposition is already recorded."]},
        )
    errors: dict[str, list[str]] = {}
    day = values.get("date")
    if day is not None and day > site_today(participant.site):
        errors["date"] = ["The date is in the future."]
    elif day is not None and day < participant.consent_date:
        errors["date"] = [f"The date is before consent ({participant.consent_date})."]
    status = values.get("status")
    if (
        status in DISPOSITIONS_NEEDING_REASON
        and "reason" in values
        and clean_reason(values["reason"]) is None
    ):
        errors["reason"] = [f"Give the reason for '{status}'."]
    raise_if_errors(errors)


def revalidate_disposition(record: Disposition, participant: Participant, values: dict) -> None:
    """A disposition as a correction would leave it (it does not count as a second one)."""
    check_disposition(participant, values, exclude_id=record.id)


register_revalidation(Disposition, revalidate_disposition)


@checks_body(DispositionCreateSchema)
def _check_new_disposition(actor, values, failed, participant_id):
    check_disposition(get_visible_participant(actor, participant_id), values)


def record_disposition(actor, participant: Participant, values: dict) -> Disposition:
    values = {"reason": None, **values}
    check_disposition(participant, values)
    return create_record(actor, Disposition, participant, values)


def check_deviation(participant: Participant, values: dict) -> None:
    day = values.get("date")
    if day is not None and day > site_today(participant.site):
        raise_if_errors({"date": ["The date is in the future."]})


def revalidate_deviation(record: ProtocolDeviation, participant: Participant, values) -> None:
    """A deviation as a correction would leave it."""
    check_deviation(participant, values)


register_revalidation(ProtocolDeviation, revalidate_deviation)


@checks_body(DeviationCreateSchema)
def _check_new_deviation(actor, values, failed, participant_id):
    check_deviation(get_visible_participant(actor, participant_id), values)


def record_deviation(
    actor, participant: Participant, values: dict, *, automatic=False, visit_id: int | None = None
) -> ProtocolDeviation:
    check_deviation(participant, values)
    return create_record(
        actor, ProtocolDeviation, participant, values, automatic=automatic, visit_id=visit_id
    )
