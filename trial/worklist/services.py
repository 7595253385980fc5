"""The site's worklist: in one answer, what site staff (or their monitor) must do next.

Read in a fixed number of statements whatever the number of participants: the participants
of the sites, their active visits, dispositions and form presence are each read once, and
each participant's schedule is built in memory by the rules of the schedule endpoint
(``trial.visits.schedule.build_schedule``, ``trial.conduct.course.visit_expected``).

That is still a site's whole history (a 667-participant site of the demo: about 600 ms), and
site staff open their worklist many times a day. So the build is kept, per process, for the
state of the trial it was built from (``trial.worklist.kept``: the audit chain's head, and
each site's date, as a visit becomes due or overdue as days pass): any change anywhere, or a
new day, builds it again. What ages by the hour is worked out on every request from what is
kept: a query's age, and whether an open expedited report's deadline has passed.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import lazyload

from trial.conduct.course import Course, course_from
from trial.conduct.models import Disposition
from trial.database import utcnow
from trial.errors import Forbidden, ValidationFailed
from trial.extensions import db
from trial.participants.models import Participant
from trial.participants.services import site_today
from trial.queries.models import DataQuery, age_in_days
from trial.safety.expedited import expedited_reports
from trial.sites.models import Site
from trial.visits.models import Visit
from trial.visits.schedule import build_schedule, forms_held, missing_forms_from
from trial.worklist.kept import kept, trail_head


def worklist_sites(actor, site: str | None) -> list[Site]:
    """The sites the worklist covers: the actor's (every site for a central role), or the
    one asked for (422 for an unknown site, 403 for one the actor does not work at)."""
    sites = list(db.session.scalars(select(Site).order_by(Site.code)))
    visible = actor.visible_site_ids()
    mine = [s for s in sites if visible is None or s.id in visible]
    if site is None:
        return mine
    chosen = [s for s in sites if s.code == site]
    if not chosen:
        raise ValidationFailed("Invalid input: site.", {"site": [f"Unknown site {site!r}."]})
    if chosen[0] not in mine:
        raise Forbidden(f"You do not work at site {site}.")
    return chosen


def build_worklist(
    actor, *, site: str | None = None, start: date | None = None, end: date | None = None
) -> dict:
    """Visits due or overdue (their window meeting ``start``..``end``; open ends unbounded),
    completed visits (dated in the period) with expected forms missing or awaiting the
    investigator's signature, open queries awaiting the site's answer with their age, and
    expedited reports of serious AEs not yet submitted with their clock."""
    return kept_worklist(actor, site=site, start=start, end=end)[1]


def kept_worklist(
    actor, *, site: str | None = None, start: date | None = None, end: date | None = None
) -> tuple[tuple, dict]:
    """The worklist (``build_worklist``) and the key of the trial's state it was built for:
    the same for every reader of these sites, so a page may keep what it makes of it."""
    sites = worklist_sites(actor, site)
    site_ids = [s.id for s in sites]
    todays = tuple(site_today(s) for s in sites)
    key = (tuple(site_ids), start, end, todays, trail_head())
    codes = {s.code for s in sites}
    work = kept(
        "worklist",
        key,
        lambda: {
            **_visit_work(site_ids, start, end),
            "open_queries": _open_queries(site_ids),
            "serious_adverse_events": _sae_clocks(actor, codes),
        },
    )
    now = utcnow()
    return key, {
        "sites": [{"site": s.code, "today": today} for s, today in zip(sites, todays, strict=True)],
        "from": start,
        "to": end,
        "visits_due": work["visits_due"],
        "missing_forms": work["missing_forms"],
        "awaiting_signature": work["awaiting_signature"],
        "open_queries": [
            {**query, "age_days": age_in_days(query["opened_at"], now)}
            for query in work["open_queries"]
        ],
        # Every report here is open: one not overdue when kept is overdue once its time passes.
        "serious_adverse_events": [
            {**report, "overdue": report["overdue"] or now >= report["due_at"]}
            for report in work["serious_adverse_events"]
        ],
    }


def _visit_work(site_ids: list[int], start: date | None, end: date | None) -> dict:
    """Visits due or overdue, completed visits missing forms or a signature (read-only
    lists: they may be kept and shared)."""
    people = list(
        db.session.scalars(
            select(Participant)
            .where(Participant.site_id.in_(site_ids))
            .order_by(Participant.participant_id)
        )
    )
    by_row = {p.id: p for p in people}
    # Nor the signer: a site's thousands of visits are read for dates and statuses only.
    visits = _active(Visit, by_row, lazyload(Visit.signer))
    courses = _courses(by_row)
    gaps_of = missing_forms_from(forms_held(by_row))
    due, missing, unsigned = [], [], []

    for participant in people:
        mine = visits.get(participant.id, [])
        schedule = build_schedule(participant, mine, courses[participant.id], gaps_of)
        for item in schedule:
            if item.status in ("due", "overdue") and _window_meets(item, start, end):
                due.append(_due_row(participant, item))
        for visit in mine:
            if visit.status != "completed" or not _dated_in(visit.visit_date, start, end):
                continue
            gaps = gaps_of(visit)
            if gaps:
                missing.append({**_visit_row(participant, visit), "missing_forms": gaps})
            if visit.signature_status != "signed":
                unsigned.append(
                    {**_visit_row(participant, visit), "signature_status": visit.signature_status}
                )
    due.sort(key=lambda row: (row["latest_date"], row["participant_id"], row["day"]))
    return {"visits_due": due, "missing_forms": missing, "awaiting_signature": unsigned}


def _active(model, by_row: dict, *options) -> dict[int, list]:
    """Active records of ``model`` per participant row id, in the order they were made.

    Without joining each record's participant (read already: the session's identity map
    answers ``record.participant``) nor any of ``options``' relationships.
    """
    options = (lazyload(model.participant), *options)
    found = defaultdict(list)
    if by_row:
        for record in db.session.scalars(
            select(model)
            .where(model.participant_id.in_(by_row), model.entered_in_error.is_(False))
            .order_by(model.id)
            .options(*options)
        ):
            found[record.participant_id].append(record)
    return found


def _courses(by_row: dict) -> dict[int, Course]:
    """Each participant's course from their dispositions, read for all of them at once."""
    endings = _active(Disposition, by_row)
    return {
        row_id: course_from(participant, endings.get(row_id, []))
        for row_id, participant in by_row.items()
    }


