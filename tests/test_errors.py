"""Every failure answers in one JSON shape, names its cause, and never leaks internals.

``{"code", "status", "message", "errors"}`` for routing errors, malformed and oversized
bodies, validation, authorization and the unexpected; a 500 carries a reference that is
logged with the traceback on the server and nothing else a client could learn from.
"""

from __future__ import annotations

import logging
import re

import pytest
from sqlalchemy import func, select

from tests.conftest import bearer, make_config
from trial import create_app
from trial.audit.models import AuditEvent
from trial.auth.policy import public
from trial.errors import Forbidden, ForbiddenRecorded
from trial.extensions import db
from trial.participants.models import Participant

SHAPE = {"code", "status", "message", "errors"}
VALID = {"site": "S01", "sex": "F", "year_of_birth": 1980, "consent_date": "2026-01-15"}
# Text that would betray the implementation: tracebacks, SQL, driver and exception names.
LEAKS = re.compile(
    r"Traceback|File \"|line \d+|sqlalchemy|sqlite|psycopg|IntegrityError|RuntimeError|"
    r"\bINSERT\b|\bSELECT\b|\bUPDATE\b|\bFROM\b|\bVALUES\b|UNIQUE|duplicate key|constraint|"
    r"password_hash|secret-detail|\.py\b",
    re.IGNORECASE,
)


def assert_error(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == SHAPE, body
    assert body["status"] == status
    assert isinstance(body["code"], str) and re.fullmatch(r"[a-z_]+", body["code"])
    assert isinstance(body["message"], str) and body["message"].strip()
    assert isinstance(body["errors"], dict)
    assert all(
        isinstance(v, list) and all(isinstance(m, str) for m in v) for v in body["errors"].values()
    )
    return body


def stored() -> tuple[int, int]:
    return (
        db.session.scalar(select(func.count()).select_from(Participant)),
        db.session.scalar(select(func.count()).select_from(AuditEvent)),
    )


@pytest.fixture
def coordinator(make_user):
    return make_user("coordinator", sites=["S01"])[1]


# --- routing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    # Outside /api/ an unknown address is a page (tests/test_pages_web.py).
    ["/api/v1/nope", "/api/v1/participants/S01-0001/x", "/api/v2/participants"],
)
@pytest.mark.parametrize("with_token", [False, True])
def test_unknown_route_is_404_in_the_shape(client, coordinator, path, with_token):
    headers = bearer(coordinator) if with_token else {}
    body = assert_error(client.get(path, headers=headers), 404)
    assert body["code"] == "not_found"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("delete", "/api/v1/participants", {"GET", "POST"}),
        ("put", "/api/v1/sites", {"GET", "POST"}),
        ("get", "/api/v1/auth/token", {"POST", "DELETE"}),
        ("post", "/api/v1/health", {"GET"}),
        ("patch", "/api/v1/participants/S01-0001", {"GET"}),
    ],
)
@pytest.mark.parametrize("with_token", [False, True])
def test_wrong_method_is_405_in_the_shape_with_allow(
    client, coordinator, method, path, allowed, with_token
):
    headers = bearer(coordinator) if with_token else {}
    response = getattr(client, method)(path, headers=headers)
    body = assert_error(response, 405)
    assert body["code"] == "method_not_allowed"
    advertised = {m.strip() for m in response.headers["Allow"].split(",")}
    assert allowed <= advertised and method.upper() not in advertised


# --- malformed bodies -------------------------------------------------------------------


@pytest.mark.parametrize(
    "data", [b'{"site": "S01", "sex": ', b"{not json}", b"\xff\xfe\x00", b"{'site': 'S01'}"]
)
def test_invalid_json_body_is_400_naming_the_problem(client, coordinator, data):
    before = stored()
    response = client.post(
        "/api/v1/participants",
        headers=bearer(coordinator),
        data=data,
        content_type="application/json",
    )
    body = assert_error(response, 400)
    assert body["code"] == "invalid_json"
    assert "JSON" in body["message"]
    assert stored() == before


