"""Site isolation and blinding through the pages, in Chromium.

Isolation: staff of S02 reach none of S01's participants or records by typing their
addresses (each is a 404 page, as the API answers 404 for another site's), and cannot break
an S01 code with a form of their own. Blinding: two participants recorded alike and
allocated to different arms get the same pages, byte for byte once their ids, numbers and
tokens are masked, as each site role sees them.
"""

from __future__ import annotations

import re

from playwright.sync_api import expect
from sqlalchemy import select

from tests.browser.helpers import main_heading, sign_in
from tests.browser.test_investigator import (
    REASON,
    arm_of,
    randomized_participant,
    unblinded,
)


def s01_records(trial_site) -> dict:
    """An S01 demo participant with a visit and an adverse event, and their record ids."""
    from trial.extensions import db
    from trial.forms.models import Vitals
    from trial.participants.models import Participant
    from trial.safety.models import AdverseEvent
    from trial.sites.models import Site
    from trial.visits.models import Visit

    def read():
        person = db.session.scalar(
            select(Participant)
            .join(Site, Site.id == Participant.site_id)
            .join(AdverseEvent, AdverseEvent.participant_id == Participant.id)
            .where(Site.code == "S01", Participant.randomized_at.is_not(None))
            .order_by(Participant.participant_id)
            .limit(1)
        )
        visit = db.session.scalar(select(Visit).where(Visit.participant_id == person.id).limit(1))
        vitals = db.session.scalar(select(Vitals).where(Vitals.visit_id == visit.id).limit(1))
        event = db.session.scalar(
            select(AdverseEvent).where(AdverseEvent.participant_id == person.id).limit(1)
        )
        return {"pid": person.participant_id, "visit": visit.id, "vitals": vitals.id,
                "ae": event.id}  # fmt: skip

    return trial_site.query(read)


def test_another_sites_staff_reach_nothing_by_address(browser, page, trial_site, shot):
    records = s01_records(trial_site)
    pid = records["pid"]
    raised = trial_site.api(
        "POST",
        "/queries",
        user="monitor",
        json={"entity": "adverse_event", "record_id": str(records["ae"]), "text": "Source?"},
    )
    assert raised.status_code == 201, raised.text
    addresses = [
        f"/participants/{pid}",
        f"/participants/{pid}/eligibility",
        f"/participants/{pid}/dosing",
        f"/participants/{pid}/adverse-events",
        f"/participants/{pid}/adverse-events/new",
        f"/participants/{pid}/disposition",
        f"/participants/{pid}/deviations",
        f"/participants/{pid}/visits/new",
        f"/participants/{pid}/randomize",
        f"/visits/{records['visit']}",
        f"/visits/{records['visit']}/correct",
        f"/records/vitals/{records['vitals']}/correct",
        f"/adverse-events/{records['ae']}",
        f"/adverse-events/{records['ae']}/correct",
        f"/queries/{raised.json()['query_id']}",
    ]
    sign_in(page, "coordinator.s02", trial_site.password)
    missing = {pid: "S01-9999", str(records["visit"]): "99999999",
               str(records["vitals"]): "99999998", str(records["ae"]): "99999997",
               str(raised.json()["query_id"]): "99999996"}  # fmt: skip
    for address in addresses:
        response = page.goto(address)
        assert response.status == 404, (address, response.status)
        assert main_heading(page) == "Page not found", address
        theirs = page.content()
        # The same page as for an address that names nothing (an id is echoed only as typed).
        segments = address.split("/")
        nothing = "/".join(missing.get(part, part) for part in segments)
        assert page.goto(nothing).status == 404, nothing
        ours = page.content()
        for real in set(segments) & set(missing):
            theirs = theirs.replace(f"'{real}'", "'X'").replace(f" {real}", " X")
            ours = ours.replace(f"'{missing[real]}'", "'X'").replace(f" {missing[real]}", " X")
        assert theirs == ours, (address, nothing, theirs[-900:], ours[-900:])
    shot(page, "not-found")

    # Nor in their lists: the participant search finds nothing.
    page.goto("/participants")
    page.get_by_label("Participant id").fill(pid)
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("main")).to_contain_text("0 participants match")

    # An S02 investigator cannot break an S01 code, even posting a form of their own.
    target, _ = randomized_participant(trial_site, site="S01")
    investigator = browser.new_context(base_url=trial_site.url)
    try:
        tab = investigator.new_page()
        sign_in(tab, "investigator.s02", trial_site.password)
        assert tab.goto(f"/participants/{target}/code-break").status == 404
        tab.goto("/participants/new")
        token = tab.locator("input[name=csrf_token]").first.get_attribute("value")
        answer = tab.request.post(
            f"/participants/{target}/code-break",
            form={
                "csrf_token": token,
                "reason": REASON,
                "password": trial_site.password,
                "confirmed": "true",
            },
        )
        assert answer.status == 404, answer.status
        assert arm_of(trial_site, target) not in answer.text()
    finally:
        investigator.close()
    assert unblinded(trial_site, target) is False


