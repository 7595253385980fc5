"""Store simulated data through the capture services, as site staff would enter it.

Coordinators record visits, study drug, deviations and dispositions; investigators report
adverse events. By default the services' bulk paths are used (same checks the data was made
to pass, same rows, same field-by-field audit rows, far fewer round trips; visits and their
forms, most of the rows, as plain rows through ``store_visits``): non-serious AEs
are checked and coded as ``report_adverse_event`` does, and serious ones go through
``report_adverse_event`` itself so each opens its expedited report. With ``BULK = False``
everything goes through the single-record services one record at a time, with all their
checks: the test suite does that to show both paths store the same trial.
"""

from __future__ import annotations

from collections import defaultdict
from functools import cache

from trial.conduct.course import refresh_status
from trial.conduct.eligibility import record_answers
from trial.conduct.models import (
    TREATMENT_DISCONTINUATION,
    Disposition,
    EligibilityAnswer,
    ProtocolDeviation,
)
from trial.conduct.services import record_deviation, record_disposition
from trial.dosing.models import DosingRecord
from trial.dosing.services import record_dosing
from trial.records.bulk import create_records
from trial.safety.meddra import code_term
from trial.safety.models import AdverseEvent
from trial.safety.services import check_adverse_event, report_adverse_event, stored_values
from trial.visits.recording import store_visits
from trial.visits.services import record_visit

BULK = True
VISIT_DEFAULTS = {"drinking": [], "ocds": None, "ciwa": None, "vitals": None, "labs": []}


@cache
def _coding(term: str) -> dict:
    return code_term(term).as_values()


def _staff(users: dict, site: str, role: str):
    return users[f"{role}.{site.lower()}"]


def write_visits(users: dict, entries: list) -> None:
    """Record ``[(participant, visit)]`` (visit in the shape of a loaded POST body)."""
    by_site = defaultdict(list)
    for participant, visit in entries:
        by_site[participant.site_code].append((participant, {**VISIT_DEFAULTS, **visit}))
    for site, items in sorted(by_site.items()):
        coordinator = _staff(users, site, "coordinator")
        if BULK:
            store_visits(coordinator, items)
        else:
            for participant, visit in items:
                record_visit(coordinator, participant, visit)


def write_courses(users: dict, courses: list) -> None:
    """Write ``[(profile, course)]``: visits with forms, dosing, AEs, deviations, dispositions."""
    _coding.cache_clear()  # a dictionary loaded between two demos must count
    sites = sorted({profile.participant.site_code for profile, _ in courses})
    for site in sites:
        mine = [(p.participant, c) for p, c in courses if p.participant.site_code == site]
        write_visits(users, [(p, visit) for p, c in mine for visit in c.visits])
        coordinator = _staff(users, site, "coordinator")
        investigator = _staff(users, site, "investigator")
        dosing = [(p, record) for p, c in mine for record in c.dosing]
        events = [(p, event.body(), event.serious) for p, c in mine for event in c.events]
        deviations = [
            (p, {**deviation, "automatic": False, "visit_id": None})
            for p, c in mine
            for deviation in c.deviations
        ]
        dispositions = [(p, d) for p, c in mine for d in c.dispositions]
        if not BULK:
            for participant, record in dosing:
                record_dosing(coordinator, participant, dict(record))
            for participant, body, _serious in events:
                report_adverse_event(investigator, participant.participant_id, body)
            for participant, values in deviations:
                record_deviation(
                    coordinator,
                    participant,
                    {k: values[k] for k in ("category", "description", "date")},
                )
            for participant, values in dispositions:
                record_disposition(coordinator, participant, dict(values))
            continue
        create_records(coordinator, [(DosingRecord, p, v) for p, v in dosing])
        coded = []
        for participant, body, serious in events:
            if serious:
                continue
            check_adverse_event(body, participant)
            stored = stored_values(body)
            stored.update(_coding(stored["term"]))
            coded.append((participant, stored))
        create_records(investigator, [(AdverseEvent, p, v) for p, v in coded])
        for participant, body, serious in events:
            if serious:
                report_adverse_event(investigator, participant.participant_id, body)
        create_records(coordinator, [(ProtocolDeviation, p, v) for p, v in deviations])
        write_dispositions(coordinator, dispositions)


def write_dispositions(coordinator, dispositions: list) -> None:
    """Store ``[(participant, values)]`` and the status each gives, as ``record_disposition``
    does one by one (the bulk path: checked by the simulation, not again). Treatment
    discontinuations go first, so a participant's status passes through off_treatment before
    a final disposition, as it does when they are entered in order."""
    stopped = [item for item in dispositions if item[1]["status"] == TREATMENT_DISCONTINUATION]
    final = [item for item in dispositions if item[1]["status"] != TREATMENT_DISCONTINUATION]
    for batch in (stopped, final):
        records = create_records(coordinator, [(Disposition, p, v) for p, v in batch])
        for record, (participant, _values) in zip(records, batch, strict=True):
            because = f"disposition {record.status} recorded"
            refresh_status(coordinator, participant, because=because)


def write_screening(users: dict, entries: list) -> None:
    """Store ``[(participant, answers, screen_failure)]``: the eligibility answers of each
    screened participant and, for a screen failure, its disposition."""
    for site in sorted({participant.site_code for participant, _, _ in entries}):
        coordinator = _staff(users, site, "coordinator")
        mine = [entry for entry in entries if entry[0].site_code == site]
        failures = [(p, failure) for p, _, failure in mine if failure is not None]
        if not BULK:
            for participant, answers, _ in mine:
                record_answers(coordinator, participant, answers)
            for participant, failure in failures:
                record_disposition(coordinator, participant, dict(failure))
            continue
        create_records(
            coordinator,
            [
                (EligibilityAnswer, participant, {"criterion": code, "met": met})
                for participant, answers, _ in mine
                for code, met in sorted(answers.items())
            ],
        )
        write_dispositions(coordinator, failures)
