"""The site's worklist (issue 23 §4) against an expectation computed independently.

A demo trial is loaded; the expectation is recomputed here from the stored rows with plain SQL
and the protocol file read as TOML (not through the service's schedule, course or form
code), by the rules as the README states them: a visit is due when its window is open today
and overdue once it has closed, unless it is recorded, a later visit was completed, or a
final disposition is dated before its window opens; a completed visit misses each form the
protocol names for it that it does not hold; an unsigned visit awaits its signature; an open
query awaits the site; an open expedited report is on the clock.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from tests.conftest import BACKENDS, bearer
from tests.demo_helpers import fresh_app
from tests.test_demo_realism import run_demo
from trial.auth.services import get_user_by_username
from trial.auth.tokens import issue_token
from trial.cli_support import system_actor
from trial.extensions import db

PROTOCOL = tomllib.loads((Path(__file__).parents[1] / "trial" / "protocol.toml").read_text())
VISITS = PROTOCOL["visits"]
FORM_TABLES = {
    "drinking": "drinking_days",
    "ocds": "ocds_assessments",
    "ciwa": "ciwa_assessments",
    "vitals": "vitals",
    "labs": "lab_results",
    "blinding": "blinding_assessments",
}


@pytest.fixture(scope="module", params=BACKENDS)
def demo(request, tmp_path_factory):
    with fresh_app(request.param, request, tmp_path_factory.mktemp("worklist")) as application:
        run_demo(application, participants=60, seed=23)
        add_work(application)
        yield application


def add_work(application) -> None:
    """Beside the demo's own: a participant randomized 40 days ago with only a partial
    baseline visit (overdue visits, missing forms) and a monitor's query on it."""
    from randomization.services import randomize
    from tests.capture_helpers import eligible_answers

    client = application.test_client()
    coordinator = bearer(token_of("coordinator.s01"))
    today = date.today()
    consent = today - timedelta(days=60)
    pid = client.post(
        "/api/v1/participants",
        headers=coordinator,
        json={"site": "S01", "sex": "F", "year_of_birth": 1980, "consent_date": str(consent)},
    ).json["participant_id"]
    screening = today - timedelta(days=50)
    day = {"date": str(screening - timedelta(days=1)), "standard_drinks": 7}
    made = client.post(
        f"/api/v1/participants/{pid}/visits",
        headers=coordinator,
        json={"visit_code": "screening", "visit_date": str(screening), "drinking": [day]},
    )
    assert made.status_code == 201, made.json
    answered = client.post(
        f"/api/v1/participants/{pid}/eligibility",
        headers=coordinator,
        json={"answers": eligible_answers()},
    )
    assert answered.status_code == 201, answered.json
    day0 = today - timedelta(days=40)
    at = datetime(day0.year, day0.month, day0.day, 9, tzinfo=UTC)
    randomize(get_user_by_username("coordinator.s01"), pid, eligibility_confirmed=True, at=at)
    db.session.commit()
    baseline = client.post(
        f"/api/v1/participants/{pid}/visits",
        headers=coordinator,
        json={"visit_code": "baseline", "visit_date": str(day0), "vitals": VITALS},
    )
    assert baseline.status_code == 201, baseline.json
    query = client.post(
        "/api/v1/queries",
        headers=bearer(token_of("monitor")),
        json={"entity": "visit", "record_id": str(baseline.json["id"]), "text": "Calendar?"},
    )
    assert query.status_code == 201, query.json


VITALS = {"systolic_bp": 128, "diastolic_bp": 82, "heart_rate": 74, "weight_kg": 70.5}


def rows(sql: str, **params) -> list:
    return db.session.execute(text(sql), params).all()


