"""Visit capture: the schedule from the protocol, visits with their forms, study drug and
disposition. Every test runs on SQLite and, with TEST_DATABASE_URL set, on PostgreSQL.

Dates are relative to today (UTC sites); day 0 is moved into the past after randomization
(see ``tests/capture_helpers.py``).
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from tests.capture_helpers import (
    CIWA_MAXIMA,
    OCDS_ITEMS,
    PROTOCOL,
    Trial,
    calendar,
    ciwa,
    counts,
    iso,
    lab,
    ocds,
    today,
    vitals,
    window,
)
from trial.extensions import db

D = timedelta(days=1)


@pytest.fixture
def trial(client, make_site, make_user, make_participant) -> Trial:
    return Trial(client, make_site, make_user, make_participant)


def schedule_of(trial, pid) -> dict[str, dict]:
    response = trial.get(f"/participants/{pid}/schedule")
    assert response.status_code == 200, response.json
    return {row["code"]: row for row in response.json}


def deviations_of(trial, pid) -> list[dict]:
    response = trial.get(f"/participants/{pid}/deviations")
    assert response.status_code == 200, response.json
    return response.json


def assert_refused(response, status, *fields):
    assert response.status_code == status, response.json
    body = response.json
    assert set(body) == {"code", "status", "message", "errors"}
    for field in fields:
        assert field in body["errors"], (field, body["errors"])


# --- schedule -------------------------------------------------------------------------


def test_schedule_lists_every_protocol_visit_with_target_and_window(trial):
    p = trial.enrol(day0_ago=60)
    rows = trial.get(f"/participants/{p.pid}/schedule").json
    assert [row["code"] for row in rows] == [v["code"] for v in PROTOCOL["visits"]]
    for row, definition in zip(rows, PROTOCOL["visits"], strict=True):
        target, earliest, latest = window(row["code"], p.day0)
        assert row["label"] == definition["label"]
        assert row["day"] == definition["day"]
        assert (row["target_date"], row["earliest_date"], row["latest_date"]) == (
            iso(target),
            iso(earliest),
            iso(latest),
        )
    # DESIGN section 3, spelled out: screening day -28 to -1, titration +-2, later +-5/+-7.
    screening = {r["code"]: r for r in rows}["screening"]
    assert screening["earliest_date"] == iso(p.day0 - 28 * D)
    assert screening["latest_date"] == iso(p.day0 - D)
    week_30 = {r["code"]: r for r in rows}["follow_up"]
    assert week_30["earliest_date"] == iso(p.day0 + 203 * D)
    assert week_30["latest_date"] == iso(p.day0 + 217 * D)


def test_schedule_statuses(trial):
    """completed, missed (recorded or passed over by a later visit), overdue, due, upcoming."""
    p = trial.enrol(day0_ago=60)
    assert trial.visit(p.pid, "baseline", p.day0).status_code == 201
    assert trial.visit(p.pid, "titration_w2", p.day0 + 14 * D).status_code == 201
    missed = trial.visit(p.pid, "titration_w3", status="missed", missed_reason="In hospital")
    assert missed.status_code == 201, missed.json
    s = schedule_of(trial, p.pid)
    assert s["screening"]["status"] == "completed"
    assert s["screening"]["visit_id"] == p.screening_id
    assert s["baseline"]["status"] == "completed"
    assert s["baseline"]["visit_date"] == iso(p.day0)
    assert s["titration_w1"]["status"] == "missed"  # a later visit was completed
    assert s["titration_w1"]["visit_id"] is None
    assert s["titration_w2"]["status"] == "completed"
    assert s["titration_w3"]["status"] == "missed"  # recorded as missed
    assert s["titration_w3"]["visit_id"] == missed.json["id"]
    for code in ("titration_w4", "titration_w5", "titration_w6", "titration_w7"):
        assert s[code]["status"] == "overdue", code  # past the window, nothing later done
    assert s["week_8"]["status"] == "due"  # day 60 is inside 51..61
    for code in ("week_12", "week_16", "week_20", "end_of_treatment", "end_of_taper"):
        assert s[code]["status"] == "upcoming", code
    assert s["follow_up"]["status"] == "upcoming"


@pytest.mark.parametrize(
    ("day0_ago", "expected"),
    [
        (50, "upcoming"),  # week 8 window opens tomorrow (day 51)
        (51, "due"),  # opens today
        (61, "due"),  # closes today
        (62, "overdue"),  # closed yesterday
    ],
)
def test_schedule_window_edges(trial, day0_ago, expected):
    p = trial.enrol(day0_ago=day0_ago)
    assert schedule_of(trial, p.pid)["week_8"]["status"] == expected


def test_schedule_before_randomization(trial):
    p = trial.enrol(day0_ago=None)
    s = schedule_of(trial, p.pid)
    assert s["screening"]["status"] == "completed"
    assert all(row["target_date"] is None for row in s.values())
    assert {row["status"] for code, row in s.items() if code != "screening"} == {"upcoming"}


# --- visit dates ------------------------------------------------------------------------


def test_visit_outside_its_window_is_accepted_with_one_automatic_deviation(trial):
    p = trial.enrol(day0_ago=60)
    # Without a reason it is refused (a code that does not fit its date is often a slip).
    refused = trial.visit(p.pid, "titration_w1", p.day0 + 10 * D)
    assert refused.status_code == 422 and "out_of_window_reason" in refused.json["errors"]
    late = trial.visit(  # window day 5..9
        p.pid, "titration_w1", p.day0 + 10 * D, out_of_window_reason="Participant away"
    )
    assert late.status_code == 201, late.json
    (deviation,) = deviations_of(trial, p.pid)
    assert deviation["automatic"] is True
    assert deviation["category"] == "visit_out_of_window"
    assert deviation["visit_id"] == late.json["id"]
    assert deviation["date"] == iso(p.day0 + 10 * D)
    assert iso(p.day0 + 5 * D) in deviation["description"]
    vid = late.json["id"]
    # A correction keeps the deviation true to the visit: a new out-of-window date replaces
    # it (the old one is withdrawn with a reason), an in-window date withdraws it.
    for day, active in ((11, 1), (8, 0), (12, 1)):
        response = trial.patch(
            f"/visits/{vid}", {"visit_date": iso(p.day0 + day * D), "reason": "transcription"}
        )
        assert response.status_code == 200, response.json
        current = deviations_of(trial, p.pid)
        assert len(current) == active, (day, current)
        assert all(d["date"] == iso(p.day0 + day * D) for d in current)
    # An in-window visit corrected out of its window raises one, once.
    on_time = trial.visit(p.pid, "titration_w2", p.day0 + 14 * D)
    assert on_time.status_code == 201 and len(deviations_of(trial, p.pid)) == 1
    for day in (17, 18):
        response = trial.patch(
            f"/visits/{on_time.json['id']}",
            {"visit_date": iso(p.day0 + day * D), "reason": "wrong date"},
        )
        assert response.status_code == 200, response.json
    mine = [d for d in deviations_of(trial, p.pid) if d["visit_id"] == on_time.json["id"]]
    assert len(mine) == 1


def test_window_edges_raise_no_deviation(trial):
    p = trial.enrol(day0_ago=60)
    assert trial.visit(p.pid, "titration_w1", p.day0 + 5 * D).status_code == 201
    assert trial.visit(p.pid, "titration_w2", p.day0 + 16 * D).status_code == 201
    assert deviations_of(trial, p.pid) == []


@pytest.mark.parametrize("code", ["baseline", "titration_w1", "week_8"])
def test_a_visit_other_than_screening_before_randomization_is_refused(trial, code):
    p = trial.enrol(day0_ago=None)
    before = counts()
    response = trial.visit(p.pid, code, today() - D)
    assert_refused(response, 409)
    missed = trial.visit(p.pid, code, status="missed", missed_reason="not randomized")
    assert_refused(missed, 409)
    assert counts() == before


@pytest.mark.parametrize(
    ("code", "when"),
    [
        ("titration_w1", "future"),
        ("screening", "future"),
        ("screening", "before_consent"),
        ("baseline", "before_consent"),
        ("baseline", "before_randomization"),
        ("titration_w1", "before_randomization"),
    ],
)
def test_visit_dates_refused(trial, code, when):
    # A screening visit is tried on a participant not randomized yet (randomization needs one).
    p = trial.enrol(day0_ago=60 if code != "screening" else None, screening=code != "screening")
    visit_date = {
        "future": lambda: today() + D,
        "before_consent": lambda: p.consent - D,
        "before_randomization": lambda: p.day0 - D,
    }[when]()
    before = counts()
    response = trial.visit(p.pid, code, visit_date)
    assert_refused(response, 422, "visit_date")
    assert set(response.json["errors"]) == {"visit_date"}
    assert counts() == before


def test_visit_on_day0_and_today_and_screening_on_consent_day_are_accepted(trial):
    screened = trial.enrol(day0_ago=None, screening=False)
    assert trial.visit(screened.pid, "screening", screened.consent).status_code == 201
    p = trial.enrol(day0_ago=7)
    assert trial.visit(p.pid, "baseline", p.day0).status_code == 201
    response = trial.visit(p.pid, "titration_w1", today())
    assert response.status_code == 201 and response.json["visit_date"] == iso(today())


def test_a_completed_visit_needs_a_date(trial):
    p = trial.enrol()
    assert_refused(trial.visit(p.pid, "baseline"), 422, "visit_date")


def test_duplicate_visit_code_is_a_conflict(trial):
    p = trial.enrol()
    assert trial.visit(p.pid, "baseline", p.day0).status_code == 201
    before = counts()
    assert_refused(trial.visit(p.pid, "baseline", p.day0 + D), 409)
    assert_refused(trial.visit(p.pid, "screening", p.day0 - 3 * D), 409)
    assert_refused(trial.visit(p.pid, "baseline", status="missed", missed_reason="x"), 409)
    assert counts() == before


def test_a_visit_entered_in_error_frees_its_code_and_its_calendar_days(trial):
    p = trial.enrol(screening_drinking=True)
    days = calendar(p.screening_date, p.day0 - D)
    first = trial.visit(p.pid, "baseline", p.day0, drinking=days, ocds=ocds(2), labs=[lab()])
    assert first.status_code == 201
    marked = trial.post(f"/visits/{first.json['id']}/entered-in-error", {"reason": "wrong pid"})
    assert marked.status_code == 200 and marked.json["entered_in_error"] is True
    # Its forms leave every output with it ...
    calendar_days = trial.get(f"/participants/{p.pid}/drinking").json
    assert {d["date"] for d in calendar_days} == {
        iso(p.screening_date - (28 - i) * D) for i in range(28)
    }
    for form in first.json["drinking"]:
        assert trial.get(f"/drinking-days/{form['id']}").json["entered_in_error"] is True
    assert trial.get(f"/ocds/{first.json['ocds']['id']}").json["entered_in_error"] is True
    # ... so the visit can be entered again, days included.
    again = trial.visit(p.pid, "baseline", p.day0, drinking=days)
    assert again.status_code == 201, again.json
    assert [v["id"] for v in trial.get(f"/participants/{p.pid}/visits").json] == [
        p.screening_id,
        again.json["id"],
    ]


# --- missed visits --------------------------------------------------------------------


def test_a_missed_visit_needs_a_reason_and_carries_no_forms(trial):
    p = trial.enrol()
    before = counts()
    assert_refused(trial.visit(p.pid, "baseline", status="missed"), 422, "missed_reason")
    response = trial.visit(
        p.pid,
        "baseline",
        status="missed",
        missed_reason="Did not come",
        drinking=calendar(p.screening_date, p.screening_date),
        ocds=ocds(),
        ciwa=ciwa(),
        vitals=vitals(),
        labs=[lab()],
    )
    assert_refused(response, 422, "drinking", "ocds", "ciwa", "vitals", "labs")
    assert counts() == before
    ok = trial.visit(p.pid, "baseline", status="missed", missed_reason="Did not come")
    assert ok.status_code == 201, ok.json
    assert ok.json["status"] == "missed" and ok.json["visit_date"] is None
    assert ok.json["missed_reason"] == "Did not come"


def test_a_visit_with_forms_cannot_be_corrected_to_missed(trial):
    p = trial.enrol()
    visit = trial.visit(p.pid, "baseline", p.day0, vitals=vitals()).json
    before = counts()
    response = trial.patch(
        f"/visits/{visit['id']}",
        {"status": "missed", "missed_reason": "was not there", "reason": "wrong visit"},
    )
    assert_refused(response, 422, "status")
    assert counts() == before


def test_correcting_to_missed_clears_the_date_in_the_audit_trail(trial):
    from sqlalchemy import select

    from trial.audit.models import AuditEvent

    p = trial.enrol()
    visit = trial.visit(p.pid, "baseline", p.day0).json
    response = trial.patch(
        f"/visits/{visit['id']}",
        {"status": "missed", "missed_reason": "was not there", "reason": "wrong entry"},
    )
    assert response.status_code == 200, response.json
    assert response.json["visit_date"] is None
    changes = {
        e.field: (e.old_value, e.new_value)
        for e in db.session.scalars(
            select(AuditEvent).where(
                AuditEvent.entity_type == "visit",
                AuditEvent.entity_id == str(visit["id"]),
                AuditEvent.action == "update",
            )
        )
    }
    assert changes == {
        "status": ('"completed"', '"missed"'),
        "missed_reason": (None, '"was not there"'),
        "visit_date": (f'"{iso(p.day0)}"', None),
    }
    back = trial.patch(
        f"/visits/{visit['id']}",
        {"status": "completed", "visit_date": iso(p.day0), "reason": "it did happen"},
    )
    assert back.status_code == 200, back.json
    assert back.json["missed_reason"] is None and back.json["visit_date"] == iso(p.day0)


# --- drinking calendar ----------------------------------------------------------------


def test_screening_calendar_covers_the_28_days_before_screening(trial):
    p = trial.enrol(day0_ago=None, screening=False)
    s = p.screening_date
    before = counts()
    too_early = calendar(s - 29 * D, s - D)  # one day too many at the start
    assert_refused(trial.visit(p.pid, "screening", s, drinking=too_early), 422, "drinking.0.date")
    visit_day = calendar(s - 28 * D, s)  # the visit day itself is not in the recall period
    response = trial.visit(p.pid, "screening", s, drinking=visit_day)
    assert_refused(response, 422, "drinking.28.date")
    assert set(response.json["errors"]) == {"drinking.28.date"}
    assert counts() == before
    ok = trial.visit(p.pid, "screening", s, drinking=calendar(s - 28 * D, s - D))
    assert ok.status_code == 201, ok.json
    assert len(ok.json["drinking"]) == PROTOCOL["drinking"]["baseline_days"] == 28
    assert ok.json["drinking"][0]["date"] == iso(s - 28 * D)


def test_later_calendars_cover_the_days_since_the_previous_visit(trial):
    p = trial.enrol(day0_ago=30, screening_drinking=True)
    base = trial.visit(p.pid, "baseline", p.day0, drinking=calendar(p.screening_date, p.day0 - D))
    assert base.status_code == 201, base.json
    assert len(base.json["drinking"]) == 14
    w1 = p.day0 + 7 * D
    before = counts()
    early = calendar(p.day0 - D, w1 - D)  # the day before the previous visit
    assert_refused(trial.visit(p.pid, "titration_w1", w1, drinking=early), 422, "drinking.0.date")
    late = calendar(p.day0, w1)  # includes the visit day
    assert_refused(trial.visit(p.pid, "titration_w1", w1, drinking=late), 422, "drinking.7.date")
    assert counts() == before
    ok = trial.visit(p.pid, "titration_w1", w1, drinking=calendar(p.day0, w1 - D))
    assert ok.status_code == 201, ok.json
    full = trial.get(f"/participants/{p.pid}/drinking").json
    assert [row["date"] for row in full] == [
        iso(p.screening_date - 28 * D + i * D) for i in range(28 + 14 + 7)
    ]


def test_no_calendar_day_twice(trial):
    p = trial.enrol(day0_ago=30, screening_drinking=True)
    before = counts()
    twice = calendar(p.screening_date, p.day0 - D)
    twice.insert(1, dict(twice[0]))
    response = trial.visit(p.pid, "baseline", p.day0, drinking=twice)
    assert_refused(response, 422, "drinking.1.date")
    assert set(response.json["errors"]) == {"drinking.1.date"}
    assert counts() == before
    # Across visits: week 2 entered before week 1 covers the days since baseline, so
    # week 1's calendar, entered late, would record those days a second time.
    assert trial.visit(p.pid, "baseline", p.day0).status_code == 201
    w2 = trial.visit(
        p.pid, "titration_w2", p.day0 + 14 * D, drinking=calendar(p.day0, p.day0 + 13 * D)
    )
    assert w2.status_code == 201, w2.json
    before = counts()
    late = trial.visit(
        p.pid, "titration_w1", p.day0 + 7 * D, drinking=calendar(p.day0, p.day0 + 6 * D)
    )
    assert_refused(late, 422, *(f"drinking.{i}.date" for i in range(7)))
    assert counts() == before
    # A correction may not move a day onto one already recorded either.
    day = w2.json["drinking"][-1]
    clash = trial.patch(f"/drinking-days/{day['id']}", {"date": iso(p.day0), "reason": "typo"})
    assert_refused(clash, 422, "date")
    assert counts() == before


def test_a_visit_date_correction_must_keep_its_calendar_in_its_period(trial):
    p = trial.enrol(day0_ago=30)
    w1 = p.day0 + 7 * D
    assert trial.visit(p.pid, "baseline", p.day0).status_code == 201
    first = trial.visit(p.pid, "titration_w1", w1, drinking=calendar(p.day0, w1 - D))
    assert first.status_code == 201
    before = counts()
    # One day earlier, the visit day itself would be a recalled day of its own calendar.
    moved = trial.patch(f"/visits/{first.json['id']}", {"visit_date": iso(w1 - D), "reason": "x"})
    assert_refused(moved, 422, "visit_date")
    assert counts() == before
    later = trial.patch(f"/visits/{first.json['id']}", {"visit_date": iso(w1 + D), "reason": "x"})
    assert later.status_code == 200, later.json


@pytest.mark.parametrize(("drinks", "ok"), [(0, True), (60, True), (0.5, True), (61, False)])
def test_standard_drinks_range(trial, drinks, ok):
    p = trial.enrol(day0_ago=None, screening=False)
    day = p.screening_date - D
    response = trial.visit(
        p.pid,
        "screening",
        p.screening_date,
        drinking=[{"date": iso(day), "standard_drinks": drinks}],
    )
    if ok:
        assert response.status_code == 201, response.json
        assert response.json["drinking"][0]["standard_drinks"] == drinks
    else:
        assert_refused(response, 422, "drinking.0.standard_drinks")


# --- scales ---------------------------------------------------------------------------


def test_ocds_and_ciwa_scores_match_an_independent_computation(trial):
    rng = random.Random(20261121)
    p = trial.enrol(day0_ago=80)
    codes = ["baseline", "titration_w1", "titration_w2", "titration_w3", "titration_w4"]
    for index, code in enumerate(codes):
        items = [rng.randint(0, 4) for _ in OCDS_ITEMS]
        withdrawal = {item: rng.randint(0, top) for item, top in CIWA_MAXIMA.items()}
        response = trial.visit(
            p.pid, code, p.day0 + 7 * index * D, ocds=ocds(items), ciwa=ciwa(withdrawal)
        )
        assert response.status_code == 201, response.json
        stored = trial.get(f"/visits/{response.json['id']}").json
        assert stored["ocds"]["total"] == sum(items)
        assert stored["ocds"]["obsessive_subscale"] == sum(items[0:6])  # items 1-6
        assert stored["ocds"]["compulsive_subscale"] == sum(items[6:14])  # items 7-14
        assert [stored["ocds"][f"item_{n}"] for n in range(1, 15)] == items
        assert stored["ciwa"]["total"] == sum(withdrawal.values())
    # Extremes: everything at its maximum gives the published maxima (OCDS 56, CIWA-Ar 67).
    top = trial.visit(
        p.pid, "titration_w5", p.day0 + 35 * D, ocds=ocds(4), ciwa=ciwa(CIWA_MAXIMA)
    ).json
    assert (top["ocds"]["total"], top["ocds"]["obsessive_subscale"]) == (56, 24)
    assert top["ocds"]["compulsive_subscale"] == 32
    assert top["ciwa"]["total"] == 67
    # A corrected item moves the derived scores with it.
    fixed = trial.patch(f"/ocds/{top['ocds']['id']}", {"item_7": 0, "reason": "misread"})
    assert fixed.status_code == 200, fixed.json
    assert (fixed.json["total"], fixed.json["compulsive_subscale"]) == (52, 28)
    assert fixed.json["obsessive_subscale"] == 24


def test_the_recorded_visit_returned_is_the_visit_as_stored(trial):
    """The 201 body is built from the rows written, not read back: it must equal what a
    later read of the stored visit returns, field for field (values that do not survive a
    round trip as written, order of the calendar and the labs, derived scores, the
    out-of-window deviation kept out of the visit)."""
    p = trial.enrol(day0_ago=60)
    first_visit = p.day0 + 10 * D  # titration_w1: window day 5 to 9, so out of window
    days = calendar(first_visit - 10 * D, first_visit - D, drinks=3.3)
    days[3]["standard_drinks"] = 0.1 + 0.2  # no short decimal: every binary digit kept
    random.Random(7).shuffle(days)
    labs = [lab("GGT", 61.7), lab("AST", 40.05, upper_limit_normal=40.0), lab("CDT", 1.9)]
    recorded = trial.visit(
        p.pid,
        "titration_w1",
        first_visit,
        drinking=days,
        ocds=ocds([n % 5 for n in range(14)]),
        ciwa=ciwa(2),
        vitals=vitals(weight_kg=81.35),
        labs=labs,
        out_of_window_reason="Participant travelling",
    )
    assert recorded.status_code == 201, recorded.json
    stored = trial.get(f"/visits/{recorded.json['id']}")
    # The edit checks' warnings answer the entry that raised them (here: the calendar has
    # gaps); the visit holds the rest.
    answer = recorded.json
    assert [w["rule"] for w in answer.pop("warnings")] == ["calendar_incomplete"]
    assert answer == stored.json
    assert [d["date"] for d in recorded.json["drinking"]] == sorted(d["date"] for d in days)
    assert [x["test"] for x in recorded.json["labs"]] == ["AST", "CDT", "GGT"]
    assert 0.1 + 0.2 in [d["standard_drinks"] for d in recorded.json["drinking"]]
    missed = trial.visit(p.pid, "titration_w2", status="missed", missed_reason="ill")
    assert missed.status_code == 201, missed.json
    answer = missed.json
    assert answer.pop("warnings") == []
    assert answer == trial.get(f"/visits/{answer['id']}").json
    assert missed.json["ocds"] is None and missed.json["drinking"] == []


# --- refusals write nothing -----------------------------------------------------------


@pytest.mark.parametrize(
    ("broken", "field"),
    [
        ({"vitals": vitals(diastolic_bp=130)}, "vitals.diastolic_bp"),
        ({"labs": [lab(), lab("CDT", unit="U/L")]}, "labs.1.unit"),
        ({"ocds": {**ocds(), "item_14": 5}}, "ocds.item_14"),
        ({"ciwa": {**ciwa(), "orientation": 5}}, "ciwa.orientation"),
        ({"drinking_last_day": 61}, "drinking.13.standard_drinks"),
        ({"drinking_extra_day": True}, "drinking.14.date"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_a_refused_visit_writes_nothing(trial, broken, field):
    p = trial.enrol(day0_ago=30)
    body = {
        "drinking": calendar(p.screening_date, p.day0 - D),
        "ocds": ocds(2),
        "ciwa": ciwa(1),
        "vitals": vitals(),
        "labs": [lab()],
    }
    broken = dict(broken)  # the parameter is shared by every backend's run
    if broken.pop("drinking_last_day", None):
        body["drinking"][-1]["standard_drinks"] = 61
    if broken.pop("drinking_extra_day", None):
        body["drinking"].append({"date": iso(p.day0), "standard_drinks": 1})
    body.update(broken)
    before = counts()
    response = trial.visit(p.pid, "baseline", p.day0, **body)
    assert_refused(response, 422, field)
    assert counts() == before
    assert trial.get(f"/participants/{p.pid}/visits").json[-1]["visit_code"] == "screening"


# --- study drug -----------------------------------------------------------------------


def dose(trial, pid, day, tablets, **extra):
    return trial.post(
        f"/participants/{pid}/dosing", {"date": iso(day), "tablets_per_day": tablets, **extra}
    )


def test_dosing_first_record_then_changes_need_a_reason(trial):
    p = trial.enrol(day0_ago=20)
    first = dose(trial, p.pid, p.day0, 3)
    assert first.status_code == 201, first.json
    assert first.json["tablets_per_day"] == 3 and first.json["change_reason"] is None
    before = counts()
    assert_refused(dose(trial, p.pid, p.day0 + 3 * D, 4), 422, "change_reason")
    assert counts() == before
    same = dose(trial, p.pid, p.day0 + 2 * D, 3, tablets_returned=2)
    assert same.status_code == 201, same.json  # same dose: no reason needed
    step = dose(trial, p.pid, p.day0 + 3 * D, 4, change_reason="titration step")
    assert step.status_code == 201, step.json
    listed = trial.get(f"/participants/{p.pid}/dosing").json
    assert [(row["date"], row["tablets_per_day"]) for row in listed] == [
        (iso(p.day0), 3),
        (iso(p.day0 + 2 * D), 3),
        (iso(p.day0 + 3 * D), 4),
    ]
    assert "mg" not in str(listed).replace("umol", "")


def test_dosing_limits(trial):
    p = trial.enrol(day0_ago=20)
    before = counts()
    assert_refused(dose(trial, p.pid, p.day0, 10), 422, "tablets_per_day")
    assert_refused(dose(trial, p.pid, p.day0 - D, 3), 422, "date")
    assert_refused(dose(trial, p.pid, today() + D, 3), 422, "date")
    assert counts() == before
    assert dose(trial, p.pid, p.day0, 9).status_code == 201
    assert_refused(dose(trial, p.pid, p.day0, 9), 422, "date")  # one record per date
    unrandomized = trial.enrol(day0_ago=None)
    before = counts()
    assert_refused(dose(trial, unrandomized.pid, today(), 3), 409)
    assert counts() == before


def test_first_dose_date(trial):
    from trial.dosing.services import first_dose_date
    from trial.participants.models import Participant

    p = trial.enrol(day0_ago=20)

    def first():
        db.session.expire_all()
        return first_dose_date(db.session.get(Participant, p.id))

    assert first() is None
    assert dose(trial, p.pid, p.day0, 0).status_code == 201  # dispensed, none taken yet
    assert first() is None
    start = dose(trial, p.pid, p.day0 + 2 * D, 3, change_reason="start").json
    assert dose(trial, p.pid, p.day0 + 5 * D, 4, change_reason="titration").status_code == 201
    assert first() == p.day0 + 2 * D
    marked = trial.post(f"/dosing/{start['id']}/entered-in-error", {"reason": "wrong row"})
    assert marked.status_code == 200
    assert first() == p.day0 + 5 * D
    other = trial.enrol(day0_ago=3)
    assert first_dose_date(db.session.get(Participant, other.id)) is None


# --- disposition ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "needs_reason"),
    [
        ("completed", False),
        ("discontinued_treatment", True),
        ("withdrew", True),
        ("lost_to_follow_up", False),
        ("death", False),
    ],
)
def test_disposition_reason_rules(trial, status, needs_reason):
    p = trial.enrol()
    path = f"/participants/{p.pid}/disposition"
    if needs_reason:
        before = counts()
        assert_refused(trial.post(path, {"status": status, "date": iso(today())}), 422, "reason")
        assert counts() == before
    response = trial.post(
        path,
        {"status": status, "date": iso(today()), "reason": "Moved away" if needs_reason else None},
    )
    assert response.status_code == 201, response.json


def test_one_disposition_only(trial):
    p = trial.enrol()
    path = f"/participants/{p.pid}/disposition"
    first = trial.post(path, {"status": "completed", "date": iso(today())})
    assert first.status_code == 201
    before = counts()
    second = trial.post(path, {"status": "withdrew", "date": iso(today()), "reason": "x"})
    assert_refused(second, 409)
    assert counts() == before
    assert len(trial.get(path).json) == 1
    # Marked in error, it makes room for the right one.
    marked = trial.post(f"/dispositions/{first.json['id']}/entered-in-error", {"reason": "wrong"})
    assert marked.status_code == 200
    third = trial.post(path, {"status": "withdrew", "date": iso(today()), "reason": "Moved"})
    assert third.status_code == 201, third.json
    assert [d["status"] for d in trial.get(path).json] == ["withdrew"]
