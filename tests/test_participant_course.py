"""The participant's course (issue 23 §1-2): statuses derived from recorded events, screen
failure, dispositions honoured, the schedule agreeing with the course, randomization
prerequisites, the forms each visit collects and the out-of-window reason.

Every test runs on SQLite and, with TEST_DATABASE_URL set, on PostgreSQL. Each refusal is
checked together with its negative control (the same request where the rule allows it).
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.capture_helpers import (
    PROTOCOL,
    Trial,
    calendar,
    counts,
    eligible_answers,
    iso,
    ocds,
    today,
    vitals,
    window,
)
from trial.audit.models import AuditEvent
from trial.extensions import db

D = timedelta(days=1)


@pytest.fixture
def trial(client, make_site, make_user, make_participant) -> Trial:
    return Trial(client, make_site, make_user, make_participant)


def status_of(trial, pid) -> str:
    response = trial.get(f"/participants/{pid}")
    assert response.status_code == 200, response.json
    return response.json["status"]


def dispose(trial, pid, status, day, reason="Because", site="S01"):
    body = {"status": status, "date": iso(day)}
    if reason is not None:
        body["reason"] = reason
    return trial.post(f"/participants/{pid}/disposition", body, site=site)


def dose(trial, pid, day, tablets=3, reason="Titration"):
    return trial.post(
        f"/participants/{pid}/dosing",
        {"date": iso(day), "tablets_per_day": tablets, "change_reason": reason},
    )


def refused(response, status, *fields):
    assert response.status_code == status, response.json
    for field in fields:
        assert field in response.json["errors"], (field, response.json["errors"])
    return response.json


def status_events(pid) -> list[tuple[str, str]]:
    """The participant's status changes in the audit trail (values are stored as JSON)."""
    rows = db.session.execute(
        select(AuditEvent.old_value, AuditEvent.new_value)
        .where(
            AuditEvent.entity_type == "participant",
            AuditEvent.entity_id == pid,
            AuditEvent.field == "status",
            AuditEvent.action == "update",
        )
        .order_by(AuditEvent.seq)
    ).all()
    return [(json.loads(old), json.loads(new)) for old, new in rows]


def schedule_of(trial, pid) -> dict[str, dict]:
    response = trial.get(f"/participants/{pid}/schedule")
    assert response.status_code == 200, response.json
    return {row["code"]: row for row in response.json}


# --- statuses derived from events ----------------------------------------------------


def test_status_follows_randomization_discontinuation_and_completion(trial):
    p = trial.enrol(day0_ago=None)
    assert status_of(trial, p.pid) == "screening"
    q = trial.enrol(day0_ago=30)
    assert status_of(trial, q.pid) == "randomized"
    assert dose(trial, q.pid, q.day0).status_code == 201
    assert dispose(trial, q.pid, "discontinued_treatment", q.day0 + 10 * D).status_code == 201
    assert status_of(trial, q.pid) == "off_treatment"
    assert dispose(trial, q.pid, "completed", today(), reason=None).status_code == 201
    assert status_of(trial, q.pid) == "completed"
    assert status_events(q.pid) == [
        ("screening", "randomized"),
        ("randomized", "off_treatment"),
        ("off_treatment", "completed"),
    ]


def test_status_filter_accepts_every_status_and_refuses_others(trial):
    statuses = (
        "screening",
        "screen_failure",
        "randomized",
        "off_treatment",
        "completed",
        "withdrew",
        "lost_to_follow_up",
        "died",
    )
    p = trial.enrol(day0_ago=30)
    assert dispose(trial, p.pid, "withdrew", today() - D).status_code == 201
    for status in statuses:
        response = trial.get(f"/participants?status={status}")
        assert response.status_code == 200, response.json
        found = [row["participant_id"] for row in response.json]
        assert found == ([p.pid] if status == "withdrew" else []), status
    refused(trial.get("/participants?status=screened"), 422, "status")


