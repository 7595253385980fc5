"""Pages keep what they build per audit head (``trial.worklist.kept``): the worklist's visit
lists and their markup, a participant's records and theirs. What is kept must never outlive
a change or a day, nor reach a reader it was not made for (another site, another
participant, a role shown other links). Each test has a control: with that part of the key
taken away, the same steps serve a stale or someone else's page, so the test would catch it.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from tests.capture_helpers import Trial
from tests.page_helpers import sign_in
from tests.test_worklist import VITALS

PASSWORD = "a-long-password-1"


@pytest.fixture
def trial(client, make_site, make_user, make_participant):
    return Trial(client, make_site, make_user, make_participant)


@pytest.fixture
def browser(app, make_user):
    """A signed-in page client of ``role`` at ``site``. Sign-in writes an audit row (the
    head moves): sign everyone in before the pages whose kept markup is compared."""

    def open_as(role: str, site: str = "S01"):
        user, _ = make_user(role, sites=[site], password=PASSWORD)
        client = app.test_client()
        sign_in(client, user.username, PASSWORD)
        return client

    return open_as


def page(client, path: str) -> str:
    answer = client.get(path)
    assert answer.status_code == 200, (path, answer.status_code)
    return answer.get_data(as_text=True)


def record_link(pid: str, code: str = "baseline") -> str:
    return f"/participants/{pid}/visits/new?visit_code={code}"


def record_baseline(trial, pid: str, day0: date) -> int:
    made = trial.post(
        f"/participants/{pid}/visits",
        {"visit_code": "baseline", "visit_date": str(day0), "vitals": VITALS},
    )
    assert made.status_code == 201, made.json
    return made.json["id"]


# --- the worklist ------------------------------------------------------------------------


def test_the_worklist_page_shows_a_change_at_once(trial, browser, monkeypatch):
    from trial.worklist import services

    first, second = trial.enrol(day0_ago=1), trial.enrol(day0_ago=1)
    coordinator = browser("coordinator")
    shown = page(coordinator, "/worklist")
    assert record_link(first.pid) in shown and record_link(second.pid) in shown
    record_baseline(trial, first.pid, first.day0)
    assert record_link(first.pid) not in page(coordinator, "/worklist")
    # Control: kept whatever the trail's head, the page would still offer a recorded visit.
    monkeypatch.setattr(services, "trail_head", lambda: ())
    assert record_link(second.pid) in page(coordinator, "/worklist")
    record_baseline(trial, second.pid, second.day0)
    assert record_link(second.pid) in page(coordinator, "/worklist")  # stale


def test_the_worklist_markup_is_kept_per_role_never_shared(trial, browser, monkeypatch):
    from trial.worklist import pages

    done, due = trial.enrol(day0_ago=1), trial.enrol(day0_ago=1)
    record_baseline(trial, done.pid, done.day0)  # a visit awaiting the signature
    investigator, coordinator, monitor = (
        browser(role) for role in ("investigator", "coordinator", "monitor")
    )
    first = page(investigator, "/worklist")
    assert record_link(due.pid) in first and "Sign visits" in first
    seen = page(coordinator, "/worklist")
    assert record_link(due.pid) in seen and "Sign visits" not in seen
    seen = page(monitor, "/worklist")
    assert due.pid in seen and "/visits/new" not in seen and "Sign visits" not in seen
    # Control: markup kept whatever the reader's role gives the monitor the site's links.
    monkeypatch.setattr(pages, "_markup_flags", lambda: ())
    investigator, monitor = browser("investigator"), browser("monitor")
    page(investigator, "/worklist")
    assert "/visits/new" in page(monitor, "/worklist")


def test_each_site_s_worklist_is_its_own(trial, browser):
    here, there = trial.enrol(day0_ago=1), trial.enrol(site="S02", day0_ago=1)
    ours, theirs = browser("coordinator", "S01"), browser("coordinator", "S02")
    shown = page(ours, "/worklist")
    assert here.pid in shown and there.pid not in shown
    shown = page(theirs, "/worklist")
    assert there.pid in shown and here.pid not in shown


def test_a_query_s_age_and_a_report_s_clock_move_while_the_lists_are_kept(trial, monkeypatch):
    """The kept build holds when a query was opened and when a report falls due; its age
    and whether it is overdue are worked out for each request."""
    from datetime import UTC, datetime

    from trial.worklist import services

    kept = {
        "visits_due": [],
        "missing_forms": [],
        "awaiting_signature": [],
        "open_queries": [{"query_id": 1, "opened_at": datetime(2026, 1, 1, 9, tzinfo=UTC)}],
        "serious_adverse_events": [
            {"report_id": 1, "due_at": datetime(2026, 1, 2, 9, tzinfo=UTC), "overdue": False}
        ],
    }
    monkeypatch.setattr(services, "kept", lambda store, key, build: kept)
    user = trial.coordinator_user["S01"]
    for now, age, overdue in ((datetime(2026, 1, 2, 8, tzinfo=UTC), 0, False),
                              (datetime(2026, 1, 4, 10, tzinfo=UTC), 3, True)):  # fmt: skip
        monkeypatch.setattr(services, "utcnow", lambda now=now: now)
        work = services.build_worklist(user)
        assert work["open_queries"][0]["age_days"] == age
        assert work["serious_adverse_events"][0]["overdue"] is overdue


# --- a participant's page ----------------------------------------------------------------


def test_a_participant_s_page_shows_a_change_at_once(trial, browser, monkeypatch):
    from trial.participants import overview

    first, second = trial.enrol(day0_ago=1), trial.enrol(day0_ago=1)
    coordinator = browser("coordinator")
    assert record_link(first.pid) in page(coordinator, f"/participants/{first.pid}")
    assert record_link(second.pid) in page(coordinator, f"/participants/{second.pid}")
    visit = record_baseline(trial, first.pid, first.day0)
    shown = page(coordinator, f"/participants/{first.pid}")
    assert record_link(first.pid) not in shown and f"/visits/{visit}" in shown
    # Control: kept whatever the trail's head, the page would miss the visit just recorded.
    monkeypatch.setattr(overview, "trail_head", lambda: ())
    page(coordinator, f"/participants/{second.pid}")
    record_baseline(trial, second.pid, second.day0)
    assert record_link(second.pid) in page(coordinator, f"/participants/{second.pid}")  # stale


def test_a_participant_s_schedule_moves_with_the_site_s_date(trial, browser, monkeypatch):
    from trial.participants import overview
    from trial.visits import schedule

    def overdue(pid: str) -> int:
        return page(coordinator, f"/participants/{pid}").count('class="tag">overdue<')

    first, second = trial.enrol(day0_ago=1), trial.enrol(day0_ago=1)
    coordinator = browser("coordinator")
    today = overdue(first.pid)
    later = date.today() + timedelta(days=20)  # weeks later, the titration visits are late
    for module in (overview, schedule):
        monkeypatch.setattr(module, "site_today", lambda site: later)
    assert overdue(first.pid) > today
    monkeypatch.undo()
    # Control: a key without the site's date keeps the schedule of the day it was built.
    assert overdue(second.pid) == today
    monkeypatch.setattr(schedule, "site_today", lambda site: later)
    assert overdue(second.pid) == today  # stale


def test_a_participant_s_records_markup_is_kept_per_role_never_shared(trial, browser, monkeypatch):
    from trial.participants import pages

    enrolled = trial.enrol(day0_ago=1)
    path = f"/participants/{enrolled.pid}"
    coordinator, monitor = browser("coordinator"), browser("monitor")
    assert record_link(enrolled.pid) in page(coordinator, path)
    shown = page(monitor, path)
    assert enrolled.pid in shown and "/visits/new" not in shown
    assert "/adverse-events/new" not in shown and "Raise a query" in shown
    # Control: markup kept whatever the reader's role gives the monitor site staff's links.
    monkeypatch.setattr(pages, "_markup_flags", lambda: ())
    coordinator, monitor = browser("coordinator"), browser("monitor")
    page(coordinator, path)
    assert "/visits/new" in page(monitor, path)


def test_each_participant_s_records_are_their_own(trial, browser):
    first, second = trial.enrol(day0_ago=1), trial.enrol(day0_ago=1)
    visit = record_baseline(trial, first.pid, first.day0)
    coordinator = browser("coordinator")
    assert f"/visits/{visit}" in page(coordinator, f"/participants/{first.pid}")
    shown = page(coordinator, f"/participants/{second.pid}")
    assert f"/visits/{visit}" not in shown and record_link(second.pid) in shown
