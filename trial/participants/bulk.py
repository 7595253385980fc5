"""Register many participants of one site at once: the bulk path of ``register_participant``.

Same checks (site, the actor's own site, age at consent, consent not in the future), same
numbering under the site's row lock, same rows and the same five audit rows per participant;
one lock, one flush and one audit append for the whole batch. For loads such as the demo.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from trial.audit.services import record_events
from trial.database import utcnow
from trial.extensions import db
from trial.participants.models import Participant
from trial.participants.services import _check_registration, lock_site, registration_site


def register_participants_bulk(
    actor, site: str, entries: Sequence[tuple[str, int, date]]
) -> list[Participant]:
    """Register ``(sex, year_of_birth, consent_date)`` entries at ``site``, in order."""
    site_row = registration_site(actor, site)
    for _sex, year_of_birth, consent_date in entries:
        _check_registration(site_row, year_of_birth, consent_date)
    locked = lock_site(site_row)
    first_number = locked.participant_counter + 1
    locked.participant_counter += len(entries)
    now = utcnow()
    participants, events = [], []
    for number, (sex, year_of_birth, consent_date) in enumerate(entries, start=first_number):
        participant_id = f"{locked.code}-{number:04d}"
        participants.append(
            Participant(
                participant_id=participant_id,
                site_id=locked.id,
                number=number,
                sex=sex,
                year_of_birth=year_of_birth,
                consent_date=consent_date,
                status="screened",
                created_at=now,
                created_by_id=actor.id,
                unblinded=False,
            )
        )
        for field, value in (
            ("site", locked.code),
            ("sex", sex),
            ("year_of_birth", year_of_birth),
            ("consent_date", consent_date),
            ("status", "screened"),
        ):
            events.append(
                {
                    "action": "create",
                    "entity_type": "participant",
                    "entity_id": participant_id,
                    "entity_site": locked.code,
                    "field": field,
                    "new": value,
                }
            )
    db.session.add_all(participants)
    db.session.flush()
    record_events(actor, events)
    return participants
