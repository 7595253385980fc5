"""An investigator's extras in Chromium: sign a visit with the password typed again, and the
emergency code-break (reason, password, explicit confirmation) whose arm is shown once, on
its own answer, and never again. Checked in the database and the audit trail."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect
from sqlalchemy import select

from tests.browser.helpers import check_axe, expect_site_staff_links, main_heading, sign_in
from tests.browser.journeys import definition, open_participant

ARMS = ("baclofen", "placebo")
REASON = "Suspected overdose at the emergency department; treatment must be known."


def randomized_participant(trial_site, site: str = "S01", sex: str = "M") -> tuple[str, int]:
    """A participant registered, screened and randomized over the API by the site's demo
    coordinator; returns the id and the screening visit's id."""
    pid, visit_id = ready_participant(trial_site, site, sex)
    allocated = trial_site.api(
        "POST",
        f"/participants/{pid}/randomize",
        user=f"coordinator.{site.lower()}",
        json={"eligibility_confirmed": True},
    )
    assert allocated.status_code == 201, allocated.text
    return pid, visit_id


def ready_participant(trial_site, site: str = "S01", sex: str = "M") -> tuple[str, int]:
    """A participant registered and screened (eligible) over the API by the site's demo
    coordinator, not yet randomized; returns the id and the screening visit's id."""
    from tests.capture_helpers import eligible_answers

    user = f"coordinator.{site.lower()}"
    today = datetime.now(ZoneInfo("Europe/Paris")).date()
    made = trial_site.api(
        "POST",
        "/participants",
        user=user,
        json={
            "site": site,
            "sex": sex,
            "year_of_birth": 1970,
            "consent_date": (today - timedelta(days=5)).isoformat(),
        },
    )
    assert made.status_code == 201, made.text
    pid = made.json()["participant_id"]
    screening = today - timedelta(days=1)
    visit = trial_site.api(
        "POST",
        f"/participants/{pid}/visits",
        user=user,
        json={
            "visit_code": "screening",
            "visit_date": screening.isoformat(),
            "drinking": [
                {"date": (screening - timedelta(days=1)).isoformat(), "standard_drinks": 6}
            ],
            "vitals": {"systolic_bp": 130, "diastolic_bp": 85, "heart_rate": 76},
        },
    )
    assert visit.status_code == 201, visit.text
    answered = trial_site.api(
        "POST", f"/participants/{pid}/eligibility", user=user, json={"answers": eligible_answers()}
    )
    assert answered.status_code == 201, answered.text
    return pid, visit.json()["id"]


def arm_of(trial_site, participant_id: str) -> str:
    """The participant's arm, decrypted in the test process (the test's own key)."""
    from randomization.crypto import decrypt_arm
    from randomization.models import RandomizationSlot
    from trial.extensions import db
    from trial.participants.models import Participant
    from trial.protocol import current_protocol

    def read():
        person = db.session.scalar(
            select(Participant).where(Participant.participant_id == participant_id)
        )
        slot = db.session.scalar(
            select(RandomizationSlot).where(RandomizationSlot.participant_id == person.id)
        )
        return current_protocol().arms[decrypt_arm(slot.stratum, slot.sequence, slot.arm_encrypted)]

    return trial_site.query(read)


def unblinded(trial_site, participant_id: str) -> bool:
    from trial.extensions import db
    from trial.participants.models import Participant

    return trial_site.query(
        lambda: db.session.scalar(
            select(Participant.unblinded).where(Participant.participant_id == participant_id)
        )
    )


def mentions_an_arm(html: str) -> list[str]:
    """Arm names in a page's HTML, beyond the service's own name (the trial is named after
    its drug: "Baclofen AUD trial", the same on every page whatever the arm)."""
    text = html.replace("Baclofen AUD trial", "")
    return sorted({arm for arm in ARMS if re.search(arm, text, re.IGNORECASE)})


def test_an_investigator_signs_a_visit_with_the_password_again(page, trial_site, shot):
    pid, visit_id = randomized_participant(trial_site)
    sign_in(page, "investigator.s01", trial_site.password)
    expect(page).to_have_url(re.compile(r"/worklist$"))
    page.get_by_role("link", name="Sign visits").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Visits awaiting your signature")
    open_participant(page, pid)
    page.get_by_role("link", name="Open Screening", exact=True).click()
    expect(page.get_by_role("heading", name="Sign this visit")).to_be_visible()

    # A wrong password is refused in the error summary, and kept on record.
    page.get_by_label("Password", exact=True).fill("not my password")
    page.get_by_role("button", name="Sign visit").click()
    expect(page.get_by_role("alert")).to_contain_text("Password")
    assert definition(page, "Signature").lower().startswith("unsigned")
    refusals = trial_site.audit(entity_type="visit", entity_id=str(visit_id))
    assert any(e["username"] == "investigator.s01" and "refus" in e["action"] for e in refusals), [
        (e["action"], e["username"]) for e in refusals
    ]

    page.get_by_label("Password", exact=True).fill(trial_site.password)
    page.get_by_role("button", name="Sign visit").click()
    expect(page.get_by_role("status").first).to_contain_text("signed")
    assert definition(page, "Signature").lower().startswith("signed by investigator.s01")
    expect(page.get_by_role("heading", name="Sign this visit")).to_have_count(0)
    expect_site_staff_links(page)
    shot(page, "signed")

    signed = trial_site.api("GET", f"/participants/{pid}/visits", user="monitor").json()
    screening = next(v for v in signed if v["id"] == visit_id)
    assert screening["signature_status"] == "signed"
    assert screening["signed_by"] == "investigator.s01"
    events = trial_site.audit(entity_type="visit", entity_id=str(visit_id), action="sign")
    assert [e["username"] for e in events] == ["investigator.s01"], events