def test_withdrawal_refuses_later_data_and_a_correction_lets_a_return_in(trial):
    p = trial.enrol(day0_ago=90)
    withdrawn = today() - 10 * D
    record = dispose(trial, p.pid, "withdrew", withdrawn, reason="Withdrew consent")
    assert record.status_code == 201
    before = counts()
    late = trial.visit(p.pid, "week_12", withdrawn + D, drinking=[])
    body = refused(late, 409, "visit_date")
    assert "withdrew consent" in body["message"] and str(withdrawn) in body["message"]
    refused(dose(trial, p.pid, withdrawn + D), 409, "date")
    assert counts() == before  # nothing written
    # Negative control: on the withdrawal date itself data is still taken.
    assert dose(trial, p.pid, withdrawn).status_code == 201
    # The participant came back: the disposition is corrected, with a reason.
    fixed = trial.patch(
        f"/dispositions/{record.json['id']}",
        {"date": iso(today()), "reason": "Returned to the study: disposition dated wrongly"},
    )
    assert fixed.status_code == 200, fixed.json
    assert dose(trial, p.pid, withdrawn + D, tablets=4).status_code == 201
    # Marked in error, the disposition leaves the course: the status is derived again.
    marked = trial.post(
        f"/dispositions/{record.json['id']}/entered-in-error", {"reason": "Entered for wrong id"}
    )
    assert marked.status_code == 200, marked.json
    assert status_of(trial, p.pid) == "randomized"
    assert status_events(p.pid)[-2:] == [("randomized", "withdrew"), ("withdrew", "randomized")]


def test_death_refuses_later_adverse_events_visits_and_dosing(trial):
    p = trial.enrol(day0_ago=60)
    died = today() - 5 * D
    assert dispose(trial, p.pid, "death", died, reason=None).status_code == 201
    assert status_of(trial, p.pid) == "died"
    refused(trial.visit(p.pid, "week_8", died + D), 409, "visit_date")
    refused(dose(trial, p.pid, died + D), 409, "date")


def test_discontinuation_stops_dosing_but_not_visits(trial):
    p = trial.enrol(day0_ago=60)
    assert dose(trial, p.pid, p.day0).status_code == 201
    stopped = p.day0 + 20 * D
    assert dispose(trial, p.pid, "discontinued_treatment", stopped).status_code == 201
    refused(dose(trial, p.pid, stopped + D, tablets=0, reason="Stop"), 409, "date")
    visit_day = window("week_8", p.day0)[0]
    response = trial.visit(p.pid, "week_8", visit_day, drinking=calendar(stopped, visit_day - D))
    assert response.status_code == 201, response.json


def test_disposition_may_not_leave_data_dated_after_it(trial):
    p = trial.enrol(day0_ago=60)
    assert dose(trial, p.pid, today() - 3 * D).status_code == 201
    refused(dispose(trial, p.pid, "withdrew", today() - 5 * D), 422, "date")
    refused(dispose(trial, p.pid, "discontinued_treatment", today() - 5 * D), 422, "date")
    assert dispose(trial, p.pid, "withdrew", today() - 3 * D).status_code == 201


def test_one_final_disposition_and_one_discontinuation(trial):
    p = trial.enrol(day0_ago=60)
    assert dispose(trial, p.pid, "discontinued_treatment", today() - 9 * D).status_code == 201
    refused(dispose(trial, p.pid, "discontinued_treatment", today() - 8 * D), 409, "status")
    assert dispose(trial, p.pid, "lost_to_follow_up", today() - 2 * D).status_code == 201
    refused(dispose(trial, p.pid, "completed", today()), 409, "status")


# --- screen failure ----------------------------------------------------------------------


