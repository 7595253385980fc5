"""Items 4 and 5 of issue 22: anonymous traffic can neither block emergency unblinding nor
write the audit trail without bound.

- Failed anonymous logins under an investigator's name throttle that name's logins, never
  the investigator's step-up (the password re-typed for a code-break or a signature) with
  the token they hold. Negative control: a step-up that shares the login's per-name counter,
  as the old lockout table did, is blocked by the same flood.
- An anonymous flood of N attempts writes at most the trial-wide cap of failed-login rows
  and checks at most that many passwords; a throttled attempt (429) writes nothing and does
  no argon2 work. Negative control: the same flood with the limiter off writes N rows.
"""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from flask_limiter import HeaderNames
from sqlalchemy import func, select

from randomization import lists
from tests.conftest import approve_for_code_break, bearer, make_ready_for_randomization
from trial.audit.models import AuditEvent
from trial.auth import throttle
from trial.errors import ConfigurationError
from trial.extensions import db

PASSWORD = "correct horse battery staple"
TOKEN = "/api/v1/auth/token"


def login(client, username, password, address="192.0.2.10"):
    return client.post(
        TOKEN,
        json={"username": username, "password": password},
        environ_base={"REMOTE_ADDR": address},
    )


def audit_count(action: str) -> int:
    return db.session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
    )


