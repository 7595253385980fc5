"""Register many participants of one site at once: the bulk path of ``register_participant``.

Same checks (site, the actor's own site, age at consent, consent not in the future), same
numbering under the site's row lock, same rows and the same five audit rows per participant;
one lock, one insert and one audit append for the whole batch. For loads such as the demo.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy import select

from trial.audit.services import record_events
from trial.bulk import bulk_insert, reserve_ids
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
    ids = reserve_ids(Participant.__table__, len(entries))
    now = utcnow()
    rows, events = [], []
    for offset, (record_id, (sex, year_of_birth, consent_date)) in enumerate(
        zip(ids, entries, strict=True)
    ):
        number = first_number + offset
        participant_id = f"{locked.code}-{number:04d}"
        rows.append(
            {
                "id": record_id,
                "participant_id": participant_id,
                "site_id": locked.id,
                "number": number,
                "sex": sex,
                "year_of_birth": year_of_birth,
                "consent_date": consent_date,
                "status": "screened",
                "created_at": now,
                "created_by_id": actor.id,
                "unblinded": False,
            }
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
    bulk_insert(Participant.__table__, rows)
    record_events(actor, events)
    by_id = {
        p.id: p for p in db.session.scalars(select(Participant).where(Participant.id.in_(ids)))
    }
    return [by_id[record_id] for record_id in ids]