def test_screen_failure_ends_the_course_and_blocks_randomization(trial):
    p = trial.enrol(day0_ago=None)
    refused(dispose(trial, p.pid, "withdrew", today()), 409, "status")
    refused(dispose(trial, p.pid, "screen_failure", today(), reason=""), 422, "reason")
    assert dispose(trial, p.pid, "screen_failure", today(), reason="E1 met").status_code == 201
    assert status_of(trial, p.pid) == "screen_failure"
    trial.post(f"/participants/{p.pid}/eligibility", {"answers": eligible_answers()})
    body = refused(
        trial.post(f"/participants/{p.pid}/randomize", {"eligibility_confirmed": True}),
        409,
        "status",
    )
    assert "screen failure" in body["message"]
    schedule = schedule_of(trial, p.pid)
    assert {row["status"] for code, row in schedule.items() if code != "screening"} == {
        "not_expected"
    }


def test_a_randomized_participant_is_never_a_screen_failure(trial):
    p = trial.enrol(day0_ago=10)
    refused(dispose(trial, p.pid, "screen_failure", today(), reason="x"), 409, "status")


# --- randomization prerequisites ---------------------------------------------------------


def test_randomization_needs_screening_and_every_criterion_answered(trial):
    p = trial.enrol(day0_ago=None, screening=False)
    randomize = {"eligibility_confirmed": True}
    body = refused(trial.post(f"/participants/{p.pid}/randomize", randomize), 409, "screening")
    criteria = PROTOCOL["eligibility"]["criteria"]
    assert {f"eligibility.{c['code']}" for c in criteria} <= set(body["errors"])
    visit = trial.visit(
        p.pid, "screening", today() - D, drinking=calendar(today() - 29 * D, today() - 2 * D)
    )
    assert visit.status_code == 201, visit.json
    answers = eligible_answers()
    exclusion = next(c["code"] for c in criteria if c["kind"] == "exclusion")
    answers[exclusion] = True
    assert trial.post(f"/participants/{p.pid}/eligibility", {"answers": answers}).status_code == 201
    body = refused(
        trial.post(f"/participants/{p.pid}/randomize", randomize), 409, f"eligibility.{exclusion}"
    )
    assert "screening" not in body["errors"]
    shown = trial.get(f"/participants/{p.pid}/eligibility").json
    assert shown["eligible"] is False
    # Corrected with a reason, the answer lets the participant in (the negative control).
    record = next(row for row in shown["criteria"] if row["code"] == exclusion)
    fixed = trial.patch(
        f"/eligibility-answers/{record['record_id']}",
        {"met": False, "reason": "Misread the history"},
    )
    assert fixed.status_code == 200, fixed.json
    assert trial.get(f"/participants/{p.pid}/eligibility").json["eligible"] is True
    assert trial.post(f"/participants/{p.pid}/randomize", randomize).status_code == 201
    again = trial.post(f"/participants/{p.pid}/eligibility", {"answers": {exclusion: True}})
    refused(again, 409, "answers")


def test_randomization_needs_an_active_day_of_the_baseline_calendar(trial):
    """A screening visit without a calendar, or whose only day was entered in error, does
    not make a participant ready; an active day does (the control)."""
    p = trial.enrol(day0_ago=None, screening=False)
    randomize = {"eligibility_confirmed": True}
    answers = trial.post(f"/participants/{p.pid}/eligibility", {"answers": eligible_answers()})
    assert answers.status_code == 201, answers.json
    no_calendar = ["The screening visit has no baseline drinking calendar."]

    bare = trial.visit(p.pid, "screening", today() - D)
    assert bare.status_code == 201, bare.json
    body = refused(trial.post(f"/participants/{p.pid}/randomize", randomize), 409, "screening")
    assert body["errors"] == {"screening": no_calendar}

    trial.post(f"/visits/{bare.json['id']}/entered-in-error", {"reason": "no calendar"})
    one_day = calendar(today() - 2 * D, today() - 2 * D)
    held = trial.visit(p.pid, "screening", today() - D, drinking=one_day)
    assert held.status_code == 201, held.json
    [day] = held.json["drinking"]
    marked = trial.post(f"/drinking-days/{day['id']}/entered-in-error", {"reason": "wrong day"})
    assert marked.status_code == 200, marked.json
    body = refused(trial.post(f"/participants/{p.pid}/randomize", randomize), 409, "screening")
    assert body["errors"] == {"screening": no_calendar}

    trial.post(f"/visits/{held.json['id']}/entered-in-error", {"reason": "calendar in error"})
    again = trial.visit(p.pid, "screening", today() - D, drinking=one_day)
    assert again.status_code == 201, again.json
    assert trial.post(f"/participants/{p.pid}/randomize", randomize).status_code == 201