@pytest.mark.parametrize("data", [b"[1, 2]", b'"S01"', b"null", b"42"])
def test_json_that_is_not_an_object_is_422(client, coordinator, data):
    response = client.post(
        "/api/v1/participants",
        headers=bearer(coordinator),
        data=data,
        content_type="application/json",
    )
    body = assert_error(response, 422)
    assert body["errors"], body


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml", None]
)
def test_body_not_sent_as_json_is_415_naming_the_content_type(client, coordinator, content_type):
    import json

    before = stored()
    headers = bearer(coordinator)
    kwargs = {"data": json.dumps(VALID)}
    if content_type:
        kwargs["content_type"] = content_type
    response = client.post("/api/v1/participants", headers=headers, **kwargs)
    body = assert_error(response, 415)
    assert body["code"] == "unsupported_media_type"
    assert "application/json" in body["message"]
    assert (content_type or "no content type") in body["message"]
    assert stored() == before


def test_json_with_charset_is_accepted(client, coordinator):
    import json

    response = client.post(
        "/api/v1/participants",
        headers=bearer(coordinator),
        data=json.dumps(VALID),
        content_type="application/json; charset=utf-8",
    )
    assert response.status_code == 201, response.json


def test_body_over_max_content_length_is_413(app, client, coordinator):
    limit = app.config["MAX_CONTENT_LENGTH"]
    assert limit and limit <= 10 * 1024 * 1024  # a limit is configured, and not a silly one
    before = stored()
    padding = "x" * limit
    data = '{"site": "S01", "pad": "' + padding + '"}'
    response = client.post(
        "/api/v1/participants",
        headers=bearer(coordinator),
        data=data,
        content_type="application/json",
    )
    body = assert_error(response, 413)
    assert body["code"] == "payload_too_large"
    assert stored() == before
    # Just under the limit the body is read (and judged on its content, not its size).
    small = client.post(
        "/api/v1/participants",
        headers=bearer(coordinator),
        data='{"site": "S01", "pad": "' + "x" * 1000 + '"}',
        content_type="application/json",
    )
    assert_error(small, 422)


# --- the usual refusals, all in the same shape ------------------------------------------


def test_auth_and_validation_refusals_share_the_shape(client, make_user, make_participant):
    other = make_participant(site="S02")["participant_id"]
    _, coordinator = make_user("coordinator", sites=["S01"])
    _, statistician = make_user("statistician")
    cases = [
        (client.get("/api/v1/participants"), 401, "unauthorized"),
        (client.get("/api/v1/participants", headers=bearer("not-a-token")), 401, "unauthorized"),
        (
            client.get("/api/v1/participants", headers={"Authorization": "Basic abc"}),
            401,
            "unauthorized",
        ),
        (client.get("/api/v1/participants", headers=bearer(statistician)), 403, "forbidden"),
        (
            client.get(f"/api/v1/participants/{other}", headers=bearer(coordinator)),
            404,
            "not_found",
        ),
        (
            client.post(
                "/api/v1/participants",
                headers=bearer(coordinator),
                json={**VALID, "sex": "X", "extra": 1},
            ),
            422,
            "validation_error",
        ),
        (
            client.get("/api/v1/participants?status=bogus", headers=bearer(coordinator)),
            422,
            "validation_error",
        ),
    ]
    for response, status, code in cases:
        assert assert_error(response, status)["code"] == code
    body = cases[5][0].json
    assert set(body["errors"]) == {"sex", "extra"}


# --- inputs the fuzzer found to be 500s, pinned ------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "field"),
    [
        ("post", "/api/v1/participants", {"json": {**VALID, "site": "S0\x001"}}, "site"),
        ("post", "/api/v1/participants", {"json": {**VALID, "x\x00": 1}}, "x\x00"),
        ("get", "/api/v1/participants?site=S%0001", {}, "site"),
        ("get", "/api/v1/participants/S01-%0001", {}, "participant_id"),
        ("get", "/api/v1/audit?entity_id=a%00b", {}, "entity_id"),
    ],
)
def test_nul_characters_are_refused_with_the_field_named(
    client, make_user, method, path, kwargs, field
):
    """PostgreSQL cannot store NUL in text; it was a 500 there. Now a 422 on both."""
    _, token = make_user("coordinator", sites=["S01"])
    response = getattr(client, method)(path, headers=bearer(token), **kwargs)
    body = assert_error(response, 422)
    assert field in body["errors"]


