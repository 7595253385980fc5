"""Allocate participants to slots: the randomization service.

This package is the only code that decrypts an arm (in ``minimization_claim`` for
minimization's decisions, in ``code_break`` for an emergency unblinding, in ``outputs`` for
the unblinded statistician's key, list and the closed report, and in ``lists``). Blinded
callers get the randomization number, kit number and time: the same shape and size whatever
the arm.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import bindparam, func, select

from randomization.claim import (
    NUMBER_WIDTH,  # noqa: F401 - part of this module's interface (bulk loads number alike)
    claim_next_slot,
    give_back_number,
    mark_randomized,
    next_randomization_number,
)
from randomization.lists import POOL_STRATUM
from randomization.minimization_claim import claim_minimization_slot
from randomization.models import RandomizationSlot
from randomization.strata import stratum_key
from randomization.stratum_notices import notify_if_low, refuse_exhausted
from trial.audit.services import record_events
from trial.conduct.eligibility import check_ready_for_randomization
from trial.database import utcnow
from trial.errors import ValidationFailed
from trial.extensions import db
from trial.participants.models import Participant
from trial.participants.services import get_visible_participant
from trial.protocol import current_protocol
from trial.records.registry import records_of
from trial.visits.models import Visit
from trial.visits.services import flag_visits_in_new_schedule


def participant_stratum(participant: Participant) -> str:
    return stratum_key(current_protocol(), site=participant.site_code, sex=participant.sex)


def allocation_of(participant: Participant) -> RandomizationSlot | None:
    return db.session.scalar(
        select(RandomizationSlot).where(RandomizationSlot.participant_id == participant.id)
    )


def lock_row(model, key):
    return db.session.execute(
        select(model)
        .where(model.id == key)
        .with_for_update(of=model)
        .execution_options(populate_existing=True)
    ).scalar_one()


class Allocation(NamedTuple):
    """What a blinded caller may know of an allocation: never the arm, stratum or sequence."""

    randomization_number: str
    kit_number: str
    randomized_at: datetime


_ALLOCATION_AND_VISITS = (
    select(
        select(Visit.id)
        .where(Visit.participant_id == Participant.id, Visit.entered_in_error.is_(False))
        .exists(),
        RandomizationSlot.randomization_number,
        RandomizationSlot.kit_number,
        RandomizationSlot.allocated_at,
    )
    .outerjoin_from(
        Participant, RandomizationSlot, RandomizationSlot.participant_id == Participant.id
    )
    .where(Participant.id == bindparam("row_id"))
)


def _participant_for_allocation(actor, participant_id: str):
    """Return ``(participant, allocation or None, has_visits)``, the participant locked.

    The row lock (``FOR UPDATE`` on PostgreSQL; SQLite's write transaction already excludes
    other writers) makes concurrent repeats for one participant queue; recording a visit
    takes it too. What the lock guards is read by a second statement: a statement that
    waited for a row lock sees the locked row's new version but every other table as it was
    when the statement began, so a join there would miss the allocation (or the visit) that
    the transaction it waited for has just committed.
    """
    participant = get_visible_participant(actor, participant_id, lock=True)
    row = db.session.execute(_ALLOCATION_AND_VISITS, {"row_id": participant.id}).one()
    existing = Allocation(*row[1:]) if row[1] is not None else None
    return participant, existing, row[0]


def _stratum_counts(stratum: str) -> tuple[int, int]:
    total, used = db.session.execute(
        select(func.count(), func.count(RandomizationSlot.participant_id)).where(
            RandomizationSlot.stratum == stratum
        )
    ).one()
    return total, used


def check_consent(participant: Participant) -> None:
    if participant.consent_date is None:
        raise ValidationFailed(
            "Invalid input: consent.",
            {"consent_date": ["No informed consent is recorded for this participant."]},
        )


class AllocationRecords:
    """What allocations leave besides their slots, for ``randomize`` and ``randomize_many``
    alike: each one's five audit rows, the notice of a stratum running low, and the window
    check of the visits recorded before day 0 (which only day 0 defines).

    ``add`` each allocation, then ``write``: the audit rows go in one batch per actor, then
    the visits are checked, so a deviation a visit raises follows its allocation's rows in
    the trail.
    """

    def __init__(self):
        self._events: dict[int, tuple[object, list[dict]]] = {}
        self._visits: list[tuple[object, Participant, list]] = []

    def add(
        self,
        actor,
        participant: Participant,
        allocation: Allocation,
        *,
        stratum: str,
        total: int,
        used: int,
        visits: list | None,
    ) -> None:
        """One allocation: ``total`` slots in its stratum, ``used`` with this one; ``visits``
        the participant's active visits (None or empty when none)."""
        about = {
            "entity_type": "participant",
            "entity_id": participant.participant_id,
            "entity_site": participant.site_code,
        }
        allocated = (
            ("randomization_number", allocation.randomization_number),
            ("kit_number", allocation.kit_number),
            ("randomized_at", allocation.randomized_at),
            ("eligibility_confirmed", True),
        )
        events = self._events.setdefault(id(actor), (actor, []))[1]
        events.extend(
            {"action": "randomize", **about, "field": field, "old": None, "new": value}
            for field, value in allocated
        )
        # Randomization needs a participant in screening (``check_ready_for_randomization``).
        status = {"field": "status", "old": "screening", "new": "randomized"}
        events.append({"action": "update", **about, **status, "reason": "randomized"})
        notify_if_low(stratum, total=total, used=used)
        if visits:
            self._visits.append((actor, participant, visits))

    def write(self) -> None:
        for actor, events in self._events.values():
            record_events(actor, events)  # one chain-head lock and one insert per actor
        for actor, participant, visits in self._visits:
            flag_visits_in_new_schedule(actor, participant, visits)