def expected_worklist(site: str) -> dict:
    [(site_id, zone)] = rows("SELECT id, timezone FROM sites WHERE code = :c", c=site)
    today = datetime.now(UTC).astimezone(ZoneInfo(zone)).date()
    people = rows(
        "SELECT id, participant_id, randomized_at FROM participants WHERE site_id = :s", s=site_id
    )
    active = (
        "entered_in_error = false"
        if db.engine.dialect.name != "sqlite"
        else ("entered_in_error = 0")
    )
    visits = rows(
        f"SELECT id, participant_id, visit_code, visit_date, status, signature_status "
        f"FROM visits WHERE {active}"
    )
    finals = {
        row[0]: row[1]
        for row in rows(
            f"SELECT participant_id, date FROM dispositions WHERE {active} "
            f"AND status <> 'discontinued_treatment'"
        )
    }
    held = {
        form: {row[0] for row in rows(f"SELECT visit_id FROM {table} WHERE {active}")}
        for form, table in FORM_TABLES.items()
    }
    due, missing, unsigned = set(), set(), set()
    for row_id, pid, randomized_at in people:
        mine = [v for v in visits if v[1] == row_id]
        recorded = {v[2] for v in mine}
        done_days = [
            d["day"] for d in VISITS for v in mine if v[2] == d["code"] and v[4] == "completed"
        ]
        if randomized_at is not None:
            if isinstance(randomized_at, str):
                randomized_at = datetime.fromisoformat(randomized_at)
            if randomized_at.tzinfo is None:
                randomized_at = randomized_at.replace(tzinfo=UTC)
            day0 = randomized_at.astimezone(ZoneInfo(zone)).date()
            for d in VISITS:
                opens = day0 + timedelta(days=d["day"] - d["window_before"])
                closes = day0 + timedelta(days=d["day"] + d["window_after"])
                final = finals.get(row_id)
                if isinstance(final, str):
                    final = date.fromisoformat(final)
                if d["code"] in recorded or (final is not None and final < opens):
                    continue
                if any(day > d["day"] for day in done_days) or today < opens:
                    continue
                due.add((pid, d["code"], "overdue" if today > closes else "due"))
        for visit_id, _, code, _, status, signature in mine:
            if status != "completed":
                continue
            forms = next(d["forms"] for d in VISITS if d["code"] == code)
            gaps = tuple(f for f in forms if visit_id not in held[f])
            if gaps:
                missing.add((pid, code, gaps))
            if signature != "signed":
                unsigned.add((pid, code, signature))
    queries = {
        row[0]
        for row in rows(
            "SELECT id FROM data_queries WHERE site_id = :s AND status = 'open'", s=site_id
        )
    }
    return {"due": due, "missing": missing, "unsigned": unsigned, "queries": queries}


def token_of(username: str) -> str:
    user = get_user_by_username(username)
    token, _ = issue_token(system_actor(), user, label="test", ttl=timedelta(hours=1))
    db.session.commit()
    return token


def test_the_worklist_matches_an_independent_count(demo):
    client = demo.test_client()
    token = token_of("coordinator.s01")
    response = client.get("/api/v1/worklist", headers=bearer(token))
    assert response.status_code == 200, response.json
    body = response.json
    expected = expected_worklist("S01")
    got_due = {(r["participant_id"], r["visit_code"], r["status"]) for r in body["visits_due"]}
    assert got_due == expected["due"]
    got_missing = {
        (r["participant_id"], r["visit_code"], tuple(r["missing_forms"]))
        for r in body["missing_forms"]
    }
    assert got_missing == expected["missing"]
    got_unsigned = {
        (r["participant_id"], r["visit_code"], r["signature_status"])
        for r in body["awaiting_signature"]
    }
    assert got_unsigned == expected["unsigned"]
    assert {r["query_id"] for r in body["open_queries"]} == expected["queries"]
    assert {r["site"] for r in body["visits_due"] + body["awaiting_signature"]} <= {"S01"}
    # The demo leaves work to do, so the comparison compared something.
    assert got_unsigned and got_due


