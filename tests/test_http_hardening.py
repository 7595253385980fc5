"""HTTP hardening: security headers on every answer, one body limit, tokens only in a header.

Routes are not listed by hand: every rule in ``app.url_map`` is called (with a token of a
role its declared policy admits), so a route a later feature adds (a ZIP export, a PDF
report) is checked the day it ships. Each check is a function that a control test feeds a
deliberately broken app, to show it would fail.
"""

from __future__ import annotations

import io
import json
import re

import pytest
import requests
from sqlalchemy import func, select

from tests.conftest import bearer, make_config
from tests.live_server import live_server
from trial import create_app
from trial.audit.models import AuditEvent
from trial.auth.policy import policy_for, public
from trial.auth.roles import Role
from trial.extensions import db
from trial.http_security import SECURITY_HEADERS, add_security_headers
from trial.participants.models import Participant

SHAPE = {"code", "status", "message", "errors"}
LIMIT = 4096  # a small limit keeps the route matrix quick; the default is checked separately
VALID = {"site": "S01", "sex": "F", "year_of_birth": 1980, "consent_date": "2026-01-15"}
ROLE_PREFERENCE = (
    Role.ADMIN,
    Role.COORDINATOR,
    Role.INVESTIGATOR,
    Role.DATA_MANAGER,
    Role.MONITOR,
    Role.UNBLINDED_STATISTICIAN,
    Role.STATISTICIAN,
    Role.DSMB,
)
BODY_CONTENT_TYPES = ["application/json", "text/plain", "application/x-www-form-urlencoded", None]


@pytest.fixture
def config_overrides() -> dict:
    return {"MAX_CONTENT_LENGTH": LIMIT}


# --- helpers (each also run against a broken app by a control test) -------------------------


def missing_security_headers(response) -> list[str]:
    """Name each required header that is absent or weaker than required."""
    return [
        f"{name}: {response.headers.get(name)!r} (want {value!r})"
        for name, value in SECURITY_HEADERS.items()
        if response.headers.get(name) != value
    ]


def assert_error(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == SHAPE and body["status"] == status, body
    return body


def api_rules(app):
    """(method, rule, endpoint) for every routed method under /api/v1."""
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.rule.startswith("/api/v1"):
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                yield method, rule, rule.endpoint


def url_for_rule(rule) -> str:
    """A concrete URL for a rule: 1 for integer parts, a plausible participant id otherwise."""

    def value(match):
        converter = match.group(1) or ""
        return "1" if converter.startswith("int") else "S01-0001"

    return re.sub(r"<(?:([^<>:]+):)?[^<>]+>", value, rule.rule)


def role_for(policy) -> Role | None:
    if policy.public:
        return None
    return next(role for role in ROLE_PREFERENCE if policy.permits(role.value))


class Tokens:
    """One token per role (site roles at S01), made on first use."""

    def __init__(self, make_user):
        self.make_user = make_user
        self.tokens: dict[Role, str] = {}

    def headers_for(self, app, endpoint: str) -> dict:
        policy = policy_for(app, endpoint)
        assert policy is not None, f"{endpoint} declares no access policy"
        role = role_for(policy)
        if role is None:
            return {}
        if role not in self.tokens:
            self.tokens[role] = self.make_user(role.value)[1]
        return bearer(self.tokens[role])


@pytest.fixture
def tokens(make_user):
    return Tokens(make_user)


def stored() -> tuple[int, int]:
    return (
        db.session.scalar(select(func.count()).select_from(Participant)),
        db.session.scalar(select(func.count()).select_from(AuditEvent)),
    )


def chunked(client, method: str, path: str, body: bytes, **kwargs):
    """Send ``body`` as a server would pass on a chunked request: no length, a terminated
    stream (the test client otherwise declares a Content-Length for any stream)."""
    headers = {**kwargs.pop("headers", {}), "Transfer-Encoding": "chunked"}
    return client.open(
        path,
        method=method,
        input_stream=io.BytesIO(body),
        headers=headers,
        environ_overrides={"wsgi.input_terminated": True},
        **kwargs,
    )


# --- security headers -------------------------------------------------------------------


def test_every_route_carries_the_security_headers(app, client, tokens, make_participant):
    make_participant(site="S01")
    problems, statuses = [], set()
    for method, rule, endpoint in api_rules(app):
        path = url_for_rule(rule)
        for headers in (tokens.headers_for(app, endpoint), {}):  # as its role, and anonymous
            response = client.open(path, method=method, headers=headers)
            statuses.add(response.status_code)
            problems += [
                f"{method} {path} -> {response.status_code}: {p}"
                for p in missing_security_headers(response)
            ]
    assert not problems, "\n".join(problems)
    # The walk met successes and refusals alike, so both paths carry the headers.
    assert {200, 401} <= statuses and statuses & {404, 422}, statuses


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("get", "/api/v1/openapi.json", {}, 200),
        ("get", "/api/v1/health", {}, 200),
        ("get", "/api/v1/nope", {}, 404),
        ("delete", "/api/v1/participants", {}, 405),
        ("options", "/api/v1/health", {}, 200),
        ("options", "/api/v1/participants", {}, 401),
        ("head", "/api/v1/health", {}, 200),
        (
            "post",
            "/api/v1/auth/token",
            {"data": "{not json", "content_type": "application/json"},
            400,
        ),
        ("post", "/api/v1/auth/token", {"data": "x", "content_type": "text/plain"}, 415),
        ("post", "/api/v1/auth/token", {"json": {"username": "u"}}, 422),
        ("post", "/api/v1/auth/token", {"data": "x" * (LIMIT + 1)}, 413),
    ],
)
def test_every_kind_of_answer_carries_the_security_headers(client, method, path, kwargs, status):
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status
    assert not missing_security_headers(response)