def randomize(actor, participant_id: str, *, eligibility_confirmed: bool, at=None):
    """Allocate the next free slot of the participant's stratum; repeat calls return it again.

    Returns ``(allocation, created)``. The participant row is locked first so concurrent
    repeats for one participant wait and then find the allocation; the trial-wide allocation
    lock is then taken so that the next free slot is read by one request at a time. ``at``
    (an aware instant, for loading a trial's history such as the demo; never taken from a
    request) dates the allocation in the past; the audit rows still carry the server time.

    Everything after the allocation lock is held until commit, by every randomization in
    the trial: it is a handful of statements written in SQL terms, not ORM flushes.
    """
    participant, existing, has_visits = _participant_for_allocation(actor, participant_id)
    if existing is not None:
        return existing, False
    if eligibility_confirmed is not True:
        raise ValidationFailed(
            "Invalid input: eligibility_confirmed.",
            {
                "eligibility_confirmed": [
                    "Confirm that the participant meets every eligibility "
                    "criterion (true) before randomizing."
                ]
            },
        )
    check_consent(participant)
    # Read before the allocation lock (the participant's row lock keeps them as they are),
    # for the readiness check here and the window check of the allocation's records.
    visits = records_of(Visit, participant) if has_visits else []
    check_ready_for_randomization(participant, visits)
    minimization = current_protocol().randomization_method == "minimization"
    stratum = POOL_STRATUM if minimization else participant_stratum(participant)
    number = next_randomization_number()  # takes the trial-wide allocation lock
    now = at or utcnow()
    taken = {
        "participant_id": participant.id,
        "randomization_number": number,
        "allocated_at": now,
        "allocated_by_id": actor.id,
    }
    # A claim writes nothing when no slot is left: the number is all there is to undo.
    if minimization:
        claimed, counts = claim_minimization_slot(participant, taken), None
        if claimed is not None:
            mark_randomized(participant, now)
    else:
        claimed = claim_next_slot(stratum, participant, taken)
        counts = claimed and claimed[1:]
    if claimed is None:
        give_back_number()
        refuse_exhausted(stratum, participant_id)
    allocation = Allocation(number, claimed[0], now)
    total, used = counts or _stratum_counts(stratum)
    records = AllocationRecords()
    records.add(
        actor,
        participant,
        allocation,
        stratum=stratum,
        total=total,
        used=used,
        visits=visits or None,
    )
    records.write()
    return allocation, True
