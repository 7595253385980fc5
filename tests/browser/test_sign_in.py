"""Sign-in, sign-out, the session's idle limit and CSRF, in Chromium."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import new_context, serve_demo
from tests.browser.helpers import expect_site_staff_links, main_heading, sign_in


def test_root_without_a_session_redirects_to_sign_in(page, shot):
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/sign-in"))
    expect(page.get_by_label("Username")).to_be_visible()
    expect(page.get_by_label("Password")).to_be_visible()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    shot(page, "sign-in")


def test_a_coordinator_lands_on_the_worklist(page, trial_site, shot):
    sign_in(page, "coordinator.s01", trial_site.password)
    expect(page).to_have_url(re.compile(r"/worklist$"))
    assert "worklist" in main_heading(page).lower()
    expect_site_staff_links(page)
    shot(page, "worklist")


def test_a_wrong_password_is_refused_in_the_error_summary(page, trial_site, shot):
    page.goto("/sign-in")
    page.get_by_label("Username").fill("coordinator.s01")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Password")
    expect(alert).to_contain_text("not right")
    expect(page.get_by_label("Username")).to_have_value("coordinator.s01")
    expect(page.get_by_label("Password")).to_have_value("")
    shot(page, "refused")
    # Still signed out.
    page.goto("/participants")
    expect(page).to_have_url(re.compile(r"/sign-in\?next="))


def test_the_session_cookie_is_httponly_and_samesite_strict(context, page, trial_site):
    sign_in(page, "coordinator.s01", trial_site.password)
    name = trial_site.app.config["SESSION_COOKIE_NAME"]
    cookies = [c for c in context.cookies() if c["name"] == name]
    assert len(cookies) == 1, context.cookies()
    assert cookies[0]["httpOnly"] is True
    assert cookies[0]["sameSite"] == "Strict"
    assert page.evaluate("() => document.cookie") == ""  # scripts cannot read it


def test_sign_out_ends_the_session_and_a_copied_cookie_opens_nothing(
    browser, context, page, trial_site
):
    sign_in(page, "investigator.s01", trial_site.password)
    copied = context.cookies()
    page.get_by_role("link", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/sign-in"))
    expect(page.get_by_role("status")).to_contain_text("signed out")
    page.goto("/worklist")
    expect(page).to_have_url(re.compile(r"/sign-in"))

    other = new_context(browser, trial_site)
    try:
        other.add_cookies(copied)
        tab = other.new_page()
        tab.goto("/worklist")
        expect(tab).to_have_url(re.compile(r"/sign-in"))
    finally:
        other.close()


def test_a_form_without_its_csrf_token_is_refused_and_nothing_saved(page, trial_site, shot):
    from sqlalchemy import func, select

    from trial.extensions import db
    from trial.participants.models import Participant

    def count():
        return trial_site.query(
            lambda: db.session.scalar(select(func.count()).select_from(Participant))
        )

    before = count()
    sign_in(page, "coordinator.s01", trial_site.password, start="/participants/new")
    page.get_by_label("Sex").select_option(label="Female")
    page.get_by_label("Year of birth").fill("1980")
    page.get_by_label("Consent date").fill((date.today() - timedelta(days=2)).isoformat())
    removed = page.evaluate(
        "() => { const t = document.querySelectorAll('input[name=csrf_token]');"
        " t.forEach(e => e.remove()); return t.length; }"
    )
    assert removed == 1
    with page.expect_response(re.compile(r"/participants/new$")) as answer:
        page.get_by_role("button", name="Register").click()
    assert answer.value.status == 400
    assert main_heading(page) == "The form could not be sent"
    expect(page.get_by_role("main")).to_contain_text("nothing was saved")
    shot(page, "csrf-refused")
    assert count() == before
    # A token of another session is refused alike (the token is bound to its session).
    page.goto("/participants/new")
    assert main_heading(page) == "Register a participant"


@pytest.fixture
def idle_site(backend, request, tmp_path_factory):
    """A server of its own that signs people out after six idle seconds."""
    with serve_demo(
        backend,
        request,
        tmp_path_factory,
        name="idle",
        participants=0,
        env={"SESSION_IDLE_MINUTES": "0.1"},
    ) as served:
        yield served


def test_a_session_idle_for_the_limit_is_signed_out(browser, idle_site, shot):
    """Activity keeps a session open past the limit counted from sign-in; the limit without
    any signs it out, and the next page asks to sign in again, saying why."""
    context = new_context(browser, idle_site)
    try:
        page = context.new_page()
        sign_in(page, "coordinator.s01", idle_site.password)
        expect(page).to_have_url(re.compile(r"/worklist$"))
        page.wait_for_timeout(3_500)
        page.get_by_role("link", name="Participants", exact=True).click()
        expect(page).to_have_url(re.compile(r"/participants$"))
        page.wait_for_timeout(3_500)  # 7 s after sign-in, 3.5 s after the last request
        page.get_by_role("link", name="Register participant", exact=True).click()
        expect(page).to_have_url(re.compile(r"/participants/new$"))
        page.wait_for_timeout(7_000)
        page.get_by_role("link", name="Participants", exact=True).click()
        expect(page).to_have_url(re.compile(r"/sign-in\?next=(%2F|/)participants$"))
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("signed out after 6 seconds without activity")
        shot(page, "timed-out")
        # Signing in again returns to the page asked for.
        page.get_by_label("Username").fill("coordinator.s01")
        page.get_by_label("Password").fill(idle_site.password)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(re.compile(r"/participants$"))
    finally:
        context.close()
    # The session's token was revoked when it was next presented (audited).
    revoked = idle_site.audit(
        entity_type="user", entity_id="coordinator.s01", action="token_revoked"
    )
    assert len(revoked) == 1, revoked


def focus_is_visible(page) -> bool:
    """The focused element draws a focus indicator (an outline or a box shadow)."""
    return page.evaluate(
        """() => {
            const s = getComputedStyle(document.activeElement);
            const outline = s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0;
            return outline || (s.boxShadow && s.boxShadow !== 'none');
        }"""
    )


def test_sign_in_and_register_with_the_keyboard_only(page, trial_site, shot):
    """Tab, type and Enter alone: the skip link comes first, every stop shows its focus."""
    page.goto("/sign-in")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent.trim()") == (
        "Skip to main content"
    )
    assert focus_is_visible(page)
    for _ in range(6):  # on to the username, whatever links come first
        if page.evaluate("() => document.activeElement.id") == "username":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "username"
    assert focus_is_visible(page)
    page.keyboard.type("coordinator.s01")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "password"
    page.keyboard.type(trial_site.password)
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent.trim()") == "Sign in"
    assert focus_is_visible(page)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/worklist$"))

    page.goto("/participants/new")
    page.get_by_label("Sex").focus()
    page.keyboard.press("ArrowDown")  # Female
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "year_of_birth"
    assert focus_is_visible(page)
    page.keyboard.type("1990")
    page.keyboard.press("Tab")
    page.keyboard.type((date.today() - timedelta(days=2)).isoformat())
    shot(page, "keyboard-focus")
    page.keyboard.press("Enter")  # submits the form from its last field
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"^S01-\d{4}$"))
