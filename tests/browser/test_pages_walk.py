"""Every page, walked in Chromium as each role that reads participants: axe-core finds no
serious or critical violation, no page fails, no page a blinded role sees names an arm, the
site staff's links are on every page they open, and every page of the app's url_map is
reached (a page added without a link to it, or one the walk cannot reach, fails here).

The walk follows the links a person can follow, from the home page and from the pages of
the demo participants with the most records (an adverse event, a deviation, a
disposition, a query), at most two addresses per page (one per record type on the generic
record pages). Pages reached only by a form's answer (the code-break's arm) or by an error
are checked in their own tests (test_investigator, test_sign_in) and below.
"""

from __future__ import annotations

import re
from collections import deque
from urllib.parse import urljoin, urlsplit

from playwright.sync_api import expect
from sqlalchemy import func, select

from tests.browser.helpers import NAV_LINKS, axe_violations, describe_violations, sign_in
from tests.browser.test_investigator import ARMS, mentions_an_arm, ready_participant

# Page endpoints no walk opens: files, a JSON helper of a form, and the one that signs out.
NOT_PAGES = {
    "web.static",
    "web.sign_out",
    "safety_pages.term_suggestions",
    # Downloads (a ZIP, a PDF): tests/browser/test_outputs.py clicks them.
    "exports_pages.download",
    "reports_pages.download",
    "audit_pages.audit_trail_csv",
}
# Reached by their own tests or below, not by a link: the sign-in page (signed out), the
# password change (a link would tempt nobody; its form is here by address), and the
# reactivation form (linked only from a deactivated account, which the demo has none of).
BY_ADDRESS = ("/password", "/users/statistician/reactivate")
PER_PAGE = 2
MAX_PAGES = 80
WALKERS = (
    "coordinator.s01",
    "investigator.s01",
    "monitor",
    "data_manager",
    "statistician",
    "dsmb",
    "unblinded_statistician",
    "admin",
)
SITE_STAFF = ("coordinator.s01", "investigator.s01")
# Central roles with two or three pages of their own (the rest of the walk is 403s).
FEW_PAGES = ("statistician", "dsmb", "unblinded_statistician")


def page_endpoints(app) -> set[str]:
    """The GET page endpoints of the app (blueprint ``web`` or ``*_pages``)."""
    found = set()
    for rule in app.url_map.iter_rules():
        blueprint = rule.endpoint.partition(".")[0]
        if (blueprint == "web" or blueprint.endswith("_pages")) and "GET" in rule.methods:
            if rule.endpoint not in NOT_PAGES:
                found.add(rule.endpoint)
    return found


def rich_participants(trial_site) -> list[str]:
    """S01's demo participants with the most kinds of records, for the walk to start at."""
    from trial.conduct.models import Disposition, ProtocolDeviation
    from trial.extensions import db
    from trial.participants.models import Participant
    from trial.queries.models import DataQuery
    from trial.safety.models import AdverseEvent
    from trial.sites.models import Site

    def read():
        chosen = []
        for model in (AdverseEvent, ProtocolDeviation, Disposition, DataQuery):
            pid = db.session.scalar(
                select(Participant.participant_id)
                .join(model, model.participant_id == Participant.id)
                .join(Site, Site.id == Participant.site_id)
                .where(Site.code == "S01")
                .group_by(Participant.participant_id)
                .order_by(func.count().desc(), Participant.participant_id)
                .limit(1)
            )
            if pid and pid not in chosen:
                chosen.append(pid)
        return chosen

    return trial_site.query(read)


def query_on_an_adverse_event(trial_site, participants: list[str]) -> None:
    """A monitor's open query on an adverse event of the walk's participants (the demo
    raises none at S01), so its pages are walked."""
    for pid in participants:
        events = trial_site.api("GET", f"/participants/{pid}/adverse-events", user="monitor")
        if events.json():
            raised = trial_site.api(
                "POST",
                "/queries",
                user="monitor",
                json={
                    "entity": "adverse_event",
                    "record_id": str(events.json()[0]["id"]),
                    "field": "grade",
                    "text": "Please check the grade against the source notes.",
                },
            )
            assert raised.status_code == 201, raised.text
            return
    raise AssertionError(f"no adverse event among {participants}")


