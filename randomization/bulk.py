"""Randomize many participants in one go, for loading a trial's history (the demo).

The same allocation as ``services.randomize`` called once per participant in the given
order: under the trial-wide allocation lock, each participant takes the next free slot of
their stratum, the next randomization number, and the same five audit rows; the same
notices when a stratum runs low or out. What differs is the cost: the free slots are read
once, and the rows are written in a few batches instead of a dozen statements each.
Minimization decides each arm from the decisions before it, so it goes one at a time through
``services.randomize``.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select

from randomization.models import AllocationLock, RandomizationSlot
from randomization.services import (
    NUMBER_WIDTH,
    _lock,
    _notify_once,
    check_consent,
    participant_stratum,
    randomize,
    refuse_exhausted,
)
from trial.audit.services import record_events
from trial.errors import NotFound
from trial.extensions import db
from trial.participants.models import Participant
from trial.protocol import current_protocol


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
    people = {
        p.participant_id: p
        for p in db.session.scalars(
            select(Participant)
            .where(Participant.participant_id.in_(wanted))
            .with_for_update(of=Participant)
        )
    }
    counter = _lock(AllocationLock, 1)
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
    events_by_actor: dict[int, tuple[object, list]] = {}
    for actor, participant_id, at in entries:
        participant = people.get(participant_id)
        site_ids = actor.visible_site_ids()
        if participant is None or (site_ids is not None and participant.site_id not in site_ids):
            raise NotFound(f"No participant {participant_id!r}.")
        if participant.id in allocated:
            continue
        check_consent(participant)
        stratum = participant_stratum(participant)
        if not free[stratum]:
            refuse_exhausted(stratum, participant_id)
        slot = free[stratum].popleft()
        counter.last_number += 1
        slot.participant_id = participant.id
        slot.randomization_number = f"R{counter.last_number:0{NUMBER_WIDTH}d}"
        slot.allocated_at = at
        slot.allocated_by_id = actor.id
        participant.status, participant.randomized_at = "randomized", at
        allocated.add(participant.id)
        site = participant.site_code
        events = events_by_actor.setdefault(id(actor), (actor, []))[1]
        for field, value in (
            ("randomization_number", slot.randomization_number),
            ("kit_number", slot.kit_number),
            ("randomized_at", at),
            ("eligibility_confirmed", True),
        ):
            events.append(
                {
                    "action": "randomize",
                    "entity_type": "participant",
                    "entity_id": participant_id,
                    "entity_site": site,
                    "field": field,
                    "new": value,
                }
            )
        events.append(
            {
                "action": "update",
                "entity_type": "participant",
                "entity_id": participant_id,
                "entity_site": site,
                "field": "status",
                "old": "screened",
                "new": "randomized",
                "reason": "randomized",
            }
        )
        left = len(free[stratum])
        if left < protocol.low_remaining_warning * totals[stratum]:
            _notify_once(
                "stratum_low",
                stratum,
                f"Stratum {stratum} is running low: {left} of {totals[stratum]} slots left.",
            )
    db.session.flush()
    for actor, events in events_by_actor.values():
        record_events(actor, events)
