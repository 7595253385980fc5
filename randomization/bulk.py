"""Randomize many participants in one go, for loading a trial's history (the demo).

The same allocation as ``services.randomize`` called once per participant in the given
order: under the trial-wide allocation lock, each participant takes the next free slot of
their stratum and the next randomization number, and leaves what ``randomize`` leaves,
through the same ``AllocationRecords`` (five audit rows, the low-stratum notice, the window
check of visits recorded before day 0). What differs is the cost: the free slots and the
visits are read once, and the rows are written in a few batches instead of a dozen
statements each. A stratum that runs out refuses the whole batch (nothing allocated, the
notice kept), as ``randomize`` refuses one. Minimization decides each arm from the decisions
before it, so it goes one at a time through ``services.randomize``.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select

from randomization.models import AllocationLock, RandomizationSlot
from randomization.services import (
    NUMBER_WIDTH,
    Allocation,
    AllocationRecords,
    check_consent,
    lock_row,
    participant_stratum,
    randomize,
)
from randomization.stratum_notices import refuse_exhausted
from trial.conduct.eligibility import check_ready_for_randomization
from trial.errors import NotFound
from trial.extensions import db
from trial.participants.models import Participant
from trial.protocol import current_protocol
from trial.visits.models import Visit


def randomize_many(entries: Sequence[tuple[object, str, datetime]]) -> None:
    """Randomize ``(actor, participant_id, at)`` entries in order (eligibility confirmed).

    ``at`` dates each allocation (aware, in the past, ascending for a realistic history);
    a participant already randomized keeps their allocation, as with ``randomize``.
    """
    protocol = current_protocol()
    if protocol.randomization_method == "minimization":
        for actor, participant_id, at in entries:
            randomize(actor, participant_id, eligibility_confirmed=True, at=at)
        return
    wanted = [participant_id for _, participant_id, _ in entries]
    batch = db.session.begin_nested()  # undone whole if a stratum runs out
    people = {
        p.participant_id: p
        for p in db.session.scalars(
            select(Participant)
            .where(Participant.participant_id.in_(wanted))
            .with_for_update(of=Participant)
        )
    }
    counter = lock_row(AllocationLock, 1)
    allocated = set(
        db.session.scalars(
            select(RandomizationSlot.participant_id).where(
                RandomizationSlot.participant_id.is_not(None)
            )
        )
    )
    free: dict[str, deque] = defaultdict(deque)
    for slot in db.session.scalars(
        select(RandomizationSlot)
        .where(RandomizationSlot.participant_id.is_(None))
        .order_by(RandomizationSlot.stratum, RandomizationSlot.sequence)
    ):
        free[slot.stratum].append(slot)
    totals = dict(
        db.session.execute(
            select(RandomizationSlot.stratum, func.count()).group_by(RandomizationSlot.stratum)
        ).all()
    )
    visits: dict[int, list[Visit]] = defaultdict(list)
    for visit in db.session.scalars(
        select(Visit)
        .join(Participant, Participant.id == Visit.participant_id)
        .where(Participant.participant_id.in_(wanted), Visit.entered_in_error.is_(False))
        .order_by(Visit.id)
    ):
        visits[visit.participant_id].append(visit)
    records = AllocationRecords()
    for actor, participant_id, at in entries:
        participant = people.get(participant_id)
        site_ids = actor.visible_site_ids()
        if participant is None or (site_ids is not None and participant.site_id not in site_ids):
            raise NotFound(f"No participant {participant_id!r}.")
        if participant.id in allocated:
            continue
        check_consent(participant)
        check_ready_for_randomization(participant, visits.get(participant.id, []))
        stratum = participant_stratum(participant)
        if not free[stratum]:
            batch.rollback()
            refuse_exhausted(stratum, participant_id)
        slot = free[stratum].popleft()
        counter.last_number += 1
        slot.participant_id = participant.id
        slot.randomization_number = f"R{counter.last_number:0{NUMBER_WIDTH}d}"
        slot.allocated_at = at
        slot.allocated_by_id = actor.id
        participant.status, participant.randomized_at = "randomized", at
        allocated.add(participant.id)
        records.add(
            actor,
            participant,
            Allocation(slot.randomization_number, slot.kit_number, at),
            stratum=stratum,
            total=totals[stratum],
            used=totals[stratum] - len(free[stratum]),
            visits=visits.get(participant.id),
        )
    db.session.flush()
    records.write()
    batch.commit()