def one_of_each_arm(trial_site) -> dict[str, tuple[str, int]]:
    """Participants screened alike (same site, sex, visit and answers) and randomized until
    each arm has one: {arm: (participant id, screening visit id)}."""
    found: dict[str, tuple[str, int]] = {}
    for _ in range(12):
        pid, visit_id = randomized_participant(trial_site, sex="F")
        found.setdefault(arm_of(trial_site, pid), (pid, visit_id))
        if len(found) == 2:
            return found
    raise AssertionError(f"12 randomizations gave one arm only: {found}")


def allocation_of(trial_site, pid: str) -> dict:
    shown = trial_site.api("GET", f"/participants/{pid}/randomization", user="monitor")
    assert shown.status_code == 200, shown.text
    return shown.json()


def masked(html: str, pid: str, allocation: dict) -> str:
    """The page with what differs between any two participants masked: the participant id,
    the randomization and kit numbers, the CSRF token (lengths kept), and every number (to
    one digit: record ids in links differ in length when one crosses a power of ten)."""
    html = html.replace(pid, "P" * len(pid))
    for value in (allocation["randomization_number"], allocation["kit_number"]):
        html = html.replace(value, "K" * len(value))
    html = re.sub(
        r'(name="csrf_token" value=")([^"]*)"', lambda m: m[1] + "T" * len(m[2]) + '"', html
    )
    return re.sub(r"\d+", "0", html)


def test_pages_of_participants_in_different_arms_are_the_same(browser, trial_site):
    arms = one_of_each_arm(trial_site)
    allocations = {arm: allocation_of(trial_site, pid) for arm, (pid, _) in arms.items()}
    pages = ["/participants/{pid}", "/participants/{pid}/eligibility",
             "/participants/{pid}/adverse-events", "/participants/{pid}/dosing",
             "/visits/{visit}"]  # fmt: skip
    views = {
        "coordinator.s01": pages,
        "investigator.s01": [*pages, "/participants/{pid}/code-break"],
        "monitor": pages,
    }
    for username, addresses in views.items():
        context = browser.new_context(base_url=trial_site.url)
        try:
            tab = context.new_page()
            sign_in(tab, username, trial_site.password)
            for address in addresses:
                shown = {}
                for arm, (pid, visit_id) in arms.items():
                    response = tab.goto(address.format(pid=pid, visit=visit_id))
                    assert response.status == 200, (username, address, response.status)
                    shown[arm] = masked(tab.content(), pid, allocations[arm])
                first, second = shown.values()
                assert first == second, (
                    username,
                    address,
                    len(first),
                    len(second),
                    _first_difference(first, second),
                )
        finally:
            context.close()


def _first_difference(a: str, b: str) -> str:
    pairs = enumerate(zip(a, b, strict=False))
    at = next((i for i, (x, y) in pairs if x != y), min(len(a), len(b)))
    return f"at {at}: {a[max(0, at - 80) : at + 80]!r} vs {b[max(0, at - 80) : at + 80]!r}"


def test_control_the_masked_comparison_sees_an_arm(browser, trial_site):
    """Negative control: a page that differs by its arm (the code-break's answer) is not
    the same after masking, so equality above is not the masking's doing."""
    arms = one_of_each_arm(trial_site)
    shown, sizes = {}, {}
    for arm, (pid, _visit) in arms.items():
        context = browser.new_context(base_url=trial_site.url)
        try:
            tab = context.new_page()
            sign_in(tab, "investigator.s01", trial_site.password, start=f"/participants/{pid}")
            tab.get_by_role("link", name="Emergency code-break").click()
            tab.get_by_label("Reason", exact=True).fill(REASON)
            tab.get_by_label("Your password").fill(trial_site.password)
            tab.get_by_label(re.compile("^I understand this unblinds")).check()
            tab.get_by_role("button", name="Break the code").click()
            expect(tab.get_by_role("heading", level=1)).to_have_text(f"Code broken for {pid}")
            allocation = allocation_of(trial_site, pid)
            # The time of the break differs by minutes at most: digits are masked anyway.
            html = tab.content()
            shown[arm] = masked(html, pid, allocation)
            sizes[arm] = len(html.encode())
        finally:
            context.close()
    first, second = shown.values()
    assert len(set(sizes.values())) == 1, sizes  # padded to one size, as the page promises
    assert first != second
    differing = _first_difference(first, second)
    assert "baclofen" in differing or "placebo" in differing, differing
