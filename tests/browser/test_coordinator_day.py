"""A coordinator's day, end to end in Chromium, checked against the database and the audit
trail: register a participant, screen them (the screening visit with every form, the
eligibility checklist), randomize with the Randomize button, record the baseline and the
week-1 visits, correct a value with a reason, report an adverse event, and answer the query
a monitor raised about it."""

from __future__ import annotations

import re
from datetime import date, timedelta

from playwright.sync_api import expect
from sqlalchemy import select

from tests.browser.helpers import (
    check_axe_on,
    expect_site_staff_links,
    register_participant,
    sign_in,
)
from tests.browser.journeys import (
    answer_eligibility,
    fill_visit_forms,
    open_participant,
    randomize,
    save_visit,
    show_calendar_for,
    start_visit,
)


def site_today() -> date:
    """Today at S01 (Europe/Paris), as the server dates visits."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo("Europe/Paris")).date()


def read_participant(trial_site, participant_id: str) -> dict:
    from randomization.models import RandomizationSlot
    from trial.extensions import db
    from trial.participants.models import Participant
    from trial.visits.models import Visit

    def read():
        person = db.session.scalar(
            select(Participant).where(Participant.participant_id == participant_id)
        )
        slot = db.session.scalar(
            select(RandomizationSlot).where(RandomizationSlot.participant_id == person.id)
        )
        visits = db.session.scalars(select(Visit).where(Visit.participant_id == person.id)).all()
        return {
            "status": person.status,
            "randomization_number": slot and slot.randomization_number,
            "kit_number": slot and slot.kit_number,
            "visits": {
                v.visit_code: {
                    "id": v.id,
                    "date": v.visit_date,
                    "status": v.status,
                    "out_of_window_reason": v.out_of_window_reason,
                    "version": v.version,
                }
                for v in visits
            },
        }

    return trial_site.query(read)


def read_drinking(trial_site, visit_id: int) -> dict[str, float]:
    from trial.extensions import db
    from trial.forms.models import DrinkingDay

    def read():
        rows = db.session.scalars(select(DrinkingDay).where(DrinkingDay.visit_id == visit_id))
        return {row.day.isoformat(): float(row.standard_drinks) for row in rows}

    return trial_site.query(read)


def test_a_coordinators_day(page, axe_page, trial_site, shot):
    today = site_today()
    sign_in(page, "coordinator.s01", trial_site.password)
    expect(page).to_have_url(re.compile(r"/worklist$"))

    # Register.
    pid = register_participant(
        page, sex="Female", year_of_birth="1984", consent_date=(today - timedelta(10)).isoformat()
    )
    shot(page, "1-registered")

    # Screen: the screening visit, dated yesterday, with every form the protocol names.
    start_visit(page, "Screening")
    show_calendar_for(page, (today - timedelta(1)).isoformat())
    calendar = fill_visit_forms(page, drinks="6")
    assert calendar, "the screening visit shows no calendar days"
    shot(page, "2-screening-form")
    screening_id = save_visit(page, "Screening")
    assert read_drinking(trial_site, screening_id) == {d: 6.0 for d in calendar}

    # Screen: the eligibility checklist.
    open_participant(page, pid)
    answer_eligibility(page)
    shot(page, "3-eligible")

    # Randomize from the participant page.
    open_participant(page, pid)
    number, kit = randomize(page)
    shot(page, "4-randomized")
    stored = read_participant(trial_site, pid)
    assert stored["status"] == "randomized"
    assert (stored["randomization_number"], stored["kit_number"]) == (number, kit)
    expect_site_staff_links(page)

    # Baseline, on the day of randomization (the form's default date).
    start_visit(page, "Baseline (randomization)")
    expect(page.get_by_label("Visit date", exact=True)).to_have_value(today.isoformat())
    fill_visit_forms(page, drinks="5")
    save_visit(page, "Baseline (randomization)")

    # Week 1, today: before its window, so the form asks for the reason and saves nothing
    # until it is given (the entered values kept); then it is saved as a deviation. (Its
    # calendar would cover days the baseline already holds: left blank.)
    open_participant(page, pid)
    start_visit(page, "Titration week 1")
    fill_visit_forms(page, drinks=None)
    page.get_by_role("button", name="Save visit").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Reason the visit is outside its window")
    expect(page.get_by_label(re.compile(r"^Heart rate \("))).to_have_value("72")
    expect(page.get_by_label(re.compile(r"^Tremor \("))).to_have_value("1")
    shot(page, "5-week1-refused")
    check_axe_on(axe_page, page.url, trial_site)
    assert "titration_w1" not in read_participant(trial_site, pid)["visits"]
    page.get_by_label("Reason the visit is outside its window").fill(
        "Seen early: the participant travels next week."
    )
    week1 = save_visit(page, "Titration week 1")
    stored = read_participant(trial_site, pid)["visits"]["titration_w1"]
    assert stored["id"] == week1
    assert stored["out_of_window_reason"] == "Seen early: the participant travels next week."
    shot(page, "6-week1")

    # Correct week 1's heart rate, with a reason (refused without one).
    page.get_by_role("link", name="Correct vital signs").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Correct")
    page.get_by_label("Heart rate (beats per minute)").fill("88")
    page.get_by_role("button", name="Save correction").click()
    expect(page.get_by_role("alert")).to_contain_text("Reason for the change")
    expect(page.get_by_label("Heart rate (beats per minute)")).to_have_value("88")
    page.get_by_label("Reason for the change").fill("Transcription error: the source says 88.")
    page.get_by_role("button", name="Save correction").click()
    expect(page.get_by_role("status").first).to_contain_text("corrected")
    expect(page.get_by_role("main")).to_contain_text("88 beats per minute")
    changes = [
        e
        for e in trial_site.audit(participant=pid, entity_type="vitals")
        if e["action"] == "update" and e["field"] == "heart_rate"
    ]
    assert len(changes) == 1, changes
    assert changes[0]["reason"] == "Transcription error: the source says 88."
    assert changes[0]["username"] == "coordinator.s01"
    assert (changes[0]["old_value"], changes[0]["new_value"]) in ((72, 88), ("72", "88"))

    # Report an adverse event by the contract's labels.
    open_participant(page, pid)
    page.get_by_role("link", name="Report an adverse event").click()
    term = page.get_by_label("Term", exact=True)
    term.press_sequentially("headac", delay=40)
    expect(page.locator("#term-suggestions option").first).to_have_attribute(
        "value", re.compile("headache", re.IGNORECASE)
    )
    term.fill("Headache")
    page.get_by_label("Onset date", exact=True).fill(today.isoformat())
    page.get_by_label("Grade", exact=True).select_option("2")
    serious = page.get_by_label("Serious", exact=True)
    criteria = page.locator("#seriousness-criteria")
    expect(criteria).to_be_hidden()  # seriousness criteria shown only when serious
    serious.check()
    expect(criteria).to_be_visible()
    serious.uncheck()
    expect(criteria).to_be_hidden()
    page.get_by_label("Relatedness", exact=True).select_option(label="Possibly related")
    page.get_by_label("Action taken", exact=True).select_option(label="None: dose not changed")
    page.get_by_label("Outcome", exact=True).select_option(label="Recovering or resolving")
    shot(page, "7-adverse-event-form")
    page.get_by_role("button", name="Save", exact=True).click()
    ae_id = int(re.search(r"/adverse-events/(\d+)$", page.url).group(1))
    shot(page, "8-adverse-event")
    event = trial_site.api("GET", f"/participants/{pid}/adverse-events", user="monitor").json()
    assert [(e["id"], e["term"], e["grade"], e["serious"]) for e in event] == [
        (ae_id, "Headache", 2, False)
    ]
    assert event[0]["preferred_term"]  # coded on save

    # A monitor queries the onset date over the API; the coordinator answers on the page.
    raised = trial_site.api(
        "POST",
        "/queries",
        user="monitor",
        json={
            "entity": "adverse_event",
            "record_id": str(ae_id),
            "field": "onset_date",
            "text": "Please confirm the onset date against the source notes.",
        },
    )
    assert raised.status_code == 201, raised.text
    query_id = raised.json()["query_id"]
    open_participant(page, pid)
    page.get_by_role("link", name=f"adverse event {ae_id}").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Query {query_id}")
    page.get_by_label("Your answer").fill("Confirmed: the onset is as recorded (clinic note).")
    page.get_by_role("button", name="Send answer").click()
    expect(page.get_by_role("status").first).to_contain_text("answer")
    shot(page, "9-query-answered")
    answered = trial_site.api("GET", f"/queries/{query_id}", user="monitor").json()
    assert answered["status"] == "answered"
    assert answered["messages"][-1]["by"] == "coordinator.s01"
    assert "Confirmed" in answered["messages"][-1]["text"]

    # Everything the day did is in the audit trail, by the coordinator.
    trail = trial_site.audit(participant=pid)
    mine = {(e["entity_type"], e["action"]) for e in trail if e["username"] == "coordinator.s01"}
    for expected in [
        ("participant", "create"),
        ("visit", "create"),
        ("eligibility_answer", "create"),
        ("participant", "randomize"),
        ("vitals", "update"),
        ("adverse_event", "create"),
    ]:
        assert expected in mine, (expected, sorted(mine))
    answers = trial_site.audit(entity_type="query", entity_id=query_id)
    assert any(e["username"] == "coordinator.s01" for e in answers), answers
