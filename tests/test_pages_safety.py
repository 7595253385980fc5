"""The adverse-event, study-drug and query pages, driven as a browser would (issue 24).

A page must store and audit exactly what the matching JSON endpoint stores and audits, refuse
what it refuses (every field at once, nothing written), keep the API's roles and sites, and
carry the labels outside checks find the adverse-event form by.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from tests.conftest import bearer, make_ready_for_randomization
from tests.page_helpers import csrf_token, error_summary, post_form, sign_in
from trial.audit.models import AuditEvent
from trial.dosing.models import DosingRecord
from trial.extensions import db
from trial.queries.models import DataQuery
from trial.safety.models import AdverseEvent, ExpeditedReport

PASSWORD = "a-long-password-1"
TODAY = date.today()
ONSET = (TODAY - timedelta(days=10)).isoformat()
AWARE = (TODAY - timedelta(days=9)).isoformat()
CONTRACT_LABELS = (
    "Term",
    "Onset date",
    "Grade",
    "Serious",
    "Relatedness",
    "Action taken",
    "Outcome",
)
FORM_ORDER = [
    "Term", "Onset date", "End date", "Grade", "Serious", "Seriousness criteria",
    "Date the site became aware", "Relatedness", "Action taken", "Outcome",
]  # fmt: skip
VOLATILE = {"id", "created_at", "updated_at"}
AUDIT_COLUMNS = ("action", "field", "old_value", "new_value", "reason", "username", "role")


class Site:
    """A participant at S01 (and one at S02), a coordinator signed in to the pages whose
    token drives the API, and other users on demand."""

    def __init__(self, client, make_user, make_participant):
        self.client, self.make_user = client, make_user
        self.user, self.token = make_user("coordinator", password=PASSWORD)
        self.pid = make_participant(site="S01")["participant_id"]
        self.other_pid = make_participant(site="S02")["participant_id"]
        sign_in(client, self.user.username, PASSWORD)

    def api(self, method, path, token=None, **kwargs):
        call = getattr(self.client, method)
        return call(f"/api/v1{path}", headers=bearer(token or self.token), **kwargs)

    def new_ae_url(self, pid=None):
        return f"/participants/{pid or self.pid}/adverse-events/new"


@pytest.fixture
def site(client, make_user, make_participant) -> Site:
    return Site(client, make_user, make_participant)


def counts() -> tuple[int, ...]:
    db.session.rollback()  # what was committed, not what a failed request left pending
    models = (AdverseEvent, AuditEvent, ExpeditedReport, DosingRecord, DataQuery)
    return tuple(db.session.scalar(select(func.count()).select_from(m)) for m in models)


def audit_of(entity: str, entity_id) -> list[tuple]:
    db.session.rollback()
    rows = db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.entity_type == entity, AuditEvent.entity_id == str(entity_id))
        .order_by(AuditEvent.seq)
    )
    return [tuple(getattr(row, c) for c in AUDIT_COLUMNS) for row in rows]


def serious_form(**overrides) -> dict:
    """The AE form as a browser posts it: the checkbox after its hidden "false", the
    criteria with their presence marker, blank inputs sent blank."""
    form = {
        "term": "Somnolence",
        "onset_date": ONSET,
        "end_date": "",
        "grade": "3",
        "serious": ["false", "true"],
        "seriousness_criteria.present": "1",
        "seriousness_criteria": ["hospitalisation"],
        "awareness_date": AWARE,
        "relatedness": "possible",
        "action_taken": "dose_reduced",
        "outcome": "recovering",
    }
    form.update(overrides)
    return form


SERIOUS_JSON = {
    "term": "Somnolence",
    "onset_date": ONSET,
    "grade": 3,
    "serious": True,
    "seriousness_criteria": ["hospitalisation"],
    "awareness_date": AWARE,
    "relatedness": "possible",
    "action_taken": "dose_reduced",
    "outcome": "recovering",
}


# --- the adverse-event form ---------------------------------------------------------------


def test_the_ae_form_has_the_contract_labels_and_the_enhancements(site):
    page = site.client.get(site.new_ae_url())
    assert page.status_code == 200
    html = page.text
    for label in CONTRACT_LABELS:
        found = re.search(rf'<label[^>]*for="([^"]+)"[^>]*>\s*{label}\s*</label>', html)
        assert found, label
        assert re.search(rf'<(input|select)[^>]*id="{found.group(1)}"', html), label
    assert re.search(r'<button[^>]*type="submit"[^>]*>\s*Save\s*</button>', html)
    assert 'list="term-suggestions"' in html and '<datalist id="term-suggestions">' in html
    assert 'data-suggest="/meddra/suggestions"' in html
    assert html.count("For example, 2026-11-02") >= 2  # onset and end dates
    assert re.search(r'type="checkbox" value="true"[^>]*aria-controls="seriousness-criteria"', html)
    assert 'id="seriousness-criteria"' in html and "Only if serious" in html
    grades = re.findall(r'<option value="(\d)"[^>]*>\1 – ', html)
    assert grades == ["1", "2", "3", "4", "5"]
    for value in ("not_related", "definite", "drug_withdrawn", "recovered_with_sequelae"):
        assert f'value="{value}"' in html


def test_an_ae_reported_through_the_page_is_stored_and_audited_as_through_the_api(site):
    before = counts()
    response = post_form(site.client, site.new_ae_url(), serious_form())
    assert response.status_code == 302, error_summary(response.text)
    ae_id = int(response.headers["Location"].rsplit("/", 1)[1])
    shown = site.client.get(response.headers["Location"])
    assert "coded as Somnolence (Nervous system disorders)" in shown.text
    assert "Expedited report" in shown.text and "Correct this adverse event" in shown.text
    from_api = site.api("post", f"/participants/{site.pid}/adverse-events", json=SERIOUS_JSON)
    assert from_api.status_code == 201, from_api.json
    assert counts()[:3] == (before[0] + 2, *counts()[1:3])

    listed = {
        ae["id"]: ae for ae in site.api("get", f"/participants/{site.pid}/adverse-events").json
    }
    page_ae, api_ae = listed[ae_id], listed[from_api.json["id"]]
    assert {k: v for k, v in page_ae.items() if k not in VOLATILE} == {
        k: v for k, v in api_ae.items() if k not in VOLATILE
    }
    assert page_ae["preferred_term"] == "Somnolence" and page_ae["serious"] is True
    page_audit, api_audit = (
        audit_of("adverse_event", ae_id),
        audit_of("adverse_event", api_ae["id"]),
    )
    assert page_audit and page_audit == api_audit
    reports = db.session.scalars(select(ExpeditedReport).order_by(ExpeditedReport.id)).all()
    assert [r.adverse_event_id for r in reports] == [ae_id, api_ae["id"]]
    assert len(audit_of("expedited_report", reports[0].id)) == len(
        audit_of("expedited_report", reports[1].id)
    )


def test_an_uncoded_term_is_saved_and_said_to_be_uncoded(site):
    form = serious_form(term="Zzyzx feeling", serious="false", seriousness_criteria=[])
    form["awareness_date"] = ""
    response = post_form(site.client, site.new_ae_url(), form)
    assert response.status_code == 302, error_summary(response.text)
    shown = site.client.get(response.headers["Location"])
    assert "Uncoded" in shown.text and "Expedited report" not in shown.text


@pytest.mark.parametrize(
    ("overrides", "fields"),
    [
        # non-serious with criteria, and a blank term: both named in one answer
        ({"serious": "false", "term": ""}, {"Seriousness criteria", "Term"}),
        # serious without criteria nor awareness date, and no relatedness
        (
            {"seriousness_criteria": [], "awareness_date": "", "relatedness": ""},
            {"Seriousness criteria", "Date the site became aware", "Relatedness"},
        ),
        # grade 5 without the fatal outcome, and an end before the onset
        (
            {"grade": "5", "end_date": (TODAY - timedelta(days=20)).isoformat()},
            {"Outcome", "End date"},
        ),
    ],
)
def test_a_refused_ae_names_every_field_keeps_the_values_and_writes_nothing(
    site, overrides, fields
):
    before = counts()
    response = post_form(site.client, site.new_ae_url(), serious_form(**overrides))
    assert response.status_code == 422
    assert 'role="alert"' in response.text
    listed = [item.split(":")[0] for item in error_summary(response.text)]
    assert set(listed) == fields, error_summary(response.text)
    assert listed == sorted(listed, key=FORM_ORDER.index)  # the summary follows the form
    for field in fields:  # the message also stands beside its field
        assert response.text.count(f"{field}:") >= 1
    assert 'class="error-message"' in response.text
    assert f'value="{ONSET}"' in response.text  # the entered values are kept
    assert counts() == before
    # The negative control: the same form put right is saved, and the counts see it.
    saved = post_form(site.client, site.new_ae_url(), serious_form())
    assert saved.status_code == 302, error_summary(saved.text)
    assert counts()[0] == before[0] + 1 and counts()[1] > before[1]


def test_a_correction_and_an_error_mark_through_the_pages_are_audited_with_their_reason(site):
    created = site.api("post", f"/participants/{site.pid}/adverse-events", json=SERIOUS_JSON)
    ae_id = created.json["id"]
    url = f"/adverse-events/{ae_id}/correct"
    form = serious_form(grade="2", reason="")
    refused = post_form(site.client, url, form)
    assert refused.status_code == 422 and error_summary(refused.text)[0].startswith("Reason")
    before = counts()
    corrected = post_form(
        site.client, url, {**form, "reason": "source document says 2", "version": "1"}
    )
    assert corrected.status_code == 302, error_summary(corrected.text)
    ae = site.api("get", f"/adverse-events/{ae_id}").json
    assert ae["grade"] == 2 and ae["version"] == 2 and ae["end_date"] is None
    changed = [row for row in audit_of("adverse_event", ae_id) if row[0] == "update"]
    assert [(r[1], r[2], r[3], r[4]) for r in changed] == [
        ("grade", "3", "2", "source document says 2")
    ]
    assert counts()[0] == before[0]
    # A stale version is refused and names what changed; nothing is written.
    stale = post_form(site.client, url, {**form, "grade": "4", "reason": "r", "version": "1"})
    assert stale.status_code == 412 and "changed since version 1" in stale.text
    mark_url = f"/adverse-events/{ae_id}/entered-in-error"
    marked = post_form(site.client, mark_url, {"reason": "wrong participant", "version": "2"})
    assert marked.status_code == 302, error_summary(marked.text)
    assert site.api("get", f"/participants/{site.pid}/adverse-events").json == []
    listed = site.client.get(f"/participants/{site.pid}/adverse-events")
    assert f"/adverse-events/{ae_id}" not in listed.text
    with_errors = f"/participants/{site.pid}/adverse-events?include_entered_in_error=true"
    assert f"/adverse-events/{ae_id}" in site.client.get(with_errors).text
    by_api = site.api("post", f"/participants/{site.pid}/adverse-events", json=SERIOUS_JSON)
    marked = site.api("post", f"/adverse-events/{by_api.json['id']}/entered-in-error",
                      json={"reason": "wrong participant"})  # fmt: skip
    assert marked.status_code == 200, marked.json
    assert audit_of("adverse_event", ae_id)[-1] == audit_of("adverse_event", by_api.json["id"])[-1]
    assert audit_of("adverse_event", ae_id)[-1][0] == "entered_in_error"
    assert "wrong participant" in audit_of("adverse_event", ae_id)[-1]


def test_an_emptied_end_date_is_cleared_by_a_correction(site):
    body = {**SERIOUS_JSON, "end_date": AWARE}
    ae_id = site.api("post", f"/participants/{site.pid}/adverse-events", json=body).json["id"]
    url = f"/adverse-events/{ae_id}/correct"
    form = site.client.get(url).text
    assert f'name="end_date" type="text" value="{AWARE}"' in form
    assert re.search(r'value="hospitalisation" checked', form)
    cleared = post_form(site.client, url, serious_form(end_date="", reason="still ongoing"))
    assert cleared.status_code == 302, error_summary(cleared.text)
    assert site.api("get", f"/adverse-events/{ae_id}").json["end_date"] is None
    changed = [row for row in audit_of("adverse_event", ae_id) if row[0] == "update"]
    assert [(r[1], r[3], r[4]) for r in changed] == [("end_date", None, "still ongoing")]


def test_a_form_without_its_csrf_token_is_refused_and_writes_nothing(site):
    before = counts()
    for url, form in (
        (site.new_ae_url(), serious_form()),
        (f"/participants/{site.pid}/dosing", {"date": TODAY.isoformat(), "tablets_per_day": "3"}),
    ):
        refused = site.client.post(url, data=form)
        assert refused.status_code == 400 and "nothing was saved" in refused.text
    assert counts() == before


# --- term suggestions ----------------------------------------------------------------------


def test_term_suggestions_come_from_the_dictionary_and_need_a_session(site, app):
    found = site.client.get("/meddra/suggestions?q=somn")
    assert found.status_code == 200 and found.is_json
    by_term = {row["term"]: row["label"] for row in found.json}
    assert "Nervous system disorders" in by_term["Somnolence"]
    assert "Somnolence" in {
        row["term"] for row in site.client.get("/meddra/suggestions?q=sleepy").json
    }
    assert len(site.client.get("/meddra/suggestions?q=s").json) <= 10
    assert site.client.get("/meddra/suggestions?q=").json == []
    anonymous = app.test_client().get("/meddra/suggestions?q=somn")
    assert anonymous.status_code == 302 and "/sign-in" in anonymous.headers["Location"]


# --- roles and sites -----------------------------------------------------------------------


def test_another_sites_records_are_not_found(site):
    other = site.make_user("coordinator", sites=["S02"])[1]
    ae = site.api("post", f"/participants/{site.other_pid}/adverse-events", token=other,
                  json=SERIOUS_JSON)  # fmt: skip
    assert ae.status_code == 201, ae.json
    for url in (
        site.new_ae_url(site.other_pid),
        f"/participants/{site.other_pid}/adverse-events",
        f"/participants/{site.other_pid}/dosing",
        f"/adverse-events/{ae.json['id']}",
        f"/adverse-events/{ae.json['id']}/correct",
    ):
        page = site.client.get(url)
        assert page.status_code == 404, url
        assert "Page not found" in page.text
    before = counts()
    token = csrf_token(site.client, site.new_ae_url())
    posted = site.client.post(site.new_ae_url(site.other_pid), data={**serious_form(),
                              "csrf_token": token})  # fmt: skip
    assert posted.status_code == 404 and counts() == before


def test_a_monitor_reads_but_cannot_report_an_ae(site, client, app):
    monitor, _ = site.make_user("monitor", password=PASSWORD)
    browser = app.test_client()
    sign_in(browser, monitor.username, PASSWORD)
    assert browser.get(f"/participants/{site.pid}/adverse-events").status_code == 200
    assert (
        "Report an adverse event"
        not in browser.get(f"/participants/{site.pid}/adverse-events").text
    )
    assert browser.get(site.new_ae_url()).status_code == 403
    before = counts()
    posted = post_form(browser, site.new_ae_url(), serious_form(), form_url="/password")
    assert posted.status_code == 403 and counts() == before
    assert browser.get("/meddra/suggestions?q=somn").status_code == 403


# --- study drug ----------------------------------------------------------------------------


def randomize(site, make_site_fixture):
    from randomization import lists

    lists.generate(site.make_user("unblinded_statistician")[0])
    db.session.commit()
    make_ready_for_randomization(site.client, bearer(site.token), site.pid)
    done = site.api(
        "post", f"/participants/{site.pid}/randomize", json={"eligibility_confirmed": True}
    )
    assert done.status_code == 201, done.json


def randomized_on(pid):
    from trial.participants.models import Participant
    from trial.participants.services import randomization_date

    participant = db.session.scalar(select(Participant).filter_by(participant_id=pid))
    return randomization_date(participant)


def test_a_dose_recorded_through_the_page_is_stored_and_audited(site, make_site, app):
    url = f"/participants/{site.pid}/dosing"
    before = counts()
    refused = post_form(site.client, url, {"date": TODAY.isoformat(), "tablets_per_day": "3"})
    assert refused.status_code == 409 and "not randomized" in refused.text  # not yet
    assert counts() == before
    make_site("S01", planned_enrollment=4)
    randomize(site, make_site)
    page = site.client.get(url)
    assert "Record a dose" in page.text and not re.search(r"\bmg\b", page.text)
    # The randomization's own day (in the site's time zone), not the day this module was
    # imported: a run that crosses midnight would otherwise post a day before randomization.
    start = randomized_on(site.pid).isoformat()
    saved = post_form(site.client, url, {"date": start, "tablets_per_day": "3",
                                         "change_reason": "", "tablets_returned": ""})  # fmt: skip
    assert saved.status_code == 302, error_summary(saved.text)
    records = site.api("get", f"/participants/{site.pid}/dosing").json
    assert [(r["date"], r["tablets_per_day"], r["change_reason"]) for r in records] == [
        (start, 3, None)
    ]
    created = audit_of("dosing", records[0]["id"])
    assert created and {row[0] for row in created} == {"create"}
    assert {row[5] for row in created} == {site.user.username}
    # A second record on the same date, and too many tablets: both named, nothing written.
    before = counts()
    refused = post_form(site.client, url, {"date": start, "tablets_per_day": "12"})
    assert refused.status_code == 422
    named = {item.split(":")[0] for item in error_summary(refused.text)}
    assert named == {"Date", "Tablets per day"}, error_summary(refused.text)
    assert counts() == before
    listed = site.client.get(url).text
    assert f"<td>{start}</td>" in listed


def test_a_monitor_sees_the_doses_but_cannot_record_one(site, app):
    monitor, _ = site.make_user("monitor", password=PASSWORD)
    browser = app.test_client()
    sign_in(browser, monitor.username, PASSWORD)
    url = f"/participants/{site.pid}/dosing"
    page = browser.get(url)
    assert page.status_code == 200 and "Record a dose" not in page.text
    before = counts()
    posted = post_form(browser, url, {"date": TODAY.isoformat(), "tablets_per_day": "3"},
                       form_url="/password")  # fmt: skip
    assert posted.status_code == 403 and counts() == before


# --- queries -------------------------------------------------------------------------------


def test_a_query_is_answered_through_the_page_and_audited_as_through_the_api(site):
    monitor_token = site.make_user("monitor")[1]

    def raise_query(text):
        body = {"entity": "participant", "record_id": site.pid, "field": "sex", "text": text}
        raised = site.api("post", "/queries", token=monitor_token, json=body)
        assert raised.status_code == 201, raised.json
        return raised.json["query_id"]

    query_id, other_id = raise_query("Please check the sex."), raise_query("Please check the sex.")
    listed = site.client.get("/queries")
    assert listed.status_code == 200 and f"/queries/{query_id}" in listed.text
    url = f"/queries/{query_id}"
    page = site.client.get(url)
    assert "Please check the sex." in page.text and "Send answer" in page.text
    before = counts()
    blank = post_form(site.client, url, {"text": "   "})
    assert blank.status_code == 422
    assert error_summary(blank.text)[0].startswith("Your answer")
    assert counts() == before
    answered = post_form(site.client, url, {"text": "Checked: female, as recorded."})
    assert answered.status_code == 302
    shown = site.api("get", f"/queries/{query_id}").json
    assert shown["status"] == "answered"
    assert shown["messages"][-1]["text"] == "Checked: female, as recorded."
    by_api = site.api("post", f"/queries/{other_id}/answer",
                      json={"text": "Checked: female, as recorded."})  # fmt: skip
    assert by_api.status_code == 200, by_api.json
    trail = audit_of("query", query_id)
    assert trail == audit_of("query", other_id)
    assert trail[-1] == (
        "answer", None, None, '"Checked: female, as recorded."', None, site.user.username,
        "coordinator",
    )  # fmt: skip
    # Answered, the query takes no second answer (409), and nothing is written.
    before = counts()
    again = post_form(site.client, url, {"text": "more"}, form_url="/password")
    assert again.status_code == 409 and "already answered" in again.text
    assert counts() == before


# --- expedited reports: the site submits, the safety desk acknowledges ------------------------


def test_a_report_is_submitted_and_acknowledged_through_the_pages_as_through_the_api(site, app):
    """The site's Submit button and the data manager's Acknowledge button write what the
    API's two operations write; each refuses the step out of order (409) and writes nothing."""
    through_page = post_form(site.client, site.new_ae_url(), serious_form())
    ae_page = through_page.headers["Location"]
    site.api("post", f"/participants/{site.pid}/adverse-events", json=SERIOUS_JSON)
    reports = db.session.scalars(select(ExpeditedReport).order_by(ExpeditedReport.id)).all()
    page_report, api_report = (r.id for r in reports)
    assert "Submit expedited report" in site.client.get(ae_page).text

    submitted = post_form(site.client, f"/expedited-reports/{page_report}/submit", {},
                          form_url="/password")  # fmt: skip
    assert submitted.status_code == 302 and submitted.headers["Location"] == ae_page
    assert site.api("post", f"/expedited-reports/{api_report}/submit").status_code == 200
    before = counts()
    again = post_form(site.client, f"/expedited-reports/{page_report}/submit", {},
                      form_url="/password")  # fmt: skip
    assert again.status_code == 409 and "only an open report" in again.text
    assert counts() == before

    manager, manager_token = site.make_user("data_manager", password=PASSWORD)
    desk = app.test_client()
    sign_in(desk, manager.username, PASSWORD)
    listed = desk.get("/expedited-reports?status=submitted")
    assert listed.status_code == 200 and listed.text.count("Acknowledge receipt") == 2
    acknowledged = post_form(desk, f"/expedited-reports/{page_report}/acknowledge",
                             {"from": "list"}, form_url="/password")  # fmt: skip
    assert acknowledged.status_code == 302
    assert acknowledged.headers["Location"] == "/expedited-reports"
    done = site.api("post", f"/expedited-reports/{api_report}/acknowledge", token=manager_token)
    assert done.status_code == 200, done.json

    def steps(report_id):  # the two steps' audit rows: action, field, who (not ids, times)
        rows = audit_of("expedited_report", report_id)
        return [(r[0], r[1], r[5], r[6]) for r in rows if r[0] in ("submit", "acknowledge")]

    assert steps(page_report) and steps(page_report) == steps(api_report)
    shown = site.client.get(ae_page).text
    assert "Acknowledged" in shown and "Submit expedited report" not in shown