def test_the_code_break_shows_the_arm_once_and_never_again(page, trial_site, shot):
    pid, _ = randomized_participant(trial_site)
    expected_arm = arm_of(trial_site, pid)
    sign_in(page, "investigator.s01", trial_site.password)
    open_participant(page, pid)
    assert not mentions_an_arm(page.content())
    page.get_by_role("link", name="Emergency code-break").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Emergency code-break")
    shot(page, "form")

    # Without the explicit confirmation: refused, naming it; the reason kept, not the password.
    page.get_by_label("Reason", exact=True).fill(REASON)
    page.get_by_label("Your password").fill(trial_site.password)
    page.get_by_role("button", name="Break the code").click()
    expect(page.get_by_role("alert")).to_contain_text("Confirm")
    expect(page.get_by_label("Reason", exact=True)).to_have_value(REASON)
    expect(page.get_by_label("Your password")).to_have_value("")
    assert not mentions_an_arm(page.content())
    assert unblinded(trial_site, pid) is False

    # A wrong password: refused and recorded, still blinded.
    page.get_by_label("Your password").fill("not my password")
    page.get_by_label(re.compile("^I understand this unblinds")).check()
    page.get_by_role("button", name="Break the code").click()
    expect(page.get_by_role("alert")).to_be_visible()
    assert not mentions_an_arm(page.content())
    assert unblinded(trial_site, pid) is False

    # Reason, password and confirmation: the arm, on this answer only.
    page.get_by_label("Your password").fill(trial_site.password)
    page.get_by_label(re.compile("^I understand this unblinds")).check()
    with page.expect_response(re.compile(f"/participants/{pid}/code-break$")) as answer:
        page.get_by_role("button", name="Break the code").click()
    assert answer.value.request.method == "POST" and answer.value.status == 200
    assert main_heading(page) == f"Code broken for {pid}"
    shown = page.locator(".arm").inner_text().strip()
    assert shown == expected_arm
    # Negative control: the scan that finds no arm on the other pages finds it here.
    assert mentions_an_arm(page.content()) == [expected_arm]
    assert "no-store" in answer.value.headers.get("cache-control", "")
    shot(page, "arm-shown-once")
    assert unblinded(trial_site, pid) is True
    broken = trial_site.audit(entity_type="participant", entity_id=pid, action="code_break")
    assert [(e["username"], e["reason"]) for e in broken] == [("investigator.s01", REASON)]
    assert not any(mentions_an_arm(str(e)) for e in broken)  # the trail holds no arm

    # Never again: not on the participant's page, not on the code-break page, not by
    # going back in the browser's history.
    page.get_by_role("link", name=f"Back to {pid}").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(pid)
    assert definition(page, "Blinding").startswith("Unblinded by an emergency code-break")
    expect(page.get_by_role("link", name="Emergency code-break")).to_have_count(0)
    assert not mentions_an_arm(page.content())
    page.goto(f"/participants/{pid}/code-break")
    expect(page.get_by_role("main")).to_contain_text("already broken")
    expect(page.get_by_role("button", name="Break the code")).to_have_count(0)
    assert not mentions_an_arm(page.content())
    page.go_back()  # the participant page
    try:
        page.go_back()  # the code-break's answer: a POST answered with no-store
    except PlaywrightError as refused:  # the browser will not show it from a cache
        assert "ERR_CACHE_MISS" in str(refused)
    assert not mentions_an_arm(settled_content(page)), page.url
    shot(page, "never-again")
    assert len(trial_site.audit(entity_type="participant", entity_id=pid, action="code_break")) == 1


def settled_content(page, tries: int = 20) -> str:
    """The page's HTML once it has stopped navigating (after a refused history step)."""
    for _ in range(tries):
        page.wait_for_load_state()
        try:
            return page.content()
        except PlaywrightError as busy:
            if "navigating" not in str(busy):
                raise
            page.wait_for_timeout(100)
    return page.content()


def test_axe_on_the_investigators_pages(axe_page, trial_site):
    pid, visit_id = randomized_participant(trial_site, sex="F")
    sign_in(axe_page, "investigator.s01", trial_site.password)
    for url in ("/signatures", f"/visits/{visit_id}", f"/participants/{pid}/code-break"):
        axe_page.goto(url)
        check_axe(axe_page)
    # The sign form with its error, and the code-break form with its errors.
    axe_page.goto(f"/visits/{visit_id}")
    axe_page.get_by_role("button", name="Sign visit").click()
    expect(axe_page.get_by_role("alert")).to_be_visible()
    check_axe(axe_page, "visit page with a signature error")
    axe_page.goto(f"/participants/{pid}/code-break")
    axe_page.get_by_role("button", name="Break the code").click()
    expect(axe_page.get_by_role("alert")).to_be_visible()
    check_axe(axe_page, "code-break form with errors")
    # The code-break's answer itself (the arm page), then the participant page after it.
    axe_page.get_by_label("Reason", exact=True).fill(REASON)
    axe_page.get_by_label("Your password").fill(trial_site.password)
    axe_page.get_by_label(re.compile("^I understand this unblinds")).check()
    axe_page.get_by_role("button", name="Break the code").click()
    expect(axe_page.get_by_role("heading", level=1)).to_have_text(f"Code broken for {pid}")
    check_axe(axe_page, "code-break result")
    axe_page.goto(f"/participants/{pid}")
    check_axe(axe_page, "participant page after a code-break")
