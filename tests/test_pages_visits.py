"""The visit pages and the generic correction pages (issue 24), through Flask's test client.

A visit recorded through its page must be the visit the API stores for the same data; the
form holds exactly the protocol's forms for the visit; a bad form is refused whole with
every bad field named and nothing written; corrections, entered-in-error marks and
signatures through the pages are audited as the API's are. Both backends.
"""

from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from sqlalchemy import func, select

from tests.capture_helpers import (
    PASSWORD as INVESTIGATOR_PASSWORD,
)
from tests.capture_helpers import (
    PROTOCOL,
    Trial,
    calendar,
    ciwa,
    counts,
    iso,
    lab,
    ocds,
    today,
    vitals,
)
from tests.page_helpers import error_summary, post_form, sign_in
from trial.audit.models import AuditEvent
from trial.extensions import db

PASSWORD = "a-long-password-1"
D = timedelta(days=1)
VOLATILE = {"id", "participant_id", "visit_id", "created_at", "updated_at", "signed_at"}


class _Form(HTMLParser):
    """The values a browser would post from a page's forms (inputs, selects, textareas)."""

    def __init__(self):
        super().__init__()
        self.values: dict[str, str] = {}
        self._select = self._textarea = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("name") and a.get("type") == "radio":
            if "checked" in a:  # a browser posts the chosen answer alone
                self.values[a["name"]] = a.get("value") or ""
        elif tag == "input" and a.get("name") and a.get("type") not in ("checkbox", "submit"):
            self.values[a["name"]] = a.get("value") or ""
        elif tag == "select":
            self._select = a.get("name")
        elif tag == "option" and self._select and "selected" in a:
            self.values[self._select] = a.get("value") or ""
        elif tag == "textarea":
            self._textarea = a.get("name")
            self.values[self._textarea] = ""

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data):
        if self._textarea:
            self.values[self._textarea] += data


def form_values(html: str) -> dict[str, str]:
    parser = _Form()
    parser.feed(html)
    parser.values.pop("csrf_token", None)
    return parser.values


def strip(value):
    """A visit's answer without what differs between two equal visits (ids, times)."""
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def audit_rows() -> int:
    return db.session.scalar(select(func.count()).select_from(AuditEvent))


def audit_of(entity: str, entity_id, action: str | None = None) -> list[AuditEvent]:
    statement = select(AuditEvent).where(
        AuditEvent.entity_type == entity, AuditEvent.entity_id == str(entity_id)
    )
    if action:
        statement = statement.where(AuditEvent.action == action)
    return list(db.session.scalars(statement.order_by(AuditEvent.seq)))


@pytest.fixture
def trial(client, make_site, make_user, make_participant) -> Trial:
    return Trial(client, make_site, make_user, make_participant)


@pytest.fixture
def page(app, trial, make_user):
    """A browser signed in as a coordinator of S01 (the Trial's own API client apart)."""
    make_user("coordinator", sites=["S01"], username="carla", password=PASSWORD)
    browser = app.test_client()
    sign_in(browser, "carla", PASSWORD)
    return browser


@pytest.fixture
def investigator_page(app, trial):
    browser = app.test_client()
    sign_in(browser, trial.investigator_user["S01"].username, INVESTIGATOR_PASSWORD)
    return browser


def visit_form(page, pid, code) -> tuple[str, dict[str, str]]:
    """The new-visit page of ``code`` and the values it shows."""
    url = f"/participants/{pid}/visits/new?visit_code={code}"
    shown = page.get(url)
    assert shown.status_code == 200, shown.text[:800]
    return url, form_values(shown.text)


