"""Corrections carry a version precondition: a stale one is refused, naming what is there now.

Every captured record type (visits, each form, study drug, disposition, deviations, adverse
events) shows its ``version`` in its JSON and as its ETag, and every PATCH and entered-in-error
mark accepts ``If-Match`` or a body ``version``. Two coordinators who both read version 1 and
both correct: the first is saved, the second is refused with 412 naming the current version
and the current value of each field it tried to change, and nothing of it is written (the
audit trail holds only the first change). A PATCH that changes nothing is refused with 422
``no_change`` instead of a 200 that drops its reason. A PATCH without a precondition is still
accepted (API compatibility). The negative controls patch the old behaviour back in (no
version check; a no-op answered 200) and show the same checks catch it.

The race is also run for real, through two gunicorn workers (slow): each correction is held
just after it has read the record until the other has too (``rendezvous``, bounded), so two
coordinators correct from version 1 at once. One is saved, the other gets 412. Its control
serves the view without the row lock: on PostgreSQL both then pass the check and the second
silently overwrites the first. (SQLite serialises writers with ``BEGIN IMMEDIATE``, so there the
lock adds nothing and the control cannot fail: it is skipped.)

Runs on SQLite and, with TEST_DATABASE_URL set, on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.capture_helpers import Trial, call, ciwa, counts, iso, lab, ocds, today, vitals
from tests.conftest import bearer
from tests.test_adverse_events import body as ae_body
from trial.audit.models import AuditEvent
from trial.extensions import db
from trial.records import services as records_services
from trial.records.registry import RECORD_TYPES
from trial.safety import services as safety_services
from trial.visits import services as visits_services

D = timedelta(days=1)


@dataclass(frozen=True)
class Case:
    """A record type's path, two different corrections (body keys) and the audited column
    each one's key lands in."""

    path: str
    first: dict
    second: dict
    column: str


CASES = {
    "visit": Case("visits", {"visit_date": 8}, {"visit_date": 9}, "visit_date"),
    "drinking_day": Case("drinking-days", {"standard_drinks": 5}, {"standard_drinks": 6}, ""),
    "ocds": Case("ocds", {"item_1": 3}, {"item_1": 4}, "item_1"),
    "ciwa": Case("ciwa", {"tremor": 3}, {"tremor": 4}, "tremor"),
    "vitals": Case("vitals", {"heart_rate": 80}, {"heart_rate": 90}, "heart_rate"),
    "lab_result": Case("labs", {"value": 50.0}, {"value": 60.0}, "value"),
    "blinding_assessment": Case(
        "blinding-assessments", {"confidence": "strongly"}, {"confidence": "somewhat"}, ""
    ),
    "dosing": Case("dosing", {"tablets_returned": 2}, {"tablets_returned": 3}, ""),
    "disposition": Case(
        "dispositions",
        {"disposition_reason": "moved abroad"},
        {"disposition_reason": "new job"},
        "reason",
    ),
    "protocol_deviation": Case(
        "deviations", {"description": "Blood drawn 2 h late"}, {"description": "3 h"}, ""
    ),
    "adverse_event": Case("adverse-events", {"grade": 3}, {"grade": 1}, ""),
    "eligibility_answer": Case("eligibility-answers", {"met": False}, {"met": True}, ""),
}
ENTITIES = sorted(CASES)
SECOND = "coordinator.second"


def column(entity: str) -> str:
    case = CASES[entity]
    return case.column or next(iter(case.first))


@pytest.fixture
def trial(client, make_site, make_user, make_participant) -> Trial:
    return Trial(client, make_site, make_user, make_participant)


@pytest.fixture
def second(trial) -> str:
    """The token of a second coordinator of site S01."""
    return trial.make_user("coordinator", sites=["S01"], username=SECOND)[1]


