"""What the allocation gives other packages: the blinded allocations of the dataset bundle,
and, for the unblinded statistician only, the notices, the list, the key and the closed
report's arms (each release audited by its caller or here)."""

from __future__ import annotations

from sqlalchemy import select

from randomization.crypto import decrypt_arm, require_arm_key
from randomization.lists import require_unblinded_statistician
from randomization.models import RandomizationNotice, RandomizationSlot
from trial.audit.services import record_event
from trial.errors import Forbidden
from trial.extensions import db
from trial.participants.models import Participant
from trial.protocol import current_protocol


def list_notices(actor) -> list[RandomizationNotice]:
    return list(
        db.session.scalars(select(RandomizationNotice).order_by(RandomizationNotice.id.desc()))
    )


def unblinded_slots(actor) -> list[dict]:
    """The allocation list with arms and kits, for the unblinded statistician; audited."""
    require_unblinded_statistician(actor)
    arms = current_protocol().arms
    rows = db.session.execute(
        select(RandomizationSlot, Participant.participant_id)
        .outerjoin(Participant, Participant.id == RandomizationSlot.participant_id)
        .order_by(RandomizationSlot.stratum, RandomizationSlot.sequence)
    ).all()
    result = [
        {
            "stratum": slot.stratum,
            "sequence": slot.sequence,
            "block": slot.block,
            "block_size": slot.block_size,
            "arm": arms[decrypt_arm(slot.stratum, slot.sequence, slot.arm_encrypted)],
            "kit_number": slot.kit_number,
            "participant_id": pid,
            "randomization_number": slot.randomization_number,
            "allocated_at": slot.allocated_at,
        }
        for slot, pid in rows
    ]
    record_event(
        actor,
        "unblinded_read",
        entity_type="randomization_list",
        detail={"what": "allocation list", "rows": len(result)},
    )
    return result


def allocation_key(actor) -> list[tuple[str, str, str]]:
    """Participant -> arm for every randomized participant; the caller audits the release."""
    require_unblinded_statistician(actor)
    arms = current_protocol().arms
    rows = db.session.execute(
        select(Participant.participant_id, RandomizationSlot)
        .join(RandomizationSlot, RandomizationSlot.participant_id == Participant.id)
        .order_by(Participant.participant_id)
    ).all()
    return [
        (
            pid,
            slot.randomization_number,
            arms[decrypt_arm(slot.stratum, slot.sequence, slot.arm_encrypted)],
        )
        for pid, slot in rows
    ]


def arms_for_closed_report(actor) -> dict[str, str]:
    """Participant id -> arm name, for the DSMB's closed report (DSMB and unblinded
    statistician only); the caller audits the report that uses it."""
    from trial.auth.roles import UNBLINDED_ROLES

    if getattr(actor, "role", None) not in UNBLINDED_ROLES:
        raise Forbidden("Only the DSMB and the unblinded statistician may see arms.")
    arms = current_protocol().arms
    rows = db.session.execute(
        select(Participant.participant_id, RandomizationSlot).join(
            RandomizationSlot, RandomizationSlot.participant_id == Participant.id
        )
    ).all()
    return {
        pid: arms[decrypt_arm(slot.stratum, slot.sequence, slot.arm_encrypted)]
        for pid, slot in rows
    }


def blinded_allocations():
    """Participant row id, randomization number, kit number and allocation time of every
    allocated slot: what any blinded role may know (never the arm, stratum or sequence)."""
    return db.session.execute(
        select(
            RandomizationSlot.participant_id,
            RandomizationSlot.randomization_number,
            RandomizationSlot.kit_number,
            RandomizationSlot.allocated_at,
        ).where(RandomizationSlot.participant_id.is_not(None))
    ).all()


def closed_report_coding() -> tuple[str, ...]:
    """The arms in the order the closed DSMB report codes them A, B, ...

    A secret permutation keyed by ARM_KEY, so knowing the protocol's arm order does not
    decode a closed report that strays; stable for a key, so a report is reproducible.
    The unblinded statistician gives the DSMB the key (``reports arm-code``).
    """
    import hashlib
    import hmac

    from flask import current_app

    require_arm_key()
    arms = list(current_protocol().arms)
    secret = current_app.config["ARM_KEY"].encode()
    trial = current_protocol().trial_code
    return tuple(
        sorted(
            arms,
            key=lambda arm: hmac.new(
                secret, f"dsmb-arm-coding|{trial}|{arm}".encode(), hashlib.sha256
            ).digest(),
        )
    )
