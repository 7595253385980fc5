"""Authentication: CLI accounts, tokens (entropy, hashing, expiry, revocation), password login
with its per-name throttle, and audited role changes (tests/test_login_throttle.py has the
other limits and the step-up).

Every test here checks a property that would let someone in who should not be, or hide who did
what, if it broke.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import MetaData, func, select, update
from sqlalchemy.types import String, Text

from tests.conftest import bearer
from trial.audit.models import AuditEvent
from trial.auth.models import ApiToken, User
from trial.auth.tokens import hash_token
from trial.database import utcnow
from trial.extensions import db

ME = "/api/v1/auth/me"
TOKEN = "/api/v1/auth/token"
PASSWORD = "correct horse battery staple"


# --- helpers ----------------------------------------------------------------------------


def count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def audit_rows(action: str, **filters) -> list[AuditEvent]:
    statement = select(AuditEvent).where(AuditEvent.action == action)
    for column, value in filters.items():
        statement = statement.where(getattr(AuditEvent, column) == value)
    return list(db.session.scalars(statement.order_by(AuditEvent.seq)))


def text_values_in_database() -> dict[tuple[str, str], list[str]]:
    """Every value of every text column of every table, read straight from the database."""
    db.session.commit()
    found: dict[tuple[str, str], list[str]] = {}
    metadata = MetaData()
    # Reflect through the session's own connection: on SQLite a second connection would wait
    # for the session's write lock.
    metadata.reflect(bind=db.session.connection())
    for name, table in metadata.tables.items():
        columns = [c for c in table.columns if isinstance(c.type, String | Text)]
        if not columns:
            continue
        for row in db.session.execute(select(*columns)):
            for column, value in zip(columns, row, strict=True):
                if value is not None:
                    found.setdefault((name, column.name), []).append(value)
    db.session.rollback()
    return found


def places_holding(secret: str) -> list[tuple[str, str]]:
    return sorted(
        place
        for place, values in text_values_in_database().items()
        if any(secret in value for value in values)
    )


def login(client, username, password):
    return client.post(TOKEN, json={"username": username, "password": password})


def cli_create(runner, *args):
    return runner.invoke(args=["users", "create", *args])


# --- users create (CLI) -----------------------------------------------------------------


ROLE_SITE_ARGS = [
    ("admin", []),
    ("coordinator", ["--site", "S01"]),
    ("investigator", ["--site", "S01"]),
    ("monitor", ["--site", "S01", "--site", "S02"]),
    ("data_manager", []),
    ("statistician", []),
    ("unblinded_statistician", []),
    ("dsmb", []),
]


def test_cli_create_prints_a_working_token_last(client, runner, make_site):
    make_site("S01")
    make_site("S02")
    for role, site_args in ROLE_SITE_ARGS:
        username = f"new.{role}"
        result = cli_create(runner, username, "--role", role, *site_args)
        assert result.exit_code == 0, (role, result.output)
        token = result.stdout.strip().splitlines()[-1]
        response = client.get(ME, headers=bearer(token))
        assert response.status_code == 200, (role, response.json)
        assert response.json["username"] == username
        assert response.json["role"] == role
        assert response.json["sites"] == [a for a in site_args if a != "--site"]
        row = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
        assert row is not None and row.user.username == username
        assert len(audit_rows("token_created", entity_id=username)) == 1


BAD_CREATE_ARGS = [
    (["--role", "coordinator"], "exactly one site"),
    (["--role", "investigator"], "exactly one site"),
    (["--role", "monitor"], "at least one site"),
    (["--role", "coordinator", "--site", "S01", "--site", "S02"], "exactly one site"),
    (["--role", "coordinator", "--site", "S99"], "Unknown site 'S99'"),
    (["--role", "superuser"], "Unknown role 'superuser'"),
    (["--role", "admin", "--site", "S01"], "trial-wide and takes no site"),
    (["--role", "statistician", "--site", "S01"], "trial-wide and takes no site"),
    (["--role", "unblinded_statistician", "--site", "S01"], "trial-wide and takes no site"),
    (["--role", "dsmb", "--site", "S01"], "trial-wide and takes no site"),
]


def test_cli_create_refuses_bad_role_and_site_combinations(runner, make_site):
    make_site("S01")
    make_site("S02")
    before = (count(User), count(ApiToken), count(AuditEvent))
    for args, expected in BAD_CREATE_ARGS:
        result = cli_create(runner, "someone", *args)
        assert result.exit_code != 0, args
        assert expected in result.output, (args, result.output)
        assert "Traceback" not in result.output
        assert (count(User), count(ApiToken), count(AuditEvent)) == before, args


def test_cli_create_refuses_duplicate_username(runner, make_user):
    make_user("admin", username="alice")
    before = (count(User), count(ApiToken), count(AuditEvent))
    for name in ("alice", "ALICE", " Alice "):
        result = cli_create(runner, name, "--role", "statistician")
        assert result.exit_code != 0
        assert "already exists" in result.output
    assert (count(User), count(ApiToken), count(AuditEvent)) == before
    assert db.session.scalar(select(User.role).where(User.username == "alice")) == "admin"


def test_cli_create_requires_a_role(runner):
    result = cli_create(runner, "someone")
    assert result.exit_code == 2
    assert "--role" in result.output
    assert count(User) == 0


def test_token_has_at_least_32_random_bytes(runner):
    tokens = []
    for n in range(3):
        result = cli_create(runner, f"user{n}", "--role", "statistician")
        assert result.exit_code == 0, result.output
        tokens.append(result.stdout.strip().splitlines()[-1])
    assert len(set(tokens)) == 3
    for token in tokens:
        assert len(token) >= 43
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        assert len(raw) >= 32


def test_clear_token_is_stored_nowhere_only_its_hash(client, runner, make_user):
    result = cli_create(runner, "carol", "--role", "admin")
    assert result.exit_code == 0, result.output
    cli_token = result.stdout.strip().splitlines()[-1]
    # A second token from a password login, and some audited activity with both tokens.
    make_user("coordinator", username="dave", password=PASSWORD)
    response = login(client, "dave", PASSWORD)
    assert response.status_code == 201
    login_token = response.json["token"]
    assert client.get(ME, headers=bearer(cli_token)).status_code == 200
    assert client.get("/api/v1/audit", headers=bearer(cli_token)).status_code == 200
    assert client.delete(TOKEN, headers=bearer(login_token)).status_code == 204

    values = text_values_in_database()
    tables = {table for table, _ in values}
    assert {"users", "api_tokens", "audit_events"} <= tables
    for token in (cli_token, login_token):
        assert places_holding(token) == []
        # Positive control: the scan does see the hash, in exactly one place.
        assert places_holding(hash_token(token)) == [("api_tokens", "token_hash")]
    # Nor does the password, in clear, appear anywhere.
    assert places_holding(PASSWORD) == []


# --- token expiry, revocation, transport ------------------------------------------------


def test_expired_token_is_refused(client, make_user):
    _, already_expired = make_user("admin", ttl=timedelta(seconds=-1))
    assert client.get(ME, headers=bearer(already_expired)).status_code == 401

    _, token = make_user("admin")
    assert client.get(ME, headers=bearer(token)).status_code == 200
    db.session.execute(
        update(ApiToken)
        .where(ApiToken.token_hash == hash_token(token))
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()
    assert client.get(ME, headers=bearer(token)).status_code == 401


def test_every_bad_token_gets_the_same_401(client, make_user):
    _, expired = make_user("admin", ttl=timedelta(seconds=-1))
    _, revoked = make_user("admin")
    assert client.delete(TOKEN, headers=bearer(revoked)).status_code == 204
    user, inactive = make_user("admin")
    user.is_active = False
    db.session.commit()
    bodies = set()
    for token in (expired, revoked, inactive, "not-a-token", "x" * 43):
        response = client.get(ME, headers=bearer(token))
        assert response.status_code == 401
        bodies.add(response.data)
    assert len(bodies) == 1
    body = json.loads(bodies.pop())
    assert set(body) == {"code", "status", "message", "errors"} and body["status"] == 401


def test_logout_revokes_only_the_token_used(client, make_user):
    from trial.auth.tokens import issue_token
    from trial.cli_support import system_actor

    user, token = make_user("monitor")
    other, _ = issue_token(system_actor(), user, label="second", ttl=timedelta(hours=1))
    db.session.commit()
    response = client.delete(TOKEN, headers=bearer(token))
    assert response.status_code == 204
    assert client.get(ME, headers=bearer(token)).status_code == 401
    assert client.delete(TOKEN, headers=bearer(token)).status_code == 401
    assert client.get(ME, headers=bearer(other)).status_code == 200
    revoked = audit_rows("token_revoked", entity_id=user.username)
    assert len(revoked) == 1 and revoked[0].username == user.username


def test_cli_revoke_tokens_revokes_every_live_token(client, runner, make_user):
    result = cli_create(runner, "erin", "--role", "data_manager")
    first = result.stdout.strip().splitlines()[-1]
    result = runner.invoke(args=["users", "token", "erin"])
    assert result.exit_code == 0, result.output
    second = result.stdout.strip().splitlines()[-1]
    _, bystander = make_user("data_manager", username="frank")
    for token in (first, second, bystander):
        assert client.get(ME, headers=bearer(token)).status_code == 200

    result = runner.invoke(args=["users", "revoke-tokens", "erin"])
    assert result.exit_code == 0, result.output
    assert "revoked 2 token(s)" in result.output
    assert client.get(ME, headers=bearer(first)).status_code == 401
    assert client.get(ME, headers=bearer(second)).status_code == 401
    assert client.get(ME, headers=bearer(bystander)).status_code == 200
    assert len(audit_rows("token_revoked", entity_id="erin")) == 2

    again = runner.invoke(args=["users", "revoke-tokens", "erin"])
    assert again.exit_code == 0 and "revoked 0 token(s)" in again.output
    missing = runner.invoke(args=["users", "revoke-tokens", "nobody"])
    assert missing.exit_code != 0 and "no user 'nobody'" in missing.output


def test_token_is_accepted_only_as_an_authorization_bearer_header(client, make_user):
    _, token = make_user("admin")
    assert client.get(ME, headers=bearer(token)).status_code == 200
    assert client.get(ME, headers={"Authorization": f"bearer {token}"}).status_code == 200
    elsewhere = {
        "token query": lambda: client.get(f"{ME}?token={token}"),
        "access_token query": lambda: client.get(f"{ME}?access_token={token}"),
        "form body": lambda: client.get(ME, data={"access_token": token, "token": token}),
        "Token scheme": lambda: client.get(ME, headers={"Authorization": f"Token {token}"}),
        "Basic scheme": lambda: client.get(ME, headers={"Authorization": f"Basic {token}"}),
        "bare header": lambda: client.get(ME, headers={"Authorization": token}),
        "X-Api-Token header": lambda: client.get(ME, headers={"X-Api-Token": token}),
    }
    for how, send in elsewhere.items():
        assert send().status_code == 401, how
    client.set_cookie("token", token)
    client.set_cookie("access_token", token)
    assert client.get(ME).status_code == 401


# --- password login ---------------------------------------------------------------------


def test_password_login_issues_a_working_token_and_is_audited(client, make_user):
    user, _ = make_user("investigator", username="grace", password=PASSWORD)
    assert user.password_hash.startswith("$argon2id$")
    before = count(ApiToken)
    response = login(client, "Grace", PASSWORD)  # names are case-insensitive
    assert response.status_code == 201, response.json
    body = response.json
    assert body["username"] == "grace" and body["role"] == "investigator"
    assert "password" not in body and "token_hash" not in body
    assert len(body["token"]) >= 43
    assert count(ApiToken) == before + 1
    me = client.get(ME, headers=bearer(body["token"]))
    assert me.status_code == 200 and me.json["username"] == "grace"

    logins = audit_rows("login", entity_id="grace")
    assert len(logins) == 1
    assert logins[0].user_id == user.id and logins[0].role == "investigator"
    assert logins[0].user_site == "S01"
    created = audit_rows("token_created", entity_id="grace")
    assert len(created) == 2  # the fixture's token, then the login's
    assert created[-1].username == "grace"
    assert json.loads(created[-1].detail)["label"] == "password login"
    assert audit_rows("login_failed") == []


def test_api_created_password_is_argon2id(client, make_user):
    _, admin = make_user("admin")
    response = client.post(
        "/api/v1/users",
        headers=bearer(admin),
        json={"username": "heidi", "role": "statistician", "password": PASSWORD},
    )
    assert response.status_code == 201, response.json
    assert "password" not in response.json
    stored = db.session.scalar(select(User.password_hash).where(User.username == "heidi"))
    assert stored.startswith("$argon2id$")
    assert PasswordHasher().verify(stored, PASSWORD)
    assert login(client, "heidi", PASSWORD).status_code == 201
    assert places_holding(PASSWORD) == []


def test_unknown_user_and_wrong_password_get_identical_answers(client, make_user):
    make_user("coordinator", username="ivan", password=PASSWORD)
    make_user("coordinator", username="judy")  # token-only: no password
    inactive, _ = make_user("coordinator", username="ken", password=PASSWORD)
    inactive.is_active = False
    db.session.commit()
    answers = [
        login(client, "ivan", "wrong password!"),
        login(client, "nobody-here", "wrong password!"),
        login(client, "judy", "wrong password!"),
        login(client, "ken", PASSWORD),  # right password, disabled account
    ]
    assert {r.status_code for r in answers} == {401}
    assert len({r.data for r in answers}) == 1
    assert len({(r.content_type, r.content_length) for r in answers}) == 1
    assert json.loads(answers[0].data)["code"] == "unauthorized"
    assert count(ApiToken, ApiToken.label == "password login") == 0


def test_unknown_user_costs_the_same_argon2_work(client, make_user, monkeypatch):
    make_user("coordinator", username="ivan", password=PASSWORD)
    calls = []
    original = PasswordHasher.verify

    def counting_verify(self, hash, password):
        calls.append(hash[:10])
        return original(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting_verify)
    login(client, "ivan", "wrong password!")
    login(client, "nobody-here", "wrong password!")
    assert calls == ["$argon2id$", "$argon2id$"]


def test_each_failure_is_a_recorded_security_event(client, make_user):
    user, _ = make_user("coordinator", username="ivan", password=PASSWORD)
    login(client, "ivan", "wrong-1")
    login(client, "ivan", "wrong-2")
    login(client, "mallory", "guess")
    failed = audit_rows("login_failed")
    # An account's name is recorded; a name that is no account's is not (see below).
    assert [(r.username, r.entity_id) for r in failed] == [
        ("ivan", "ivan"),
        ("ivan", "ivan"),
        ("(unknown name)", "(unknown name)"),
    ]
    # The attempt is not by the account holder: no user, role or site is attributed.
    assert all(r.user_id is None and r.role is None and r.user_site is None for r in failed)
    assert places_holding("wrong-1") == [] and places_holding("guess") == []
    assert places_holding("mallory") == []
    response = client.get(
        "/api/v1/audit?action=login_failed", headers=bearer(make_user("admin")[1])
    )
    assert [e["username"] for e in response.json] == ["ivan", "ivan", "(unknown name)"]
    assert user.id not in {r.user_id for r in failed}


TYPED_AS_NAME = "Tr0ub4dor&3-my-real-password"


def _failed_login_rows_after_typing_a_password_as_the_name(client, make_user):
    make_user("coordinator", username="ivan", password=PASSWORD)
    for _ in range(2):
        assert login(client, TYPED_AS_NAME, "ivan").status_code == 401
    login(client, "another-unknown", "x")
    return audit_rows("login_failed")


def test_a_password_typed_as_the_name_is_stored_nowhere(client, make_user):
    """Item 10: only an account's name is recorded; other text leaves a keyed digest, so
    repeated attempts on one unknown name can be matched without being readable."""
    rows = _failed_login_rows_after_typing_a_password_as_the_name(client, make_user)
    assert places_holding(TYPED_AS_NAME) == [] and places_holding(TYPED_AS_NAME.lower()) == []
    assert {(r.username, r.entity_id) for r in rows} == {("(unknown name)", "(unknown name)")}
    digests = [json.loads(r.detail)["name_digest"] for r in rows]
    assert digests[0] == digests[1] != digests[2]  # the same typed name, then another
    assert all(len(d) == 16 and TYPED_AS_NAME.lower() not in d for d in digests)


def test_control_recording_the_typed_name_would_be_caught(client, make_user, monkeypatch):
    """Negative control: the former behaviour (the name as typed, verbatim) fails the scan."""
    from trial.audit.services import record_event
    from trial.auth import signin

    def verbatim(name, user):
        record_event(None, "login_failed", entity_type="user", entity_id=name, username=name)

    monkeypatch.setattr(signin, "_record_failed_login", verbatim)
    _failed_login_rows_after_typing_a_password_as_the_name(client, make_user)
    assert ("audit_events", "username") in places_holding(TYPED_AS_NAME.lower())


def _fail_ten_times_then_try(client, username, final_password):
    answers = [login(client, username, f"wrong password {n}") for n in range(10)]
    answers.append(login(client, username, final_password))
    answers.append(login(client, username, "wrong password again"))
    return answers


def test_ten_failures_throttle_the_name_even_for_the_right_password(client, make_user):
    make_user("coordinator", username="ivan", password=PASSWORD)
    answers = _fail_ten_times_then_try(client, "ivan", PASSWORD)
    statuses = [r.status_code for r in answers]
    assert statuses[:10] == [401] * 10
    assert statuses[10:] == [429, 429], statuses
    assert answers[10].json["code"] == "too_many_requests"
    assert set(answers[10].json) == {"code", "status", "message", "errors"}
    assert 0 < int(answers[10].headers["Retry-After"]) <= 15 * 60 + 1  # whole seconds, up
    assert "token" not in answers[10].json
    assert count(ApiToken, ApiToken.label == "password login") == 0
    assert audit_rows("login") == []
    # A throttled attempt writes nothing: ten failures, ten rows, and no row for the 429s.
    assert len(audit_rows("login_failed", username="ivan")) == 10
    assert count(AuditEvent, AuditEvent.action.like("login%")) == 10
    # The throttle is per name: another account is unaffected.
    make_user("coordinator", username="judy", password=PASSWORD)
    assert login(client, "judy", PASSWORD).status_code == 201


def test_unknown_name_is_throttled_the_same_way_with_the_same_answers(client, make_user):
    make_user("coordinator", username="ivan", password=PASSWORD)
    known = _fail_ten_times_then_try(client, "ivan", PASSWORD)
    unknown = _fail_ten_times_then_try(client, "nobody-here", PASSWORD)
    assert [(r.status_code, r.data) for r in known] == [(r.status_code, r.data) for r in unknown]
    assert len(audit_rows("login_failed", username="(unknown name)")) == 10


def test_failures_just_under_the_limit_do_not_lock(client, make_user):
    make_user("coordinator", username="ivan", password=PASSWORD)
    for _ in range(9):
        assert login(client, "ivan", "wrong password").status_code == 401
    assert login(client, "ivan", PASSWORD).status_code == 201


class TestConfiguredThrottle:
    """The per-name limit and its window come from configuration, not constants."""

    @pytest.fixture
    def config_overrides(self):
        return {"LOGIN_LIMIT_PER_NAME": "3 per 2 seconds"}

    def test_three_failures_throttle(self, client, make_user):
        make_user("coordinator", username="ivan", password=PASSWORD)
        assert [login(client, "ivan", "nope").status_code for _ in range(3)] == [401] * 3
        assert login(client, "ivan", PASSWORD).status_code == 429

    def test_failures_leave_the_window(self, client, make_user):
        make_user("coordinator", username="ivan", password=PASSWORD)
        assert [login(client, "ivan", "nope").status_code for _ in range(3)] == [401] * 3
        assert login(client, "ivan", PASSWORD).status_code == 429
        time.sleep(2.1)
        assert login(client, "ivan", PASSWORD).status_code == 201


def test_login_body_is_validated(client):
    response = client.post(TOKEN, json={"username": "ivan"})
    assert response.status_code == 422
    assert set(response.json["errors"]) == {"password"}
    response = client.post(TOKEN, json={"username": "ivan", "password": "x", "otp": 1})
    assert response.status_code == 422
    assert set(response.json["errors"]) == {"otp"}


# --- role changes -----------------------------------------------------------------------


def patch_role(client, token, username, **body):
    return client.patch(f"/api/v1/users/{username}", headers=bearer(token), json=body)


def test_role_change_needs_a_reason(client, make_user):
    admin, token = make_user("admin")
    make_user("coordinator", username="olivia", sites=["S01"])
    for body in (
        {"role": "statistician"},
        {"role": "statistician", "reason": ""},
        {"role": "statistician", "reason": "   "},
    ):
        response = patch_role(client, token, "olivia", **body)
        assert response.status_code == 422, response.json
        assert set(response.json["errors"]) == {"reason"}
    assert db.session.scalar(select(User.role).where(User.username == "olivia")) == "coordinator"
    assert audit_rows("role_changed") == []


def test_role_change_is_audited_with_old_and_new_values(client, make_user):
    admin, token = make_user("admin", username="root")
    olivia, olivia_token = make_user("coordinator", username="olivia", sites=["S01"])
    assert client.get("/api/v1/participants", headers=bearer(olivia_token)).status_code == 200

    response = patch_role(
        client,
        token,
        "olivia",
        role="statistician",
        sites=[],
        reason="moved to the statistics team",
    )
    assert response.status_code == 200, response.json
    assert response.json["role"] == "statistician" and response.json["sites"] == []

    rows = audit_rows("role_changed", entity_id="olivia")
    changes = {row.field: (json.loads(row.old_value), json.loads(row.new_value)) for row in rows}
    assert changes == {"role": ("coordinator", "statistician"), "sites": (["S01"], [])}
    for row in rows:
        assert row.reason == "moved to the statistics team"
        assert (row.user_id, row.username, row.role) == (admin.id, "root", "admin")
    # The new role takes effect on the user's existing token at once.
    assert client.get("/api/v1/participants", headers=bearer(olivia_token)).status_code == 403
    assert client.get(ME, headers=bearer(olivia_token)).json["role"] == "statistician"


def test_unchanged_sites_are_not_recorded_as_a_change(client, make_user):
    _, token = make_user("admin")
    make_user("coordinator", username="olivia", sites=["S01"])
    response = patch_role(
        client, token, "olivia", role="investigator", sites=["S01"], reason="promoted"
    )
    assert response.status_code == 200
    rows = audit_rows("role_changed", entity_id="olivia")
    assert [(r.field, r.old_value, r.new_value) for r in rows] == [
        ("role", '"coordinator"', '"investigator"')
    ]


@pytest.mark.parametrize("spelling", ["root", "ROOT"])
def test_admin_cannot_change_their_own_role(client, make_user, spelling):
    admin, token = make_user("admin", username="root")
    for role in ("data_manager", "unblinded_statistician"):
        response = patch_role(
            client, token, spelling, role=role, sites=[], reason="I want to see more"
        )
        assert response.status_code == 403, role
        assert response.json["code"] == "forbidden"
        assert "own role" in response.json["message"]
    db.session.expire_all()
    assert db.session.get(User, admin.id).role == "admin"
    assert audit_rows("role_changed") == []


def test_role_change_refuses_bad_input(client, make_user, make_site):
    make_site("S02")
    _, token = make_user("admin")
    make_user("coordinator", username="olivia", sites=["S01"])
    cases = [
        ({"role": "overlord", "reason": "r"}, 422),
        ({"role": "monitor", "sites": [], "reason": "r"}, 422),
        ({"role": "coordinator", "sites": ["S01", "S02"], "reason": "r"}, 422),
        ({"role": "statistician", "sites": ["S01"], "reason": "r"}, 422),
        ({"role": "monitor", "sites": ["S99"], "reason": "r"}, 422),
        ({"role": "monitor", "sites": ["S01"], "reason": "r", "is_active": True}, 422),
    ]
    for body, status in cases:
        response = patch_role(client, token, "olivia", **body)
        assert response.status_code == status, (body, response.json)
    assert patch_role(client, token, "nobody", role="dsmb", reason="r").status_code == 404
    assert db.session.scalar(select(User.role).where(User.username == "olivia")) == "coordinator"
    assert audit_rows("role_changed") == []


def test_cli_set_role_changes_and_audits(client, runner, make_user, make_site):
    make_site("S02")
    olivia, token = make_user("coordinator", username="olivia", sites=["S01"])
    result = runner.invoke(
        args=[
            "users",
            "set-role",
            "olivia",
            "--role",
            "monitor",
            "--site",
            "S01",
            "--site",
            "S02",
            "--reason",
            "now monitors two sites",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "olivia is now monitor" in result.output
    me = client.get(ME, headers=bearer(token)).json
    assert me["role"] == "monitor" and me["sites"] == ["S01", "S02"]
    rows = audit_rows("role_changed", entity_id="olivia")
    changes = {row.field: (json.loads(row.old_value), json.loads(row.new_value)) for row in rows}
    assert changes == {"role": ("coordinator", "monitor"), "sites": (["S01"], ["S01", "S02"])}
    assert all(
        r.reason == "now monitors two sites" and r.role == "system" and r.username.startswith("cli")
        for r in rows
    )


BAD_SET_ROLE_ARGS = [
    (["olivia", "--role", "monitor", "--site", "S01"], "--reason"),
    (["olivia", "--role", "overlord", "--reason", "r"], "Unknown role"),
    (["olivia", "--role", "monitor", "--reason", "r"], "at least one site"),
    (["olivia", "--role", "dsmb", "--site", "S01", "--reason", "r"], "takes no site"),
    (["olivia", "--role", "dsmb", "--reason", "   "], "reason"),
    # Invisible characters only: str.strip() keeps them (the former check let them through).
    (["olivia", "--role", "dsmb", "--reason", "\u200b\ufeff"], "reason"),
    (["nobody", "--role", "dsmb", "--reason", "r"], "no user 'nobody'"),
]


def test_cli_set_role_refuses_bad_input(runner, make_user):
    assert "\u200b\ufeff".strip()  # control: the former test (strip) saw a reason here
    make_user("coordinator", username="olivia", sites=["S01"])
    for args, expected in BAD_SET_ROLE_ARGS:
        result = runner.invoke(args=["users", "set-role", *args])
        assert result.exit_code != 0, args
        assert expected in result.output, (args, result.output)
    db.session.expire_all()
    assert db.session.scalar(select(User.role).where(User.username == "olivia")) == "coordinator"
    assert audit_rows("role_changed") == []


# --- admin is not unblinded by being admin ----------------------------------------------


@pytest.mark.parametrize("role", ["unblinded_statistician", "dsmb"])
def test_admin_cannot_create_an_unblinded_account_through_the_api(client, make_user, role):
    _, admin = make_user("admin")
    before = (count(User), count(AuditEvent))
    response = client.post(
        "/api/v1/users",
        headers=bearer(admin),
        json={"username": "sock.puppet", "role": role, "password": PASSWORD},
    )
    assert response.status_code == 403, response.json
    assert (count(User), count(AuditEvent)) == before
    assert login(client, "sock.puppet", PASSWORD).status_code == 401


@pytest.mark.parametrize("role", ["unblinded_statistician", "dsmb"])
def test_admin_cannot_move_an_account_into_an_unblinded_role(client, make_user, role):
    _, admin = make_user("admin")
    # An account whose password the admin chose: the route to the key if this were allowed.
    response = client.post(
        "/api/v1/users",
        headers=bearer(admin),
        json={"username": "sock.puppet", "role": "statistician", "password": PASSWORD},
    )
    assert response.status_code == 201
    response = patch_role(client, admin, "sock.puppet", role=role, reason="need the key")
    assert response.status_code == 403, response.json
    assert (
        db.session.scalar(select(User.role).where(User.username == "sock.puppet")) == "statistician"
    )
    assert audit_rows("role_changed") == []
    puppet = login(client, "sock.puppet", PASSWORD).json["token"]
    assert client.get("/api/v1/exports/key", headers=bearer(puppet)).status_code == 403


def test_unblinded_roles_are_granted_and_removed_at_the_command_line(client, runner, make_user):
    _, admin = make_user("admin")
    user, token = make_user("statistician", username="uma")
    result = runner.invoke(
        args=[
            "users",
            "set-role",
            "uma",
            "--role",
            "unblinded_statistician",
            "--reason",
            "holds the key",
        ]
    )
    assert result.exit_code == 0, result.output
    assert client.get(ME, headers=bearer(token)).json["role"] == "unblinded_statistician"
    # An admin may take the role away again through the API.
    response = patch_role(client, admin, "uma", role="statistician", reason="rotated off")
    assert response.status_code == 200, response.json
    assert client.get(ME, headers=bearer(token)).json["role"] == "statistician"
