"""A stratum running low or exhausted: the unblinded statistician's notices, and the refusal.

Each notice is written once per stratum and kind, with its e-mail to the unblinded
statistician alone; neither it nor the refusal a blinded caller gets says anything of arms.
"""

from __future__ import annotations

from sqlalchemy import func, select

from randomization.models import RandomizationNotice
from trial.database import utcnow
from trial.errors import ConflictRecorded
from trial.extensions import db
from trial.notifications import events as notification_events
from trial.protocol import current_protocol


def _notify_once(kind: str, stratum: str, message: str, **facts) -> None:
    """The unblinded statistician's notice of a stratum running low or exhausted, and its
    e-mail to them alone (``facts``: what the message says), once per stratum and kind."""
    exists = db.session.scalar(
        select(func.count())
        .select_from(RandomizationNotice)
        .where(RandomizationNotice.kind == kind, RandomizationNotice.stratum == stratum)
    )
    if not exists:
        db.session.add(
            RandomizationNotice(kind=kind, stratum=stratum, message=message, created_at=utcnow())
        )
        notification_events.stratum_notice(kind, stratum=stratum, **facts)


class StratumExhausted(ConflictRecorded):
    """No slot is left in a stratum; says nothing about arms.

    Raised once the attempt's number is given back (nothing else was written: numbers stay
    gapless) and the unblinded statistician's notice written; the request keeps the notice
    (``trial.errors.RecordedRefusal``).
    """

    def __init__(self, message: str, stratum: str, participant_id: str):
        super().__init__(message)
        self.stratum, self.participant_id = stratum, participant_id


def notify_if_low(stratum: str, *, total: int, used: int) -> None:
    """Notify the unblinded statistician (once per stratum) when fewer than the protocol's
    ``low_remaining_warning`` share of the stratum's ``total`` slots are left (``used``
    counts this allocation)."""
    if total - used < current_protocol().low_remaining_warning * total:
        _notify_once(
            "stratum_low",
            stratum,
            f"Stratum {stratum} is running low: {total - used} of {total} slots left.",
            remaining=total - used,
            total=total,
        )


def refuse_exhausted(stratum: str, participant_id: str) -> None:
    """Notify the unblinded statistician (once per stratum), then refuse without an arm.

    The caller has given its number back first: the notice is all the refusal leaves.
    """
    _notify_once(
        "stratum_exhausted",
        stratum,
        f"Stratum {stratum} has no slot left; participant {participant_id} could not be "
        f"randomized.",
        participant_id=participant_id,
    )
    raise StratumExhausted(
        f"No randomization slot is left in stratum {stratum}. The unblinded statistician "
        f"has been notified; the participant was not randomized.",
        stratum,
        participant_id,
    )