@pytest.fixture
def records(trial) -> tuple:
    """One record of every registered type at S01: {entity: id}, and the participant."""
    p = trial.enrol(day0_ago=30)
    assert trial.visit(p.pid, "baseline", p.day0).status_code == 201
    visit = trial.visit(
        p.pid,
        "titration_w1",
        p.day0 + 7 * D,
        drinking=[{"date": iso(p.day0 + 2 * D), "standard_drinks": 2}],
        ocds=ocds(2),
        ciwa=ciwa(2),
        vitals=vitals(),
        labs=[lab("GGT")],
        blinding=[{"respondent": "participant", "guess": "placebo", "confidence": "somewhat"}],
    ).json
    made = {
        "dosing": trial.post(
            f"/participants/{p.pid}/dosing", {"date": iso(p.day0), "tablets_per_day": 3}
        ),
        "disposition": trial.post(
            f"/participants/{p.pid}/disposition",
            {"status": "withdrew", "date": iso(today()), "reason": "moved"},
        ),
        "protocol_deviation": trial.post(
            f"/participants/{p.pid}/deviations",
            {"category": "procedure", "description": "Blood drawn late", "date": iso(today())},
        ),
        "adverse_event": trial.post(f"/participants/{p.pid}/adverse-events", ae_body()),
    }
    for response in made.values():
        assert response.status_code == 201, response.json
    ids = {entity: response.json["id"] for entity, response in made.items()}
    eligibility = trial.get(f"/participants/{p.pid}/eligibility").json
    ids["eligibility_answer"] = eligibility["criteria"][0]["record_id"]
    ids.update(
        visit=visit["id"],
        drinking_day=visit["drinking"][0]["id"],
        ocds=visit["ocds"]["id"],
        ciwa=visit["ciwa"]["id"],
        vitals=visit["vitals"]["id"],
        lab_result=visit["labs"][0]["id"],
        blinding_assessment=visit["blinding"][0]["id"],
    )
    return p, ids


def change(entity: str, which: str, p) -> dict:
    """A correction of ``entity`` as a body (a visit's day offset made a date)."""
    values = dict(getattr(CASES[entity], which))
    if entity == "visit":
        values["visit_date"] = iso(p.day0 + values["visit_date"] * D)
    return values


def shown(key: str) -> str:
    """The record JSON's key of a PATCH body key (a disposition's reason is renamed there)."""
    return "reason" if key == "disposition_reason" else key


def url(entity: str, ids: dict) -> str:
    return f"/api/v1/{CASES[entity].path}/{ids[entity]}"


def send(trial, method, path, body=None, *, token=None, headers=None):
    return call(
        trial.client,
        method,
        path,
        body,
        {**bearer(token or trial.coordinator["S01"]), **(headers or {})},
    )


def updates(entity: str, record_id: int) -> list[tuple]:
    """(username, field, new value) of every change to the record after its creation."""
    rows = db.session.execute(
        select(AuditEvent.username, AuditEvent.field, AuditEvent.new_value)
        .where(
            AuditEvent.entity_type == entity,
            AuditEvent.entity_id == str(record_id),
            AuditEvent.action != "create",
        )
        .order_by(AuditEvent.seq)
    )
    return [tuple(row) for row in rows]


def precondition(how: str, version: int) -> tuple[dict, dict]:
    """(extra body, extra headers) carrying ``version`` as ``how`` says."""
    if how == "if-match":
        return {}, {"If-Match": f'"{version}"'}
    return {"version": version}, {}


