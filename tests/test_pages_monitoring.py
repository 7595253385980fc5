"""The monitors' and data managers' pages, driven as a browser would (issue 25): source data
verification, queries raised, closed and re-opened from the pages, and the coding screen.

Each page must write and audit what its JSON endpoint writes and audits, refuse what it
refuses (every bad field at once, nothing written) and keep the API's roles and sites.
Runs on SQLite and, with TEST_DATABASE_URL set, on PostgreSQL.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from tests.capture_helpers import Trial
from tests.page_helpers import CSRF, error_summary, sign_in
from trial.audit.models import AuditEvent
from trial.extensions import db
from trial.queries.models import DataQuery
from trial.safety.models import AdverseEvent
from trial.verification.models import SourceVerification

PASSWORD = "a-long-password-1"
ONSET = (date.today() - timedelta(days=10)).isoformat()
AUDIT_COLUMNS = ("action", "entity_type", "field", "old_value", "new_value", "role")


class Pages:
    """The API through ``Trial`` (S01 and S02 staff and monitors), and people signed in to
    the pages: a monitor of each site, a data manager, a coordinator of S01."""

    def __init__(self, app, trial: Trial, make_user):
        self.app, self.trial = app, trial
        self.users, self.clients = {}, {}
        for name, role, sites in (
            ("monitor", "monitor", ["S01"]),
            ("monitor2", "monitor", ["S02"]),
            ("dm", "data_manager", []),
            ("coordinator", "coordinator", ["S01"]),
        ):
            user, _ = make_user(role, sites=sites, username=f"page.{name}", password=PASSWORD)
            client = app.test_client()
            sign_in(client, user.username, PASSWORD)
            self.users[name], self.clients[name] = user, client

    def get(self, who, url):
        response = self.clients[who].get(url)
        db.session.rollback()
        return response

    def post(self, who, url, data, *, form_url=None):
        """Post ``data`` with the CSRF token of the page at ``form_url`` (or ``url``)."""
        page = self.get(who, form_url or url)
        assert page.status_code == 200, (form_url or url, page.status_code)
        token = CSRF.search(page.text).group(1)
        response = self.clients[who].post(url, data={**data, "csrf_token": token})
        db.session.rollback()
        return response


@pytest.fixture
def trial(client, make_site, make_user, make_participant) -> Trial:
    return Trial(client, make_site, make_user, make_participant)


@pytest.fixture
def pages(app, trial, make_user) -> Pages:
    return Pages(app, trial, make_user)


@pytest.fixture
def visit(trial):
    """A completed screening visit of S01 with one calendar day."""
    return trial.enrol(day0_ago=None)


def counts() -> tuple[int, int, int]:
    db.session.rollback()
    models = (AuditEvent, SourceVerification, DataQuery)
    return tuple(db.session.scalar(select(func.count()).select_from(m)) for m in models)


def last_event(action: str) -> AuditEvent:
    db.session.rollback()
    return db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq.desc())
    ).first()


def shape(event: AuditEvent) -> tuple:
    return tuple(getattr(event, column) for column in AUDIT_COLUMNS)


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# --- source data verification -------------------------------------------------------------


def test_a_monitor_marks_a_visit_verified_as_the_api_does(pages, trial, visit):
    url = f"/visits/{visit.screening_id}"
    shown = pages.get("monitor", url)
    assert "Not verified" in text_of(shown.text) and "Mark verified" in shown.text
    response = pages.post("monitor", f"{url}/verify", {"version": "1"}, form_url=url)
    assert response.status_code == 302, response.text[:500]
    by_page = last_event("source_verified")
    assert by_page.username == "page.monitor" and by_page.entity_site == "S01"
    # The API's mark of another visit leaves the same audit row.
    other = trial.enrol(day0_ago=None).screening_id
    assert trial.post(f"/visits/{other}/verify", {}, role="monitor").status_code == 201
    assert shape(last_event("source_verified")) == shape(by_page)
    page = text_of(pages.get("monitor", url).text)
    assert f"Verified by page.monitor on {date.today().isoformat()}" in page
    assert "Mark verified" not in page  # verified: no second mark offered
    # Site staff read the mark; they are offered no form.
    staff = text_of(pages.get("coordinator", url).text)
    assert "Verified by page.monitor" in staff and "Mark verified" not in staff


def test_a_correction_voids_the_mark_and_the_visit_page_shows_why(pages, trial, visit):
    url = f"/visits/{visit.screening_id}"
    assert pages.post("monitor", f"{url}/verify", {"version": "1"}, form_url=url).status_code == 302
    day = trial.get(url).json["drinking"][0]
    record_url = f"/records/drinking_day/{day['id']}/correct"
    corrected = pages.post(
        "coordinator", record_url, {"standard_drinks": "8", "reason": "diary re-read"}
    )
    assert corrected.status_code == 302, error_summary(corrected.text)
    page = text_of(pages.get("monitor", url).text)
    assert "Not verified" in page and "Voided marks" in page
    assert f"drinking_day {day['id']} changed after source verification" in page
    assert "Mark verified" in page  # it can be verified again
    event = last_event("source_verification_voided")
    assert (event.username, event.reason) == (
        "page.coordinator",
        f"drinking_day {day['id']} changed after source verification",
    )


def test_entered_in_error_through_the_page_voids_the_mark(pages, visit):
    url = f"/visits/{visit.screening_id}"
    assert pages.post("monitor", f"{url}/verify", {"version": "1"}, form_url=url).status_code == 302
    marked = pages.post(
        "coordinator", f"{url}/entered-in-error", {"reason": "wrong participant", "version": "1"}
    )
    assert marked.status_code == 302, error_summary(marked.text)
    db.session.rollback()
    (mark,) = db.session.scalars(select(SourceVerification)).all()
    assert mark.voided_at is not None and mark.void_reason.startswith("visit ")
    assert "Mark verified" not in pages.get("monitor", url).text  # nothing to verify now


def test_a_stale_or_repeated_mark_is_refused_and_nothing_written(pages, visit):
    url = f"/visits/{visit.screening_id}"
    before = counts()
    stale = pages.post("monitor", f"{url}/verify", {"version": "3"}, form_url=url)
    assert stale.status_code == 412
    assert any("version 3" in line for line in error_summary(stale.text))
    assert counts() == before
    assert pages.post("monitor", f"{url}/verify", {"version": "1"}, form_url=url).status_code == 302
    before = counts()
    again = pages.clients["monitor"].post(
        f"{url}/verify", data={"version": "1", "csrf_token": _token(pages, "monitor", url)}
    )
    db.session.rollback()
    assert again.status_code == 409 and "verified already" in again.text
    assert counts() == before


def _token(pages, who, url) -> str:
    return CSRF.search(pages.get(who, "/password").text).group(1)


def test_a_monitor_of_another_site_cannot_verify_or_see_the_visit(pages, visit):
    url = f"/visits/{visit.screening_id}"
    before = counts()
    token = _token(pages, "monitor2", url)
    response = pages.clients["monitor2"].post(f"{url}/verify", data={"csrf_token": token})
    db.session.rollback()
    assert response.status_code == 404
    assert pages.get("monitor2", url).status_code == 404
    assert counts() == before


def _progress_table(html: str) -> dict[str, tuple[int, int, int]]:
    table = re.search(r"<caption>Progress by site</caption>(.*?)</table>", html, re.S).group(1)
    rows = re.findall(
        r'<th scope="row">(S\d\d)</th><td class="numeric">(\d+)</td>'
        r'<td class="numeric">(\d+)</td><td class="numeric">(\d+)</td>',
        table,
    )
    return {site: tuple(int(n) for n in numbers) for site, *numbers in rows}


def test_progress_page_counts_per_site_against_a_hand_count(pages, trial):
    s01 = [trial.enrol(day0_ago=None).screening_id for _ in range(3)]
    s02 = trial.enrol(day0_ago=None, site="S02").screening_id
    url = f"/visits/{s01[0]}"
    assert pages.post("monitor", f"{url}/verify", {"version": "1"}, form_url=url).status_code == 302
    # By hand: S01 has three completed visits, one verified; S02 one, none verified.
    monitor = pages.get("monitor", "/verification")
    assert monitor.status_code == 200
    assert _progress_table(monitor.text) == {"S01": (3, 1, 2)}
    listed = set(map(int, re.findall(r'href="/visits/(\d+)#verification"', monitor.text)))
    assert listed == set(s01[1:])
    manager = pages.get("dm", "/verification")
    assert _progress_table(manager.text) == {"S01": (3, 1, 2), "S02": (1, 0, 1)}
    only_s02 = pages.get("dm", "/verification?site=S02")
    listed = set(map(int, re.findall(r'href="/visits/(\d+)#verification"', only_s02.text)))
    assert listed == {s02}


# --- data queries ------------------------------------------------------------------------


def test_a_monitor_raises_a_query_on_a_value_from_the_visit_page(pages, trial, visit):
    url = f"/visits/{visit.screening_id}"
    day = trial.get(url).json["drinking"][0]
    page = pages.get("monitor", url).text
    links = re.findall(r'href="(/queries/raise\?[^"]+)"', page)
    links = [x.replace("&amp;", "&") for x in links]
    assert f"/queries/raise?entity=visit&record_id={visit.screening_id}" in links
    link = next(x for x in links if "entity=drinking_day" in x)
    assert f"record_id={day['id']}" in link and "field=standard_drinks" in link
    form = pages.get("monitor", link)
    assert form.status_code == 200 and "selected>Standard drinks" in form.text
    data = {
        "entity": "drinking_day",
        "record_id": str(day["id"]),
        "field": "standard_drinks",
        "text": "The diary says 4; please check.",
    }
    raised = pages.post("monitor", "/queries/raise", data, form_url=link)
    assert raised.status_code == 302, error_summary(raised.text)
    db.session.rollback()
    query = db.session.scalars(select(DataQuery).where(DataQuery.origin == "manual")).one()
    assert (query.entity, query.record_id, query.field, query.status) == (
        "drinking_day", str(day["id"]), "standard_drinks", "open")  # fmt: skip
    by_page = last_event("raise")
    # The API's query leaves the same kind of audit row.
    api = trial.post("/queries", data, role="monitor")
    assert api.status_code == 201
    assert shape(last_event("raise")) == shape(by_page)
    # Site staff see it beside the value; the monitor's link follows to the query.
    assert "The diary says 4" in pages.get("coordinator", url).text


def test_raising_a_query_with_bad_input_names_every_field_and_writes_nothing(pages, visit):
    link = f"/queries/raise?entity=participant&record_id={visit.pid}&field=sex"
    assert pages.get("monitor", f"/participants/{visit.pid}").text.count("Raise a query") == 3
    before = counts()
    refused = pages.post(
        "monitor",
        "/queries/raise",
        {"entity": "participant", "record_id": visit.pid, "field": "kit_number", "text": " "},
        form_url=link,
    )
    assert refused.status_code == 422
    named = {line.split(":")[0] for line in error_summary(refused.text)}
    assert named == {"Field", "Question"}
    assert counts() == before
    other_site = pages.get("monitor2", link)
    assert other_site.status_code == 404


def test_close_and_reopen_an_answered_query_from_its_page(pages, trial, visit):
    raised = trial.post(
        "/queries",
        {"entity": "participant", "record_id": visit.pid, "field": "sex", "text": "Check sex"},
        role="monitor",
    ).json
    url = f"/queries/{raised['query_id']}"
    answer = trial.post(f"{url}/answer", {"text": "Checked: correct."})
    assert answer.status_code == 200, answer.json
    page = pages.get("monitor", url).text
    assert "Close query" in page and "Re-open query" in page
    before = counts()
    refused = pages.post("monitor", f"{url}/reopen", {"reopen_reason": ""}, form_url=url)
    assert refused.status_code == 422
    assert [line.split(":")[0] for line in error_summary(refused.text)] == ["Why re-open it"]
    assert counts() == before
    reopened = pages.post("monitor", f"{url}/reopen", {"reopen_reason": "Source says M"},
                          form_url=url)  # fmt: skip
    assert reopened.status_code == 302
    assert trial.get(url, role="monitor").json["status"] == "open"
    closed = pages.post("dm", f"{url}/close", {"remark": "Withdrawn"}, form_url=url)
    assert closed.status_code == 302
    shown = trial.get(url, role="monitor").json
    assert shown["status"] == "closed"
    assert [m["kind"] for m in shown["messages"]] == ["raise", "answer", "reopen", "close"]
    event = last_event("close")
    assert (event.username, event.entity_type, event.new_value) == (
        "page.dm", "query", '"Withdrawn"')  # fmt: skip
    twice = pages.post("dm", f"{url}/close", {}, form_url=url)
    assert twice.status_code == 409 and "already closed" in twice.text


def test_the_inbox_lists_by_site_oldest_first_with_a_site_filter(pages, trial):
    s01 = trial.enrol(day0_ago=None)
    s02 = trial.enrol(day0_ago=None, site="S02")
    for participant, site in ((s01, "S01"), (s02, "S02")):
        body = {"entity": "participant", "record_id": participant.pid, "text": f"At {site}"}
        assert trial.post("/queries", body, role="monitor", site=site).status_code == 201
    manager = pages.get("dm", "/queries").text
    assert "Queries by site" in manager
    assert manager.index("At S01") < manager.index("At S02")
    filtered = pages.get("dm", "/queries?site=S02").text
    assert "At S02" in filtered and "At S01" not in filtered
    monitor = pages.get("monitor", "/queries").text
    assert "At S01" in monitor and "At S02" not in monitor


# --- coding ------------------------------------------------------------------------------


def _adverse_event(trial, pid, term):
    body = {
        "term": term,
        "onset_date": ONSET,
        "grade": 1,
        "serious": False,
        "relatedness": "possible",
        "action_taken": "none",
        "outcome": "recovering",
    }
    response = trial.post(f"/participants/{pid}/adverse-events", body)
    assert response.status_code == 201, response.json
    return response.json


def test_a_data_manager_codes_an_uncoded_term_with_the_search(pages, trial, visit):
    ae = _adverse_event(trial, visit.pid, "heavy legs in the evening")
    assert ae["coding_source"] == "uncoded"
    listed = pages.get("dm", "/coding")
    assert "heavy legs in the evening" in listed.text
    url = f"/coding/{ae['id']}"
    search = pages.get("dm", f"{url}?q=somno")
    assert search.status_code == 200 and "Somnolence" in search.text
    chosen = pages.get("dm", f"{url}?q=somno&term=Somnolence")
    assert 'value="Somnolence"' in chosen.text
    coded = pages.post(
        "dm", url, {"preferred_term": "Somnolence", "reason": "Legs heavy with sleepiness",
                    "version": "1"}, form_url=url)  # fmt: skip
    assert coded.status_code == 302, error_summary(coded.text)
    shown = trial.get(f"/adverse-events/{ae['id']}").json
    assert (shown["preferred_term"], shown["system_organ_class"]) == (
        "Somnolence", "Nervous system disorders")  # fmt: skip
    db.session.rollback()
    rows = db.session.scalars(
        select(AuditEvent).where(
            AuditEvent.entity_type == "adverse_event",
            AuditEvent.entity_id == str(ae["id"]),
            AuditEvent.field == "preferred_term",
        )
    ).all()
    assert rows[-1].reason == "Legs heavy with sleepiness" and rows[-1].username == "page.dm"
    assert "heavy legs" not in pages.get("dm", "/coding").text


def test_recoding_needs_a_reason_and_a_known_term_all_named_at_once(pages, trial, visit):
    ae = _adverse_event(trial, visit.pid, "Somnolence")
    url = f"/coding/{ae['id']}"
    assert "Recode the term" in pages.get("dm", f"/adverse-events/{ae['id']}").text
    before = counts()
    db.session.rollback()
    version = db.session.get(AdverseEvent, ae["id"]).version
    refused = pages.post("dm", url, {"preferred_term": "Sleepy-ish", "reason": ""}, form_url=url)
    assert refused.status_code == 422
    named = {line.split(":")[0] for line in error_summary(refused.text)}
    assert named == {"Preferred term", "Reason"}
    assert counts() == before
    recoded = pages.post(
        "dm", url, {"preferred_term": "dizziness", "reason": "Site says dizzy, not sleepy"},
        form_url=url)  # fmt: skip
    assert recoded.status_code == 302, error_summary(recoded.text)
    shown = trial.get(f"/adverse-events/{ae['id']}").json
    assert shown["preferred_term"] == "Dizziness" and shown["version"] == version + 1
    assert shown["term"] == "Somnolence"  # the verbatim never changes
    opened = pages.get("dm", f"/coding?adverse_event={ae['id']}")
    assert opened.status_code == 302 and opened.location.endswith(url)


def test_monitors_cannot_code_and_site_staff_see_no_review_links(pages, trial, visit):
    ae = _adverse_event(trial, visit.pid, "Somnolence")
    assert pages.get("monitor", f"/coding/{ae['id']}").status_code == 403
    page = pages.get("coordinator", f"/adverse-events/{ae['id']}").text
    assert "Raise a query" not in page and "Recode the term" not in page
    assert "Raise a query" in pages.get("monitor", f"/adverse-events/{ae['id']}").text


def test_a_query_on_a_record_named_by_hand(pages, visit):
    chooser = pages.get("monitor", "/queries")
    assert 'href="/queries/raise"' in chooser.text
    assert pages.get("monitor", "/queries/raise").status_code == 200
    missing = pages.get("monitor", "/queries/raise?entity=participant&record_id=")
    assert missing.status_code == 422
    assert [line.split(":")[0] for line in error_summary(missing.text)] == ["Record"]
    found = pages.get("monitor", f"/queries/raise?entity=participant&record_id={visit.pid}")
    assert found.status_code == 200 and "Year of birth" in found.text
    assert pages.get("monitor", "/queries/raise?entity=visit&record_id=999").status_code == 404


def test_the_visits_left_are_read_one_page_at_a_time(pages, trial, monkeypatch):
    from trial.verification import pages as verification_pages

    monkeypatch.setattr(verification_pages, "PAGE_SIZE", 2)
    made = {trial.enrol(day0_ago=None).screening_id for _ in range(3)}
    first = pages.get("monitor", "/verification")
    second = pages.get("monitor", "/verification?page=2")
    on = [set(map(int, re.findall(r'href="/visits/(\d+)#verification"', p.text)))
          for p in (first, second)]  # fmt: skip
    assert [len(ids) for ids in on] == [2, 1] and on[0] | on[1] == made
    assert "page 1 of 2" in first.text and "Next page" in first.text