def walk(page, trial_site, starts: list[str], inspect) -> int:
    """Follow the links from ``starts``, calling ``inspect(page, url, key, status, html)``
    on each page opened; returns how many were."""
    adapter = trial_site.app.url_map.bind("127.0.0.1")
    endpoints = page_endpoints(trial_site.app)
    seen_urls, per_key, visited = set(), {}, 0
    queue = deque(starts)
    while queue and visited < MAX_PAGES:
        url = queue.popleft()
        if url in seen_urls:
            continue
        seen_urls.add(url)
        endpoint, key = _endpoint(adapter, url)
        if endpoint in NOT_PAGES:
            continue
        if endpoint in endpoints and per_key.get(key, 0) >= PER_PAGE:
            continue
        response = page.goto(url)
        if page.url.split("#")[0] != urljoin(trial_site.url, url).split("#")[0]:
            endpoint, key = _endpoint(adapter, page.url)  # a redirect: count where it led
            if endpoint in endpoints and per_key.get(key, 0) >= PER_PAGE:
                continue
        per_key[key] = per_key.get(key, 0) + 1
        visited += 1
        inspect(page, page.url, key, response.status if response else 0, page.content())
        for href in page.eval_on_selector_all("a[href]", _HREFS):
            target = urljoin(page.url, href)
            parts = urlsplit(target)
            if parts.netloc != urlsplit(trial_site.url).netloc:
                continue
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            if path not in seen_urls:
                queue.append(path)
    return visited


def _endpoint(adapter, url: str) -> tuple[str, str]:
    """The endpoint an address is served by, and the walk's key for it (the generic record
    pages count once per record type)."""
    try:
        endpoint, args = adapter.match(urlsplit(url).path, method="GET")
    except Exception:  # noqa: BLE001 - a link to nothing is caught by its status
        return "?", "?"
    return endpoint, endpoint + (f":{args['entity']}" if "entity" in args else "")


_HREFS = "els => els.map(e => e.getAttribute('href')).filter(h => h && !h.startsWith('#'))"


# Pages whose content depends on the role: axe runs on them for every walker; on the others
# once, for the first walker that opens them.
ROLE_PAGES = {
    "web.home",
    "worklist_pages.worklist",
    "participants_pages.participant",
    "visits_pages.visit",
    "queries_pages.query",
    "reports_pages.reports",  # the closed report's link and the notices: DSMB, unblinded
}


# The blinding assessment's vocabulary: a guess names an arm (what someone believes), the same
# words on every participant's pages whatever their arm. Removed exactly as the pages write
# them, so an arm named anywhere else on the same page is still found.
_GUESS_WORDING = (
    [
        re.compile(rf"{how} believes? {arm}", re.IGNORECASE)
        for how in ("strongly", "somewhat")
        for arm in ARMS
    ]
    + [
        re.compile(rf'value="{arm}\|(strongly|somewhat)"')
        for arm in ARMS  # the visit form
    ]
    + [
        re.compile(r'<select [^>]*name="guess"[^>]*>.*?</select>', re.DOTALL),  # its correction
        re.compile(r"<dt>Guess of the arm</dt><dd>[a-z_]+</dd>"),  # its entered-in-error page
    ]
)


def without_guesses(html: str) -> str:
    for wording in _GUESS_WORDING:
        html = wording.sub("", html)
    return html


def test_only_the_guesses_wording_is_set_aside():
    """Control: an arm named outside a guess is still found on a page that holds guesses."""
    page = (
        "<td>Somewhat believes placebo</td><td>Strongly believes baclofen</td>"
        '<select id="guess" name="guess"><option value="baclofen">baclofen</option></select>'
        "<dt>Guess of the arm</dt><dd>placebo</dd>"
    )
    assert mentions_an_arm(page) == ["baclofen", "placebo"]
    assert mentions_an_arm(without_guesses(page)) == []
    assert mentions_an_arm(without_guesses(page + "<p>Arm: placebo</p>")) == ["placebo"]
    assert mentions_an_arm(without_guesses(page + "<dt>Arm</dt><dd>baclofen</dd>")) == ["baclofen"]


