"""The statements that allocate, built once.

They run while the trial-wide allocation lock is held, by every randomization in the trial:
count one more allocation (the counter's row lock is the allocation lock), read the stratum's
first free slot, take it, mark the participant. The allocation's audit rows lock the chain
head afterwards, as every audited write does (``trial.audit.services``).
"""

from __future__ import annotations

from sqlalchemy import bindparam, func, select, update

from randomization.models import AllocationLock, RandomizationSlot
from trial.extensions import db
from trial.participants.models import Participant

NUMBER_WIDTH = 5

_counter = AllocationLock.__table__
_COUNT_ONE_MORE = (
    update(_counter)
    .where(_counter.c.id == 1)
    .values(last_number=_counter.c.last_number + 1)
    .returning(_counter.c.last_number)
)


_COUNT_ONE_LESS = (
    update(_counter).where(_counter.c.id == 1).values(last_number=_counter.c.last_number - 1)
)


def next_randomization_number() -> str:
    """Count one more allocation and return its number; the row lock this update takes is
    the trial-wide allocation lock, held to commit, so free slots are read one at a time."""
    last = db.session.execute(_COUNT_ONE_MORE).scalar_one()
    return f"R{last:0{NUMBER_WIDTH}d}"


def give_back_number() -> None:
    """Uncount the number just taken, for an attempt that found no slot: numbers stay
    gapless. Still under the allocation lock, so no one has counted since."""
    db.session.execute(_COUNT_ONE_LESS)


_slots = RandomizationSlot.__table__
_other = _slots.alias("other")
_in_stratum = _other.c.stratum == bindparam("stratum")
_FIRST_FREE = (
    select(
        _slots.c.id,
        _slots.c.kit_number,
        select(func.count()).where(_in_stratum).scalar_subquery(),
        select(func.count(_other.c.participant_id)).where(_in_stratum).scalar_subquery(),
    )
    .where(_slots.c.stratum == bindparam("stratum"), _slots.c.participant_id.is_(None))
    .order_by(_slots.c.sequence)
    .limit(1)
)
_TAKE = (
    update(_slots)
    .where(_slots.c.id == bindparam("slot_id"))
    .values(
        participant_id=bindparam("participant_id"),
        randomization_number=bindparam("randomization_number"),
        allocated_at=bindparam("allocated_at"),
        allocated_by_id=bindparam("allocated_by_id"),
    )
)


def claim_next_slot(
    stratum: str, participant: Participant, values: dict
) -> tuple[str, int, int] | None:
    """Give the stratum's first free slot ``values`` and mark the participant randomized;
    return the slot's kit number, the stratum's slot count and how many are used with this
    one. None (and nothing written) when no slot is free.

    Runs under the allocation lock, so the first free slot cannot change meanwhile.
    """
    row = db.session.execute(_FIRST_FREE, {"stratum": stratum}).first()
    if row is None:
        return None
    slot_id, kit_number, total, used = row
    # Only their own parameters: an UPDATE would also SET any other column named.
    db.session.execute(_TAKE, {**values, "slot_id": slot_id})
    mark_randomized(participant, values["allocated_at"])
    return kit_number, total, used + 1


def mark_randomized(participant: Participant, at) -> None:
    """Mark the participant randomized at ``at`` (written at the next flush)."""
    participant.status = "randomized"
    participant.randomized_at = at
