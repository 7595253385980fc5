"""Rules that keep visits consistent with each other and with day 0.

A missed visit has no date; a screening visit recorded before randomization is window-checked
when day 0 becomes known; moving a visit later cannot strand the next visit's calendar days;
a site code taken by a concurrent request is a 409, not a 500. SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.capture_helpers import Trial, calendar, counts, iso, today
from tests.test_visits import assert_refused, deviations_of
from trial.cli_support import system_actor
from trial.errors import Conflict
from trial.extensions import db

D = timedelta(days=1)


@pytest.fixture
def trial(client, make_site, make_user, make_participant) -> Trial:
    return Trial(client, make_site, make_user, make_participant)


def test_a_missed_visit_sent_with_a_date_is_refused_not_silently_dated(trial):
    p = trial.enrol()
    before = counts()
    response = trial.visit(
        p.pid, "titration_w1", p.day0 + 7 * D, status="missed", missed_reason="Ill"
    )
    assert_refused(response, 422, "visit_date")
    assert counts() == before
    ok = trial.visit(p.pid, "titration_w1", status="missed", missed_reason="Ill")
    assert ok.status_code == 201, ok.json


@pytest.mark.parametrize(("screening_ago", "deviations"), [(40, 1), (20, 0)])
def test_screening_is_window_checked_when_day_0_becomes_known(trial, screening_ago, deviations):
    p = trial.enrol(day0_ago=None, screening_ago=screening_ago, consent_ago=45)
    assert deviations_of(trial, p.pid) == []  # no day 0 yet, no window
    response = trial.post(f"/participants/{p.pid}/randomize", {"eligibility_confirmed": True})
    assert response.status_code == 201, response.json
    found = deviations_of(trial, p.pid)
    assert len(found) == deviations, found
    if deviations:
        assert found[0]["automatic"] and found[0]["visit_id"] == p.screening_id
        assert found[0]["date"] == iso(today() - screening_ago * D)


def test_moving_a_visit_later_cannot_strand_the_next_visits_calendar(trial):
    p = trial.enrol(day0_ago=40)
    first = trial.visit(p.pid, "titration_w1", p.day0 + 7 * D)
    assert first.status_code == 201, first.json
    second = trial.visit(
        p.pid,
        "titration_w2",
        p.day0 + 14 * D,
        drinking=calendar(p.day0 + 7 * D, p.day0 + 13 * D),
    )
    assert second.status_code == 201, second.json
    before = counts()
    moved = trial.patch(
        f"/visits/{first.json['id']}", {"visit_date": iso(p.day0 + 9 * D), "reason": "typo"}
    )
    assert_refused(moved, 422, "visit_date")
    assert "titration_w2" in moved.json["errors"]["visit_date"][0]
    assert counts() == before
    # Earlier is fine: the next period only grows.
    earlier = trial.patch(
        f"/visits/{first.json['id']}", {"visit_date": iso(p.day0 + 6 * D), "reason": "typo"}
    )
    assert earlier.status_code == 200, earlier.json


def test_a_site_code_taken_by_a_concurrent_request_is_a_conflict(app, make_site, monkeypatch):
    from trial.sites import services

    make_site("S09")
    # The other request committed between our existence check and our insert.
    monkeypatch.setattr(services, "get_site_by_code", lambda code: None)
    with pytest.raises(Conflict) as refused:
        services.create_site(system_actor(), code="S09", name="Again", timezone="UTC")
    assert refused.value.errors == {"code": ["Already exists."]}
    db.session.rollback()