def test_eligibility_answers_are_checked_whole_and_audited(trial):
    p = trial.enrol(day0_ago=None, screening=False)
    before = counts()
    bad = trial.post(
        f"/participants/{p.pid}/eligibility", {"answers": {"I1": "yes", "Z9": True, "E1": False}}
    )
    refused(bad, 422, "answers.I1", "answers.Z9")
    assert counts() == before
    good = trial.post(f"/participants/{p.pid}/eligibility", {"answers": {"I1": True}})
    assert good.status_code == 201, good.json
    audited = db.session.scalars(
        select(AuditEvent.field).where(AuditEvent.entity_type == "eligibility_answer")
    ).all()
    assert sorted(audited) == ["criterion", "met"]
    refused(trial.post(f"/participants/{p.pid}/eligibility", {"answers": {"I1": False}}), 409)


# --- the schedule agrees with the course ---------------------------------------------


def test_no_visit_is_due_or_overdue_after_a_final_disposition(trial):
    p = trial.enrol(day0_ago=100)
    before = schedule_of(trial, p.pid)
    assert {"overdue"} <= {row["status"] for row in before.values()}
    ended = p.day0 + 10 * D
    assert dispose(trial, p.pid, "lost_to_follow_up", ended, reason=None).status_code == 201
    after = schedule_of(trial, p.pid)
    for code, row in after.items():
        if row["earliest_date"] and row["earliest_date"] > iso(ended):
            assert row["status"] == "not_expected", (code, row)
        assert row["status"] not in ("due",) or row["earliest_date"] <= iso(ended)
    # A missed visit the course no longer expects is refused; one it still expects is not.
    refused(
        trial.post(
            f"/participants/{p.pid}/visits",
            {"visit_code": "week_12", "status": "missed", "missed_reason": "Gone"},
        ),
        409,
        "status",
    )
    response = trial.post(
        f"/participants/{p.pid}/visits",
        {"visit_code": "titration_w1", "status": "missed", "missed_reason": "Did not come"},
    )
    assert response.status_code == 201, response.json


def test_schedule_names_forms_and_calendar_days(trial):
    p = trial.enrol(day0_ago=3)
    schedule = schedule_of(trial, p.pid)
    for visit in PROTOCOL["visits"]:
        assert schedule[visit["code"]]["forms"] == visit["forms"]
    week1 = schedule["titration_w1"]
    target = window("titration_w1", p.day0)[0]
    assert week1["calendar_to"] == iso(target - D)
    assert week1["calendar_from"] == iso(p.screening_date)  # since the last completed visit


def test_dsmb_completeness_counts_by_the_schedules_rule():
    from datetime import date

    from reports.rows import ParticipantRow, SafetyData
    from reports.summaries import completeness
    from trial.protocol import VisitDefinition

    day0 = date(2026, 1, 1)
    visit = VisitDefinition("week_4", "Week 4", 28, 2, 2)

    def person(pid, **kw):
        return ParticipantRow(pid, "S01", "F", 1980, date(2025, 12, 1), randomized_on=day0, **kw)

    people = [
        person("A"),
        person("B", disposition="withdrew", disposition_date=day0 + timedelta(days=10)),
        person("C", treatment_stop_date=day0 + timedelta(days=10)),  # still followed
        person("D", disposition="completed", disposition_date=day0 + timedelta(days=26)),
    ]
    data = SafetyData(
        cutoff_date=day0 + timedelta(days=60), participants=people, visits=[], **_empty()
    )
    [(_label, expected, completed, missed, _pct)] = completeness(data, [visit])
    assert (expected, completed, missed) == (3, 0, 0)  # A, C and D (window opens day 26)