def fill(shown: dict[str, str], body: dict) -> dict[str, str]:
    """The form as a person fills it: the API body's values typed into the inputs shown,
    each calendar day on its row."""
    data = dict(shown)
    data["visit_date"] = body["visit_date"]
    by_day = {row["date"]: row["standard_drinks"] for row in body.get("drinking", [])}
    for key, value in shown.items():
        m = re.fullmatch(r"drinking\.(\d+)\.date", key)
        if m and value in by_day:
            data[f"drinking.{m.group(1)}.standard_drinks"] = str(by_day.pop(value))
    assert not by_day, f"days not shown on the form: {sorted(by_day)}"
    for form in ("ocds", "ciwa", "vitals"):
        for item, value in (body.get(form) or {}).items():
            assert f"{form}.{item}" in shown, (form, item)
            data[f"{form}.{item}"] = str(value)
    for entry in body.get("labs", []):
        (index,) = [
            k.split(".")[1] for k, v in shown.items() if k.endswith(".test") and v == entry["test"]
        ]
        for key in ("value", "unit", "upper_limit_normal"):
            data[f"labs.{index}.{key}"] = str(entry[key])
    return data


def api_visit(trial, visit_id) -> dict:
    response = trial.get(f"/visits/{visit_id}")
    assert response.status_code == 200, response.json
    return response.json


def test_screening_visit_through_the_page_is_the_visit_the_api_stores(trial, page):
    consent = iso(today() - 20 * D)
    by_page = trial.make_participant(consent_date=consent)["participant_id"]
    by_api = trial.make_participant(consent_date=consent)["participant_id"]
    on = today() - D
    body = {
        "visit_code": "screening",
        "visit_date": iso(on),
        "drinking": calendar(on - 28 * D, on - D, drinks=3.5),
        "ocds": ocds([0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2, 3]),
        "ciwa": ciwa({"tremor": 3, "orientation": 4, "headache": 7}),
        "vitals": vitals(),
        "labs": [lab("GGT", 80.0), lab("ALT", 30.5), lab("CDT", 2.1, upper_limit_normal=1.7)],
    }
    url, shown = visit_form(page, by_page, "screening")
    # Shown for a visit done today; the calendar follows the date typed.
    moved = post_form(page, url, {**shown, "visit_date": iso(on), "action": "calendar"})
    assert moved.status_code == 200, error_summary(moved.text)
    shown = form_values(moved.text)
    before = audit_rows()
    saved = post_form(page, url, fill(shown, body), form_url=url)
    assert saved.status_code == 302, error_summary(saved.text)
    visit_id = int(saved.headers["Location"].rsplit("/", 1)[1])
    written = audit_rows() - before

    before = audit_rows()
    answer = trial.post(f"/participants/{by_api}/visits", body)
    assert answer.status_code == 201, answer.json
    assert audit_rows() - before == written  # the same audit rows, field by field
    assert strip(api_visit(trial, visit_id)) == strip(api_visit(trial, answer.json["id"]))
    stored = api_visit(trial, visit_id)
    assert len(stored["drinking"]) == 28 and stored["missing_forms"] == []

    shown = page.get(f"/visits/{visit_id}")
    assert shown.status_code == 200
    assert "Carbohydrate-deficient transferrin (%CDT)" in shown.text


def test_week_1_visit_through_the_page_is_the_visit_the_api_stores(trial, page):
    a = trial.enrol(day0_ago=7)
    b = trial.enrol(day0_ago=7)
    url, shown = visit_form(page, a.pid, "titration_w1")
    days = sorted(v for k, v in shown.items() if k.endswith(".date"))
    assert days[0] == iso(a.screening_date) and days[-1] == iso(today() - D)
    body = {
        "visit_code": "titration_w1",
        "visit_date": iso(today()),
        "drinking": [{"date": day, "standard_drinks": float(n % 4)} for n, day in enumerate(days)],
        "ciwa": ciwa(2),
        "vitals": vitals(weight_kg=None) | {"weight_kg": 80.25},
    }
    saved = post_form(page, url, fill(shown, body))
    assert saved.status_code == 302, error_summary(saved.text)
    visit_id = int(saved.headers["Location"].rsplit("/", 1)[1])
    answer = trial.post(f"/participants/{b.pid}/visits", body)
    assert answer.status_code == 201, answer.json
    assert strip(api_visit(trial, visit_id)) == strip(api_visit(trial, answer.json["id"]))


