"""The admin's pages in Chromium: an admin creates an account by the form's labels, finds it
in the audit trail by filtering, downloads what the filter shows, and axe-core finds no
serious or critical violation on the accounts, sites and audit-trail pages (their error
states included)."""

from __future__ import annotations

import csv
import io
import re
import uuid
from pathlib import Path

from playwright.sync_api import expect

from tests.browser.helpers import check_axe, main_heading, sign_in


def test_an_admin_creates_an_account_and_finds_it_in_the_audit_trail(page, trial_site, shot):
    name = f"new.monitor.{uuid.uuid4().hex[:6]}"
    sign_in(page, "admin", trial_site.password)
    expect(page).to_have_url(re.compile(r"/users$"))
    for link in ("Accounts", "Sites", "Audit trail"):
        expect(page.get_by_role("link", name=link, exact=True)).to_have_count(1)
    shot(page, "accounts")
    page.get_by_role("link", name="Create an account").click()
    page.get_by_label("Username").fill(name)
    page.get_by_label("Role").select_option(label="Monitor")
    page.get_by_label(re.compile(r"^S01 ")).check()
    page.get_by_label(re.compile(r"^S02 ")).check()
    page.get_by_label("E-mail address").fill(f"{name}@example.org")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    expect(page.get_by_role("status")).to_contain_text(f"Account {name} is created")
    shot(page, "account")
    (account,) = [u for u in trial_site.api("GET", "/users").json() if u["username"] == name]
    assert (account["role"], account["sites"], account["email"]) == (
        "monitor",
        ["S01", "S02"],
        f"{name}@example.org",
    )

    page.get_by_role("link", name="Audit trail", exact=True).click()
    page.get_by_label("User").fill("admin")
    page.get_by_label("Action").fill("create")
    page.get_by_role("button", name="Show entries").click()
    expect(page).to_have_url(re.compile(r"/audit-trail\?.*username=admin"))
    table = page.get_by_role("table")
    expect(table.get_by_role("row").filter(has_text=name).first).to_be_visible()
    shot(page, "audit-trail")
    rows = table.locator("tbody tr")
    seqs = [int(rows.nth(i).locator("td").first.inner_text()) for i in range(rows.count())]
    assert seqs == sorted(seqs, reverse=True)  # newest first
    expected = trial_site.audit(username="admin", action="create", order="newest")
    assert seqs == [e["seq"] for e in expected][: len(seqs)]
    with page.expect_download() as download_info:
        page.get_by_role("link", name=re.compile("Download all entries")).click()
    download = download_info.value
    assert re.fullmatch(r"audit-trail-\d{8}T\d{6}Z\.csv", download.suggested_filename)
    header, *lines = list(csv.reader(io.StringIO(Path(download.path()).read_text("utf-8"))))
    assert header[0] == "Seq" and [int(line[0]) for line in lines] == [e["seq"] for e in expected]


def test_the_admin_pages_pass_axe(axe_page, trial_site, shot):
    page = axe_page
    sign_in(page, "admin", trial_site.password)
    check_axe(page, "admin /users")
    page.goto("/users/new")
    check_axe(page, "admin /users/new")
    page.get_by_label("Username").fill("no spaces!")
    page.get_by_label("E-mail address").fill("not an address")
    page.get_by_role("button", name="Create account").click()
    alert = page.get_by_role("alert")
    for field in ("Username", "Role", "E-mail address"):
        expect(alert).to_contain_text(field)
    shot(page, "new-account-errors")
    check_axe(page, "admin /users/new with errors")
    for suffix in ("", "/deactivate", "/reset-password", "/role", "/email"):
        page.goto(f"/users/monitor{suffix}")
        check_axe(page, f"admin /users/monitor{suffix}")
    page.goto("/users/monitor/role")
    page.get_by_role("button", name="Change role and sites").click()
    expect(page.get_by_role("alert")).to_contain_text("Reason")
    shot(page, "role-errors")
    check_axe(page, "admin /users/monitor/role with errors")
    # A reset of an account of this test's own (the demo's accounts serve the other tests).
    name = f"reset.me.{uuid.uuid4().hex[:6]}"
    made = trial_site.api("POST", "/users", json={"username": name, "role": "data_manager"})
    assert made.status_code == 201, made.text
    page.goto(f"/users/{name}/reset-password")
    page.get_by_label("Reason").fill("forgot it; identity checked by phone")
    page.get_by_role("button", name="Reset password").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("reset")
    shot(page, "temporary-password")
    check_axe(page, "admin temporary password")
    page.goto("/sites")
    shot(page, "sites")
    check_axe(page, "admin /sites")
    page.get_by_role("link", name="Add a site").click()
    page.get_by_role("button", name="Add site").click()
    expect(page.get_by_role("alert")).to_contain_text("Site code")
    shot(page, "new-site-errors")
    check_axe(page, "admin /sites/new with errors")
    page.goto("/audit-trail?participant=S01-0001")
    assert main_heading(page) == "Audit trail"
    check_axe(page, "admin /audit-trail?participant=S01-0001")
    shot(page, "audit-trail-participant")
    page.goto("/audit-trail?from=soon&participant=S09-9999")
    expect(page.get_by_role("alert")).to_contain_text("From")
    check_axe(page, "admin /audit-trail with errors")