def test_no_item_belongs_to_a_participant_who_has_ended(demo):
    client = demo.test_client()
    body = client.get("/api/v1/worklist", headers=bearer(token_of("monitor"))).json
    ended = {
        row[0]
        for row in rows(
            "SELECT participant_id FROM participants WHERE status IN "
            "('completed', 'withdrew', 'lost_to_follow_up', 'died', 'screen_failure')"
        )
    }
    assert ended  # the demo has ended courses
    finals = dict(
        rows(
            "SELECT p.participant_id, d.date FROM dispositions d JOIN participants p "
            "ON p.id = d.participant_id WHERE d.status <> 'discontinued_treatment'"
        )
    )
    for item in body["visits_due"]:
        if item["participant_id"] in ended:
            final = finals[item["participant_id"]]
            final = final if isinstance(final, date) else date.fromisoformat(final)
            assert date.fromisoformat(item["earliest_date"]) <= final, item


def test_site_scope_and_filters(demo):
    client = demo.test_client()
    token = token_of("coordinator.s01")
    refused = client.get("/api/v1/worklist?site=S02", headers=bearer(token))
    assert refused.status_code == 403
    unknown = client.get("/api/v1/worklist?site=ZZ", headers=bearer(token))
    assert unknown.status_code == 422 and "site" in unknown.json["errors"]
    backwards = client.get("/api/v1/worklist?from=2026-02-01&to=2026-01-01", headers=bearer(token))
    assert backwards.status_code == 422 and "from" in backwards.json["errors"]
    everything = client.get("/api/v1/worklist", headers=bearer(token)).json
    day = date.today()
    narrowed = client.get(
        f"/api/v1/worklist?from={day.isoformat()}&to={day.isoformat()}", headers=bearer(token)
    ).json
    # Only visits whose window is open today remain: the overdue ones closed before it.
    assert {r["status"] for r in narrowed["visits_due"]} <= {"due"}
    assert len(narrowed["visits_due"]) <= len(everything["visits_due"])
    statistician = client.get("/api/v1/worklist", headers=bearer(token_of("statistician")))
    assert statistician.status_code == 403


# --- the worklist kept per process -------------------------------------------------------


@pytest.fixture
def site_trial(client, make_site, make_user, make_participant):
    from tests.capture_helpers import Trial

    return Trial(client, make_site, make_user, make_participant)


def _due(trial) -> set[tuple[str, str]]:
    answer = trial.get("/worklist")
    assert answer.status_code == 200, answer.json
    return {(r["participant_id"], r["visit_code"]) for r in answer.json["visits_due"]}


def _record_baseline(trial, pid: str, day0: date) -> None:
    made = trial.post(
        f"/participants/{pid}/visits",
        {"visit_code": "baseline", "visit_date": str(day0), "vitals": VITALS},
    )
    assert made.status_code == 201, made.json


def test_a_kept_worklist_is_rebuilt_after_any_change_and_each_new_day(site_trial, monkeypatch):
    from trial.visits import schedule
    from trial.worklist import services

    first, second = site_trial.enrol(day0_ago=1), site_trial.enrol(day0_ago=1)
    assert {(first.pid, "baseline"), (second.pid, "baseline")} <= _due(site_trial)
    _record_baseline(site_trial, first.pid, first.day0)
    assert (first.pid, "baseline") not in _due(site_trial)  # the change moved the head
    # A new day at the site is a new build (weeks later, the titration visits are due).
    later = date.today() + timedelta(days=20)
    for module in (services, schedule):
        monkeypatch.setattr(module, "site_today", lambda site: later)
    assert (second.pid, "titration_w3") in _due(site_trial)
    monkeypatch.undo()
    # Control: were the build kept whatever the trail's head, the change would go unseen.
    monkeypatch.setattr(services, "trail_head", lambda: ())
    assert (second.pid, "baseline") in _due(site_trial)
    _record_baseline(site_trial, second.pid, second.day0)
    assert (second.pid, "baseline") in _due(site_trial)  # stale: what the head prevents