FORM_MARKERS = {
    "drinking": 'name="drinking.0.standard_drinks"',
    "ocds": 'name="ocds.item_14"',
    "ciwa": 'name="ciwa.orientation"',
    "vitals": 'name="vitals.systolic_bp"',
    "labs": 'name="labs.0.upper_limit_normal"',
    "blinding": 'name="blinding.0.answer"',
}


def test_the_form_holds_exactly_the_protocols_forms_for_each_visit(trial, page):
    p = trial.enrol(day0_ago=3)
    for definition in PROTOCOL["visits"]:
        if definition["code"] == "screening":
            continue  # recorded already: its page sends to the visit
        _, _ = visit_form(page, p.pid, definition["code"])
        html = page.get(f"/participants/{p.pid}/visits/new?visit_code={definition['code']}").text
        for form, marker in FORM_MARKERS.items():
            assert (marker in html) == (form in definition["forms"]), (definition["code"], form)
    fresh = trial.make_participant(consent_date=iso(today() - 10 * D))["participant_id"]
    html = page.get(f"/participants/{fresh}/visits/new?visit_code=screening").text
    (screening,) = [v for v in PROTOCOL["visits"] if v["code"] == "screening"]
    for form, marker in FORM_MARKERS.items():
        assert (marker in html) == (form in screening["forms"]), form
    rows = re.findall(r'name="drinking\.(\d+)\.date" value="([0-9-]+)"', html)
    assert [day for _, day in rows] == [iso(today() - n * D) for n in range(28, 0, -1)]
    first = today() - 28 * D
    label = f"Standard drinks on {first:%a} {first.day} {first:%b %Y}"
    assert (
        f'<label class="visually-hidden" for="drinking-0-standard_drinks">{label}</label>' in html
    )
    assert "For example, 2026-11-02" in html
    for wording in (
        "Nausea and vomiting (0 to 7)",
        "Orientation and clouding of sensorium (0 to 4)",
    ):
        assert wording in html
    assert "1. Time taken up by thoughts" in html and "(0 to 4)" in html
    assert "Systolic blood pressure (mmHg)" in html and "GGT upper limit of normal" in html
    # Without a visit code: the visits not yet recorded.
    choose = page.get(f"/participants/{p.pid}/visits/new").text
    assert "visit_code=baseline" in choose and "visit_code=screening" not in choose


def test_a_bad_form_is_refused_whole_naming_every_field_and_writes_nothing(trial, page):
    pid = trial.make_participant(consent_date=iso(today() - 20 * D))["participant_id"]
    url, shown = visit_form(page, pid, "screening")
    data = {
        **shown,
        "drinking.5.standard_drinks": "99",  # rows 0-4 left blank: the error stays on row 5
        "drinking.6.standard_drinks": "lots",
        **{f"ocds.item_{n}": "1" for n in range(1, 15)},
        "ocds.item_3": "9",
        **{f"ciwa.{k}": "0" for k in ciwa(0)},
        "ciwa.orientation": "5",
        "vitals.systolic_bp": "120",
        "vitals.diastolic_bp": "130",
        "vitals.heart_rate": "70",
        "labs.1.value": "40",
        "labs.1.upper_limit_normal": "45",  # ALT without its unit
    }
    before, audit_before = counts(), audit_rows()
    refused = post_form(page, url, data)
    assert refused.status_code == 422
    summary = error_summary(refused.text)
    text = " | ".join(summary)
    sixth = today() - 28 * D + 5 * D
    for expected in (
        f"Standard drinks on {sixth:%a} {sixth.day} {sixth:%b %Y}",
        "Standard drinks on",
        "OCDS item 3",
        "CIWA-Ar: Orientation",
        "Diastolic blood pressure",
        "ALT unit",
    ):
        assert expected in text, (expected, summary)
    assert len(summary) >= 6
    assert 'id="drinking-5-standard_drinks" name="drinking.5.standard_drinks"' in refused.text
    assert re.search(
        r'id="drinking-5-standard_drinks"[^>]*value="99"[^>]*aria-invalid', refused.text
    )
    assert 'value="9"' in refused.text  # the values typed are kept
    assert 'role="alert"' in refused.text
    assert counts() == before and audit_rows() == audit_before