def two_coordinators_race(trial, second, records, entity: str, how: str) -> list[str]:
    """Both read the record, both correct it from what they read; return what went wrong."""
    p, ids = records
    problems = []
    read = send(trial, "GET", url(entity, ids))
    also_read = send(trial, "GET", url(entity, ids), token=second)
    version = read.json["version"]
    if read.headers.get("ETag") != f'"{version}"' or also_read.json["version"] != version:
        problems.append(f"GET: version {version}, ETag {read.headers.get('ETag')}")

    extra, headers = precondition(how, version)
    first = send(
        trial,
        "PATCH",
        url(entity, ids),
        {**change(entity, "first", p), "reason": "source document", **extra},
        headers=headers,
    )
    if first.status_code != 200 or first.json["version"] != version + 1:
        return [*problems, f"first PATCH: {first.status_code} {first.json}"]
    if first.headers.get("ETag") != f'"{version + 1}"':
        problems.append(f"first PATCH ETag {first.headers.get('ETag')}")
    now = send(trial, "GET", url(entity, ids)).json
    before = counts()
    late = send(
        trial,
        "PATCH",
        url(entity, ids),
        {**change(entity, "second", p), "reason": "my reading", **extra},
        token=second,
        headers=headers,
    )
    if late.status_code != 412:
        problems.append(f"second PATCH from version {version}: {late.status_code}")
    else:
        body = late.json
        assert set(body) == {"code", "status", "message", "errors"}
        key = next(iter(CASES[entity].second))
        expected = {"version", key}
        if body["code"] != "precondition_failed" or set(body["errors"]) != expected:
            problems.append(f"412 body {body}")
        elif str(version + 1) not in body["errors"]["version"][0]:
            problems.append(f"412 does not name version {version + 1}: {body}")
        elif body["errors"][key] != [f"Now {json.dumps(now[shown(key)])}."]:
            problems.append(f"412 does not name the current {key} {now[shown(key)]!r}: {body}")
    if counts() != before or send(trial, "GET", url(entity, ids)).json != now:
        problems.append("the stale correction wrote something")
    rows = updates(entity, ids[entity])
    key = next(iter(CASES[entity].first))
    only_the_first = [(column(entity), json.dumps(now[shown(key)]))]
    if [(field, new) for _, field, new in rows] != only_the_first or any(
        user == SECOND for user, _, _ in rows
    ):
        problems.append(f"audit after the race: {rows}")
    return problems


# --- every record type is covered --------------------------------------------------------


def test_every_registered_record_type_has_a_case(app):
    assert set(CASES) == set(RECORD_TYPES)


# --- the race, on every record type ------------------------------------------------------


@pytest.mark.parametrize("how", ["if-match", "body"])
@pytest.mark.parametrize("entity", ENTITIES)
def test_two_coordinators_the_stale_correction_is_refused_naming_the_current_value(
    trial, second, records, entity, how
):
    assert two_coordinators_race(trial, second, records, entity, how) == []


def test_control_without_the_version_check_the_race_loses_the_first_correction(
    trial, second, records, monkeypatch
):
    """The old behaviour (no precondition) patched back in: the second coordinator's
    correction silently overwrites the first, and the race check reports it."""
    for module in (records_services, visits_services, safety_services):
        monkeypatch.setattr(module, "check_version", lambda *args, **kwargs: None)
    for entity in ("vitals", "adverse_event"):
        problems = two_coordinators_race(trial, second, records, entity, "if-match")
        assert any(p.startswith("second PATCH from version") for p in problems), problems
        assert any("wrote something" in p for p in problems), problems
        assert any(p.startswith("audit after the race") for p in problems), problems


# --- no precondition, a current one, If-Match forms -------------------------------------


@pytest.mark.parametrize("entity", ["visit", "vitals", "adverse_event"])
def test_a_patch_without_precondition_is_still_accepted(trial, second, records, entity):
    p, ids = records
    first = send(
        trial, "PATCH", url(entity, ids), {**change(entity, "first", p), "reason": "source"}
    )
    late = send(
        trial,
        "PATCH",
        url(entity, ids),
        {**change(entity, "second", p), "reason": "mine"},
        token=second,
    )
    assert (first.status_code, late.status_code) == (200, 200), (first.json, late.json)
    assert late.json["version"] == first.json["version"] + 1
    assert late.headers["ETag"] == f'"{late.json["version"]}"'


def test_if_match_star_and_malformed_tags(trial, records):
    p, ids = records
    target = url("vitals", ids)
    star = send(
        trial, "PATCH", target, {"heart_rate": 81, "reason": "r"}, headers={"If-Match": "*"}
    )
    assert star.status_code == 200, star.json
    before = counts()
    for header in ('W/"2"', '"2", "3"', '"abc"', '"0"', "99999999999", '"2'):
        response = send(
            trial, "PATCH", target, {"heart_rate": 82, "reason": "r"}, headers={"If-Match": header}
        )
        assert response.status_code == 422, (header, response.json)
        assert set(response.json["errors"]) == {"If-Match"}, (header, response.json)
    both = send(
        trial,
        "PATCH",
        target,
        {"heart_rate": 82, "reason": "r", "version": 2},
        headers={"If-Match": '"3"'},
    )
    assert both.status_code == 422 and set(both.json["errors"]) == {"If-Match", "version"}
    bad = send(trial, "PATCH", target, {"heart_rate": 82, "reason": "r", "version": "2"})
    assert bad.status_code == 422 and "version" in bad.json["errors"]
    assert counts() == before
    unquoted = send(
        trial, "PATCH", target, {"heart_rate": 82, "reason": "r"}, headers={"If-Match": "2"}
    )
    assert unquoted.status_code == 200 and unquoted.headers["ETag"] == '"3"'


