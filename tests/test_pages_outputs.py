"""The outputs' pages: the blinded bundle, the DSMB safety reports and the unblinded
statistician's pages (issue 25).

Each download goes through the API's service and audit: the page's file is byte for byte the
API's for the same inputs (the bundle and the reports are dated by their cut-off, so a fixed
cut-off in the past gives the same bytes), and it leaves the same audit event, whose SHA-256
the page's history then shows with the cut-off. Bad input is refused with every bad field
named (422, nothing written); other roles get 403 with nothing written; nothing a blinded
role opens names an arm. A small trial (one site, four participants, two randomized, one
emergency code-break) keeps the bundles and reports quick to build.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from sqlalchemy import func, select

from randomization import lists
from tests.conftest import approve_for_code_break, bearer, make_ready_for_randomization
from tests.page_helpers import csrf_token, error_summary, sign_in
from trial.audit.models import AuditEvent
from trial.extensions import db

PASSWORD = "a-long-password-1"
ARMS = ("baclofen", "placebo")
CENTRAL = ("statistician", "data_manager", "unblinded_statistician", "dsmb")
OTHERS = ("admin", "coordinator", "investigator", "monitor")


def audit_count() -> int:
    return db.session.scalar(select(func.count()).select_from(AuditEvent))


def events(action: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        )
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def past_cutoff() -> str:
    """An instant just past every write so far, to the second (a report prints seconds)."""
    time.sleep(1.05 - datetime.now(UTC).microsecond / 1e6)  # into the next whole second
    return (datetime.now(UTC) - timedelta(seconds=0)).replace(microsecond=0).isoformat()


def q(value: str) -> str:
    return quote(value, safe="")


def names_an_arm(text: str) -> list[str]:
    lowered = text.replace("Baclofen AUD trial", "").lower()
    return [arm for arm in ARMS if arm in lowered]


@pytest.fixture
def trial(app, client, make_site, make_user, make_participant):
    """One site, a generated list, two randomized participants, one code broken; a signed-in
    page client and an API token for a user of every role."""
    make_site("S01", planned_enrollment=4)
    users = {}
    for role in CENTRAL + OTHERS:
        user, token = make_user(role, username=f"out.{role}", password=PASSWORD)
        users[role] = (user, token)
    lists.generate(users["unblinded_statistician"][0])
    db.session.commit()
    coordinator = bearer(users["coordinator"][1])
    pids = [make_participant(site="S01", sex=sex)["participant_id"] for sex in "FMFM"]
    for pid in pids[:2]:
        make_ready_for_randomization(client, coordinator, pid)
        done = client.post(
            f"/api/v1/participants/{pid}/randomize",
            headers=coordinator,
            json={"eligibility_confirmed": True},
        )
        assert done.status_code == 201, done.json
    approve_for_code_break(users["investigator"][0], PASSWORD)
    broken = client.post(
        f"/api/v1/participants/{pids[0]}/code-break",
        headers=bearer(users["investigator"][1]),
        json={"reason": "suspected overdose", "password": PASSWORD},
    )
    assert broken.status_code == 200, broken.json
    pages = {}
    for role in CENTRAL + OTHERS:
        page = app.test_client()
        sign_in(page, f"out.{role}", PASSWORD)
        pages[role] = page
    return {"users": users, "pages": pages, "pids": pids}


def api(client, trial, role: str, url: str):
    return client.get(url, headers=bearer(trial["users"][role][1]))


# --- the blinded bundle -------------------------------------------------------------------


def test_bundle_page_has_its_form_and_the_button(trial):
    page = trial["pages"]["statistician"].get("/bundle")
    assert page.status_code == 200
    html = page.text
    for label in ("Data cut-off", "Format", "Dummy-arm seed"):
        assert f">{label}</label>" in html, label
    assert ">Download bundle</button>" in html
    assert 'action="/bundle/download"' in html and 'method="get"' in html
    assert "No pulls yet." in html


@pytest.mark.parametrize("options", ["format=csv&dummy_arms=", "format=parquet&dummy_arms=7"])
def test_bundle_download_is_the_api_file_audited_and_in_the_history(client, trial, options):
    cutoff = past_cutoff()
    page = trial["pages"]["statistician"]
    before = audit_count()
    got = page.get(f"/bundle/download?cutoff={q(cutoff)}&{options}")
    assert got.status_code == 200, got.text[:500]
    assert got.mimetype == "application/zip"
    digest = sha256(got.data)
    assert got.headers["X-Content-SHA256"] == digest
    assert audit_count() == before + 1
    (event,) = events("export_blinded")
    detail = json.loads(event.detail)
    assert (event.username, detail["sha256"]) == ("out.statistician", digest)

    query = f"cutoff={q(cutoff)}&" + "&".join(p for p in options.split("&") if not p.endswith("="))
    from_api = api(client, trial, "statistician", f"/api/v1/exports/blinded?{query}")
    assert from_api.status_code == 200
    assert sha256(from_api.data) == digest  # the same bytes for the same cut
    assert from_api.headers["Content-Disposition"] == got.headers["Content-Disposition"]
    assert len(events("export_blinded")) == 2

    history = page.get("/bundle").text
    assert history.count(digest) == 2 and history.count(detail["cutoff"]) == 2
    # The data manager sees every pull; another statistician's own list is empty.
    assert digest in trial["pages"]["data_manager"].get("/bundle").text
    assert digest not in trial["pages"]["unblinded_statistician"].get("/bundle").text


def test_bundle_bad_input_names_every_field_and_writes_nothing(trial):
    page = trial["pages"]["data_manager"]
    before = audit_count()
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    for query, expected in (
        (
            "cutoff=yesterday&format=pdf&dummy_arms=-1",
            ["Data cut-off", "Format", "Dummy-arm seed"],
        ),
        (f"cutoff={q(future)}&format=csv&dummy_arms=x", ["Data cut-off", "Dummy-arm seed"]),
        ("cutoff=2026-01-01T00:00:00&format=csv", ["Data cut-off"]),
    ):
        got = page.get(f"/bundle/download?{query}")
        assert got.status_code == 422, (query, got.status_code)
        assert got.mimetype == "text/html"
        named = [line.split(":")[0] for line in error_summary(got.text)]
        assert named == expected, (query, error_summary(got.text))
        assert ">Download bundle</button>" in got.text  # the form again, to put right
    assert audit_count() == before
    assert events("export_blinded") == []


@pytest.mark.parametrize("role", ["dsmb", *OTHERS])
def test_bundle_pages_refuse_other_roles(trial, role):
    before = audit_count()
    for url in ("/bundle", "/bundle/download"):
        got = trial["pages"][role].get(url)
        assert got.status_code == 403, (role, url)
        assert names_an_arm(got.text) == []
    assert audit_count() == before


# --- the safety reports -------------------------------------------------------------------


def test_dsmb_reports_page_links_both_reports_and_they_are_the_api_files(client, trial):
    cutoff = past_cutoff()
    zulu = cutoff.replace("+00:00", "Z")
    page = trial["pages"]["dsmb"]
    shown = page.get(f"/reports?cutoff={q(cutoff)}&arms=coded")
    assert shown.status_code == 200
    html = shown.text
    assert ">Open report</a>" in html and ">Closed report</a>" in html
    open_url = f"/reports/download?session=open&amp;cutoff={zulu}"
    closed_url = f"/reports/download?session=closed&amp;arms=coded&amp;cutoff={zulu}"
    assert open_url in html and closed_url in html, html
    assert "Randomization notices" in html and "code" in html.lower()

    digests = {}
    for session, url in (("open", open_url), ("closed", closed_url)):
        before = audit_count()
        got = page.get(url.replace("&amp;", "&"))
        assert got.status_code == 200, got.text[:500]
        assert got.mimetype == "application/pdf" and got.data.startswith(b"%PDF")
        assert audit_count() == before + 1
        query = url.split("?")[1].replace("&amp;", "&")
        from_api = api(client, trial, "dsmb", f"/api/v1/reports/safety?{query}")
        assert from_api.status_code == 200
        assert sha256(from_api.data) == sha256(got.data), session
        assert from_api.headers["Content-Disposition"] == got.headers["Content-Disposition"]
        digests[session] = sha256(got.data)
    generated = [json.loads(e.detail) for e in events("report_safety")]
    assert [g["session"] for g in generated] == ["open", "open", "closed", "closed"]
    assert generated[0]["sha256"] == digests["open"]
    assert "sha256" not in generated[2]  # the closed report's trail keeps a keyed digest only

    history = page.get("/reports").text
    assert history.count(digests["open"]) == 2
    assert history.count(generated[2]["hmac_sha256"]) == 2
    assert history.count(generated[0]["cutoff"]) == 4


def test_reports_page_defaults_to_now_and_blinded_roles_get_the_open_report_only(trial):
    dsmb = trial["pages"]["dsmb"]
    assert dsmb.get("/reports/download?session=closed").status_code == 200  # a closed one
    for role in ("statistician", "data_manager"):
        page = trial["pages"][role]
        shown = page.get("/reports")
        assert shown.status_code == 200
        html = shown.text
        assert ">Open report</a>" in html and "Closed report" not in html
        assert "Arms in the closed report" not in html
        assert "Randomization notices" not in html  # the API's notices are not theirs
        assert "Keyed digest" not in html and "Closed," not in html  # the DSMB's closed one
        assert 'id="cutoff" name="cutoff" type="text" value="20' in html  # now, prefilled
        before = audit_count()
        refused = page.get("/reports/download?session=closed")
        assert refused.status_code == 403
        assert "DSMB and the unblinded statistician" in refused.text
        assert names_an_arm(refused.text) == [] and names_an_arm(html) == []
        assert audit_count() == before
        got = page.get("/reports/download?session=open")
        assert got.status_code == 200 and got.mimetype == "application/pdf"
        assert audit_count() == before + 1


def test_reports_bad_input_names_every_field_and_writes_nothing(trial):
    page = trial["pages"]["dsmb"]
    before = audit_count()
    future = q((datetime.now(UTC) + timedelta(days=1)).isoformat())
    for url, expected in (
        (f"/reports?cutoff={future}&arms=shuffled", ["Data cut-off", "Arms in the closed report"]),
        ("/reports/download?session=sideways&cutoff=yesterday", ["Data cut-off", "Report"]),
        ("/reports/download?session=open&arms=named", ["Arms in the closed report"]),
    ):
        got = page.get(url)
        assert got.status_code == 422, (url, got.status_code)
        named = [line.split(":")[0] for line in error_summary(got.text)]
        assert named == expected, (url, error_summary(got.text))
        assert ">Open report</a>" not in got.text
    assert audit_count() == before


@pytest.mark.parametrize("role", OTHERS)
def test_reports_pages_refuse_other_roles(trial, role):
    before = audit_count()
    for url in ("/reports", "/reports/download", "/reports/download?session=closed"):
        got = trial["pages"][role].get(url)
        assert got.status_code == 403, (role, url)
    assert audit_count() == before


# --- the unblinded statistician's pages ---------------------------------------------------


def test_overview_shows_summary_predictability_and_notices_and_writes_nothing(trial):
    page = trial["pages"]["unblinded_statistician"]
    before = audit_count()
    shown = page.get("/randomization")
    assert shown.status_code == 200
    html = shown.text
    assert "site=S01|sex=F" in html and "site=S01|sex=M" in html
    assert "List summary" in html and "Predictability" in html
    assert re.search(r"<strong>\d\d\.\d%</strong> of allocations right", html)
    assert "75.0% for blocks of 2" in html
    assert "suspected overdose" in html or "code_break" in html or "code break" in html
    assert ">Download the key</button>" in html and ">Show the arm code</button>" in html
    assert names_an_arm(html) == []  # the overview itself names no arm
    assert audit_count() == before  # read as GET /api/v1/randomization/summary: no event


def test_key_download_is_the_api_file_and_audited(client, trial):
    page = trial["pages"]["unblinded_statistician"]
    token = csrf_token(page, "/randomization")
    before = audit_count()
    got = page.post("/randomization/key", data={"csrf_token": token})
    assert got.status_code == 200 and got.mimetype == "text/csv"
    assert set(names_an_arm(got.get_data(as_text=True))) <= set(ARMS)
    assert trial["pids"][0] in got.get_data(as_text=True)
    assert audit_count() == before + 1
    from_api = api(client, trial, "unblinded_statistician", "/api/v1/exports/key")
    assert sha256(from_api.data) == sha256(got.data)
    assert from_api.headers["Content-Disposition"] == got.headers["Content-Disposition"]
    released = events("export_key")
    assert len(released) == 2
    assert json.loads(released[0].detail) == json.loads(released[1].detail)
    assert "sha256" not in json.loads(released[0].detail)  # keyed digest only
    # Without the form's token nothing is released.
    assert page.post("/randomization/key").status_code == 400
    assert len(events("export_key")) == 2


def test_arm_code_is_shown_once_per_request_and_audited_as_the_command(runner, trial):
    page = trial["pages"]["unblinded_statistician"]
    token = csrf_token(page, "/randomization")
    got = page.post("/randomization/arm-code", data={"csrf_token": token})
    assert got.status_code == 200
    (event,) = events("report_arm_code")
    assert (event.username, event.entity_id) == ("out.unblinded_statistician", "arm_code")
    result = runner.invoke(args=["reports", "arm-code", "--as", "out.unblinded_statistician"])
    assert result.exit_code == 0, result.output
    for line in result.output.strip().splitlines():  # "A = placebo"
        code, arm = line.split(" = ")
        assert f'<dt>{code}</dt><dd><strong class="arm">{arm}</strong></dd>' in got.text
    assert len(events("report_arm_code")) == 2


@pytest.mark.parametrize("role", ["statistician", "data_manager", "dsmb", *OTHERS])
def test_unblinded_pages_refuse_every_other_role(trial, role):
    page = trial["pages"][role]
    token = csrf_token(page, "/password")
    before = audit_count()
    for method, url in (
        ("GET", "/randomization"),
        ("POST", "/randomization/key"),
        ("POST", "/randomization/arm-code"),
    ):
        data = {"csrf_token": token} if method == "POST" else None
        got = page.open(url, method=method, data=data)
        assert got.status_code == 403, (role, url, got.status_code)
        assert f"The {role} role may not open this page." in got.text
        assert names_an_arm(got.text) == []
    assert audit_count() == before


# --- home and header ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "role, home, links",
    [
        ("statistician", "/bundle", ["Blinded bundle", "Safety reports"]),
        ("dsmb", "/reports", ["Safety reports", "Expedited reports"]),
        ("unblinded_statistician", "/randomization",
         ["Randomization", "Safety reports", "Expedited reports", "Blinded bundle"]),
    ],
)  # fmt: skip
def test_home_sends_each_role_to_its_first_page_with_its_links(trial, role, home, links):
    page = trial["pages"][role]
    assert page.get("/").headers["Location"] == home
    html = page.get(home).text
    header = re.search(r'<nav class="header__nav".*?</nav>', html, re.S).group(0)
    shown = re.findall(r'<a href="[^"]+">([^<]+)</a>', header)
    assert shown == [*links, "Sign out"]
