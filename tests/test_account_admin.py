"""An admin deactivates, reactivates and resets accounts over HTTP (issue 23 §6), on both
databases: each with a reason, audited; a deactivated account's tokens die at once; a reset
password opens nothing but its own replacement, enforced centrally for every route."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update

from tests.conftest import bearer
from trial.audit.models import AuditEvent
from trial.auth.models import User
from trial.database import utcnow
from trial.extensions import db

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a password of my own, 2026"


def post(client, token, path, body=None):
    return client.post(f"/api/v1{path}", headers=bearer(token), json=body or {})


def login(client, username, password):
    return client.post("/api/v1/auth/token", json={"username": username, "password": password})


def audit_count() -> int:
    return db.session.scalar(select(db.func.count()).select_from(AuditEvent))


def events(action: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


@pytest.fixture
def admin(make_user):
    return make_user("admin", password=PASSWORD)


def test_a_deactivated_accounts_token_is_refused_at_once(client, admin, make_user):
    _, admin_token = admin
    user, token = make_user("coordinator", username="cora", password=PASSWORD)
    _, bystander = make_user("coordinator")
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 200
    response = post(client, admin_token, "/users/cora/deactivate", {"reason": "left the site"})
    assert response.status_code == 200, response.json
    assert response.json["is_active"] is False
    # The very next request with its token: 401. Another account's token still works.
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 401
    assert client.get("/api/v1/auth/me", headers=bearer(bystander)).status_code == 200
    assert login(client, "cora", PASSWORD).status_code == 401
    (row,) = events("account_deactivated")
    assert (row.entity_id, row.field, row.old_value, row.new_value) == (
        "cora",
        "is_active",
        "true",
        "false",
    )
    assert row.reason == "left the site" and row.role == "admin"
    assert events("token_revoked"), "its tokens are revoked, not only refused"
    # Reactivated: it logs in again, but no old token revives.
    response = post(client, admin_token, "/users/cora/reactivate", {"reason": "back from leave"})
    assert response.status_code == 200 and response.json["is_active"] is True
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 401
    fresh = login(client, "cora", PASSWORD)
    assert fresh.status_code == 201
    assert client.get("/api/v1/auth/me", headers=bearer(fresh.json["token"])).status_code == 200
    (row,) = events("account_reactivated")
    assert row.reason == "back from leave" and (row.old_value, row.new_value) == ("false", "true")


@pytest.mark.parametrize("path", ["deactivate", "reactivate", "reset-password"])
def test_refusals_write_nothing(client, admin, make_user, path):
    admin_user, admin_token = admin
    make_user("coordinator", username="cora")
    cases = [
        (f"/users/{admin_user.username}/{path}", {"reason": "mine"}, 409),  # yourself
        (f"/users/nobody/{path}", {"reason": "why"}, 404),
        (f"/users/cora/{path}", {}, 422),
        (f"/users/cora/{path}", {"reason": "\u200b \ufeff"}, 422),  # no visible reason
        (f"/users/cora/{path}", {"reason": "x", "extra": 1}, 422),
    ]
    if path == "reactivate":
        cases.append(("/users/cora/reactivate", {"reason": "already active"}, 409))
    before = audit_count()
    for url, body, status in cases:
        response = post(client, admin_token, url, body)
        assert response.status_code == status, (url, body, response.json)
        if status == 422:
            assert "reason" in response.json["errors"] or "extra" in response.json["errors"]
    assert audit_count() == before
    assert db.session.scalar(select(User.is_active).where(User.username == "cora")) is True


def test_deactivating_twice_is_a_conflict(client, admin, make_user):
    make_user("coordinator", username="cora")
    assert post(client, admin[1], "/users/cora/deactivate", {"reason": "left"}).status_code == 200
    assert post(client, admin[1], "/users/cora/deactivate", {"reason": "again"}).status_code == 409


def test_only_admins_manage_accounts(client, make_user):
    make_user("coordinator", username="cora")
    for role in ("coordinator", "data_manager", "unblinded_statistician", "monitor"):
        _, token = make_user(role)
        for path in ("deactivate", "reactivate", "reset-password"):
            response = post(client, token, f"/users/cora/{path}", {"reason": "try"})
            assert response.status_code == 403, (role, path)


def test_reset_password_gives_a_one_time_password_that_opens_only_its_change(
    client, admin, make_user, caplog
):
    caplog.set_level(logging.DEBUG)
    _, admin_token = admin
    _, old_token = make_user("coordinator", username="cora", password=PASSWORD)
    _, bystander = make_user("coordinator", password=PASSWORD)
    reset = post(client, admin_token, "/users/cora/reset-password", {"reason": "forgot it"})
    assert reset.status_code == 200, reset.json
    temporary = reset.json["temporary_password"]
    assert len(temporary) >= 12 and reset.json["must_change_password"] is True
    assert reset.headers["Cache-Control"] == "no-store"
    # Old token and old password are gone.
    assert client.get("/api/v1/auth/me", headers=bearer(old_token)).status_code == 401
    assert login(client, "cora", PASSWORD).status_code == 401
    # The temporary password logs in, to a token that only changes the password.
    signed_in = login(client, "cora", temporary)
    assert signed_in.status_code == 201 and signed_in.json["must_change_password"] is True
    token = signed_in.json["token"]
    refused = client.get("/api/v1/participants", headers=bearer(token))
    assert refused.status_code == 403
    assert refused.json["code"] == "password_change_required"
    assert "POST /api/v1/auth/password" in refused.json["message"]
    me = client.get("/api/v1/auth/me", headers=bearer(token))
    assert me.status_code == 200 and me.json["must_change_password"] is True
    # Control in the same test: an account nobody reset reaches the route.
    assert client.get("/api/v1/participants", headers=bearer(bystander)).status_code == 200
    changed = post(
        client,
        token,
        "/auth/password",
        {"current_password": temporary, "new_password": NEW_PASSWORD},
    )
    assert changed.status_code == 204, changed.json
    assert client.get("/api/v1/participants", headers=bearer(token)).status_code == 200
    assert (
        client.get("/api/v1/auth/me", headers=bearer(token)).json["must_change_password"] is False
    )
    assert login(client, "cora", temporary).status_code == 401  # one-time: replaced
    assert login(client, "cora", NEW_PASSWORD).status_code == 201
    # Audited with its reason; the temporary password is nowhere: not in the trail, not in
    # the log.
    (row,) = events("password_reset")
    assert row.reason == "forgot it" and row.entity_id == "cora"
    dump = db.session.execute(text("SELECT * FROM audit_events")).all()
    assert temporary not in repr(dump)
    assert temporary not in caplog.text
    listed = client.get("/api/v1/users", headers=bearer(admin_token)).json
    (cora,) = [u for u in listed if u["username"] == "cora"]
    assert cora["must_change_password"] is False and cora["is_active"] is True


def test_the_password_change_gate_holds_on_every_route(app, client, admin, make_user):
    """Walk the whole URL map with a reset account's token: every route but the three marked
    answers 403 password_change_required, before its role or body is looked at."""
    from trial.auth.policy import is_page_endpoint, policy_for

    _, admin_token = admin
    make_user("data_manager", username="dora", password=PASSWORD)
    temporary = post(client, admin_token, "/users/dora/reset-password", {"reason": "r"}).json[
        "temporary_password"
    ]
    gated = login(client, "dora", temporary).json["token"]
    _, normal = make_user("data_manager")
    usable = {"auth.change_own_password", "auth.who_am_i", "auth.revoke_current_token"}
    checked = 0
    for rule in app.url_map.iter_rules():
        policy = policy_for(app, rule.endpoint)
        if policy is None or policy.public or rule.endpoint in usable:
            continue
        if is_page_endpoint(app, rule.endpoint):
            continue  # pages: the session's gate (tests/test_pages_web.py)
        url = re.sub(r"<(?:[^<>:]+:)?[^<>]+>", "1", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            before = audit_count()
            response = client.open(url, method=method, headers=bearer(gated), json={})
            assert response.status_code == 403, (method, url)
            assert response.json["code"] == "password_change_required", (method, url)
            assert audit_count() == before
            # Control: the same request with an account nobody reset is not stopped there.
            other = client.open(url, method=method, headers=bearer(normal), json={})
            body = other.json if isinstance(other.json, dict) else {}
            assert body.get("code") != "password_change_required", (method, url)
            checked += 1
    assert checked > 50
    assert client.get("/api/v1/auth/me", headers=bearer(gated)).status_code == 200
    assert client.delete("/api/v1/auth/token", headers=bearer(gated)).status_code == 204


def test_an_expired_temporary_password_is_refused_like_a_wrong_one(client, admin, make_user):
    make_user("coordinator", username="cora", password=PASSWORD)
    temporary = post(client, admin[1], "/users/cora/reset-password", {"reason": "r"}).json[
        "temporary_password"
    ]
    assert login(client, "cora", temporary).status_code == 201  # control: valid until then
    db.session.execute(
        update(User)
        .where(User.username == "cora")
        .values(password_expires_at=utcnow() - timedelta(minutes=1))
    )
    db.session.commit()
    expired = login(client, "cora", temporary)
    wrong = login(client, "cora", "not the password")
    assert expired.status_code == wrong.status_code == 401
    assert expired.json == wrong.json
    causes = [row.detail for row in events("login_failed")]
    assert any(detail and "temporary password expired" in detail for detail in causes)


@pytest.mark.parametrize("role", ["unblinded_statistician", "dsmb"])
def test_an_admin_cannot_reset_an_unblinded_account(client, admin, make_user, role):
    """The admin would see the password, sign in with it, set their own and read arms."""
    make_user(role, username="keyholder", password=PASSWORD)
    before = audit_count()
    response = post(client, admin[1], "/users/keyholder/reset-password", {"reason": "r"})
    assert response.status_code == 403
    assert "command line" in response.json["message"]
    assert audit_count() == before
    assert login(client, "keyholder", PASSWORD).status_code == 201


def test_a_reset_voids_a_code_break_approval(client, admin, make_user, approve_code_break):
    from trial.auth.approval import approval_state

    user, _ = make_user("investigator", username="ivy", password=PASSWORD)
    approve_code_break(user, PASSWORD)
    assert approval_state(user).valid
    assert post(client, admin[1], "/users/ivy/reset-password", {"reason": "r"}).status_code == 200
    db.session.expire_all()
    state = approval_state(db.session.scalar(select(User).where(User.username == "ivy")))
    assert not state.valid


def test_user_list_shows_what_an_admin_manages(client, admin, make_user):
    make_user("monitor", username="moe", sites=["S01", "S02"])
    post(client, admin[1], "/users/moe/reset-password", {"reason": "r"})
    post(client, admin[1], "/users/moe/deactivate", {"reason": "left"})
    listed = client.get("/api/v1/users", headers=bearer(admin[1])).json
    (moe,) = [u for u in listed if u["username"] == "moe"]
    assert moe["role"] == "monitor" and moe["sites"] == ["S01", "S02"]
    assert moe["is_active"] is False and moe["must_change_password"] is True