def test_a_stale_version_is_refused_before_the_body_is_judged(trial, second, records):
    """The 412 comes first: a correction judged on a record that moved on would be judged on
    the wrong values."""
    p, ids = records
    target = url("vitals", ids)
    assert send(trial, "PATCH", target, {"diastolic_bp": 70, "reason": "r"}).status_code == 200
    # Against version 1 (systolic 125), diastolic 124 was valid, and still is; against the
    # current record a systolic of 71 is refused (diastolic 70) - but the version speaks first.
    stale = send(
        trial,
        "PATCH",
        target,
        {"systolic_bp": 71, "reason": "r"},
        token=second,
        headers={"If-Match": '"1"'},
    )
    assert stale.status_code == 412, stale.json


# --- entered-in-error marks ----------------------------------------------------------------


@pytest.mark.parametrize("how", ["if-match", "body"])
@pytest.mark.parametrize("entity", ENTITIES)
def test_a_stale_entered_in_error_mark_is_refused(trial, second, records, entity, how):
    p, ids = records
    version = send(trial, "GET", url(entity, ids)).json["version"]
    assert (
        send(
            trial, "PATCH", url(entity, ids), {**change(entity, "first", p), "reason": "source"}
        ).status_code
        == 200
    )
    now = send(trial, "GET", url(entity, ids)).json
    before = counts()
    extra, headers = precondition(how, version)
    stale = send(
        trial,
        "POST",
        f"{url(entity, ids)}/entered-in-error",
        {"reason": "duplicate", **extra},
        token=second,
        headers=headers,
    )
    assert stale.status_code == 412, stale.json
    assert set(stale.json["errors"]) == {"version", "entered_in_error"}
    assert counts() == before and send(trial, "GET", url(entity, ids)).json == now
    extra, headers = precondition(how, version + 1)
    current = send(
        trial,
        "POST",
        f"{url(entity, ids)}/entered-in-error",
        {"reason": "duplicate", **extra},
        token=second,
        headers=headers,
    )
    assert current.status_code == 200, current.json
    assert current.json["entered_in_error"] is True
    assert current.headers["ETag"] == f'"{current.json["version"]}"'


# --- a PATCH that changes nothing -------------------------------------------------------------


def no_op_problems(trial, records, entity: str) -> list[str]:
    """Send the record's own value back, with a reason and the current version."""
    p, ids = records
    stored = send(trial, "GET", url(entity, ids)).json
    key = next(iter(CASES[entity].first))
    same = {key: stored[shown(key)]}
    before = counts()
    response = send(
        trial,
        "PATCH",
        url(entity, ids),
        {**same, "reason": "checked against the source", "version": stored["version"]},
    )
    problems = []
    if response.status_code != 422 or response.json.get("code") != "no_change":
        problems.append(f"no-op PATCH: {response.status_code} {response.json}")
    if counts() != before or send(trial, "GET", url(entity, ids)).json != stored:
        problems.append("the no-op PATCH wrote something")
    return problems


@pytest.mark.parametrize("entity", ENTITIES)
def test_a_patch_that_changes_nothing_is_refused_and_writes_nothing(trial, records, entity):
    assert no_op_problems(trial, records, entity) == []


def test_control_a_no_op_answered_200_is_caught(trial, records, monkeypatch):
    """The old behaviour patched back in (a correction of nothing returns 0, answered 200,
    its reason dropped): the no-op check reports it."""
    real = records_services.correct_record

    def old_correct_record(*args, **kwargs):
        kwargs["require_change"] = False
        return real(*args, **kwargs)

    for module in (records_services, visits_services, safety_services):
        monkeypatch.setattr(module, "correct_record", old_correct_record)
    for entity in ("vitals", "visit", "adverse_event"):
        problems = no_op_problems(trial, records, entity)
        assert problems and problems[0].startswith("no-op PATCH: 200"), problems