def _empty() -> dict:
    from dataclasses import fields

    from reports.rows import SafetyData

    given = {"cutoff_date", "participants", "visits"}
    return {f.name: [] for f in fields(SafetyData) if f.name not in given and f.init}


# --- what each visit collects ----------------------------------------------------------


def test_a_visit_lists_its_missing_forms(trial):
    p = trial.enrol(day0_ago=7)
    target = window("titration_w1", p.day0)[0]
    response = trial.visit(
        p.pid, "titration_w1", target, drinking=calendar(p.day0, target - D), vitals=vitals()
    )
    assert response.status_code == 201, response.json
    expected = next(v["forms"] for v in PROTOCOL["visits"] if v["code"] == "titration_w1")
    assert response.json["expected_forms"] == expected
    held = ("drinking", "vitals")
    assert response.json["missing_forms"] == [f for f in expected if f not in held]
    assert "ciwa" in response.json["missing_forms"]
    again = trial.get(f"/visits/{response.json['id']}")
    assert again.json["missing_forms"] == response.json["missing_forms"]


def test_a_visit_code_that_does_not_fit_its_date_needs_a_reason(trial):
    p = trial.enrol(day0_ago=3)
    before = counts()
    wrong = trial.visit(p.pid, "week_8", today())
    body = refused(wrong, 422, "visit_date", "out_of_window_reason")
    assert "outside the window of Week 8" in body["errors"]["visit_date"][0]
    assert counts() == before
    late = trial.visit(
        p.pid,
        "baseline",
        today(),
        out_of_window_reason="Participant unwell on day 0",
        ocds=ocds(),
    )
    assert late.status_code == 201, late.json
    deviations = trial.get(f"/participants/{p.pid}/deviations").json
    assert [d["category"] for d in deviations] == ["visit_out_of_window"]
    assert "Participant unwell on day 0" in deviations[0]["description"]


# --- edit checks on the way in ---------------------------------------------------------


def test_an_unusual_value_is_saved_warned_and_queried_by_the_system(trial):
    p = trial.enrol(day0_ago=7)
    target = window("titration_w1", p.day0)[0]
    days = calendar(p.screening_date, target - D)
    days[0]["standard_drinks"] = 35  # possible, unusual: above the 30-drink check
    response = trial.visit(p.pid, "titration_w1", target, drinking=days, vitals=vitals())
    assert response.status_code == 201, response.json
    rules = {w["rule"]: w for w in response.json["warnings"]}
    assert set(rules) == {"drinks_per_day_high"}
    assert rules["drinks_per_day_high"]["field"].startswith("drinking.")
    queries = trial.get("/queries?origin=system", role="monitor").json
    drinks = [q for q in queries if q["rule"] == "drinks_per_day_high"]
    assert [q["record_id"] for q in drinks] == [str(response.json["drinking"][0]["id"])]
    # The control: 30 drinks is not unusual by the rule (strictly above), so no warning.
    q = trial.enrol(day0_ago=7)
    days = calendar(q.screening_date, target - D)
    days[0]["standard_drinks"] = 30
    quiet = trial.visit(q.pid, "titration_w1", target, drinking=days, vitals=vitals())
    assert quiet.status_code == 201 and quiet.json["warnings"] == []
    queries = trial.get("/queries?origin=system", role="monitor").json
    assert len([q for q in queries if q["rule"] == "drinks_per_day_high"]) == 1
