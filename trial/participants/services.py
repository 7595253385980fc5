"""Register participants and read them within the caller's sites."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select

from trial.audit.services import record_events
from trial.auth.roles import SINGLE_SITE_ROLES
from trial.database import utcnow
from trial.errors import Forbidden, NotFound, ValidationFailed
from trial.extensions import db
from trial.participants.models import Participant
from trial.participants.schemas import ParticipantCreateSchema
from trial.protocol import current_protocol
from trial.sites.models import Site
from trial.sites.services import get_site_by_code
from trial.validation import checks_body, raise_errors


def site_today(site: Site, now: datetime | None = None) -> date:
    """Today's date where the site is: what "not in the future" means to its staff."""
    return (now or utcnow()).astimezone(ZoneInfo(site.timezone)).date()


def randomization_date(participant: Participant) -> date | None:
    """Day 0 of the schedule: the site-local date of randomization (None before it)."""
    if participant.randomized_at is None:
        return None
    return site_today(participant.site, participant.randomized_at)


def registration_errors(
    site: Site | None, year_of_birth: int | None, consent_date: date | None
) -> dict[str, list[str]]:
    """The registration rules, each checked when its inputs are known (None: not known)."""
    protocol = current_protocol()
    errors: dict[str, list[str]] = {}
    if site is not None and consent_date is not None:
        today = site_today(site)
        if consent_date > today:
            errors["consent_date"] = [
                f"Consent date {consent_date} is in the future (today at site {site.code} "
                f"is {today})."
            ]
    if consent_date is not None and year_of_birth is not None:
        age = consent_date.year - year_of_birth
        if not protocol.min_age <= age <= protocol.max_age:
            errors["year_of_birth"] = [
                f"Age at consent would be {age} (consent year minus birth year); the protocol "
                f"admits {protocol.min_age} to {protocol.max_age}."
            ]
    return errors


def _check_registration(site: Site, year_of_birth: int, consent_date: date) -> None:
    raise_errors(registration_errors(site, year_of_birth, consent_date))


def registration_site(actor, site: str) -> Site:
    """The site a participant is registered at: known, and the actor's own."""
    site_row = get_site_by_code(site)
    if site_row is None:
        raise ValidationFailed("Invalid input: site.", {"site": [f"Unknown site {site!r}."]})
    if actor.role not in SINGLE_SITE_ROLES or site_row.id not in actor.visible_site_ids():
        raise Forbidden(
            f"You may register participants only at your own site ({actor.site_label or 'none'})."
        )
    return site_row


@checks_body(ParticipantCreateSchema)
def check_registration(actor, values: dict, failed=frozenset()) -> Site | None:
    """Every registration rule on ``values`` (those known), naming each bad field at once.

    Returns the site. A site the actor may not register at is a 403 whatever the body.
    """
    errors: dict[str, list[str]] = {}
    site_row = None
    if "site" in values:
        try:
            site_row = registration_site(actor, values["site"])
        except ValidationFailed as unknown:
            errors.update(unknown.errors)
    errors.update(
        registration_errors(site_row, values.get("year_of_birth"), values.get("consent_date"))
    )
    raise_errors(errors)
    return site_row


def lock_site(site: Site) -> Site:
    """Lock the site row so concurrent registrations get consecutive, unique numbers."""
    return db.session.execute(
        select(Site)
        .where(Site.id == site.id)
        # FOR NO KEY UPDATE: the site's key never changes, so rows that refer to the site
        # (a query raised meanwhile) may still be inserted; FOR UPDATE would make such an
        # insert wait for this registration while it waits for the audit chain that insert's
        # transaction holds: a deadlock.
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    ).scalar_one()


def register_participant(
    actor, *, site: str, sex: str, year_of_birth: int, consent_date: date
) -> Participant:
    """Register a consented participant at the actor's own site and give them an id."""
    site_row = check_registration(
        actor, {"site": site, "year_of_birth": year_of_birth, "consent_date": consent_date}
    )
    return _register(actor, site_row, [(sex, year_of_birth, consent_date)])[0]


def register_participants(
    actor, site: str, entries: Sequence[tuple[str, int, date]]
) -> list[Participant]:
    """Register many ``(sex, year_of_birth, consent_date)`` entries at ``site``, in order,
    each checked as one registration is: for loads such as the demo (one site lock, one
    flush and one audit append for the batch)."""
    site_row = registration_site(actor, site)
    for _sex, year_of_birth, consent_date in entries:
        _check_registration(site_row, year_of_birth, consent_date)
    return _register(actor, site_row, entries)


def _register(actor, site: Site, entries: Sequence[tuple[str, int, date]]) -> list[Participant]:
    """Number checked entries under the site's row lock, store them and audit each field."""
    locked = lock_site(site)
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
                status="screening",
                created_at=now,
                created_by_id=actor.id,
                unblinded=False,
            )
        )
        entered = {
            "site": locked.code,
            "sex": sex,
            "year_of_birth": year_of_birth,
            "consent_date": consent_date,
            "status": "screening",
        }
        events.extend(
            {
                "action": "create",
                "entity_type": "participant",
                "entity_id": participant_id,
                "entity_site": locked.code,
                "field": field,
                "new": value,
            }
            for field, value in entered.items()
        )
    db.session.add_all(participants)
    db.session.flush()
    record_events(actor, events)
    return participants


def visible_participants(actor, *, site: str | None = None, status: str | None = None):
    statement = select(Participant).join(Participant.site)
    site_ids = actor.visible_site_ids()
    if site_ids is not None:
        statement = statement.where(Participant.site_id.in_(site_ids))
    if site is not None:
        statement = statement.where(Site.code == site)
    if status is not None:
        statement = statement.where(Participant.status == status)
    return list(db.session.scalars(statement.order_by(Participant.participant_id)))


# Built once: most requests read their participant first.
_PARTICIPANT = select(Participant).where(Participant.participant_id == bindparam("participant_id"))
# FOR NO KEY UPDATE, as for the site: records referring to the participant stay insertable.
_PARTICIPANT_LOCKED = _PARTICIPANT.with_for_update(
    of=Participant, key_share=True
).execution_options(populate_existing=True)


def get_visible_participant(actor, participant_id: str, *, lock: bool = False) -> Participant:
    """Return the participant, or 404 whether it does not exist or is at another site.

    ``lock`` reads and locks the row in one statement (``FOR UPDATE`` on PostgreSQL; on
    SQLite the write transaction already excludes other writers), fresh from the database.
    """
    participant = db.session.scalar(
        _PARTICIPANT_LOCKED if lock else _PARTICIPANT, {"participant_id": participant_id}
    )
    site_ids = actor.visible_site_ids()
    if participant is None or (site_ids is not None and participant.site_id not in site_ids):
        raise NotFound(f"No participant {participant_id!r}.")
    return participant