def test_every_page_walked_as_each_role(browser, trial_site):
    """One walk per role (one test, so parallel workers do not each repeat it): axe, status,
    blinding and the site staff's links on every page; every page endpoint reached."""
    from tests.browser.conftest import new_context

    rich = rich_participants(trial_site)
    ready, _ = ready_participant(trial_site)
    query_on_an_adverse_event(trial_site, rich)
    starts = ["/", *BY_ADDRESS, f"/participants/{ready}"]
    starts += [f"/participants/{pid}" for pid in rich]
    axed: set[str] = set()
    reached: set[str] = set()
    problems: list[str] = []
    counts = {}
    for username in WALKERS:
        context = new_context(browser, trial_site, bypass_csp=True)
        mine: set[str] = set()

        def inspect(tab, url, key, status, html, username=username, mine=mine):
            endpoint = key.partition(":")[0]
            reached.add(endpoint)
            if status not in (200, 403):
                problems.append(f"{username}: {url} answered {status}")
            if mentions_an_arm(without_guesses(html)):
                named = mentions_an_arm(without_guesses(html))
                problems.append(f"{username}: {url} names an arm: {named}")
            if username in SITE_STAFF:
                for name in NAV_LINKS:
                    if not re.search(rf"<a [^>]*>\s*{re.escape(name)}\s*</a>", html):
                        problems.append(f"{username}: {url} has no link {name!r}")
            first = key not in axed or (endpoint in ROLE_PAGES and key not in mine)
            if status == 200 and first:
                axed.add(key)
                mine.add(key)
                found = axe_violations(tab)
                if found:
                    problems.append(describe_violations(f"{username} ({key}) {url}", found))

        try:
            tab = context.new_page()
            sign_in(tab, username, trial_site.password)
            counts[username] = walk(tab, trial_site, starts, inspect)
        finally:
            context.close()
    # "/" is every walk's first start: it sends each role on to its first page (every role
    # has one), so it is opened but never shown itself.
    missing = page_endpoints(trial_site.app) - reached - {"web.sign_in", "web.home"}
    if missing:
        problems.append(
            f"page endpoints no link reaches from the walk's start pages: {sorted(missing)}; "
            "link them from a page, or add an address to BY_ADDRESS"
        )
    assert all(n > (2 if user in FEW_PAGES else 5) for user, n in counts.items()), counts
    assert not problems, "\n\n".join(problems)


def test_axe_on_the_signed_out_and_error_pages(axe_page, trial_site):
    axe_page.goto("/")
    expect(axe_page).to_have_url(re.compile(r"/sign-in"))
    found = axe_violations(axe_page)
    assert not found, describe_violations("sign-in", found)
    axe_page.get_by_role("button", name="Sign in").click()  # empty: the error summary
    expect(axe_page.get_by_role("alert")).to_be_visible()
    found = axe_violations(axe_page)
    assert not found, describe_violations("sign-in with errors", found)

    sign_in(axe_page, "monitor", trial_site.password)
    for url, status in (
        ("/participants/S09-9999", 404),
        ("/visits/999999", 404),
        ("/participants/new", 403),
    ):
        response = axe_page.goto(url)
        assert response.status == status, (url, response.status)
        found = axe_violations(axe_page)
        assert not found, describe_violations(f"{status} page {url}", found)


def test_an_unknown_address_answers_a_page(axe_page, trial_site):
    sign_in(axe_page, "coordinator.s01", trial_site.password)
    response = axe_page.goto("/no-such-page")
    assert response.status == 404
    assert "text/html" in response.headers.get("content-type", "")
    found = axe_violations(axe_page)
    assert not found, describe_violations("404 page /no-such-page", found)


def test_control_axe_finds_what_it_must(axe_page, trial_site):
    """Negative control: an input without a label and text without contrast, planted on the
    sign-in page, are found (so a clean result above means something)."""
    axe_page.goto("/sign-in")
    axe_page.evaluate(
        """() => {
            const main = document.querySelector('main');
            const input = document.createElement('input');
            input.type = 'text';
            main.appendChild(input);
            const faint = document.createElement('p');
            faint.textContent = 'Faint text';
            faint.style.color = '#eeeeee';
            main.appendChild(faint);
        }"""
    )
    found = {v["id"] for v in axe_violations(axe_page)}
    assert {"label", "color-contrast"} <= found, found