def test_the_csv_download_keeps_its_type_and_is_not_stored(client, make_user, make_site):
    """The key file (and every later download) is data: no-store, never sniffed."""
    from randomization import lists

    for code in ("S01", "S02", "S03"):
        make_site(code)
    user, token = make_user("unblinded_statistician")
    lists.generate(user)
    db.session.commit()
    response = client.get("/api/v1/exports/key", headers=bearer(token))
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    assert not missing_security_headers(response)


def test_an_unexpected_500_and_a_weaker_header_a_view_set_still_get_the_headers(
    database_url, tmp_path
):
    """A view that chose its own caching is overruled; an opaque 500 is hardened too."""
    from flask import jsonify

    application = create_app(make_config(database_url, tmp_path / "instance"))

    def cached():
        response = jsonify({"participant_id": "S01-0001"})
        response.headers["Cache-Control"] = "public, max-age=3600"
        response.headers["Content-Security-Policy"] = "default-src *"
        return response

    def explode():
        raise RuntimeError("boom")

    application.add_url_rule("/api/v1/_test/cached", "t_cached", public(cached))
    application.add_url_rule("/api/v1/_test/explode", "t_explode", public(explode))
    client = application.test_client()
    try:
        assert not missing_security_headers(client.get("/api/v1/_test/cached"))
        crashed = client.get("/api/v1/_test/explode")
        assert crashed.status_code == 500
        assert not missing_security_headers(crashed)
    finally:
        with application.app_context():
            db.engine.dispose()


def test_control_the_header_check_catches_an_app_without_the_hook(database_url, tmp_path):
    """Without the hook (a route outside it, or the hook dropped) the check fails."""
    application = create_app(make_config(database_url, tmp_path / "instance"))
    application.after_request_funcs[None].remove(add_security_headers)
    try:
        response = application.test_client().get("/api/v1/health")
        assert response.status_code == 200
        missing = missing_security_headers(response)
        assert len(missing) == len(SECURITY_HEADERS), missing
    finally:
        with application.app_context():
            db.engine.dispose()


# --- body size limit --------------------------------------------------------------------


def test_default_limit_is_one_mebibyte():
    from config import Config

    assert Config.MAX_CONTENT_LENGTH == 1_048_576


