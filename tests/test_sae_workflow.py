"""The serious-AE workflow: the awareness date, the 24-hour clock from it, submission by the
site and acknowledgement by the safety desk, site-scoped lists, the worklist function, the
migration of existing serious events, and responses that do not differ by arm.

Each refusal is checked to name its field (or to be the right 403/404/409) and to write
nothing. Both backends through the ``client`` fixture.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import select, text

from tests.test_adverse_events import ARM_LABELS, Env, body, committed_counts, serious
from trial.audit.models import AuditEvent
from trial.auth.services import get_user_by_username
from trial.database import utcnow
from trial.extensions import db
from trial.participants.services import site_today
from trial.safety.expedited import due_at, expedited_reports_due
from trial.safety.models import AdverseEvent, ExpeditedReport
from trial.sites.services import get_site_by_code

try:  # the participant's course (issue 23, section 1) makes randomization need a screening
    from tests.conftest import make_ready_for_randomization
except ImportError:  # TRANSITIONAL: until that lands, randomization needs nothing first

    def make_ready_for_randomization(client, headers, pid) -> None:
        return None


AUCKLAND = "Pacific/Auckland"  # far from UTC, so a site-local date differs from the UTC one


@pytest.fixture
def env(client, make_site, make_user, make_participant) -> Env:
    made = Env(client, make_site, make_user, make_participant, s01_timezone=AUCKLAND)
    for who in ("investigator", "data_manager", "monitor", "coordinator@S02", "admin"):
        made.token(who)  # accounts are audited: made before anything is counted
    return made


def s01_today() -> date:
    return site_today(get_site_by_code("S01"))


def reports(env, token="coordinator", query=""):
    response = env.client.get(f"/api/v1/expedited-reports{query}", headers=env.as_(token))
    assert response.status_code == 200, response.json
    return response.json


def step(env, report_id, action, token):
    return env.client.post(
        f"/api/v1/expedited-reports/{report_id}/{action}", headers=env.as_(token), json={}
    )


def local_midnight(day: date, zone: str) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(zone)).astimezone(UTC)


# --- the awareness date --------------------------------------------------------------------


def test_a_serious_event_needs_a_valid_awareness_date_and_nothing_is_written(env):
    today = s01_today()
    onset = today - timedelta(days=5)
    before = committed_counts()

    def payload(awareness):
        return serious(onset_date=onset.isoformat(), awareness_date=awareness)

    absent = payload(None)
    del absent["awareness_date"]
    cases = [
        absent,  # required when serious, whether left out...
        payload(None),  # ...or sent as null
        payload(str(onset - timedelta(days=1))),  # before the onset
        payload(str(today + timedelta(days=1))),  # in the future at the site
    ]
    for case in cases:
        response = env.post(case)
        assert response.status_code == 422, (case, response.json)
        assert list(response.json["errors"]) == ["awareness_date"], response.json
    # With another rule's error too, both in one round.
    both = env.post(serious(onset_date=onset.isoformat(), awareness_date=None, grade=9))
    assert set(both.json["errors"]) >= {"awareness_date", "grade"}
    assert committed_counts() == before
    # Control: the same event with its awareness date is recorded, and a non-serious event
    # needs none.
    assert env.post(payload(str(today))).status_code == 201
    assert env.post(body(onset_date=onset.isoformat())).status_code == 201


def serious_at(env, onset: date, awareness: date, pid=None, token="coordinator") -> dict:
    payload = serious(onset_date=onset.isoformat(), awareness_date=awareness.isoformat())
    return env.create(payload, pid=pid, token=token)


def test_the_clock_runs_from_the_awareness_date_not_from_entry(env):
    today = s01_today()
    late = serious_at(env, today - timedelta(days=6), today - timedelta(days=4))
    fresh = serious_at(env, today - timedelta(days=6), today)
    by_ae = {r["adverse_event_id"]: r for r in reports(env)}
    # Entered just now, but the site knew four days ago: overdue already. Measured from the
    # entry (the old rule) it would not be (negative control on the rule itself).
    old_report = by_ae[late["id"]]
    assert old_report["overdue"] is True
    created = datetime.fromisoformat(old_report["created_at"])
    assert created + timedelta(hours=24) > utcnow()
    assert datetime.fromisoformat(old_report["due_at"]) == local_midnight(
        today - timedelta(days=2), AUCKLAND
    )
    # Aware today: due at 00:00 at the site the day after tomorrow, not overdue.
    assert by_ae[fresh["id"]]["overdue"] is False
    assert datetime.fromisoformat(by_ae[fresh["id"]]["due_at"]) == local_midnight(
        today + timedelta(days=2), AUCKLAND
    )
    assert [r["adverse_event_id"] for r in reports(env)] == [late["id"], fresh["id"]]


def test_due_at_is_local_midnight_across_a_daylight_saving_change():
    # Auckland leaves daylight saving at 03:00 on 2026-04-05 (UTC+13 -> UTC+12): midnight
    # that day is still +13, midnight the next is +12 (a 25-hour day in between).
    assert due_at(date(2026, 4, 3), AUCKLAND) == datetime(2026, 4, 4, 11, 0, tzinfo=UTC)
    assert due_at(date(2026, 4, 4), AUCKLAND) == datetime(2026, 4, 5, 12, 0, tzinfo=UTC)
    assert due_at(date(2026, 4, 4), "UTC") == datetime(2026, 4, 6, 0, 0, tzinfo=UTC)


def test_correcting_the_awareness_date_moves_the_deadline_audited(env):
    today = s01_today()
    ae = serious_at(env, today - timedelta(days=3), today)
    (report,) = reports(env)
    assert report["overdue"] is False
    patched = env.patch(
        ae["id"], {"awareness_date": str(today - timedelta(days=3)), "reason": "source"}
    )
    assert patched.status_code == 200, patched.json
    (moved,) = reports(env)
    assert moved["overdue"] is True and moved["id"] == report["id"]
    row = db.session.scalar(
        select(AuditEvent)
        .where(AuditEvent.entity_type == "expedited_report", AuditEvent.field == "due_at")
        .where(AuditEvent.action == "update")
    )
    assert row.reason == "source"
    # A downgrade to non-serious keeps the date but withdraws the open report; clearing the
    # date of a serious event is refused.
    cleared = env.patch(ae["id"], {"awareness_date": None, "reason": "oops"})
    assert cleared.status_code == 422 and "awareness_date" in cleared.json["errors"]


# --- submitted and acknowledged ------------------------------------------------------------


def test_the_site_submits_and_the_safety_desk_acknowledges_each_audited(env):
    today = s01_today()
    serious_at(env, today - timedelta(days=1), today)
    (report,) = reports(env)
    rid = report["id"]

    before = committed_counts()
    for action, token, status in (
        ("acknowledge", "data_manager", 409),  # not submitted yet
        ("submit", "data_manager", 403),  # the desk does not submit for the site
        ("submit", "monitor", 403),
        ("submit", env.s02, 404),  # another site's report: as if missing
        ("acknowledge", "coordinator", 403),
        ("acknowledge", "admin", 403),
    ):
        assert step(env, rid, action, token).status_code == status, (action, token)
    assert step(env, 999999, "submit", "coordinator").status_code == 404
    assert committed_counts() == before

    submitted = step(env, rid, "submit", "investigator")
    assert submitted.status_code == 200, submitted.json
    body_ = submitted.json
    assert (body_["status"], body_["submitted_by"], body_["submitted_late"]) == (
        "submitted",
        get_user_by_username_of(env, "investigator"),
        False,
    )
    assert body_["overdue"] is False and body_["acknowledged_at"] is None
    before = committed_counts()
    assert step(env, rid, "submit", "coordinator").status_code == 409  # once
    assert committed_counts() == before

    acknowledged = step(env, rid, "acknowledge", "data_manager")
    assert acknowledged.status_code == 200, acknowledged.json
    assert acknowledged.json["status"] == "acknowledged"
    assert acknowledged.json["acknowledged_by"] == get_user_by_username_of(env, "data_manager")
    assert step(env, rid, "acknowledge", "data_manager").status_code == 409

    trail = db.session.execute(
        select(AuditEvent.action, AuditEvent.field, AuditEvent.role, AuditEvent.entity_site)
        .where(AuditEvent.entity_type == "expedited_report", AuditEvent.entity_id == str(rid))
        .where(AuditEvent.action.in_(("submit", "acknowledge")))
        .order_by(AuditEvent.seq)
    ).all()
    assert [tuple(r) for r in trail] == [
        ("submit", "status", "investigator", "S01"),
        ("submit", "submitted_at", "investigator", "S01"),
        ("submit", "submitted_by", "investigator", "S01"),
        ("acknowledge", "status", "data_manager", "S01"),
        ("acknowledge", "acknowledged_at", "data_manager", "S01"),
        ("acknowledge", "acknowledged_by", "data_manager", "S01"),
    ]


def get_user_by_username_of(env, who: str) -> str:
    """The username behind a token the Env made (the factory names users itself)."""
    response = env.client.get("/api/v1/auth/me", headers=env.as_(who))
    return response.json["username"]


def test_a_late_submission_is_shown_as_late(env):
    today = s01_today()
    serious_at(env, today - timedelta(days=9), today - timedelta(days=7))
    (report,) = reports(env)
    assert report["overdue"] is True
    submitted = step(env, report["id"], "submit", "coordinator").json
    assert (submitted["overdue"], submitted["submitted_late"]) == (False, True)


def test_a_withdrawn_report_cannot_be_submitted(env):
    today = s01_today()
    ae = serious_at(env, today - timedelta(days=1), today)
    assert env.in_error(ae["id"]).status_code == 200
    (report,) = reports(env)
    assert report["status"] == "withdrawn"
    assert step(env, report["id"], "submit", "coordinator").status_code == 409


# --- who sees which reports ----------------------------------------------------------------


def test_site_staff_see_their_own_sites_reports_and_clocks(env):
    today = s01_today()
    mine = serious_at(env, today - timedelta(days=2), today - timedelta(days=1))
    theirs = serious_at(
        env, today - timedelta(days=3), today - timedelta(days=2), pid=env.other_pid, token=env.s02
    )
    ids = lambda rows: [r["adverse_event_id"] for r in rows]  # noqa: E731
    assert ids(reports(env, "coordinator")) == [mine["id"]]
    assert ids(reports(env, "investigator")) == [mine["id"]]
    assert ids(reports(env, env.s02)) == [theirs["id"]]
    assert ids(reports(env, env.s02_monitor)) == [theirs["id"]]
    assert reports(env, "coordinator", "?site=S02") == []  # another site's: nothing
    assert set(ids(reports(env, "data_manager"))) == {mine["id"], theirs["id"]}
    assert ids(reports(env, "data_manager", "?site=S02")) == [theirs["id"]]
    assert ids(reports(env, "dsmb", "?status=open")) == ids(reports(env, "data_manager"))
    for role in ("admin", "statistician"):
        response = env.client.get("/api/v1/expedited-reports", headers=env.as_(role))
        assert response.status_code == 403


def test_the_worklist_function_lists_what_each_site_still_owes(env):
    today = s01_today()
    first = serious_at(env, today - timedelta(days=5), today - timedelta(days=4))
    second = serious_at(env, today - timedelta(days=1), today)
    s02_today = site_today(get_site_by_code("S02"))
    serious_at(env, s02_today, s02_today, pid=env.other_pid, token=env.s02)
    coordinator = get_user_by_username(get_user_by_username_of(env, "coordinator"))
    due = expedited_reports_due(coordinator)
    assert [row["adverse_event_id"] for row in due] == [first["id"], second["id"]]
    assert set(due[0]) == {
        "id",
        "participant_id",
        "adverse_event_id",
        "site",
        "awareness_date",
        "due_at",
        "overdue",
        "status",
    }
    assert (due[0]["overdue"], due[1]["overdue"], due[0]["participant_id"]) == (
        True,
        False,
        env.pid,
    )
    assert due[0]["awareness_date"] == today - timedelta(days=4)
    db.session.rollback()
    assert step(env, due[0]["id"], "submit", "coordinator").status_code == 200
    db.session.rollback()
    assert [row["adverse_event_id"] for row in expedited_reports_due(coordinator)] == [second["id"]]
    manager = get_user_by_username(get_user_by_username_of(env, "data_manager"))
    assert len(expedited_reports_due(manager)) == 2
    assert [r["site"] for r in expedited_reports_due(manager, site="S02")] == ["S02"]
    assert expedited_reports_due(coordinator, site="S02") == []


# --- existing data ---------------------------------------------------------------------------


def test_the_migration_gives_existing_serious_events_their_recorded_date(env, app):
    today = s01_today()
    ae = serious_at(env, today - timedelta(days=10), today - timedelta(days=9))
    quiet = env.create(body())
    # Recorded at 23:30 UTC ten days ago: already the next day in Auckland.
    recorded = datetime.combine(today - timedelta(days=10), time(23, 30), tzinfo=UTC)
    db.session.execute(
        text("UPDATE adverse_events SET created_at = :at WHERE id = :id"),
        {
            "at": recorded if db.engine.dialect.name != "sqlite" else recorded.replace(tzinfo=None),
            "id": ae["id"],
        },
    )
    db.session.commit()
    db.session.remove()
    directory = app.config["MIGRATIONS_DIR"]
    downgrade(directory=directory, revision="0012")
    upgrade(directory=directory)
    db.session.remove()
    expected = recorded.astimezone(ZoneInfo(AUCKLAND)).date()
    assert expected == today - timedelta(days=9)  # the point of the time zone
    record = db.session.get(AdverseEvent, ae["id"])
    assert record.awareness_date == expected
    assert db.session.get(AdverseEvent, quiet["id"]).awareness_date is None
    report = db.session.scalar(
        select(ExpeditedReport).where(ExpeditedReport.adverse_event_id == ae["id"])
    )
    assert report.due_at == due_at(expected, AUCKLAND)


# --- blinding ----------------------------------------------------------------------------


def test_expedited_reports_do_not_differ_by_arm(client, make_site, make_user, make_participant):
    from randomization import lists
    from randomization import outputs as randomization_outputs

    make_site("S01", planned_enrollment=10)
    env = Env(client, make_site, make_user, make_participant)
    unblinded_user, _ = make_user("unblinded_statistician")
    lists.generate(unblinded_user)
    db.session.commit()
    pids = [
        make_participant(site="S01", sex=sex, consent_date=env.consent.isoformat())[
            "participant_id"
        ]
        for sex in "FFFFMMMM"
    ]
    today = site_today(get_site_by_code("S01"))
    for pid in pids:
        make_ready_for_randomization(client, env.as_("coordinator"), pid)
        randomized = client.post(
            f"/api/v1/participants/{pid}/randomize",
            headers=env.as_("coordinator"),
            json={"eligibility_confirmed": True},
        )
        assert randomized.status_code == 201, randomized.json
        serious_at(env, today, today, pid=pid)
    arm_of = {pid: arm for pid, _, arm in randomization_outputs.allocation_key(unblinded_user)}
    db.session.rollback()
    assert set(arm_of.values()) == set(ARM_LABELS), "both arms, or the check cannot bite"
    for report in reports(env, "coordinator"):
        assert step(env, report["id"], "submit", "coordinator").status_code == 200

    # What may differ between two reports: their ids and instants, never a field by arm.
    varying = {"id", "adverse_event_id", "participant_id", "created_at", "submitted_at"}
    for role in ("coordinator", "monitor", "data_manager", "dsmb", "unblinded_statistician"):
        response = env.client.get("/api/v1/expedited-reports", headers=env.as_(role))
        text_ = response.get_data(as_text=True).lower()
        assert not [label for label in ARM_LABELS if label in text_]
        rows = response.json
        # Order: by deadline then id, i.e. the order of entry here, whatever the arms.
        assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
        shapes = {
            arm: {
                json.dumps({k: v for k, v in r.items() if k not in varying}, sort_keys=True)
                for r in rows
                if arm_of[r["participant_id"]] == arm
            }
            for arm in ARM_LABELS
        }
        assert len(shapes[ARM_LABELS[0]]) == 1, shapes  # identical events, identical reports
        assert shapes[ARM_LABELS[0]] == shapes[ARM_LABELS[1]], role
        sizes = {len(json.dumps({k: v for k, v in r.items() if k not in varying})) for r in rows}
        assert len(sizes) == 1
