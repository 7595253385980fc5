"""Emergency unblinding of one participant by an investigator of their site."""

from __future__ import annotations

from randomization.crypto import decrypt_arm, require_arm_key
from randomization.models import RandomizationNotice
from randomization.services import allocation_of, lock_row
from trial.audit.services import record_event
from trial.auth.approval import NO_VALID_APPROVAL, code_break_refusal
from trial.auth.passwords import verify_password
from trial.database import utcnow
from trial.errors import Conflict, ForbiddenRecorded
from trial.extensions import db
from trial.notifications import events as notification_events
from trial.participants.models import Participant
from trial.participants.services import get_visible_participant
from trial.protocol import current_protocol
from trial.reasons import require_reason


def break_code(actor, participant_id: str, *, reason: str, password: str) -> tuple:
    """Reveal one participant's arm to an investigator of their site, in an emergency.

    Only through an account an unblinded statistician has approved, as it is now
    (``trial.auth.approval``): without that, an admin could break codes through an
    investigator account whose password they chose. Returns ``(participant, arm_name)``.
    Without an approval or with a wrong password the attempt is recorded and refused (403,
    ``ForbiddenRecorded``: the request keeps the audit row), naming the cause.
    """
    participant = get_visible_participant(actor, participant_id)
    reason = require_reason(reason, what="breaking the code")
    unapproved = code_break_refusal(actor)
    if unapproved is not None:
        # Before the password: an account nobody approved is not even a password oracle.
        _refuse(
            actor,
            participant_id,
            participant.site_code,
            reason,
            {"cause": NO_VALID_APPROVAL, "approval": unapproved},
            f"{NO_VALID_APPROVAL[0].upper()}{NO_VALID_APPROVAL[1:]} ({unapproved}). The code "
            f"was not broken; the attempt was recorded.",
            {"approval": [unapproved]},
        )
    if not verify_password(actor, password):
        _refuse(
            actor,
            participant_id,
            participant.site_code,
            reason,
            {"cause": "password incorrect"},
            "Password incorrect: the code was not broken. The attempt was recorded.",
            {"password": ["Incorrect password."]},
        )
    require_arm_key()
    participant = lock_row(Participant, participant.id)
    slot = allocation_of(participant)
    if slot is None:
        raise Conflict(
            f"Participant {participant_id} is not randomized; there is no code to break."
        )
    if participant.unblinded:
        raise Conflict(
            f"The code of {participant_id} was already broken on "
            f"{participant.unblinded_at:%Y-%m-%d %H:%M} UTC; ask the unblinded "
            f"statistician."
        )
    arm = current_protocol().arms[decrypt_arm(slot.stratum, slot.sequence, slot.arm_encrypted)]
    now = utcnow()
    participant.unblinded, participant.unblinded_at = True, now
    db.session.flush()
    # The audit row records that the code was broken, by whom and why: never the arm.
    record_event(
        actor,
        "code_break",
        entity_type="participant",
        entity_id=participant_id,
        entity_site=participant.site_code,
        field="unblinded",
        old=False,
        new=True,
        reason=reason,
    )
    db.session.add(
        RandomizationNotice(
            kind="code_break",
            participant_id=participant.id,
            created_at=now,
            message=f"Emergency code-break for {participant_id} by {actor.username} "
            f"({actor.role}, {actor.site_label}) at {now:%Y-%m-%d %H:%M} UTC. "
            f"Reason: {reason}",
        )
    )
    # The e-mail is built without the arm (none is passed): who, when, which participant, why.
    notification_events.code_break(actor, participant, reason=reason, at=now)
    return participant, arm


def _refuse(actor, participant_id: str, site: str, reason: str, detail: dict, message, errors):
    """Record a refused code-break (no arm in it) and refuse it; the request keeps the row."""
    record_event(
        actor,
        "code_break_refused",
        entity_type="participant",
        entity_id=participant_id,
        entity_site=site,
        reason=reason,
        detail=detail,
    )
    raise ForbiddenRecorded(message, errors)