@pytest.fixture
def argon2_calls(monkeypatch):
    calls = []
    original = PasswordHasher.verify

    def counting(self, hash, password):
        calls.append(1)
        return original(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    return calls


def assert_throttled(response):
    assert response.status_code == 429, response.json
    assert set(response.json) == {"code", "status", "message", "errors"}
    assert response.json["code"] == "too_many_requests" and response.json["status"] == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert "token" not in response.json


# --- item 4: the step-up is not blockable by anonymous traffic ----------------------------


@pytest.fixture
def emergency(client, make_site, make_user, make_participant):
    """An approved investigator at S01 holding a token, and a randomized participant."""
    make_site("S01", planned_enrollment=10)
    lists.generate(make_user("unblinded_statistician")[0])
    db.session.commit()
    user, token = make_user("investigator", username="ines", password=PASSWORD)
    approve_for_code_break(user, PASSWORD)
    _, coordinator = make_user("coordinator")
    pid = make_participant(site="S01")["participant_id"]
    make_ready_for_randomization(client, bearer(coordinator), pid)
    response = client.post(
        f"/api/v1/participants/{pid}/randomize",
        headers=bearer(coordinator),
        json={"eligibility_confirmed": True},
    )
    assert response.status_code == 201
    return {"pid": pid, "token": token, "user": user}


def _flood_then_break_the_code(client, emergency):
    """Anyone, from many addresses, fails logins under the investigator's name; then the
    investigator, token in hand, breaks the code."""
    answers = [login(client, "ines", f"guess {n}", address=f"198.51.100.{n}") for n in range(25)]
    assert {r.status_code for r in answers[:10]} == {401}
    for answer in answers[10:]:
        assert_throttled(answer)
    assert_throttled(login(client, "ines", PASSWORD))  # the name's logins are throttled...
    return client.post(
        f"/api/v1/participants/{emergency['pid']}/code-break",
        headers=bearer(emergency["token"]),
        json={"reason": "suspected overdose", "password": PASSWORD},
    )


def test_anonymous_failures_do_not_block_the_code_break(client, emergency):
    response = _flood_then_break_the_code(client, emergency)
    # ... but the step-up of the investigator who holds a token is not.
    assert response.status_code == 200, response.json
    assert response.json["arm"] in ("baclofen", "placebo")


def test_control_a_step_up_sharing_the_name_counter_would_be_blocked(
    client, emergency, monkeypatch
):
    """Negative control: count the step-up under the login's per-name key (what the shared
    lockout table did) and the same flood answers the investigator 429."""
    from trial.auth.signin import keyed_digest

    monkeypatch.setattr(
        throttle,
        "_step_up_keys",
        lambda user: ("trial", "name:" + keyed_digest(user.username), "auth.create_token"),
    )
    monkeypatch.setitem(
        client.application.config,
        "STEP_UP_LIMIT",
        client.application.config["LOGIN_LIMIT_PER_NAME"],
    )
    response = _flood_then_break_the_code(client, emergency)
    assert_throttled(response)


def test_anonymous_failures_do_not_block_a_signature(client, make_site, make_user, monkeypatch):
    """The other step-up: the visit signature's password check answers, whatever the flood."""
    from trial.auth.passwords import verify_password

    make_site("S01")
    user, _ = make_user("investigator", username="ines", password=PASSWORD)
    for n in range(15):
        login(client, "ines", f"guess {n}", address=f"198.51.100.{n}")
    assert_throttled(login(client, "ines", PASSWORD))
    assert verify_password(user, PASSWORD) is True
    assert verify_password(user, "wrong") is False


def test_the_step_up_has_its_own_limit_per_account(client, make_site, make_user):
    """The owner's own wrong passwords are limited (a stolen token cannot guess forever);
    the budget is the account's, not the name's, and another account's is untouched."""
    from trial.auth.passwords import verify_password
    from trial.auth.throttle import StepUpThrottled

    make_site("S01")
    ines, _ = make_user("investigator", username="ines", password=PASSWORD)
    other, _ = make_user("investigator", username="ivan", password=PASSWORD)
    assert [verify_password(ines, f"wrong {n}") for n in range(10)] == [False] * 10
    with pytest.raises(StepUpThrottled) as refused:
        verify_password(ines, PASSWORD)
    assert refused.value.status == 429 and refused.value.retry_after >= 1
    assert verify_password(other, PASSWORD) is True
    # Logins under the name are a separate budget: the owner can still log in.
    assert login(client, "ines", PASSWORD).status_code == 201


# --- item 5: an anonymous flood costs bounded rows and time -------------------------------


class TestFloodIsBounded:
    CAP = 7
    FLOOD = 40

    @pytest.fixture
    def config_overrides(self):
        # The trial-wide cap is what bounds a flood from many addresses and names; the
        # per-address and per-name limits are raised out of the way to show that.
        return {
            "LOGIN_LIMIT_TRIAL_WIDE": f"{self.CAP} per 15 minutes",
            "LOGIN_LIMIT_PER_ADDRESS": "1000 per minute",
            "LOGIN_LIMIT_PER_NAME": "1000 per minute",
        }

    def flood(self, client):
        return [
            login(client, f"name-{n}", "guess", address=f"203.0.113.{n % 250}")
            for n in range(self.FLOOD)
        ]

    def test_a_flood_writes_at_most_the_cap_and_checks_at_most_the_cap(self, client, argon2_calls):
        before = audit_count("login_failed")
        answers = self.flood(client)
        rows = audit_count("login_failed") - before
        assert rows <= self.CAP and rows == self.CAP  # bounded, and the cap was reached
        assert len(argon2_calls) == self.CAP  # throttled attempts checked no password
        assert [r.status_code for r in answers] == [401] * self.CAP + [429] * (
            self.FLOOD - self.CAP
        )
        for answer in answers[self.CAP :]:
            assert_throttled(answer)
        # Nothing else an anonymous request could write appeared either.
        assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == rows

    def test_control_without_the_limiter_the_flood_writes_a_row_each(
        self, client, argon2_calls, monkeypatch
    ):
        monkeypatch.setattr(throttle.limiter, "enabled", False)
        self.flood(client)
        assert audit_count("login_failed") == self.FLOOD > self.CAP
        assert len(argon2_calls) == self.FLOOD

    def test_tokens_keep_working_while_logins_are_capped(self, client, make_user):
        _, token = make_user("monitor")
        self.flood(client)
        assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 200


class TestPerAddress:
    @pytest.fixture
    def config_overrides(self):
        return {"LOGIN_LIMIT_PER_ADDRESS": "5 per 15 minutes"}

    def test_failures_from_one_address_are_throttled_whatever_the_names(self, client, make_user):
        make_user("coordinator", username="judy", password=PASSWORD)
        answers = [login(client, f"name-{n}", "guess", address="192.0.2.66") for n in range(8)]
        assert [r.status_code for r in answers] == [401] * 5 + [429] * 3
        assert_throttled(answers[-1])
        # Another address is not affected; successes never counted.
        assert login(client, "judy", PASSWORD, address="192.0.2.67").status_code == 201
        for _ in range(6):
            assert login(client, "judy", PASSWORD, address="192.0.2.68").status_code == 201


class TestBehindAProxy:
    """With TRUSTED_PROXIES=1 the proxy's X-Forwarded-For entry is the client's address."""

    PROXY = "10.0.0.5"

    @pytest.fixture
    def config_overrides(self):
        return {"LOGIN_LIMIT_PER_ADDRESS": "3 per 15 minutes", "TRUSTED_PROXIES": 1}

    def attempt(self, client, forwarded):
        return client.post(
            TOKEN,
            json={"username": "nobody", "password": "guess"},
            environ_base={"REMOTE_ADDR": self.PROXY},
            headers={"X-Forwarded-For": forwarded},
        )

    def test_clients_behind_the_proxy_are_counted_apart(self, client, app):
        # One client fails three times, whatever it writes before the proxy's entry.
        for prefix in ("1.1.1.1, ", "2.2.2.2, ", ""):
            assert self.attempt(client, f"{prefix}198.51.100.7").status_code == 401
        assert_throttled(self.attempt(client, "198.51.100.7"))
        # Another client behind the same proxy is not throttled.
        assert self.attempt(client, "198.51.100.8").status_code == 401
        # Control: without the setting every client is the proxy's address, counted together.
        app.config["TRUSTED_PROXIES"] = 0
        for n in range(3):
            assert self.attempt(client, f"198.51.100.{20 + n}").status_code == 401
        assert_throttled(self.attempt(client, "198.51.100.30"))


def test_a_bad_limit_setting_refuses_to_start(tmp_path, database_url):
    from tests.conftest import make_config
    from trial import create_app

    config = make_config(database_url, tmp_path / "instance", LOGIN_LIMIT_PER_NAME="lots")
    with pytest.raises(ConfigurationError, match="LOGIN_LIMIT_PER_NAME"):
        create_app(config)


def test_the_limiter_runs_for_the_login_routes_only(client, monkeypatch):
    """Its request hooks are scoped to the auth blueprint: other requests pay nothing.
    Control: a login does go through them."""
    calls = []
    original = throttle.limiter.identify_request

    def counting():
        calls.append(1)
        return original()

    monkeypatch.setattr(throttle.limiter, "identify_request", counting)
    assert client.get("/api/v1/health").status_code == 200
    assert client.get("/api/v1/participants").status_code == 401
    assert calls == []
    login(client, "nobody", "guess")
    assert calls != []


def test_login_answers_tell_nobody_how_many_logins_the_trial_has_seen(
    client, make_user, monkeypatch
):
    """No X-RateLimit-* headers (the trial-wide budget left would be an activity count);
    a 429 still says when to retry. Control: Flask-Limiter's headers would carry it."""
    make_user("coordinator", username="judy", password=PASSWORD)
    answers = [login(client, "judy", PASSWORD), login(client, "judy", "wrong")]
    for answer in answers:
        assert not [h for h in answer.headers.keys() if h.lower().startswith("x-ratelimit")]
    monkeypatch.setattr(throttle.limiter, "_headers_enabled", True)
    monkeypatch.setattr(
        throttle.limiter,
        "_header_mapping",
        {name: name.value for name in HeaderNames},
    )
    shown = login(client, "judy", "wrong again")
    assert shown.headers["X-RateLimit-Limit"] == "300"  # the trial-wide cap, exposed


def test_an_unreachable_counter_store_never_blocks_the_step_up(
    client, make_site, make_user, monkeypatch
):
    """Redis down: the step-up (an emergency's code-break) still checks the password and
    answers; logins fall back to counting in memory instead of failing with a 500.
    Control: the store the test breaks does raise when used."""
    from trial.auth.passwords import verify_password

    make_site("S01")
    user, _ = make_user("investigator", username="ines", password=PASSWORD)

    class Down:
        def __getattr__(self, name):
            def fail(*args, **kwargs):
                raise ConnectionError("redis://counters:6379 unreachable")

            return fail

    monkeypatch.setattr(throttle.limiter, "_limiter", Down())
    # Restored at teardown, like the store: the login below marks the store dead.
    monkeypatch.setattr(throttle.limiter, "_storage_dead", False)
    with pytest.raises(ConnectionError):
        throttle.limiter.limiter.test(None)
    assert verify_password(user, "wrong") is False
    assert verify_password(user, PASSWORD) is True
    assert login(client, "ines", "wrong").status_code == 401
    assert login(client, "ines", PASSWORD).status_code == 201
