"""Sign-in, the session and CSRF of the pages (trial/web), through Flask's test client.

The browser tests (tests/browser) drive the same pages in Chromium; here each property is
checked against the database and the audit trail, with a control beside each guard.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from sqlalchemy import func, select

from tests.conftest import bearer
from tests.page_helpers import csrf_token, error_summary, post_form, sign_in
from trial.audit.models import AuditEvent
from trial.auth.models import ApiToken
from trial.extensions import db
from trial.participants.models import Participant

PASSWORD = "a-long-password-1"
REGISTRATION = {"site": "S01", "sex": "F", "year_of_birth": "1979", "consent_date": "2026-11-02"}


def count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def actions(name: str) -> list[AuditEvent]:
    statement = select(AuditEvent).where(AuditEvent.action == name).order_by(AuditEvent.seq)
    return list(db.session.scalars(statement))


@pytest.fixture
def coordinator(make_user):
    return make_user("coordinator", username="carla", password=PASSWORD)[0]


def test_without_a_session_every_page_sends_to_sign_in_and_back(client, coordinator):
    response = client.get("/participants?status=screening")
    assert response.status_code == 302
    assert response.headers["Location"] == "/sign-in?next=/participants?status%3Dscreening"
    assert client.get("/").headers["Location"] == "/sign-in"
    signed = sign_in(client, "carla", PASSWORD)
    assert signed.headers["Location"] == "/"
    assert client.get("/").headers["Location"] == "/worklist"
    assert client.get("/worklist").status_code == 200


def test_sign_in_follows_next_only_to_this_service(client, coordinator):
    for target, expected in [
        ("/participants", "/participants"),
        ("https://evil.example/", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
    ]:
        token = csrf_token(client, "/sign-in")
        response = client.post(
            "/sign-in?" + "next=" + target,
            data={"username": "carla", "password": PASSWORD, "csrf_token": token},
        )
        assert response.headers["Location"] == expected, target
        client.get("/sign-out")


def test_sign_in_is_audited_and_a_wrong_password_is_refused_alike(client, coordinator):
    token = csrf_token(client, "/sign-in")
    wrong = client.post(
        "/sign-in", data={"username": "carla", "password": "nope", "csrf_token": token}
    )
    unknown = client.post(
        "/sign-in", data={"username": "nobody", "password": "nope", "csrf_token": token}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert (
        error_summary(wrong.text)
        == error_summary(unknown.text)
        == ["Password: The username or password is not right."]
    )
    # The name typed is kept in the form, never the password.
    assert 'value="carla"' in wrong.text and "nope" not in wrong.text
    assert [r.username for r in actions("login_failed")] == ["carla", "(unknown name)"]
    sign_in(client, "carla", PASSWORD)
    logins = actions("login")
    assert [(r.username, r.role, r.user_site) for r in logins] == [("carla", "coordinator", "S01")]
    created = [json.loads(r.detail)["label"] for r in actions("token_created")]
    assert created[-1] == "browser session"


def test_empty_sign_in_names_both_fields_and_checks_no_password(client, coordinator):
    token = csrf_token(client, "/sign-in")
    response = client.post("/sign-in", data={"username": "", "password": "", "csrf_token": token})
    assert response.status_code == 422
    assert error_summary(response.text) == [
        "Username: Enter your username.",
        "Password: Enter your password.",
    ]
    assert actions("login_failed") == []


def test_the_session_cookie_is_httponly_strict_and_secure_over_https(client, coordinator):
    sign_in(client, "carla", PASSWORD)
    cookie = client.get_cookie("trial_session")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Strict"
    assert not cookie.secure  # plain HTTP on loopback (the control)
    https = "https://trial.example"
    page = client.get("/sign-in", base_url=https)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    over_https = client.post(
        "/sign-in",
        data={"username": "carla", "password": PASSWORD, "csrf_token": token},
        base_url=https,
        headers={"Referer": f"{https}/sign-in"},  # Flask-WTF checks it over HTTPS
    )
    assert over_https.status_code == 302
    header = over_https.headers["Set-Cookie"]
    assert "Secure" in header and "HttpOnly" in header and "SameSite=Strict" in header


def test_a_form_without_its_csrf_token_is_refused_and_saves_nothing(client, coordinator):
    sign_in(client, "carla", PASSWORD)
    before = count(Participant), count(AuditEvent)
    refused = client.post("/participants/new", data=REGISTRATION)
    forged = client.post("/participants/new", data={**REGISTRATION, "csrf_token": "forged"})
    assert refused.status_code == forged.status_code == 400
    assert "nothing was saved" in refused.text
    assert (count(Participant), count(AuditEvent)) == before
    # Control: the same form with the page's token is accepted.
    accepted = post_form(client, "/participants/new", REGISTRATION)
    assert accepted.status_code == 302 and count(Participant) == before[0] + 1


def test_the_session_ends_after_the_idle_limit_and_its_token_is_revoked(client, coordinator):
    sign_in(client, "carla", PASSWORD)
    assert client.get("/participants").status_code == 200
    with client.session_transaction() as session:
        session["seen"] = time.time() - 14 * 60  # control: 14 minutes idle still works
    assert client.get("/participants").status_code == 200
    with client.session_transaction() as session:
        token = session["token"]
        session["seen"] = time.time() - 15 * 60 - 5
    response = client.get("/participants")
    assert response.status_code == 302 and response.headers["Location"].startswith("/sign-in")
    page = client.get(response.headers["Location"])
    assert "signed out after 15 minutes without activity" in page.text
    row = db.session.scalar(select(ApiToken).where(ApiToken.label == "browser session"))
    db.session.refresh(row)
    assert row.revoked_at is not None
    # The old cookie's token cannot be brought back by resetting the time.
    with client.session_transaction() as session:
        session["token"], session["seen"] = token, time.time()
    assert client.get("/participants").status_code == 302


@pytest.mark.parametrize("config_overrides", [{"SESSION_IDLE_MINUTES": 1}])
def test_the_idle_limit_is_configurable(client, coordinator, config_overrides):
    assert "signed out after 1 minute without activity" in client.get("/sign-in").text
    sign_in(client, "carla", PASSWORD)
    with client.session_transaction() as session:
        session["seen"] = time.time() - 50  # control: within the minute
    assert client.get("/participants").status_code == 200
    with client.session_transaction() as session:
        session["seen"] = time.time() - 65
    assert client.get("/participants").status_code == 302


def test_sign_out_revokes_the_session_token_at_once(client, coordinator):
    sign_in(client, "carla", PASSWORD)
    with client.session_transaction() as session:
        copied = dict(session)
    assert client.get("/sign-out").headers["Location"] == "/sign-in"
    assert client.get("/participants").status_code == 302
    with client.session_transaction() as session:  # a copy of the cookie kept by someone
        session.update(copied)
    assert client.get("/participants").status_code == 302


def test_the_session_token_opens_no_api_and_an_api_token_opens_no_page(client, make_user):
    user, api_token = make_user("coordinator", username="dora", password=PASSWORD)
    sign_in(client, "dora", PASSWORD)
    with client.session_transaction() as session:
        page_token = session["token"]
    assert client.get("/api/v1/participants", headers=bearer(api_token)).status_code == 200
    assert client.get("/api/v1/participants", headers=bearer(page_token)).status_code == 401
    # The cookie alone never authenticates the API.
    assert client.get("/api/v1/participants").status_code == 401
    # An API token placed in the session cookie opens no page.
    with client.session_transaction() as session:
        session["token"] = api_token
    assert client.get("/participants").status_code == 302


def test_a_deactivated_account_loses_its_open_session(client, coordinator, make_user):
    from trial.auth.accounts import deactivate_account

    sign_in(client, "carla", PASSWORD)
    admin = make_user("admin")[0]
    deactivate_account(admin, coordinator, reason="left the study team")
    db.session.commit()
    assert client.get("/participants").status_code == 302


def test_roles_and_sites_are_those_of_the_api(client, coordinator, make_user):
    make_user("statistician", username="stan", password=PASSWORD)
    make_user("coordinator", username="otto", sites=["S02"], password=PASSWORD)
    sign_in(client, "carla", PASSWORD)
    assert post_form(client, "/participants/new", REGISTRATION).status_code == 302
    client.get("/sign-out")
    sign_in(client, "otto", PASSWORD)
    other_site = client.get("/participants/S01-0001")
    missing = client.get("/participants/S01-0999")
    assert other_site.status_code == missing.status_code == 404
    assert other_site.text == missing.text.replace("S01-0999", "S01-0001")
    client.get("/sign-out")
    sign_in(client, "stan", PASSWORD)
    assert client.get("/participants").status_code == 403
    assert client.get("/participants/new").status_code == 403


def test_an_account_reset_by_an_admin_must_set_its_password_first(client, coordinator, make_user):
    from trial.auth.accounts import reset_password

    admin = make_user("admin")[0]
    temporary, _ = reset_password(admin, coordinator, reason="forgot it")
    db.session.commit()
    sign_in(client, "carla", temporary)
    assert client.get("/participants").headers["Location"] == "/password"
    token = csrf_token(client, "/password")
    short = client.post(
        "/password",
        data={"current_password": temporary, "new_password": "short", "csrf_token": token,
              "confirm_password": "short"},
    )  # fmt: skip
    assert short.status_code == 422 and any("New password" in e for e in error_summary(short.text))
    done = client.post(
        "/password",
        data={"current_password": temporary, "new_password": "my-own-long-password",
              "confirm_password": "my-own-long-password", "csrf_token": token},
    )  # fmt: skip
    assert done.status_code == 302
    assert client.get("/participants").status_code == 200


def test_registration_errors_are_summarised_with_values_kept_and_nothing_saved(client, coordinator):
    sign_in(client, "carla", PASSWORD)
    before = count(Participant), count(AuditEvent)
    bad = {"site": "S01", "sex": "", "year_of_birth": "19x9", "consent_date": "2026-13-02"}
    response = post_form(client, "/participants/new", bad)
    assert response.status_code == 422
    summary = error_summary(response.text)
    assert [line.split(":")[0] for line in summary] == ["Sex", "Year of birth", "Consent date"]
    assert 'role="alert"' in response.text
    assert 'value="19x9"' in response.text and 'value="2026-13-02"' in response.text
    assert re.search(r'<a href="#consent_date">', response.text)
    assert 'id="consent_date"' in response.text
    assert (count(Participant), count(AuditEvent)) == before


def test_a_page_registration_is_audited_as_the_api_registration(client, coordinator, make_user):
    sign_in(client, "carla", PASSWORD)
    post_form(client, "/participants/new", REGISTRATION)
    api_token = make_user("coordinator", username="cleo", password=PASSWORD)[1]
    body = {**REGISTRATION, "year_of_birth": 1979}
    created = client.post("/api/v1/participants", json=body, headers=bearer(api_token))
    assert created.status_code == 201

    def trail(participant_id):
        rows = db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.entity_id == participant_id)
            .order_by(AuditEvent.seq)
        )
        return [(r.action, r.entity_type, r.field, r.new_value, r.role) for r in rows]

    assert trail("S01-0001") == trail("S01-0002") != []


def test_failed_sign_ins_are_throttled_per_name_before_any_password_check(client, coordinator):
    token = csrf_token(client, "/sign-in")
    form = {"username": "carla", "password": "wrong", "csrf_token": token}
    statuses = [client.post("/sign-in", data=form).status_code for _ in range(10)]
    assert statuses == [401] * 10  # the control: each of these was checked and recorded
    recorded = len(actions("login_failed"))
    right = client.post("/sign-in", data={**form, "password": PASSWORD})
    assert right.status_code == 429 and "Too many sign-in attempts" in right.text
    assert len(actions("login_failed")) == recorded and actions("login") == []


@pytest.mark.parametrize("config_overrides", [{"SECRET_KEY": None}])
def test_without_a_secret_key_sign_in_says_so_and_the_api_still_works(
    client, make_user, config_overrides
):
    _, token = make_user("coordinator", username="nina", password=PASSWORD)
    page = client.get("/sign-in")
    assert page.status_code == 503 and "needs the SECRET_KEY setting" in page.text
    assert client.get("/api/v1/participants", headers=bearer(token)).status_code == 200


def test_an_unknown_address_is_a_page_and_an_unknown_api_address_is_json(client):
    from trial.http_security import PAGE_CONTENT_SECURITY_POLICY

    page = client.get("/no-such-page")
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert "Page not found" in page.text
    assert page.headers["Content-Security-Policy"] == PAGE_CONTENT_SECURITY_POLICY
    api = client.get("/api/v1/no-such-thing")
    assert api.status_code == 404 and api.json["code"] == "not_found"
    assert api.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
