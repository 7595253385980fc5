"""What the browser tests do as a person would: sign in by the labels, check the page's
contract, and run axe-core on what the browser shows."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

from playwright.sync_api import Page, expect

VENDOR = Path(__file__).parent / "vendor"
# Impacts that fail a page (axe's four levels: minor, moderate, serious, critical).
FAILING_IMPACTS = ("serious", "critical")
NAV_LINKS = ("Participants", "Register participant", "Sign out")


@cache
def axe_source() -> str:
    return (VENDOR / "axe.min.js").read_text()


def sign_in(page: Page, username: str, password: str, *, start: str = "/") -> None:
    """Open ``start`` signed out, and sign in on the page it leads to, by the labels."""
    page.goto(start)
    expect(page).to_have_url(re.compile(r"/sign-in"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign in")).to_have_count(0)


def sign_out(page: Page) -> None:
    page.get_by_role("link", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/sign-in"))


def expect_site_staff_links(page: Page) -> None:
    """The contract's links on every site-staff page: Participants, Register participant,
    Sign out."""
    for name in NAV_LINKS:
        expect(page.get_by_role("link", name=name, exact=True)).to_have_count(1)


def main_heading(page: Page) -> str:
    return page.get_by_role("heading", level=1).inner_text().strip()


def axe_violations(page: Page) -> list[dict]:
    """axe-core's serious and critical violations on the page as it is now.

    The page must be open in a context made with ``bypass_csp=True``: axe is injected as an
    inline script, which the pages' own CSP rightly refuses.
    """
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=axe_source())
    result = page.evaluate(
        """async () => {
            const r = await axe.run(document, {resultTypes: ['violations']});
            return r.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
                nodes: v.nodes.map(n => ({target: n.target, html: n.html,
                                          summary: n.failureSummary})),
            }));
        }"""
    )
    return [v for v in result if v["impact"] in FAILING_IMPACTS]


def describe_violations(url: str, violations: list[dict]) -> str:
    """A readable account of axe's findings on one page: rule, impact, elements, fix."""
    lines = [f"{url}: {len(violations)} serious/critical axe violation(s)"]
    for v in violations:
        lines.append(f"  [{v['impact']}] {v['id']}: {v['help']} ({v['helpUrl']})")
        for node in v["nodes"][:8]:
            lines.append(f"    at {json.dumps(node['target'])}: {node['html'][:200]}")
            for line in (node["summary"] or "").splitlines():
                lines.append(f"      {line}")
        if len(v["nodes"]) > 8:
            lines.append(f"    ... and {len(v['nodes']) - 8} more element(s)")
    return "\n".join(lines)


def check_axe(page: Page, label: str | None = None) -> None:
    """Fail on any serious or critical axe-core violation on the page shown."""
    found = axe_violations(page)
    assert not found, describe_violations(label or page.url, found)


def register_participant(
    page: Page, *, sex: str = "Female", year_of_birth: str = "1980", consent_date: str
) -> str:
    """Register a participant through the form, by its labels; returns the new id (read
    from the participant page's main heading)."""
    page.get_by_role("link", name="Register participant", exact=True).click()
    page.get_by_label("Sex").select_option(label=sex)
    page.get_by_label("Year of birth").fill(year_of_birth)
    page.get_by_label("Consent date").fill(consent_date)
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"S\d\d-\d{4}"))
    return main_heading(page)


def check_axe_on(axe_page, url: str, trial_site) -> None:
    """axe on the page at ``url`` as the coordinator sees it (a profile of its own)."""
    if "sign-in" in axe_page.url or axe_page.url == "about:blank":
        sign_in(axe_page, "coordinator.s01", trial_site.password, start="/worklist")
    axe_page.goto(url)
    check_axe(axe_page)
