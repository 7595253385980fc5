"""The closed report's arm code (which arm it calls A, B, ...): released to the unblinded
statistician only, each release an audit event (``report_arm_code``), as the command
``flask reports arm-code`` and the unblinded statistician's page both do it."""

from __future__ import annotations

from trial.audit.services import record_event


def release_arm_code(actor) -> list[tuple[str, str]]:
    """(code, arm) pairs in code order; audited (the caller commits)."""
    from randomization.lists import require_unblinded_statistician
    from randomization.outputs import closed_report_coding

    require_unblinded_statistician(actor)
    coding = closed_report_coding()
    record_event(actor, "report_arm_code", entity_type="report", entity_id="arm_code")
    return [(chr(ord("A") + index), arm) for index, arm in enumerate(coding)]
