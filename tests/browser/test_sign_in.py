"""Sign-in, sign-out, the session's idle limit and CSRF, in Chromium."""

from __future__ import annotations

import re

from playwright.sync_api import expect

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