def test_a_correction_through_the_records_page_is_audited_with_its_reason(trial, page):
    p = trial.enrol(day0_ago=7)
    body = {
        "visit_code": "titration_w1",
        "visit_date": iso(today()),
        "drinking": [{"date": iso(today() - D), "standard_drinks": 2.0}],
        "ciwa": ciwa(1),
        "vitals": vitals(),
    }
    visit = trial.post(f"/participants/{p.pid}/visits", body).json
    day_id = visit["drinking"][0]["id"]
    url = f"/records/drinking_day/{day_id}/correct"
    shown = form_values(page.get(url).text)
    assert shown["standard_drinks"] == "2" and shown["date"] == iso(today() - D)
    assert shown["version"] == "1"
    # No reason: refused, nothing written.
    before = audit_rows()
    refused = post_form(page, url, {**shown, "standard_drinks": "5"})
    assert refused.status_code == 422
    assert any(line.startswith("Reason for the change") for line in error_summary(refused.text))
    assert audit_rows() == before
    saved = post_form(page, url, {**shown, "standard_drinks": "5", "reason": "Diary re-read"})
    assert saved.status_code == 302, error_summary(saved.text)
    assert saved.headers["Location"] == f"/visits/{visit['id']}"
    (row,) = audit_of("drinking_day", day_id, "update")
    assert (row.field, row.old_value, row.new_value, row.reason) == (
        "standard_drinks",
        "2.0",
        "5.0",
        "Diary re-read",
    )
    assert api_visit(trial, visit["id"])["drinking"][0]["standard_drinks"] == 5.0
    # The form read at version 1 is stale now: refused with 412, nothing written.
    before = audit_rows()
    stale = post_form(page, url, {**shown, "standard_drinks": "6", "reason": "Again"})
    assert stale.status_code == 412
    assert "changed since version 1" in stale.text
    assert audit_rows() == before


def test_records_entered_in_error_and_the_visits_own_pages(trial, page):
    p = trial.enrol(day0_ago=7)
    body = {"visit_code": "titration_w1", "visit_date": iso(today()), "vitals": vitals()}
    visit = trial.post(f"/participants/{p.pid}/visits", body).json
    vitals_id = visit["vitals"]["id"]
    url = f"/records/vitals/{vitals_id}/entered-in-error"
    shown = form_values(page.get(url).text)
    missing = post_form(page, url, shown)
    assert missing.status_code == 422 and audit_of("vitals", vitals_id, "entered_in_error") == []
    marked = post_form(page, url, {**shown, "reason": "Wrong participant's sheet"})
    assert marked.status_code == 302
    (row,) = audit_of("vitals", vitals_id, "entered_in_error")
    assert row.reason == "Wrong participant's sheet"
    assert api_visit(trial, visit["id"])["vitals"] is None
    assert page.get(url).status_code == 409  # a record marked in error changes no more
    # The visit's own correction, then its mark.
    fix_url = f"/visits/{visit['id']}/correct"
    shown = form_values(page.get(fix_url).text)
    fixed = post_form(
        page, fix_url, {**shown, "visit_date": iso(today() - D), "reason": "Date misread"}
    )
    assert fixed.status_code == 302, error_summary(fixed.text)
    (row,) = audit_of("visit", visit["id"], "update")
    assert (row.field, row.reason) == ("visit_date", "Date misread")
    assert page.get(f"/records/visit/{visit['id']}/correct").headers["Location"] == fix_url
    gone_url = f"/visits/{visit['id']}/entered-in-error"
    gone = post_form(page, gone_url, {**form_values(page.get(gone_url).text), "reason": "Dup"})
    assert gone.status_code == 302
    assert trial.get(f"/visits/{visit['id']}").json["entered_in_error"] is True
    # Unknown record types and other sites' records are pages not found.
    assert page.get("/records/arm/1/correct").status_code == 404
    other = trial.enrol(site="S02", day0_ago=7)
    other_visit = trial.post(f"/participants/{other.pid}/visits", body, site="S02").json
    assert page.get(f"/visits/{other_visit['id']}").status_code == 404
    assert page.get(f"/records/vitals/{other_visit['vitals']['id']}/correct").status_code == 404
    assert (
        page.get(f"/participants/{other.pid}/visits/new?visit_code=titration_w1").status_code == 404
    )