def _window_meets(item, start: date | None, end: date | None) -> bool:
    if end is not None and item.earliest_date > end:
        return False
    return start is None or item.latest_date >= start


def _dated_in(day: date | None, start: date | None, end: date | None) -> bool:
    if day is None:
        return False
    return (start is None or day >= start) and (end is None or day <= end)


def _due_row(participant: Participant, item) -> dict:
    today = site_today(participant.site)
    return {
        "participant_id": participant.participant_id,
        "site": participant.site_code,
        "participant_status": participant.status,
        "visit_code": item.code,
        "label": item.label,
        "day": item.day,
        "status": item.status,
        "target_date": item.target_date,
        "earliest_date": item.earliest_date,
        "latest_date": item.latest_date,
        "days_overdue": max((today - item.latest_date).days, 0),
        "forms": list(item.forms),
        "calendar_from": item.calendar_from,
        "calendar_to": item.calendar_to,
    }


def _visit_row(participant: Participant, visit: Visit) -> dict:
    return {
        "participant_id": participant.participant_id,
        "site": participant.site_code,
        "visit_id": visit.id,
        "visit_code": visit.visit_code,
        "visit_date": visit.visit_date,
    }


def _open_queries(site_ids: list[int]) -> list[dict]:
    """Open queries addressed to the sites (awaiting the site's answer), oldest first,
    without their age (``kept_worklist`` works it out when asked)."""
    rows = db.session.scalars(
        select(DataQuery)
        .where(DataQuery.site_id.in_(site_ids), DataQuery.status == "open")
        .order_by(DataQuery.opened_at, DataQuery.id)
    )
    return [
        {
            "query_id": query.id,
            "participant_id": query.participant_code,
            "site": query.site_code,
            "entity": query.entity,
            "record_id": query.record_id,
            "field": query.field,
            "text": query.text,
            "opened_at": query.opened_at,
        }
        for query in rows
    ]


def _sae_clocks(actor, site_codes: set[str]) -> list[dict]:
    """Expedited reports of serious AEs not yet submitted, most urgent first, with their
    clock. Read at the sites ``actor`` sees (in SQL: a site's worklist does not read the
    whole trial's reports), then narrowed to the worklist's own sites."""
    return [
        {
            "report_id": report["id"],
            "adverse_event_id": report["adverse_event_id"],
            "participant_id": report["participant_id"],
            "site": report["site"],
            "term": report["term"],
            "status": report["status"],
            "due_at": report["due_at"],
            "overdue": report["overdue"],
        }
        for report in expedited_reports("open", actor=actor)
        if report["site"] in site_codes
    ]