def test_the_report_buttons_are_only_for_their_roles(site, app):
    post_form(site.client, site.new_ae_url(), serious_form())
    report_id = db.session.scalar(select(ExpeditedReport.id))
    monitor, _ = site.make_user("monitor", password=PASSWORD)
    browser = app.test_client()
    sign_in(browser, monitor.username, PASSWORD)
    listed = browser.get("/expedited-reports")
    assert listed.status_code == 200 and f">{report_id}</a>" in listed.text
    assert "Submit expedited report" not in listed.text and "Acknowledge receipt" not in listed.text
    other, _ = site.make_user("coordinator", sites=["S02"], password=PASSWORD)
    elsewhere = app.test_client()
    sign_in(elsewhere, other.username, PASSWORD)
    before = counts()
    for action in ("submit", "acknowledge"):
        refused = post_form(browser, f"/expedited-reports/{report_id}/{action}", {},
                            form_url="/password")  # fmt: skip
        assert refused.status_code == 403
    # The other site's coordinator: the report is not found (as the API answers it).
    assert f">{report_id}</a>" not in elsewhere.get("/expedited-reports").text
    hidden = post_form(elsewhere, f"/expedited-reports/{report_id}/submit", {},
                       form_url="/password")  # fmt: skip
    assert hidden.status_code == 404
    assert counts() == before


def test_a_bad_filter_is_named_and_lists_nothing(site):
    refused = site.client.get("/expedited-reports?status=lost")
    assert refused.status_code == 422
    assert [item.split(":")[0] for item in error_summary(refused.text)] == ["Status"]