def test_signing_needs_the_password_and_a_wrong_one_is_kept_on_record(
    trial, page, investigator_page
):
    p = trial.enrol(day0_ago=7)
    assert page.get("/signatures").status_code == 403  # coordinators do not sign
    listed = investigator_page.get("/signatures")
    assert listed.status_code == 200 and f"/visits/{p.screening_id}" in listed.text
    assert "reviewed and approved" in listed.text
    url = f"/visits/{p.screening_id}/sign"
    form_url = f"/visits/{p.screening_id}"
    wrong = post_form(investigator_page, url, {"password": "not-it"}, form_url=form_url)
    assert wrong.status_code == 403
    assert error_summary(wrong.text)
    db.session.rollback()
    assert len(audit_of("visit", p.screening_id, "sign_refused")) == 1
    assert trial.get(f"/visits/{p.screening_id}").json["signature_status"] != "signed"
    signed = post_form(
        investigator_page, url, {"password": INVESTIGATOR_PASSWORD}, form_url=form_url
    )
    assert signed.status_code == 302
    shown = trial.get(f"/visits/{p.screening_id}").json
    assert shown["signature_status"] == "signed"
    assert shown["signature_meaning"] == "reviewed and approved"


def test_unusual_values_are_saved_and_shown_beside_their_field(trial, page):
    p = trial.enrol(day0_ago=7)
    url, shown = visit_form(page, p.pid, "titration_w1")
    assert shown["visit_date"] == iso(today())  # the target date, today
    days = sorted(v for k, v in shown.items() if k.endswith(".date"))
    body = {
        "visit_code": "titration_w1",
        "visit_date": iso(today()),
        "drinking": [
            {"date": day, "standard_drinks": 35 if n == 2 else 1} for n, day in enumerate(days)
        ],
        "ciwa": ciwa(0),
        "vitals": vitals(),
    }
    saved = post_form(page, url, fill(shown, body))
    assert saved.status_code == 302, error_summary(saved.text)
    visit_page = page.get(saved.headers["Location"]).text
    assert "The visit is saved." in visit_page
    row = re.search(
        r"<tr><th scope=\"row\">[^<]*</th><td class=\"numeric\">35</td>(.*?)</tr>", visit_page, re.S
    )
    assert row and "<strong>Warning" in row.group(1), visit_page[:3000]
    assert "35 standard drinks" in row.group(1)
    assert "1 value saved but unusual" in visit_page
    others = visit_page.replace(row.group(0), "")
    assert "<strong>Warning" not in others  # only beside the unusual day
    assert (
        api_visit(trial, int(saved.headers["Location"].rsplit("/", 1)[1]))["drinking"][2][
            "standard_drinks"
        ]
        == 35
    )


def test_every_record_type_with_generic_operations_has_its_pages(trial, page):
    from trial.records.pages import RECORD_PAGES
    from trial.records.registry import REVALIDATIONS

    assert set(RECORD_PAGES) == set(REVALIDATIONS)
    p = trial.enrol(day0_ago=7)
    dose = trial.post(
        f"/participants/{p.pid}/dosing", {"date": iso(today() - 6 * D), "tablets_per_day": 3}
    )
    assert dose.status_code == 201, dose.json
    url = f"/records/dosing/{dose.json['id']}/correct"
    shown = form_values(page.get(url).text)
    assert shown["tablets_per_day"] == "3" and shown["date"] == iso(today() - 6 * D)
    saved = post_form(
        page, url, {**shown, "tablets_per_day": "4", "reason": "Prescription re-read"}
    )
    assert saved.status_code == 302, error_summary(saved.text)
    assert saved.headers["Location"] == f"/participants/{p.pid}"
    (row,) = audit_of("dosing", dose.json["id"], "update")
    assert (row.field, row.old_value, row.new_value) == ("tablets_per_day", "3", "4")
    criteria = trial.get(f"/participants/{p.pid}/eligibility").json["criteria"]
    answer = next(c for c in criteria if c["code"] == "E3")
    url = f"/records/eligibility_answer/{answer['record_id']}/correct"
    shown = form_values(page.get(url).text)
    assert shown["met"] == "false"
    saved = post_form(page, url, {**shown, "met": "true", "reason": "Pregnancy test positive"})
    assert saved.status_code == 302, error_summary(saved.text)
    (row,) = audit_of("eligibility_answer", answer["record_id"], "update")
    assert (row.field, row.old_value, row.new_value) == ("met", "false", "true")


