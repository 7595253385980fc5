"""Registering a participant through the form, and the form's errors, in Chromium."""

from __future__ import annotations

import re
from datetime import date, timedelta

from playwright.sync_api import expect
from sqlalchemy import func, select

from tests.browser.helpers import (
    check_axe,
    expect_site_staff_links,
    main_heading,
    register_participant,
    sign_in,
)


def participant_count(trial_site) -> int:
    from trial.extensions import db
    from trial.participants.models import Participant

    return trial_site.query(
        lambda: db.session.scalar(select(func.count()).select_from(Participant))
    )


def stored(trial_site, participant_id: str) -> dict | None:
    from trial.extensions import db
    from trial.participants.models import Participant

    def read():
        row = db.session.scalar(
            select(Participant).where(Participant.participant_id == participant_id)
        )
        if row is None:
            return None
        return {
            "site": row.site.code,
            "sex": row.sex,
            "year_of_birth": row.year_of_birth,
            "consent_date": row.consent_date,
            "status": row.status,
        }

    return trial_site.query(read)


def test_registration_by_labels_opens_the_participant_page(page, trial_site, shot):
    consent = date.today() - timedelta(days=3)
    sign_in(page, "coordinator.s01", trial_site.password)
    participant_id = register_participant(
        page, sex="Male", year_of_birth="1975", consent_date=consent.isoformat()
    )
    assert re.fullmatch(r"S01-\d{4}", participant_id)
    expect(page).to_have_url(re.compile(f"/participants/{participant_id}$"))
    expect(page.get_by_role("status")).to_contain_text(participant_id)
    expect_site_staff_links(page)
    shot(page, "participant")

    assert stored(trial_site, participant_id) == {
        "site": "S01",
        "sex": "M",
        "year_of_birth": 1975,
        "consent_date": consent,
        "status": "screening",
    }
    # Audited as the API's registration is: by the coordinator, field by field.
    events = trial_site.audit(entity_type="participant", entity_id=participant_id)
    created = [e for e in events if e["action"] == "create"]
    assert created and {e["username"] for e in created} == {"coordinator.s01"}
    fields = {e["field"]: e["new_value"] for e in created if e["field"]}
    assert fields.get("year_of_birth") in (1975, "1975")


def test_registration_errors_name_every_field_keep_values_and_save_nothing(
    page, axe_page, trial_site, shot
):
    before = participant_count(trial_site)
    audited_before = len(trial_site.audit(entity_type="participant", action="create"))
    sign_in(page, "coordinator.s01", trial_site.password)
    page.get_by_role("link", name="Register participant", exact=True).click()
    # The click returns before the new page is loaded: wait for its form before changing it.
    expect(page.get_by_label("Site")).to_be_visible()
    # Every field wrong: no site (the only option, S01, is emptied as a hand-made request
    # would send it), no sex, a year that is not one, a date that does not exist.
    page.evaluate("() => { document.querySelector('#site option:checked').value = ''; }")
    page.get_by_label("Year of birth").fill("19x0")
    page.get_by_label("Consent date").fill("2026-02-30")
    page.get_by_role("button", name="Register").click()

    summary = page.get_by_role("alert")
    expect(summary).to_be_visible()
    text = summary.inner_text()
    for label in ("Site", "Sex", "Year of birth", "Consent date"):
        assert label in text, f"the error summary does not name {label!r}:\n{text}"
    # The entered values are kept, each field carries its own message.
    expect(page.get_by_label("Year of birth")).to_have_value("19x0")
    expect(page.get_by_label("Consent date")).to_have_value("2026-02-30")
    for field_id in ("sex", "year_of_birth", "consent_date"):
        expect(page.locator(f"#{field_id}-error")).to_be_visible()
        expect(page.locator(f"#{field_id}")).to_have_attribute("aria-invalid", "true")
    expect(page).to_have_title(re.compile(r"Register"))
    # The summary's links take the keyboard to the field.
    summary.get_by_role("link", name=re.compile(r"^Year of birth")).click()
    expect(page.get_by_label("Year of birth")).to_be_focused()
    expect_site_staff_links(page)
    shot(page, "errors")

    assert participant_count(trial_site) == before
    assert len(trial_site.audit(entity_type="participant", action="create")) == audited_before

    # axe on the form with its errors shown.
    sign_in(axe_page, "coordinator.s01", trial_site.password, start="/participants/new")
    axe_page.get_by_role("button", name="Register").click()
    expect(axe_page.get_by_role("alert")).to_be_visible()
    check_axe(axe_page, "registration form with errors")


def test_a_coordinator_cannot_register_at_another_site(page, trial_site, shot):
    """The form offers only the user's own site; a form changed to name another is refused
    by the API's own rule (403, as the API answers it) and nothing is written."""
    before = participant_count(trial_site)
    sign_in(page, "coordinator.s02", trial_site.password, start="/participants/new")
    options = page.get_by_label("Site").locator("option").all_inner_texts()
    assert options and all(text.startswith("S02") for text in options), options
    page.evaluate("() => { document.querySelector('#site option:checked').value = 'S01'; }")
    page.get_by_label("Sex").select_option(label="Female")
    page.get_by_label("Year of birth").fill("1980")
    page.get_by_label("Consent date").fill((date.today() - timedelta(days=2)).isoformat())
    page.get_by_role("button", name="Register").click()
    assert main_heading(page) == "You cannot open this page"
    expect(page.get_by_role("main")).to_contain_text("only at your own site")
    shot(page, "refused")
    assert participant_count(trial_site) == before