def test_nul_check_comes_after_authentication(client):
    response = client.get("/api/v1/participants?site=%00")
    assert assert_error(response, 401)["code"] == "unauthorized"


def test_audit_after_seq_beyond_the_column_range_is_422(client, make_user):
    """A 32-bit INTEGER column on PostgreSQL; a larger bound was a 500 (and a 64-bit
    overflow on SQLite)."""
    _, token = make_user("admin")
    for value in (2**31, 2**63, 10**30):
        response = client.get(f"/api/v1/audit?after_seq={value}", headers=bearer(token))
        assert set(assert_error(response, 422)["errors"]) == {"after_seq"}
    ok = client.get(f"/api/v1/audit?after_seq={2**31 - 1}", headers=bearer(token))
    assert ok.status_code == 200 and ok.json == []


def test_overlong_usernames_are_422_not_500(client, make_user):
    """The audit trail records the name in an 80-character column; longer was a 500 on
    PostgreSQL, both at login (the name typed is audited) and at account creation."""
    _, admin = make_user("admin")
    login = client.post("/api/v1/auth/token", json={"username": "u" * 81, "password": "x"})
    assert set(assert_error(login, 422)["errors"]) == {"username"}
    created = client.post(
        "/api/v1/users", headers=bearer(admin), json={"username": "u" * 81, "role": "statistician"}
    )
    assert set(assert_error(created, 422)["errors"]) == {"username"}
    longest = client.post(
        "/api/v1/users", headers=bearer(admin), json={"username": "u" * 80, "role": "statistician"}
    )
    assert longest.status_code == 201, longest.json
    failed = client.post("/api/v1/auth/token", json={"username": "v" * 80, "password": "x"})
    assert assert_error(failed, 401)["code"] == "unauthorized"


def test_monitor_of_three_sites_can_log_in(client, make_user):
    """The audit trail records the user's sites ("S01,S02,S03": 11 characters)."""
    make_user(
        "monitor",
        sites=["S01", "S02", "S03"],
        username="mon3",
        password="correct horse battery staple",
    )
    response = client.post(
        "/api/v1/auth/token", json={"username": "mon3", "password": "correct horse battery staple"}
    )
    assert response.status_code == 201, response.json
    row = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "login"))
    assert row.user_site == "S01,S02,S03"


# --- the unexpected: 500 with a reference and nothing else -----------------------------


@pytest.fixture
def failing_app(database_url, tmp_path, monkeypatch):
    """An app with two deliberately broken public routes and no app context pushed, so each
    request has its own session and teardown, as under gunicorn."""
    from trial.cli_support import system_actor
    from trial.database import utcnow
    from trial.sites.models import Site
    from trial.sites.services import create_site

    application = create_app(make_config(database_url, tmp_path / "instance"))

    def explode():
        create_site(system_actor(), code="S77", name="written before the crash")
        raise RuntimeError("secret-detail: SELECT password_hash FROM users; /srv/trial/x.py")

    def violate_unique():
        db.session.add(
            Site(
                code="S01",
                name="duplicate",
                timezone="UTC",
                planned_enrollment=1,
                participant_counter=0,
                created_at=utcnow(),
            )
        )
        db.session.flush()
        return {"unreachable": True}

    application.add_url_rule(
        "/api/v1/_test/explode", "test_explode", public(explode), methods=["POST"]
    )
    application.add_url_rule(
        "/api/v1/_test/integrity", "test_integrity", public(violate_unique), methods=["POST"]
    )

    def refuse(code: str, error: type):
        def view():
            create_site(system_actor(), code=code, name="written before the refusal")
            raise error("Refused.", {"password": ["Incorrect password."]})

        return public(view)

    for code, error in (("S78", ForbiddenRecorded), ("S79", Forbidden)):
        application.add_url_rule(
            f"/api/v1/_test/refuse-{code}",
            f"test_refuse_{code}",
            refuse(code, error),
            methods=["POST"],
        )
    with application.app_context():
        create_site(system_actor(), code="S01", name="Site S01")
        db.session.commit()
        db.session.remove()
    # Alembic's fileConfig (run by the test template's migration) disables existing loggers;
    # a served app never runs it, so re-enable ours to see what the server logs.
    monkeypatch.setattr(logging.getLogger("trial.errors"), "disabled", False)
    yield application
    with application.app_context():
        db.engine.dispose()