def test_who_may_open_what(trial, page, app, make_user):
    p = trial.enrol(day0_ago=7)
    url = f"/visits/{p.screening_id}"
    # A visit already recorded is corrected from its own page, not entered twice.
    again = page.get(f"/participants/{p.pid}/visits/new?visit_code=screening")
    assert again.status_code == 302 and again.headers["Location"] == url
    assert page.get(f"/participants/{p.pid}/visits/new?visit_code=week_99").status_code == 404
    shown = page.get(url).text
    assert "Mark this visit entered in error" in shown and "Sign visit" not in shown
    before = audit_rows()
    refused = post_form(page, f"{url}/sign", {"password": PASSWORD}, form_url=f"{url}/correct")
    assert refused.status_code == 403 and audit_rows() == before  # coordinators never sign
    make_user("monitor", sites=["S01"], username="mona", password=PASSWORD)
    monitor = app.test_client()
    sign_in(monitor, "mona", PASSWORD)
    read = monitor.get(url)
    assert read.status_code == 200
    assert "/correct" not in read.text and "entered-in-error" not in read.text
    day_id = api_visit(trial, p.screening_id)["drinking"][0]["id"]
    assert monitor.get(f"/records/drinking_day/{day_id}/correct").status_code == 403
    assert monitor.get(f"/participants/{p.pid}/visits/new").status_code == 403
    assert monitor.get("/signatures").status_code == 403


def test_a_value_emptied_on_a_correction_page_is_cleared_and_audited(trial, page):
    p = trial.enrol(day0_ago=7)
    body = {
        "visit_code": "titration_w1",
        "visit_date": iso(today()),
        "drinking": [{"date": iso(today() - D), "standard_drinks": 2.0}],
        "ciwa": ciwa(1),
        "vitals": vitals(weight_kg=None) | {"weight_kg": 80.5},
    }
    visit = trial.post(f"/participants/{p.pid}/visits", body).json
    vitals_id = visit["vitals"]["id"]
    url = f"/records/vitals/{vitals_id}/correct"
    shown = form_values(page.get(url).text)
    assert shown["weight_kg"] == "80.5"
    saved = post_form(page, url, {**shown, "weight_kg": "", "reason": "Scale was broken"})
    assert saved.status_code == 302, error_summary(saved.text)
    (row,) = audit_of("vitals", vitals_id, "update")
    assert (row.field, row.old_value, row.new_value) == ("weight_kg", "80.5", None)
    assert api_visit(trial, visit["id"])["vitals"]["weight_kg"] is None
    # A required value emptied is refused, not cleared.
    shown = form_values(page.get(url).text)
    refused = post_form(page, url, {**shown, "heart_rate": "", "reason": "Typo"})
    assert refused.status_code == 422
    assert any("heart" in line.lower() for line in error_summary(refused.text)), error_summary(
        refused.text
    )


# --- the blinding assessment ----------------------------------------------------------


