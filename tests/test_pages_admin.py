"""The admin's pages (issue 25): accounts, sites and the audit-trail browser, driven as a
browser would, on both databases.

A page must write and audit exactly what its API operation writes and audits, refuse what
it refuses (every field at once, nothing written), keep its roles, show a temporary
password once only, and read the trail as GET /api/v1/audit reads it (the same rows, the
same filters, no arm); the CSV download is the page's rows, formulas neutralised.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from tests.capture_helpers import Trial
from tests.conftest import bearer
from tests.page_helpers import error_summary, post_form, sign_in
from tests.test_audit_api_filters import fetch, history
from tests.test_blinding import leaks
from trial.audit.models import AuditEvent
from trial.auth.models import User
from trial.auth.policy import policy_for
from trial.extensions import db
from trial.sites.models import Site

PASSWORD = "a-long-password-1"
AUDIT_COLUMNS = ("action", "entity_type", "field", "old_value", "new_value", "reason", "role")


@pytest.fixture
def admin(client, make_user):
    """An admin signed in to the pages (``client``), with an API token too."""
    user, token = make_user("admin", username="root.admin", password=PASSWORD)
    sign_in(client, user.username, PASSWORD)
    return token


def api(client, token, method, path, body=None):
    return client.open(f"/api/v1{path}", method=method, headers=bearer(token), json=body)


def counts() -> tuple[int, int, int]:
    db.session.rollback()
    return tuple(
        db.session.scalar(select(func.count()).select_from(model))
        for model in (AuditEvent, User, Site)
    )


def trail_of(entity_type: str, entity_id: str, since: int = 0) -> list[tuple]:
    """The audit rows about one record (after ``since``), with its own name blanked so that
    two records made alike compare equal."""
    db.session.rollback()
    rows = db.session.scalars(
        select(AuditEvent)
        .where(
            AuditEvent.entity_type == entity_type,
            AuditEvent.entity_id == entity_id,
            AuditEvent.seq > since,
        )
        .order_by(AuditEvent.seq)
    )
    return [
        tuple((getattr(r, c) or "").replace(entity_id, "<id>") for c in AUDIT_COLUMNS) for r in rows
    ]


def last_seq() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.max(AuditEvent.seq))) or 0


# --- sites ---------------------------------------------------------------------------------


def test_a_site_made_by_the_page_is_audited_as_the_apis(client, admin):
    response = post_form(
        client,
        "/sites/new",
        {"code": "S07", "name": "Lyon", "timezone": "Europe/Paris", "planned_enrollment": "25"},
    )
    assert response.status_code == 302 and response.headers["Location"] == "/sites"
    listing = client.get("/sites")
    assert "Lyon" in listing.text and "Site S07 (Lyon) is added" in listing.text
    body = {"code": "S08", "name": "Lyon", "timezone": "Europe/Paris", "planned_enrollment": 25}
    assert api(client, admin, "POST", "/sites", body).status_code == 201
    page_rows = [r for r in trail_of("site", "S07")]
    api_rows = [tuple(c.replace("S08", "S07") for c in r) for r in trail_of("site", "S08")]
    assert page_rows == api_rows and len(page_rows) == 4
    # A code taken: 409, named beside its input, nothing written.
    before = counts()
    again = post_form(client, "/sites/new", {"code": "S07", "name": "Again"})
    assert again.status_code == 409
    assert error_summary(again.text) == ["Site S07 already exists.", "Site code: Already exists."]
    assert counts() == before


def test_a_bad_site_form_names_every_field_and_writes_nothing(client, admin):
    before = counts()
    response = post_form(
        client,
        "/sites/new",
        {"code": "s 1", "name": "", "timezone": "Mars/Olympus", "planned_enrollment": "many"},
    )
    assert response.status_code == 422
    named = [line.split(":")[0] for line in error_summary(response.text)]
    assert named == ["Site code", "Site name", "Time zone", "Planned enrollment"]
    assert counts() == before
    # The API refuses the same body with the same fields.
    body = {"code": "s 1", "timezone": "Mars/Olympus", "planned_enrollment": "many"}
    refused = api(client, admin, "POST", "/sites", body)
    assert refused.status_code == 422
    assert set(refused.json["errors"]) == {"code", "name", "timezone", "planned_enrollment"}


def test_every_role_reads_the_sites_only_admins_add_one(app, client, make_user, make_site):
    make_site("S01")
    user, _ = make_user("monitor", password=PASSWORD)
    sign_in(client, user.username, PASSWORD)
    page = client.get("/sites")
    assert page.status_code == 200 and "S01" in page.text and "Add a site" not in page.text
    assert client.get("/sites/new").status_code == 403
    assert policy_for(app, "sites_pages.sites") == policy_for(app, "sites.list_sites")
    assert policy_for(app, "sites_pages.new_site") == policy_for(app, "sites.create_site")


# --- accounts ------------------------------------------------------------------------------


def test_account_pages_keep_the_apis_roles(app, client, make_user):
    for page, operation in (
        ("users", "list_users"),
        ("new_user", "create_user"),
        ("user", "list_users"),
        ("deactivate", "deactivate_user"),
        ("reactivate", "reactivate_user"),
        ("reset_password", "reset_user_password"),
        ("change_role", "change_user_role"),
        ("change_email", "change_user_role"),
    ):
        assert policy_for(app, f"accounts_pages.{page}") == policy_for(app, f"auth.{operation}")
    user, _ = make_user("data_manager", password=PASSWORD)
    sign_in(client, user.username, PASSWORD)
    for url in ("/users", "/users/new", f"/users/{user.username}", "/sites/new"):
        refused = client.get(url)
        assert refused.status_code == 403 and "You cannot open this page" in refused.text


def test_an_account_made_by_the_page_is_audited_as_the_apis(client, admin, make_site):
    make_site("S01")
    page = client.get("/users/new")
    for label in ("Username", "Role", "Sites", "E-mail address", "Password"):
        assert f">{label}</" in page.text, label
    response = post_form(
        client,
        "/users/new",
        {
            "username": "Cora.Page",
            "role": "coordinator",
            "sites.present": "1",
            "sites": "S01",
            "email": "cora@example.org",
            "password": "",
        },
    )
    assert response.status_code == 302 and response.headers["Location"] == "/users/cora.page"
    body = {"username": "cora.api", "role": "coordinator", "sites": ["S01"]}
    body["email"] = "cora@example.org"
    assert api(client, admin, "POST", "/users", body).status_code == 201
    page_rows = trail_of("user", "cora.page")
    assert page_rows == trail_of("user", "cora.api") and len(page_rows) >= 4
    shown = client.get("/users/cora.page")
    assert "Account cora.page is created" in shown.text and "cora@example.org" in shown.text
    listing = client.get("/users")
    row = re.search(r"<tr>\s*<td><a[^>]*>cora.page</a>.*?</tr>", listing.text, re.S).group(0)
    for cell in ("Coordinator", "S01", "Active", "cora@example.org"):
        assert cell.lower() in row.lower(), cell


def test_a_bad_account_form_names_every_field_and_writes_nothing(client, admin, make_site):
    make_site("S01")
    before = counts()
    typed = "short-pass"
    response = post_form(
        client,
        "/users/new",
        {
            "username": "no spaces!",
            "role": "",
            "sites.present": "1",
            "email": "not an address",
            "password": typed,
        },
    )
    assert response.status_code == 422
    named = [line.split(":")[0] for line in error_summary(response.text)]
    assert named == ["Username", "Role", "E-mail address", "Password"]
    assert typed not in response.text  # a typed password is never shown back
    assert counts() == before
    # The sites a role takes are named under Sites (the service calls them "site").
    refused = post_form(
        client,
        "/users/new",
        {"username": "cora", "role": "coordinator", "sites.present": "1", "email": "x"},
    )
    assert refused.status_code == 422
    named = [line.split(":")[0] for line in error_summary(refused.text)]
    assert named == ["Sites", "E-mail address"]
    assert 'id="sites"' in refused.text
    # An unblinded role is not offered, and refused if posted anyway.
    assert 'value="dsmb"' not in client.get("/users/new").text
    refused = post_form(client, "/users/new", {"username": "dora", "role": "dsmb"})
    assert refused.status_code == 403 and "command line" in refused.text
    assert counts() == before


def account_actions(client, admin_token, name, *, page: bool, reason="a reason given"):
    """Deactivate, reactivate, reset and change the role of ``name``, by the pages or the
    API; returns the temporary password."""
    steps = [
        ("deactivate", {"reason": reason}),
        ("reactivate", {"reason": reason}),
        ("reset-password", {"reason": reason}),
    ]
    temporary = None
    for action, body in steps:
        if page:
            response = post_form(client, f"/users/{name}/{action}", body)
            assert response.status_code in (200, 302), (action, response.text[:400])
            if action == "reset-password":
                assert response.status_code == 200
                temporary = re.search(
                    r'id="temporary-password"><code>([^<]+)</code>', response.text
                ).group(1)
        else:
            response = api(client, admin_token, "POST", f"/users/{name}/{action}", body)
            assert response.status_code == 200, response.json
            temporary = response.json.get("temporary_password", temporary)
    change = {"role": "monitor", "sites": ["S01", "S02"], "reason": reason}
    if page:
        form = {"role": "monitor", "sites.present": "1", "sites": ["S01", "S02"], "reason": reason}
        response = post_form(client, f"/users/{name}/role", form)
        assert response.status_code == 302, error_summary(response.text)
    else:
        assert api(client, admin_token, "PATCH", f"/users/{name}", change).status_code == 200
    return temporary


def test_account_changes_by_the_pages_are_audited_as_the_apis(client, admin, make_user):
    for name in ("by.page", "by.api"):
        make_user("coordinator", username=name, sites=["S01"], password=PASSWORD)
        make_user("coordinator", sites=["S02"])
    start = last_seq()
    temporary = account_actions(client, admin, "by.page", page=True)
    middle = last_seq()
    account_actions(client, admin, "by.api", page=False)
    page_rows = trail_of("user", "by.page", start)
    api_rows = trail_of("user", "by.api", middle)
    assert [r[0] for r in page_rows] == [
        "account_deactivated",
        "token_revoked",
        "account_reactivated",
        "password_reset",
        "role_changed",
        "role_changed",
    ]
    # The same rows, but for the expiry instant (in the reset's detail, not compared here).
    assert page_rows == api_rows
    # The temporary password: shown once, in the POST's answer; never on a page a GET shows,
    # never in the trail, and it opens the account (only to change its password).
    assert temporary and len(temporary) >= 20
    for url in ("/users", "/users/by.page", "/users/by.page/reset-password", "/audit-trail"):
        assert temporary not in client.get(url).text, url
    db.session.rollback()
    for row in db.session.scalars(select(AuditEvent)):
        assert temporary not in " ".join(str(v) for v in row.__dict__.values()), row.seq
    login = client.post("/api/v1/auth/token", json={"username": "by.page", "password": temporary})
    assert login.status_code == 201 and login.json["must_change_password"] is True
    account = client.get("/users/by.page")
    assert "Monitor" in account.text and "S01, S02" in account.text


def test_a_reason_is_required_and_an_admin_cannot_act_on_themselves(client, admin, make_user):
    make_user("coordinator", username="cora", password=PASSWORD)
    before = counts()
    for action in ("deactivate", "reset-password"):
        refused = post_form(client, f"/users/cora/{action}", {"reason": "  "})
        assert refused.status_code == 422, action
        assert error_summary(refused.text)[0].startswith("Reason:"), action
    refused = post_form(client, "/users/cora/role", {"role": "", "reason": ""})
    assert refused.status_code == 422
    assert [line.split(":")[0] for line in error_summary(refused.text)] == ["Role", "Reason"]
    assert counts() == before
    mine = post_form(client, "/users/root.admin/deactivate", {"reason": "testing"})
    assert mine.status_code == 409 and "your own account" in mine.text
    again = post_form(client, "/users/cora/reactivate", {"reason": "already active"})
    assert again.status_code == 409 and "already active" in again.text
    assert counts() == before
    assert client.get("/users/nobody").status_code == 404


def test_an_unblinded_accounts_password_is_not_reset_by_the_pages(client, admin, make_user):
    """As over the API (403): the admin who saw the temporary password could read arms."""
    make_user("dsmb", username="dora", password=PASSWORD)
    account = client.get("/users/dora")
    assert account.status_code == 200 and "Reset password" not in account.text
    before = counts()
    refused = post_form(client, "/users/dora/reset-password", {"reason": "forgot it"})
    assert refused.status_code == 403 and "command line" in refused.text
    assert "Temporary password" not in refused.text
    assert counts() == before
    api_refused = api(client, admin, "POST", "/users/dora/reset-password", {"reason": "forgot"})
    assert api_refused.status_code == 403


def test_the_email_page_changes_and_removes_the_address_as_patch_does(client, admin, make_user):
    make_user("monitor", username="mona", sites=["S01"])
    make_user("monitor", username="mona.api", sites=["S01"])
    start = last_seq()
    response = post_form(
        client, "/users/mona/email", {"email": "m@example.org", "reason": "new address"}
    )
    assert response.status_code == 302, error_summary(response.text)
    removed = post_form(client, "/users/mona/email", {"email": "", "reason": "left"})
    assert removed.status_code == 302, error_summary(removed.text)
    middle = last_seq()
    for body in ({"email": "m@example.org", "reason": "new address"},
                 {"email": None, "reason": "left"}):  # fmt: skip
        assert api(client, admin, "PATCH", "/users/mona.api", body).status_code == 200
    assert trail_of("user", "mona", start) == trail_of("user", "mona.api", middle)
    assert len(trail_of("user", "mona", start)) == 2
    bad = post_form(client, "/users/mona/email", {"email": "nope", "reason": ""})
    assert bad.status_code == 422
    assert [line.split(":")[0] for line in error_summary(bad.text)] == [
        "E-mail address",
        "Reason",
    ]


# --- the audit trail -----------------------------------------------------------------------


@pytest.fixture
def trial(client, make_site, make_user, make_participant):
    return Trial(client, make_site, make_user, make_participant)


def page_rows(html: str) -> list[list[str]]:
    """The cells of the audit table's rows, as text (a line break where the page has one):
    seq, when, user (and role, sites), action, record (and its site), field, old value,
    new value, reason, detail."""
    body = re.search(r"<tbody>(.*?)</tbody>", html, re.S)
    if body is None:
        return []
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        rows.append([unescape(re.sub(r"<[^>]+>", "", c.replace("<br>", "\n"))) for c in cells])
    return rows


def unescape(text: str) -> str:
    import html

    return html.unescape(text)


def csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"))))


def test_participant_filter_shows_all_its_records_as_the_api(client, trial, admin):
    first = trial.enrol(day0_ago=30)
    second = trial.enrol(day0_ago=30)
    made = history(trial, first.pid, first.day0)
    history(trial, second.pid, second.day0)
    expected = fetch(client, admin, participant=first.pid, order="newest", limit=1000)
    assert len(expected) > 50  # more than one page
    seqs, url = [], f"/audit-trail?participant={first.pid}"
    while url:
        page = client.get(url)
        assert page.status_code == 200
        rows = page_rows(page.text)
        assert 0 < len(rows) <= 50
        seqs += [int(row[0]) for row in rows]
        older = re.search(r'<a href="([^"]+)">Older entries</a>', page.text)
        url = unescape(older.group(1)) if older else None
    assert seqs == [row["seq"] for row in expected]  # newest first, every row once
    assert seqs == sorted(seqs, reverse=True)
    everything = {(row["entity_type"], row["entity_id"]) for row in expected}
    for entity, record_id in made.items():
        assert (entity, record_id) in everything, entity


def test_user_action_and_time_filters(client, trial, admin, make_user):
    first = trial.enrol(day0_ago=None)
    coordinator = trial.coordinator_user["S01"].username
    page = client.get(f"/audit-trail?username={coordinator.upper()}&action=create")
    rows = page_rows(page.text)
    assert rows and all(r[2].split("\n")[0] == coordinator and r[3] == "create" for r in rows)
    assert f"visit {first.screening_id}" in {r[4].split("\n")[0] for r in rows}
    expected = fetch(client, admin, username=coordinator, action="create", order="newest")
    assert [int(r[0]) for r in rows] == [e["seq"] for e in expected]
    today = datetime.now(UTC).date()
    assert page_rows(client.get(f"/audit-trail?action=create&from={today}&to={today}").text)
    tomorrow = today + timedelta(days=1)
    empty = client.get(f"/audit-trail?action=create&from={tomorrow}")
    assert empty.status_code == 200 and page_rows(empty.text) == []
    assert "No entries match the filters" in empty.text
    # Bad filters: each named at once, 422, no rows.
    bad = client.get(f"/audit-trail?participant=S09-9999&from=soon&to={today}")
    assert bad.status_code == 422
    named = [line.split(":")[0] for line in error_summary(bad.text)]
    assert named == ["Participant", "From"]
    backwards = client.get(f"/audit-trail?from={tomorrow}&to={today}")
    assert backwards.status_code == 422 and error_summary(backwards.text) == [
        "To: Must be later than from."
    ]


def test_site_staff_read_their_sites_rows_and_other_roles_are_refused(
    app, client, trial, make_user
):
    s01 = trial.enrol(day0_ago=None)
    s02 = trial.enrol(site="S02", day0_ago=None)
    user, _ = make_user("coordinator", sites=["S01"], password=PASSWORD)
    sign_in(client, user.username, PASSWORD)
    rows = page_rows(client.get("/audit-trail").text)
    assert rows and {r[4].split("\n")[1] for r in rows} == {"S01"}
    assert s02.pid not in client.get("/audit-trail").text
    refused = client.get(f"/audit-trail?participant={s02.pid}")
    assert refused.status_code == 422  # as if it did not exist, as the API says
    assert client.get(f"/audit-trail?participant={s01.pid}").status_code == 200
    stats, _ = make_user("statistician", password=PASSWORD)
    sign_in(client, stats.username, PASSWORD)
    assert client.get("/audit-trail").status_code == 403
    assert client.get("/audit-trail.csv").status_code == 403
    for page in ("audit_trail", "audit_trail_csv"):
        assert policy_for(app, f"audit_pages.{page}") == policy_for(app, "audit.list_audit_events")


def test_the_csv_is_the_pages_rows_with_formulas_neutralised(client, trial, admin):
    trial.enrol(day0_ago=30)
    formula = '=HYPERLINK("http://evil.example","click")'
    body = {"code": "S09", "name": formula, "planned_enrollment": 5}
    assert api(client, admin, "POST", "/sites", body).status_code == 201
    for query in ("?username=root.admin", "?action=create", ""):
        page = client.get(f"/audit-trail{query}")
        assert page.status_code == 200
        shown = page_rows(page.text)
        download = client.get(f"/audit-trail.csv{query}")
        assert download.status_code == 200 and download.mimetype == "text/csv"
        assert "attachment" in download.headers["Content-Disposition"]
        header, *rows = csv_rows(download.data)
        assert header[:2] == ["Seq", "When (UTC)"] and header[-1] == "Hash"
        # The page's rows (the first page of the same filter) lead the download.
        assert len(rows) >= len(shown)
        for cells, row in zip(shown, rows, strict=False):
            values = dict(zip(header, row, strict=True))
            plain = {k: v[1:] if v.startswith("'") else v for k, v in values.items()}
            assert cells[0] == values["Seq"]
            assert values["When (UTC)"].startswith(cells[1].replace("\n", "T"))
            assert (
                cells[2]
                == "\n".join(
                    [
                        plain["User"],
                        ", ".join(v for v in (plain["Role"], plain["User's sites"]) if v),
                    ]
                ).strip()
            )
            assert cells[3] == plain["Action"]
            record = f"{plain['Record type']} {plain['Record']}"
            assert cells[4] == "\n".join(v for v in (record, plain["Record's site"]) if v)
            assert cells[5:] == [
                plain[k] for k in ("Field", "Old value", "New value", "Reason", "Detail")
            ]
    # The formula is shown as text on the page and neutralised in the file (control: it is
    # the formula itself, unchanged, in the API's answer).
    (name_row,) = [r for r in rows if r[6:8] == ["site", "S09"] and r[9] == "name"]
    assert name_row[11] == "'" + formula
    shown = page_rows(client.get("/audit-trail?action=create").text)
    assert formula in {cells[7] for cells in shown}
    raw = fetch(client, admin, entity_type="site", entity_id="S09")
    assert [r["new_value"] for r in raw if r["field"] == "name"] == [formula]
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
    # Each download is recorded, with its filters and row count.
    db.session.rollback()
    recorded = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "audit_trail_downloaded")
    ).all()
    assert len(recorded) == 3
    detail = json.loads(recorded[-1].detail)
    assert detail["rows"] == len(rows) and detail["filters"] == {}
    assert detail["sha256"] == hashlib.sha256(download.data).hexdigest()
    assert download.headers["X-Content-SHA256"] == detail["sha256"]


def test_the_pages_cells_are_the_apis_values(client, trial, admin):
    """The page and the CSV convert rows without the schema's machinery (for speed): the
    same text as AuditEventSchema's dump, row for row, over a whole trail."""
    from trial.audit.pages import CSV_COLUMNS, _text, shown_rows
    from trial.audit.schemas import AuditEventSchema

    enrolled = trial.enrol(day0_ago=30)
    history(trial, enrolled.pid, enrolled.day0)
    db.session.rollback()
    rows = list(db.session.scalars(select(AuditEvent).order_by(AuditEvent.seq)))
    dumped = AuditEventSchema(many=True).dump(rows)
    assert len(rows) > 100
    assert {type(json.loads(r.detail)) for r in rows if r.detail} == {dict}  # JSON kinds seen
    assert shown_rows(rows, CSV_COLUMNS) == [
        {key: _text(event[key]) for _, key in CSV_COLUMNS} for event in dumped
    ]