# --- the race for real, through gunicorn ------------------------------------------------------

HELD_APP = "tests.test_correction_versions:app_holding_corrections()"
UNLOCKED_APP = "tests.test_correction_versions:app_reading_without_the_row_lock()"
HOLD_SECONDS = 2.0


def rendezvous(count: int = 2) -> None:
    """Wait until ``count`` requests have arrived here (files in ``RENDEZVOUS_DIR``), or
    ``HOLD_SECONDS`` have passed (a request queued behind the first one's lock never comes)."""
    folder = Path(os.environ["RENDEZVOUS_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / uuid.uuid4().hex).touch()
    deadline = time.monotonic() + HOLD_SECONDS
    while len(list(folder.iterdir())) < count and time.monotonic() < deadline:
        time.sleep(0.005)


def app_holding_corrections(*, row_lock: bool = True):
    """The real app, each form correction held at the rendezvous once it has read the record
    (served by gunicorn only); ``row_lock=False``: read without holding the record's row."""
    from trial import create_app

    real_get = records_services.get_visible_record

    def get_then_rendezvous(actor, entity, record_id, *, lock=False):
        found = real_get(actor, entity, record_id, lock=lock and row_lock)
        if lock:  # the correction's read (a GET does not lock)
            rendezvous()
        return found

    records_services.get_visible_record = get_then_rendezvous
    return create_app()


def app_reading_without_the_row_lock():
    """The control: as above, but the correction reads the record without holding its row."""
    return app_holding_corrections(row_lock=False)


def correct_at_once(trial, second, records, database_url, folder: Path, app: str):
    """Two coordinators correct the vitals from the version both read, at the same time;
    return the two responses (first coordinator's first), the record after, and its updates."""
    import requests

    from tests.live_server import live_server

    p, ids = records
    target = url("vitals", ids)
    version = send(trial, "GET", target).json["version"]
    tokens = [trial.coordinator["S01"], second]
    bodies = [{"heart_rate": 80, "reason": "source"}, {"heart_rate": 90, "reason": "mine"}]
    settings = {"RENDEZVOUS_DIR": str(folder / "rendezvous")}
    with live_server(database_url, folder, workers=2, env=settings, app=app) as server:
        start = threading.Barrier(2)

        def patch(index):
            start.wait(timeout=30)
            return requests.patch(
                f"{server.url}{target}",
                json=bodies[index],
                headers={**bearer(tokens[index]), "If-Match": f'"{version}"'},
                timeout=60,
            )

        with ThreadPoolExecutor(max_workers=2) as pool:
            responses = list(pool.map(patch, range(2)))
        log = server.log()
    assert "Traceback" not in log, log[-3000:]
    db.session.remove()
    after = send(trial, "GET", target).json
    return responses, after, updates("vitals", ids["vitals"])


@pytest.mark.slow
def test_two_coordinators_at_once_through_two_workers_one_wins(
    trial, second, records, database_url, tmp_path
):
    responses, after, rows = correct_at_once(
        trial, second, records, database_url, tmp_path / "server", HELD_APP
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 412], [r.text for r in responses]
    won = next(r for r in responses if r.status_code == 200).json()
    lost = next(r for r in responses if r.status_code == 412).json()
    assert after["version"] == won["version"] == 2 and after["heart_rate"] == won["heart_rate"]
    assert lost["errors"]["heart_rate"] == [f"Now {won['heart_rate']}."]
    assert [(field, new) for _, field, new in rows] == [("heart_rate", str(won["heart_rate"]))]


@pytest.mark.slow
def test_control_without_the_row_lock_both_pass_and_one_is_lost(
    trial, second, records, database_url, backend, tmp_path
):
    if backend == "sqlite":
        pytest.skip("SQLite serialises writers (BEGIN IMMEDIATE): no race to lose")
    responses, after, rows = correct_at_once(
        trial, second, records, database_url, tmp_path / "control", UNLOCKED_APP
    )
    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
    # Both were told they made version 2; the trail shows two changes, the record only one.
    assert [r.json()["version"] for r in responses] == [2, 2] and after["version"] == 2
    assert len(rows) == 2
