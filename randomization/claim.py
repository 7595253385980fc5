"""The statements that allocate: prepared once, as few as each database allows.

They run while the trial-wide allocation lock is held, by every randomization in the trial,
so every round trip and every statement built on the fly lengthens the queue behind it.
PostgreSQL claims the slot and marks the participant in one statement (on a network
connection a round trip costs more than the statement); SQLite, in-process, runs the same
steps as three short statements. The suite runs both.
"""

from __future__ import annotations

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.orm.attributes import set_committed_value

from randomization.models import AllocationLock, RandomizationSlot
from trial.audit.services import HEAD_FOR_UPDATE_SQL, adopt_locked_head
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


# On PostgreSQL the same update also locks the audit chain head, which the allocation's
# audit rows need next: one round trip fewer while the allocation lock is held. The head is
# locked after the counter (RETURNING runs once the counter row is locked), the order every
# randomization takes the two in; a statement that waited for a lock reads the row as the
# lock holder left it (FOR UPDATE and UPDATE re-read the newest version in READ COMMITTED).
_COUNT_ONE_MORE_AND_LOCK_HEAD = text(
    f"""
    WITH head AS ({HEAD_FOR_UPDATE_SQL})
    UPDATE randomization_allocation_lock SET last_number = last_number + 1 WHERE id = 1
    RETURNING last_number, (SELECT last_seq FROM head), (SELECT last_hash FROM head)
    """
)


def next_randomization_number() -> str:
    """Count one more allocation and return its number; the row lock this update takes is
    the trial-wide allocation lock, held to commit, so free slots are read one at a time.
    On PostgreSQL it also locks the audit chain head for the allocation's audit rows."""
    if db.session.get_bind().dialect.name == "postgresql":
        last, last_seq, last_hash = db.session.execute(_COUNT_ONE_MORE_AND_LOCK_HEAD).one()
        adopt_locked_head(last_seq, last_hash)
    else:
        last = db.session.execute(_COUNT_ONE_MORE).scalar_one()
    return f"R{last:0{NUMBER_WIDTH}d}"


_slots = RandomizationSlot.__table__
_participants = Participant.__table__
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
_MARK_RANDOMIZED = (
    update(_participants)
    .where(_participants.c.id == bindparam("row_id"))
    .values(status="randomized", randomized_at=bindparam("allocated_at"))
)
# The same three steps in one statement. The counts in the main query see the slots as they
# were when the statement began (a data-modifying WITH is invisible to the rest of its
# statement), so "used" counts this slot by the + 1, exactly as on SQLite.
_CLAIM_IN_ONE = text(
    """
    WITH claimed AS (
        UPDATE randomization_slots
        SET participant_id = :participant_id, randomization_number = :randomization_number,
            allocated_at = :allocated_at, allocated_by_id = :allocated_by_id
        WHERE id = (
            SELECT id FROM randomization_slots
            WHERE stratum = :stratum AND participant_id IS NULL
            ORDER BY sequence LIMIT 1
        )
        RETURNING kit_number
    ), marked AS (
        UPDATE participants SET status = 'randomized', randomized_at = :allocated_at
        WHERE id = :participant_id AND EXISTS (SELECT FROM claimed)
    )
    SELECT claimed.kit_number,
           (SELECT count(*) FROM randomization_slots WHERE stratum = :stratum),
           (SELECT count(participant_id) FROM randomization_slots WHERE stratum = :stratum) + 1
    FROM claimed
    """
).bindparams(bindparam("allocated_at", type_=_slots.c.allocated_at.type))


def claim_next_slot(
    stratum: str, participant: Participant, values: dict
) -> tuple[str, int, int] | None:
    """Give the stratum's first free slot ``values`` and mark the participant randomized;
    return the slot's kit number, the stratum's slot count and how many are used with this
    one. None (and nothing written) when no slot is free.

    Runs under the allocation lock, so the first free slot cannot change meanwhile.
    """
    params = {"stratum": stratum, **values}
    if db.session.get_bind().dialect.name == "postgresql":
        row = db.session.execute(_CLAIM_IN_ONE, params).first()
    else:
        row = db.session.execute(_FIRST_FREE, params).first()
        if row is not None:
            slot_id, *row = row
            # Only their own parameters: an UPDATE would also SET any other column named.
            db.session.execute(_TAKE, {**values, "slot_id": slot_id})
            db.session.execute(_MARK_RANDOMIZED, _mark_params(participant, values["allocated_at"]))
            row[2] += 1
    if row is None:
        return None
    show_randomized(participant, values["allocated_at"])
    return tuple(row)


def mark_randomized(participant: Participant, at) -> None:
    """Write the participant's new status in one UPDATE (for minimization's ORM path)."""
    db.session.execute(_MARK_RANDOMIZED, _mark_params(participant, at))
    show_randomized(participant, at)


def _mark_params(participant: Participant, at) -> dict:
    return {"row_id": participant.id, "allocated_at": at}


def show_randomized(participant: Participant, at) -> None:
    """Show the written status on the loaded object without making it dirty (a flush would
    write the row a second time)."""
    set_committed_value(participant, "status", "randomized")
    set_committed_value(participant, "randomized_at", at)