def test_control_without_neutralising_the_formula_reaches_the_file(
    client, trial, admin, monkeypatch
):
    from trial.audit import pages

    formula = '=HYPERLINK("http://evil.example","click")'
    assert api(client, admin, "POST", "/sites", {"code": "S09", "name": formula}).status_code == 201
    monkeypatch.setattr(pages, "neutralised", lambda cell: cell)
    _, *rows = csv_rows(client.get("/audit-trail.csv?action=create").data)
    assert formula in {row[11] for row in rows}


def test_the_audit_browser_shows_no_arm(client, trial, admin, make_user):
    """Randomized participants of both arms, the key released: neither the page nor the
    CSV names an arm, for a participant's history or the whole trail."""
    enrolled = [trial.enrol(day0_ago=30, sex=sex) for sex in ("F", "M", "F", "M")]
    _, unblinded = make_user("unblinded_statistician")
    assert client.get("/api/v1/exports/key", headers=bearer(unblinded)).status_code == 200
    for query in ["", *(f"?participant={e.pid}" for e in enrolled), "?action=randomize"]:
        page = client.get(f"/audit-trail{query}")
        assert page.status_code == 200 and leaks(page.text, []) == [], query
        download = client.get(f"/audit-trail.csv{query}")
        assert leaks(download.data.decode(), []) == [], query
    assert "randomize" in client.get("/audit-trail?action=randomize").text
