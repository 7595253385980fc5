"""Claim a slot by minimization: decide the arm, then take that arm's first free slot.

The minimization counterpart of ``claim.claim_next_slot`` (which takes a stratum's next slot
of a list made in advance): the arm is decided here, from every decision before it
(``minimization.decide``), so this module decrypts the past decisions and the free slots'
arms. It runs under the trial-wide allocation lock that ``randomize`` holds.
"""

from __future__ import annotations

from sqlalchemy import select

from randomization.crypto import decrypt_arm, decrypt_json, encrypt_json
from randomization.lists import POOL_STRATUM
from randomization.minimization import decide
from randomization.models import MinimizationDecision, RandomizationSlot
from trial.database import utcnow
from trial.extensions import db
from trial.participants.models import Participant
from trial.protocol import current_protocol


def claim_minimization_slot(participant: Participant, taken: dict) -> tuple[str] | None:
    """Decide the arm by minimization (recording the decision), give the first free slot of
    that arm the ``taken`` values and return its kit number as ``(kit,)``; None when any
    arm has no free slot left.

    Refused as soon as one arm's slots are all taken, whichever arm this participant would
    get: a refusal that came only when the decided arm was the spent one would tell the
    site the arm of each participant refused, and of each one let through after it.

    Runs under the allocation lock, so the history it reads is complete and final.
    """
    protocol = current_protocol()
    rows = list(
        db.session.scalars(select(MinimizationDecision).order_by(MinimizationDecision.sequence))
    )
    history = []
    for row in rows:
        past = decrypt_json(row.payload_encrypted)
        history.append((past["levels"], past["arm"]))
    values = {"site": participant.site_code, "sex": participant.sex}
    levels = {factor: values[factor] for factor in protocol.minimization_factors}
    decision = decide(history, levels, protocol.ratio, protocol.minimization_probability_best)
    free = db.session.scalars(
        select(RandomizationSlot)
        .where(
            RandomizationSlot.stratum == POOL_STRATUM, RandomizationSlot.participant_id.is_(None)
        )
        .order_by(RandomizationSlot.sequence)
    )
    first_free: dict[int, RandomizationSlot] = {}  # by arm index
    for slot in free:
        first_free.setdefault(decrypt_arm(slot.stratum, slot.sequence, slot.arm_encrypted), slot)
        if len(first_free) == len(protocol.arms):
            break
    else:
        return None  # an arm is spent: refused whatever the decision
    db.session.add(
        MinimizationDecision(
            sequence=len(rows) + 1,
            participant_id=participant.id,
            payload_encrypted=encrypt_json(decision.as_json()),
            created_at=utcnow(),
        )
    )
    slot = first_free[decision.arm]
    for name, value in taken.items():
        setattr(slot, name, value)
    return (slot.kit_number,)