def test_guesses_through_the_page_are_the_guesses_the_api_stores(trial, page):
    a = trial.enrol(day0_ago=84)
    b = trial.enrol(day0_ago=84)
    url, shown = visit_form(page, a.pid, "week_12")
    html = page.get(url).text
    # Both questions, each with the questionnaire's five answers in Bang's order.
    assert "which treatment do you think you are taking?" in html
    assert "which treatment do you think the participant is taking?" in html
    answers = re.findall(r'name="blinding\.0\.answer" value="([^"]+)"', html)
    assert answers == [
        "baclofen|strongly",
        "baclofen|somewhat",
        "dont_know",
        "placebo|somewhat",
        "placebo|strongly",
    ]
    assert "Strongly believe baclofen" in html and "Don&#39;t know" in html
    body = {
        "visit_code": "week_12",
        "visit_date": iso(today()),
        "blinding": [
            {"respondent": "investigator", "guess": "dont_know", "confidence": None},
            {"respondent": "participant", "guess": "placebo", "confidence": "somewhat"},
        ],
    }
    filled = {
        **shown,
        "visit_date": iso(today()),
        "blinding.0.answer": "placebo|somewhat",
        "blinding.1.answer": "dont_know",
    }
    before = audit_rows()
    saved = post_form(page, url, filled)
    assert saved.status_code == 302, error_summary(saved.text)
    visit_id = int(saved.headers["Location"].rsplit("/", 1)[1])
    written = audit_rows() - before
    before = audit_rows()
    answer = trial.post(f"/participants/{b.pid}/visits", body)
    assert answer.status_code == 201, answer.json
    assert audit_rows() - before == written
    by_page, by_api = api_visit(trial, visit_id), api_visit(trial, answer.json["id"])
    assert strip(by_page) == strip(by_api)
    assert [(g["respondent"], g["guess"]) for g in by_page["blinding"]] == [
        ("participant", "placebo"),
        ("investigator", "dont_know"),
    ]
    shown = page.get(f"/visits/{visit_id}").text
    assert "Somewhat believes placebo" in shown and "Don&#39;t know" in shown


def test_an_unanswered_question_is_not_sent_and_a_forged_answer_is_refused(trial, page):
    p = trial.enrol(day0_ago=84)
    url, shown = visit_form(page, p.pid, "week_12")
    before = counts()
    forged = post_form(
        page,
        url,
        {**shown, "visit_date": iso(today()), "blinding.1.answer": "aspirin|very"},
    )
    assert forged.status_code == 422
    summary = error_summary(forged.text)
    assert any(line.startswith("Investigator&#39;s guess") for line in summary), summary
    assert 'id="blinding-1-answer-error"' in forged.text
    assert counts() == before
    # Only the participant answered: saved, the investigator's guess not sent.
    saved = post_form(
        page, url, {**shown, "visit_date": iso(today()), "blinding.0.answer": "baclofen|strongly"}
    )
    assert saved.status_code == 302, error_summary(saved.text)
    visit = api_visit(trial, int(saved.headers["Location"].rsplit("/", 1)[1]))
    assert [(g["respondent"], g["guess"], g["confidence"]) for g in visit["blinding"]] == [
        ("participant", "baclofen", "strongly")
    ]


def test_a_guess_is_corrected_on_its_page_with_none_for_the_confidence(trial, page):
    p = trial.enrol(day0_ago=84)
    body = {
        "visit_code": "week_12",
        "visit_date": iso(today()),
        "blinding": [{"respondent": "participant", "guess": "baclofen", "confidence": "somewhat"}],
    }
    visit = trial.post(f"/participants/{p.pid}/visits", body).json
    (guess,) = visit["blinding"]
    url = f"/records/blinding_assessment/{guess['id']}/correct"
    html = page.get(url).text
    assert '<option value="dont_know">don&#39;t know</option>' in html
    shown = form_values(html)
    assert (shown["guess"], shown["confidence"]) == ("baclofen", "somewhat")
    saved = post_form(
        page, url, {**shown, "guess": "dont_know", "confidence": "", "reason": "Misheard"}
    )
    assert saved.status_code == 302, error_summary(saved.text)
    fields = {
        row.field: row.new_value for row in audit_of("blinding_assessment", guess["id"], "update")
    }
    assert fields == {"guess": '"dont_know"', "confidence": None}