@pytest.mark.parametrize("transfer", ["content-length", "chunked"])
def test_oversized_body_is_413_on_every_route_whatever_its_type(app, client, tokens, transfer):
    """Every route and method, with a token its policy admits: 413 in the error shape, before
    the content-type check (415), JSON parsing (400) or validation (422) can answer."""
    before = stored()
    body = b"{" + b" " * LIMIT + b"}"
    problems, count = [], 0
    for method, rule, endpoint in api_rules(app):
        path = url_for_rule(rule)
        headers = tokens.headers_for(app, endpoint)
        for content_type in BODY_CONTENT_TYPES:
            kwargs = {"headers": dict(headers)}
            if content_type:
                kwargs["content_type"] = content_type
            if transfer == "chunked":
                response = chunked(client, method, path, body, **kwargs)
            else:
                response = client.open(path, method=method, data=body, **kwargs)
            count += 1
            try:
                assert assert_error(response, 413)["code"] == "payload_too_large"
                assert str(LIMIT) in response.get_json()["message"]
                assert not missing_security_headers(response)
            except AssertionError as exc:
                problems.append(f"{method} {path} [{content_type}]: {exc}")
    assert not problems, "\n".join(problems[:20])
    assert count >= 4 * 40  # every route was met
    assert stored()[0] == before[0]


@pytest.mark.parametrize("transfer", ["content-length", "chunked"])
def test_oversized_body_without_a_token_is_401_first(client, transfer):
    body = b"x" * (LIMIT + 1)
    if transfer == "chunked":
        response = chunked(client, "POST", "/api/v1/participants", body)
        public_response = chunked(client, "POST", "/api/v1/auth/token", body)
    else:
        response = client.post("/api/v1/participants", data=body)
        public_response = client.post("/api/v1/auth/token", data=body)
    assert assert_error(response, 401)["code"] == "unauthorized"
    assert assert_error(public_response, 413)["code"] == "payload_too_large"


@pytest.mark.parametrize("transfer", ["content-length", "chunked"])
def test_a_body_at_the_limit_is_read_and_one_byte_more_is_refused(client, make_user, transfer):
    """The limit is exact and the same for declared and chunked bodies."""
    _, token = make_user("coordinator", sites=["S01"])
    start = json.dumps({**VALID, "sex": "X"}).encode()
    at_limit = start + b" " * (LIMIT - len(start))
    assert len(at_limit) == LIMIT
    send = (
        (lambda body: chunked(client, "POST", "/api/v1/participants", body, **kw))
        if transfer == "chunked"
        else (lambda body: client.post("/api/v1/participants", data=body, **kw))
    )
    kw = {"headers": bearer(token), "content_type": "application/json"}
    read = assert_error(send(at_limit), 422)  # parsed: the bad sex is named
    assert set(read["errors"]) == {"sex"}
    assert assert_error(send(at_limit + b" "), 413)["code"] == "payload_too_large"


def test_a_valid_object_padded_past_the_limit_is_not_accepted(client, make_user):
    """Werkzeug truncates a chunked body at the limit instead of refusing it; the first
    LIMIT bytes here are a complete, valid registration. It must be a 413, not a 201."""
    _, token = make_user("coordinator", sites=["S01"])
    before = stored()
    body = json.dumps(VALID).encode() + b" " * (2 * LIMIT)
    response = chunked(
        client,
        "POST",
        "/api/v1/participants",
        body,
        headers=bearer(token),
        content_type="application/json",
    )
    assert assert_error(response, 413)["code"] == "payload_too_large"
    assert stored() == before
    # The same registration within the limit, chunked, is accepted: the body is really read.
    ok = chunked(
        client,
        "POST",
        "/api/v1/participants",
        json.dumps(VALID).encode(),
        headers=bearer(token),
        content_type="application/json",
    )
    assert ok.status_code == 201, ok.json


@pytest.mark.slow
def test_limit_and_headers_through_gunicorn(database_url, make_user, tmp_path):
    """Through a real server: a chunked body (no Content-Length) and a declared one."""
    _, token = make_user("coordinator", sites=["S01"])
    db.session.remove()
    headers = {**bearer(token), "Content-Type": "application/json"}

    def pieces(data: bytes, size: int = 1000):
        for i in range(0, len(data), size):
            yield data[i : i + size]

    with live_server(
        database_url, tmp_path / "srv", workers=1, env={"MAX_CONTENT_LENGTH": str(LIMIT)}
    ) as server:
        url = f"{server.api}/participants"
        padded = json.dumps(VALID).encode() + b" " * (2 * LIMIT)
        answers = {
            "chunked oversized": requests.post(url, data=pieces(padded), headers=headers),
            "declared oversized": requests.post(url, data=padded, headers=headers),
            "chunked text oversized": requests.post(
                url, data=pieces(padded), headers={**headers, "Content-Type": "text/plain"}
            ),
        }
        for name, response in answers.items():
            assert response.status_code == 413, (name, response.text)
            assert set(response.json()) == SHAPE, name
            assert not missing_security_headers(response), name
        small = requests.post(url, data=pieces(json.dumps(VALID).encode(), 7), headers=headers)
        assert small.status_code == 201, small.text
        assert not missing_security_headers(small)
        listed = requests.get(url, headers=bearer(token))
        assert [p["participant_id"] for p in listed.json()] == [small.json()["participant_id"]]
        assert "Traceback" not in server.log()