def assert_opaque_500(response, caplog) -> str:
    body = assert_error(response, 500)
    assert body["code"] == "internal_error" and body["errors"] == {}
    text = response.get_data(as_text=True) + " ".join(f"{k}: {v}" for k, v in response.headers)
    assert not LEAKS.search(text), text
    match = re.search(r"[Rr]eference:? ([0-9a-f]{8,})", body["message"])
    assert match, body["message"]
    reference = match.group(1)
    # The server keeps what the client does not get: the reference with the traceback.
    logged = [r for r in caplog.records if reference in r.getMessage()]
    assert logged and logged[0].exc_info is not None
    return reference


def test_unexpected_exception_is_an_opaque_500_and_nothing_is_saved(failing_app, caplog):
    from trial.sites.models import Site

    client = failing_app.test_client()
    with failing_app.app_context():
        audit_before = db.session.scalar(select(func.count()).select_from(AuditEvent))
        db.session.remove()
    caplog.set_level(logging.ERROR, logger="trial.errors")
    first = assert_opaque_500(client.post("/api/v1/_test/explode"), caplog)
    second = assert_opaque_500(client.post("/api/v1/_test/explode"), caplog)
    assert first != second  # one reference per incident
    with failing_app.app_context():
        assert db.session.scalar(select(Site).where(Site.code == "S77")) is None
        assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == audit_before
        db.session.remove()
    # The service carries on.
    assert client.get("/api/v1/health").status_code == 200


def refusals_kept(application) -> dict[str, bool]:
    """Refuse once with a recorded refusal (S78) and once with a plain one (S79), each after
    writing a site and its audit row; return which site each request left."""
    from trial.sites.models import Site

    client = application.test_client()
    kept = {}
    for code in ("S78", "S79"):
        response = client.post(f"/api/v1/_test/refuse-{code}")
        assert assert_error(response, 403)["errors"] == {"password": ["Incorrect password."]}
        with application.app_context():
            kept[code] = db.session.scalar(select(Site).where(Site.code == code)) is not None
            db.session.remove()
    return kept


def test_a_recorded_refusal_keeps_what_was_written_before_it_a_plain_one_does_not(failing_app):
    """The one mechanism behind every refused attempt that stays on record (a wrong password
    at login, signing, a code-break; an exhausted stratum's notice): the service raises a
    ``RecordedRefusal`` and the request commits; any other error discards the request's
    writes."""
    assert refusals_kept(failing_app) == {"S78": True, "S79": False}


def test_control_without_the_handlers_commit_the_recorded_refusal_is_lost(failing_app, monkeypatch):
    import trial.errors

    monkeypatch.setattr(trial.errors, "keep_recorded_refusal", lambda: None)
    assert refusals_kept(failing_app) == {"S78": False, "S79": False}


def test_integrity_error_leaks_no_sql(failing_app, caplog):
    client = failing_app.test_client()
    caplog.set_level(logging.ERROR, logger="trial.errors")
    reference = assert_opaque_500(client.post("/api/v1/_test/integrity"), caplog)
    logged = next(r for r in caplog.records if reference in r.getMessage())
    # The SQL and the constraint are in the server log, for whoever investigates.
    assert "IntegrityError" in "".join(logging.Formatter().formatException(logged.exc_info))
    assert client.get("/api/v1/health").status_code == 200
