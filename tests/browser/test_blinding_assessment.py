"""The blinding assessment in Chromium, by its labels: a coordinator records week 12 with the
participant's and the investigator's guesses, each chosen under its question; the database
holds exactly those answers, with their audit rows; the form passes axe."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from playwright.sync_api import expect
from sqlalchemy import select

from tests.browser.helpers import check_axe_on, register_participant, sign_in
from tests.browser.journeys import (
    answer_blinding,
    answer_eligibility,
    fill_visit_forms,
    open_participant,
    randomize,
    save_visit,
    show_calendar_for,
    start_visit,
)


def site_today() -> date:
    return datetime.now(ZoneInfo("Europe/Paris")).date()  # S01's zone, as the server dates


def read_guesses(trial_site, visit_id: int) -> list[tuple[str, str, str | None]]:
    from trial.extensions import db
    from trial.forms.models import BlindingAssessment

    def read():
        rows = db.session.scalars(
            select(BlindingAssessment)
            .where(BlindingAssessment.visit_id == visit_id)
            .order_by(BlindingAssessment.respondent)
        )
        return [(r.respondent, r.guess, r.confidence) for r in rows]

    return trial_site.query(read)


def test_week_12_guesses_by_their_labels(page, axe_page, trial_site, shot):
    today = site_today()
    sign_in(page, "coordinator.s01", trial_site.password)
    pid = register_participant(
        page, sex="Male", year_of_birth="1979", consent_date=(today - timedelta(9)).isoformat()
    )
    start_visit(page, "Screening")
    show_calendar_for(page, (today - timedelta(1)).isoformat())
    fill_visit_forms(page, drinks="5")
    save_visit(page, "Screening")
    open_participant(page, pid)
    answer_eligibility(page)
    open_participant(page, pid)
    randomize(page)

    start_visit(page, "Week 12")
    participant_question = page.get_by_role(
        "group", name=re.compile(r"^The participant's guess: which treatment")
    )
    expect(participant_question.get_by_role("radio")).to_have_count(5)
    fill_visit_forms(page, drinks=None)
    page.get_by_label("Reason the visit is outside its window").fill(
        "Seen today for the blinding assessment's test."
    )
    answer_blinding(
        page,
        {
            "The participant's guess": "Somewhat believe placebo",
            "The investigator's guess": "Don't know",
        },
    )
    check_axe_on(axe_page, page.url, trial_site)
    shot(page, "week-12-form")
    visit_id = save_visit(page, "Week 12")
    assert read_guesses(trial_site, visit_id) == [
        ("investigator", "dont_know", None),
        ("participant", "placebo", "somewhat"),
    ]
    main = page.get_by_role("main")
    expect(main).to_contain_text("Somewhat believes placebo")
    expect(main).to_contain_text("Don't know")
    check_axe_on(axe_page, page.url, trial_site)
    shot(page, "week-12-visit")
    created = [
        (e["field"], e["new_value"])
        for e in trial_site.audit(participant=pid, entity_type="blinding_assessment")
        if e["action"] == "create"
    ]
    assert sorted(created, key=str) == sorted(
        [
            ("respondent", "investigator"),
            ("guess", "dont_know"),
            ("confidence", None),
            ("respondent", "participant"),
            ("guess", "placebo"),
            ("confidence", "somewhat"),
        ],
        key=str,
    )