# --- where a token is accepted ----------------------------------------------------------


def token_places(token: str) -> dict[str, dict]:
    """Every place a client might put a token, other than ``Authorization: Bearer``."""
    return {
        "query token": {"query_string": {"token": token}},
        "query access_token": {"query_string": {"access_token": token}},
        "query api_key": {"query_string": {"api_key": token}},
        "query Authorization": {"query_string": {"Authorization": f"Bearer {token}"}},
        "cookie token": {"cookies": {"token": token}},
        "cookie access_token": {"cookies": {"access_token": token}},
        "cookie session": {"cookies": {"session": token}},
        "cookie Authorization": {"cookies": {"Authorization": f"Bearer {token}"}},
        "form access_token": {"form": {"access_token": token}},
        "form token": {"form": {"token": token}},
        "json access_token": {"json": {"access_token": token}},
        "header X-Auth-Token": {"headers": {"X-Auth-Token": token}},
        "header X-Api-Key": {"headers": {"X-Api-Key": token}},
        "header Token": {"headers": {"Token": token}},
        "Authorization without scheme": {"headers": {"Authorization": token}},
        "Authorization Token scheme": {"headers": {"Authorization": f"Token {token}"}},
        "Authorization Basic": {"headers": {"Authorization": f"Basic {token}"}},
    }


def call_with_token_at(client, place: dict, method: str = "GET"):
    cookies = place.get("cookies", {})
    for name, value in cookies.items():
        client.set_cookie(name, value)
    kwargs = {"headers": place.get("headers", {}), "query_string": place.get("query_string")}
    if "form" in place:
        kwargs["data"] = place["form"]
    if "json" in place:
        kwargs["json"] = place["json"]
    try:
        return client.open("/api/v1/participants", method=method, **kwargs)
    finally:
        for name in cookies:
            client.delete_cookie(name)


def token_places_accepted(client, token: str) -> list[str]:
    """Every place other than the Authorization header where the token was honoured."""
    accepted = []
    for name, place in token_places(token).items():
        for method in ("GET", "POST"):
            response = call_with_token_at(client, place, method)
            if response.status_code != 401:
                accepted.append(f"{name} ({method}): {response.status_code}")
            elif response.get_json()["code"] != "unauthorized":
                accepted.append(f"{name} ({method}): 401 off the error shape")
    return accepted


def test_token_is_accepted_only_in_the_authorization_header(client, make_user):
    _, token = make_user("coordinator", sites=["S01"])
    # The header works (so a refusal below is about the place, not the token).
    assert client.get("/api/v1/participants", headers=bearer(token)).status_code == 200
    assert (
        client.get("/api/v1/participants", headers={"Authorization": f"bearer {token}"}).status_code
        == 200
    )
    assert token_places_accepted(client, token) == []


def test_control_the_token_check_catches_a_query_string_token(client, make_user, monkeypatch):
    """A lax lookup that also read ``?access_token=`` or a cookie would be caught."""
    from flask import request

    from trial.auth import policy

    strict = policy.bearer_token_from_request

    def lax():
        return (
            strict()
            or request.args.get("access_token")
            or request.cookies.get("token")
            or request.form.get("token")
        )

    monkeypatch.setattr(policy, "bearer_token_from_request", lax)
    _, token = make_user("coordinator", sites=["S01"])
    accepted = token_places_accepted(client, token)
    assert any(a.startswith("query access_token") for a in accepted), accepted
    assert any(a.startswith("cookie token") for a in accepted), accepted
    assert any(a.startswith("form token") for a in accepted), accepted
