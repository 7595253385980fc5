"""The participant's course through the trial: where it stands and what it still allows.

The status is derived from recorded events (randomization, dispositions), never set by hand:
``course_status`` is the rule, ``refresh_status`` applies it after each such event and audits
the change. A final disposition ends the data: nothing dated after it is recorded (a
participant who comes back is handled by correcting the disposition, with a reason); a
treatment discontinuation ends the dosing while the visits go on (intention to treat).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select

from trial.audit.services import record_event
from trial.conduct.models import TREATMENT_DISCONTINUATION, Disposition
from trial.errors import Conflict
from trial.extensions import db
from trial.participants.models import Participant

# Final disposition -> the participant's status.
FINAL_STATUS = {
    "screen_failure": "screen_failure",
    "completed": "completed",
    "withdrew": "withdrew",
    "lost_to_follow_up": "lost_to_follow_up",
    "death": "died",
}
DISPOSITION_WORDS = {
    "screen_failure": "was a screen failure",
    "completed": "completed the study",
    "withdrew": "withdrew consent",
    "lost_to_follow_up": "was lost to follow-up",
    "death": "died",
    TREATMENT_DISCONTINUATION: "stopped the study drug",
}


@dataclass(frozen=True)
class Ending:
    """One active disposition, as the rules need it."""

    status: str
    date: date


@dataclass(frozen=True)
class Course:
    randomized: bool
    final: Ending | None
    discontinued: Ending | None

    @property
    def status(self) -> str:
        return course_status(
            self.randomized,
            self.final.status if self.final else None,
            self.discontinued is not None,
        )


def course_status(randomized: bool, final: str | None, discontinued: bool) -> str:
    """The status rule: a final disposition decides; else a treatment discontinuation;
    else randomization."""
    if final is not None:
        return FINAL_STATUS[final]
    if discontinued:
        return "off_treatment"
    return "randomized" if randomized else "screening"


def course_of(participant: Participant, *, exclude_id: int | None = None) -> Course:
    """The participant's course from their active dispositions (``exclude_id``: one left
    out, as a correction of it would replace it)."""
    records = db.session.scalars(
        select(Disposition).where(
            Disposition.participant_id == participant.id,
            Disposition.entered_in_error.is_(False),
        )
    )
    return course_from(participant, [r for r in records if r.id != exclude_id])


def course_from(participant: Participant, dispositions) -> Course:
    """The course the participant's active ``dispositions`` give (read by the caller, e.g.
    for many participants at once)."""
    final = discontinued = None
    for record in dispositions:
        ending = Ending(record.status, record.date)
        if record.status == TREATMENT_DISCONTINUATION:
            discontinued = ending
        else:
            final = ending
    return Course(participant.randomized_at is not None, final, discontinued)


def refresh_status(actor, participant: Participant, *, because: str) -> None:
    """Set the status the participant's events now give, auditing a change."""
    new = course_of(participant).status
    old = participant.status
    if new == old:
        return
    participant.status = new
    db.session.flush()
    record_event(
        actor,
        "update",
        entity_type="participant",
        entity_id=participant.participant_id,
        entity_site=participant.site_code,
        field="status",
        old=old,
        new=new,
        reason=because,
    )


def _ended(participant: Participant, ending: Ending, day: date, field: str, what: str):
    words = DISPOSITION_WORDS[ending.status]
    message = (
        f"Participant {participant.participant_id} {words} on {ending.date}: no {what} dated "
        f"after that is recorded. If this is wrong, correct the disposition with a reason."
    )
    return Conflict(
        message,
        {field: [f"{day} is after the disposition ({ending.status}, {ending.date})."]},
    )


def refuse_after_final(
    participant: Participant, day: date | None, *, field: str, what: str
) -> None:
    """No data dated after a final disposition (409 naming the disposition and ``field``)."""
    if day is None:
        return
    final = course_of(participant).final
    if final is not None and day > final.date:
        raise _ended(participant, final, day, field, what)


def refuse_dosing_after_discontinuation(participant: Participant, day: date | None) -> None:
    """No study drug dated after the treatment stopped (or after a final disposition)."""
    if day is None:
        return
    course = course_of(participant)
    for ending in (course.discontinued, course.final):
        if ending is not None and day > ending.date:
            raise _ended(participant, ending, day, "date", "study drug")


def visit_expected(window_opens: date, final: Ending | None) -> bool:
    """Whether a scheduled visit is expected of a participant: not when a final disposition
    is dated before its window opens. The schedule, the worklist and the DSMB report's
    completeness table all count by this rule."""
    return final is None or window_opens <= final.date
