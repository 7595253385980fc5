"""Item 2 of issue 22: no single person outside the unblinded roles can obtain an arm.

The red team's attack: an admin creates an investigator with a password they chose, logs in
as it and breaks a code; moving the account between sites reaches any participant. Now the
code-break right needs an unblinded statistician's approval of the account, bound to its
role, sites and credential version, and given only once the owner set their own password.
Each attack is replayed step by step over HTTP; each negative control patches the approval
check out and shows the same steps then return the arm, so the test would catch its loss.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from randomization import lists
from tests.conftest import bearer, make_ready_for_randomization
from trial.audit.models import AuditEvent
from trial.auth import approval, passwords, services
from trial.auth.models import CodeBreakApproval, User
from trial.cli_support import system_actor
from trial.extensions import db

ARMS = ("baclofen", "placebo")
ADMIN_CHOSEN = "admin-chose-this-password"
OWNER_CHOSEN = "only-the-investigator-knows-this"
STATISTICIAN_PASSWORD = "the unblinded statistician's own"
NO_APPROVAL = "no valid code-break approval; ask the unblinded statistician"


@pytest.fixture
def trial_setup(make_site, make_user, make_participant, client):
    """Two sites with a list, a randomized participant at each, an admin, and an unblinded
    statistician who can log in."""
    make_site("S01", planned_enrollment=10)
    make_site("S02", planned_enrollment=10)
    statistician, statistician_token = make_user(
        "unblinded_statistician", username="ustat", password=STATISTICIAN_PASSWORD
    )
    lists.generate(statistician)
    db.session.commit()
    pids = {}
    for site in ("S01", "S02"):
        _, coordinator = make_user("coordinator", sites=[site])
        pid = make_participant(site=site)["participant_id"]
        make_ready_for_randomization(client, bearer(coordinator), pid)
        response = client.post(
            f"/api/v1/participants/{pid}/randomize",
            headers=bearer(coordinator),
            json={"eligibility_confirmed": True},
        )
        assert response.status_code == 201, response.json
        pids[site] = pid
    _, admin = make_user("admin", username="root")
    return {"pids": pids, "admin": admin, "ustat": statistician_token}


def login(client, username, password):
    response = client.post("/api/v1/auth/token", json={"username": username, "password": password})
    assert response.status_code == 201, response.json
    return response.json["token"]


def break_code(client, token, pid, password):
    return client.post(
        f"/api/v1/participants/{pid}/code-break",
        headers=bearer(token),
        json={"reason": "suspected overdose", "password": password},
    )


def admin_creates_investigator(client, admin, site="S01", username="sock.puppet"):
    response = client.post(
        "/api/v1/users",
        headers=bearer(admin),
        json={
            "username": username,
            "role": "investigator",
            "sites": [site],
            "password": ADMIN_CHOSEN,
        },
    )
    assert response.status_code == 201, response.json
    return username


def move_sites(client, admin, username, site):
    response = client.patch(
        f"/api/v1/users/{username}",
        headers=bearer(admin),
        json={"role": "investigator", "sites": [site], "reason": "moved to the other site"},
    )
    assert response.status_code == 200, response.json


def approve(client, ustat, username, password=STATISTICIAN_PASSWORD):
    return client.post(
        f"/api/v1/users/{username}/code-break-approval",
        headers=bearer(ustat),
        json={"reason": "identity confirmed by telephone with the site", "password": password},
    )


def owner_sets_password(client, token, current, new):
    return client.post(
        "/api/v1/auth/password",
        headers=bearer(token),
        json={"current_password": current, "new_password": new},
    )


def unblinded(pid) -> bool:
    from trial.participants.models import Participant

    db.session.expire_all()
    return db.session.scalar(select(Participant.unblinded).where(Participant.participant_id == pid))


def refusals(pid) -> list[dict]:
    rows = db.session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "code_break_refused", AuditEvent.entity_id == pid
        )
    )
    return [json.loads(row.detail) for row in rows]


@pytest.fixture
def check_patched_out(monkeypatch):
    """The negative control's switch: break_code's approval check always passes."""

    def switch():
        import randomization.code_break

        monkeypatch.setattr(randomization.code_break, "code_break_refusal", lambda user: None)

    return switch


def assert_refused_for_approval(response, pid):
    assert response.status_code == 403, response.json
    assert response.json["code"] == "forbidden"
    assert response.json["message"].lower().startswith(NO_APPROVAL)
    assert "approval" in response.json["errors"]
    text = response.get_data(as_text=True).lower()
    assert not any(arm in text for arm in ARMS)
    assert not unblinded(pid)


# --- the attack of the issue, step by step --------------------------------------------------


def _attack(client, setup):
    """Admin creates an investigator with a password they chose, logs in, breaks the code."""
    username = admin_creates_investigator(client, setup["admin"])
    token = login(client, username, ADMIN_CHOSEN)
    return break_code(client, token, setup["pids"]["S01"], ADMIN_CHOSEN)


def test_admin_made_investigator_cannot_break_the_code(client, trial_setup):
    response = _attack(client, trial_setup)
    pid = trial_setup["pids"]["S01"]
    assert_refused_for_approval(response, pid)
    # Audited as a refused attempt, with the cause, never an arm.
    (refused,) = refusals(pid)
    assert refused["cause"] == NO_APPROVAL
    assert "not been approved" in refused["approval"]


def test_control_without_the_check_the_attack_returns_the_arm(
    client, trial_setup, check_patched_out
):
    check_patched_out()
    response = _attack(client, trial_setup)
    assert response.status_code == 200, response.json
    assert response.json["arm"] in ARMS
    assert unblinded(trial_setup["pids"]["S01"])


def test_an_admin_chosen_password_cannot_be_approved(client, trial_setup):
    """The statistician cannot approve while the password is one the admin chose."""
    username = admin_creates_investigator(client, trial_setup["admin"])
    response = approve(client, trial_setup["ustat"], username)
    assert response.status_code == 409, response.json
    assert "set by someone other than its owner" in response.json["message"]
    assert db.session.scalars(select(CodeBreakApproval)).all() == []


def test_the_approved_path_works_and_the_admin_cannot_reuse_it(client, trial_setup):
    """Owner sets their own password, is approved, breaks the code; the admin's old
    password (and the token it got) is of no use any more."""
    admin = trial_setup["admin"]
    username = admin_creates_investigator(client, admin)
    admins_token = login(client, username, ADMIN_CHOSEN)
    owners_token = login(client, username, ADMIN_CHOSEN)  # the investigator, first login
    assert owner_sets_password(client, owners_token, ADMIN_CHOSEN, OWNER_CHOSEN).status_code == 204
    # The owner's new password revoked every other token of the account.
    assert client.get("/api/v1/auth/me", headers=bearer(admins_token)).status_code == 401
    response = approve(client, trial_setup["ustat"], username)
    assert response.status_code == 201, response.json
    assert response.json["valid"] is True and response.json["problem"] is None
    assert response.json["approval"]["approved_by"] == "ustat"

    pid = trial_setup["pids"]["S01"]
    assert break_code(client, owners_token, pid, ADMIN_CHOSEN).status_code == 403  # old pw
    ok = break_code(client, owners_token, pid, OWNER_CHOSEN)
    assert ok.status_code == 200 and ok.json["arm"] in ARMS


# --- what voids an approval ---------------------------------------------------------------


@pytest.fixture
def approved(client, trial_setup):
    """A real investigator at S01: created by the admin, own password set, approved."""
    username = admin_creates_investigator(client, trial_setup["admin"], username="ines")
    token = login(client, username, ADMIN_CHOSEN)
    assert owner_sets_password(client, token, ADMIN_CHOSEN, OWNER_CHOSEN).status_code == 204
    assert approve(client, trial_setup["ustat"], username).status_code == 201
    return {**trial_setup, "username": username, "token": token}


def _moved_then_break(client, setup):
    """The admin moves the approved account to S02 and breaks the code of S02's participant
    (the admin knowing the password: the account was theirs to begin with, or shared)."""
    move_sites(client, setup["admin"], setup["username"], "S02")
    return break_code(client, setup["token"], setup["pids"]["S02"], OWNER_CHOSEN)


def test_moving_sites_voids_the_approval(client, approved):
    response = _moved_then_break(client, approved)
    assert_refused_for_approval(response, approved["pids"]["S02"])
    assert "sites changed" in response.json["errors"]["approval"][0]
    # Moving back does not restore it: the credential version moved on.
    move_sites(client, approved["admin"], approved["username"], "S01")
    back = break_code(client, approved["token"], approved["pids"]["S01"], OWNER_CHOSEN)
    assert_refused_for_approval(back, approved["pids"]["S01"])
    assert "credentials changed" in back.json["errors"]["approval"][0]


def test_control_moving_sites_without_the_check_reaches_the_other_site(
    client, approved, check_patched_out
):
    check_patched_out()
    response = _moved_then_break(client, approved)
    assert response.status_code == 200 and response.json["arm"] in ARMS


def _reset_then_break(client, setup, how):
    """Someone other than the owner sets the password, then breaks the code with it."""
    user = services.get_user_by_username(setup["username"])
    if how == "admin":
        passwords.set_password(services.get_user_by_username("root"), user, "reset-by-the-admin")
    else:
        passwords.set_password(system_actor(), user, "reset-by-the-admin")
    db.session.commit()
    return break_code(client, setup["token"], setup["pids"]["S01"], "reset-by-the-admin")


@pytest.mark.parametrize("how", ["admin", "command line"])
def test_a_password_reset_by_another_voids_the_approval(client, approved, how):
    response = _reset_then_break(client, approved, how)
    assert_refused_for_approval(response, approved["pids"]["S01"])
    assert "credentials changed" in response.json["errors"]["approval"][0]
    # And it cannot be approved again until the owner sets their own password.
    assert approve(client, approved["ustat"], approved["username"]).status_code == 409


def test_control_a_reset_without_the_check_breaks_the_code(client, approved, check_patched_out):
    check_patched_out()
    response = _reset_then_break(client, approved, "admin")
    assert response.status_code == 200 and response.json["arm"] in ARMS


def test_cli_set_password_voids_too(client, runner, approved):
    result = runner.invoke(
        args=["users", "set-password", approved["username"]],
        input="reset-at-the-console\nreset-at-the-console\n",
    )
    assert result.exit_code == 0, result.output
    response = break_code(
        client, approved["token"], approved["pids"]["S01"], "reset-at-the-console"
    )
    assert_refused_for_approval(response, approved["pids"]["S01"])


def test_a_role_change_voids_the_approval(client, approved):
    admin, username = approved["admin"], approved["username"]
    for role in ("coordinator", "investigator"):
        response = client.patch(
            f"/api/v1/users/{username}",
            headers=bearer(admin),
            json={"role": role, "sites": ["S01"], "reason": "round trip"},
        )
        assert response.status_code == 200
    response = break_code(client, approved["token"], approved["pids"]["S01"], OWNER_CHOSEN)
    assert_refused_for_approval(response, approved["pids"]["S01"])


def test_the_owner_changing_their_own_password_keeps_the_approval(client, approved):
    token = approved["token"]
    assert (
        owner_sets_password(client, token, OWNER_CHOSEN, "a newer secret of mine").status_code
        == 204
    )
    response = break_code(client, token, approved["pids"]["S01"], "a newer secret of mine")
    assert response.status_code == 200 and response.json["arm"] in ARMS


def test_revocation_voids_and_is_audited(client, approved):
    username, ustat = approved["username"], approved["ustat"]
    url = f"/api/v1/users/{username}/code-break-approval"
    response = client.delete(url, headers=bearer(ustat), json={"reason": "left the trial"})
    assert response.status_code == 200, response.json
    assert response.json["valid"] is False and "revoked" in response.json["problem"]
    assert response.json["approval"]["revoke_reason"] == "left the trial"
    again = client.delete(url, headers=bearer(ustat), json={"reason": "twice"})
    assert again.status_code == 409
    refused = break_code(client, approved["token"], approved["pids"]["S01"], OWNER_CHOSEN)
    assert_refused_for_approval(refused, approved["pids"]["S01"])
    actions = list(
        db.session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.entity_type == "user", AuditEvent.entity_id == username)
            .where(AuditEvent.action.like("code_break%"))
            .order_by(AuditEvent.seq)
        )
    )
    assert actions == ["code_break_approved", "code_break_approval_revoked"]


# --- the approval endpoint itself ---------------------------------------------------------


def test_approval_needs_the_approvers_password_and_is_audited(client, trial_setup):
    username = admin_creates_investigator(client, trial_setup["admin"])
    token = login(client, username, ADMIN_CHOSEN)
    owner_sets_password(client, token, ADMIN_CHOSEN, OWNER_CHOSEN)
    wrong = approve(client, trial_setup["ustat"], username, password="not mine")
    assert wrong.status_code == 403 and "password" in wrong.json["errors"]
    assert db.session.scalars(select(CodeBreakApproval)).all() == []
    (row,) = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "code_break_approval_refused")
    )
    assert row.username == "ustat" and "not mine" not in (row.detail or "")
    ok = approve(client, trial_setup["ustat"], username)
    assert ok.status_code == 201
    (given,) = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "code_break_approved")
    )
    detail = json.loads(given.detail)
    assert (given.username, given.role, given.entity_id) == (
        "ustat",
        "unblinded_statistician",
        username,
    )
    assert detail["sites"] == ["S01"] and detail["role"] == "investigator"
    assert given.reason == "identity confirmed by telephone with the site"
    # Approving a valid approval again is a conflict, not a second row.
    assert approve(client, trial_setup["ustat"], username).status_code == 409


def test_only_investigators_can_be_approved(client, make_user, trial_setup):
    user, token = make_user("coordinator", username="cora", password=OWNER_CHOSEN)
    owner_sets_password(client, token, OWNER_CHOSEN, "cora's very own password")
    response = approve(client, trial_setup["ustat"], "cora")
    assert response.status_code == 409 and "only investigators" in response.json["message"]
    assert approve(client, trial_setup["ustat"], "nobody.here").status_code == 404


def test_the_state_is_readable_by_admins_without_any_arm(client, approved):
    url = f"/api/v1/users/{approved['username']}/code-break-approval"
    response = client.get(url, headers=bearer(approved["admin"]))
    assert response.status_code == 200, response.json
    body = response.json
    assert body["valid"] is True and body["password_set_by_owner"] is True
    assert body["sites"] == ["S01"] and body["approval"]["sites"] == ["S01"]
    assert not any(arm in json.dumps(body).lower() for arm in ARMS)
    move_sites(client, approved["admin"], approved["username"], "S02")
    body = client.get(url, headers=bearer(approved["admin"])).json
    assert body["valid"] is False and "sites changed" in body["problem"]


def test_cli_approves_and_revokes_as_an_unblinded_statistician_only(runner, make_user, trial_setup):
    user, _ = make_user("investigator", username="ivo", password=OWNER_CHOSEN)
    passwords.set_password(user, user, OWNER_CHOSEN)
    db.session.commit()
    refused = runner.invoke(
        args=["users", "approve-code-break", "ivo", "--as", "root", "--reason", "x"]
    )
    assert refused.exit_code != 0 and "unblinded statistician" in refused.output
    blank = runner.invoke(
        args=["users", "approve-code-break", "ivo", "--as", "ustat", "--reason", "\u200b "]
    )
    assert blank.exit_code != 0 and "reason" in blank.output
    ok = runner.invoke(
        args=["users", "approve-code-break", "ivo", "--as", "ustat", "--reason", "confirmed"]
    )
    assert ok.exit_code == 0, ok.output
    db.session.expire_all()
    assert approval.approval_state(db.session.get(User, user.id)).valid
    revoked = runner.invoke(
        args=["users", "revoke-code-break", "ivo", "--as", "ustat", "--reason", "rotated off"]
    )
    assert revoked.exit_code == 0, revoked.output
    db.session.expire_all()
    assert "revoked" in approval.approval_state(db.session.get(User, user.id)).problem


# --- POST /auth/password --------------------------------------------------------------------


def test_password_change_checks_the_current_one_and_never_stores_it(client, make_user):
    from tests.test_auth import places_holding

    user, token = make_user("monitor", username="mona", password=ADMIN_CHOSEN)
    wrong = owner_sets_password(client, token, "not it", OWNER_CHOSEN)
    assert wrong.status_code == 403 and "current_password" in wrong.json["errors"]
    same = owner_sets_password(client, token, ADMIN_CHOSEN, ADMIN_CHOSEN)
    assert same.status_code == 422 and set(same.json["errors"]) == {"new_password"}
    short = owner_sets_password(client, token, ADMIN_CHOSEN, "short")
    assert short.status_code == 422 and set(short.json["errors"]) == {"new_password"}
    db.session.expire_all()
    assert db.session.get(User, user.id).password_set_by_owner is False
    assert owner_sets_password(client, token, ADMIN_CHOSEN, OWNER_CHOSEN).status_code == 204
    db.session.expire_all()
    changed = db.session.get(User, user.id)
    assert changed.password_set_by_owner is True and changed.credential_version == 1
    actions = list(
        db.session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.entity_id == "mona", AuditEvent.action.like("password%"))
            .order_by(AuditEvent.seq)
        )
    )
    assert actions == ["password_change_refused", "password_set"]
    for secret in (ADMIN_CHOSEN, OWNER_CHOSEN, "not it"):
        assert places_holding(secret) == []
    assert (
        client.post(
            "/api/v1/auth/token", json={"username": "mona", "password": OWNER_CHOSEN}
        ).status_code
        == 201
    )


# --- the demo ---------------------------------------------------------------------------------


def test_the_demo_investigators_are_approved_and_can_break_a_code(app, runner, client):
    from pathlib import Path

    from randomization.models import RandomizationSlot
    from trial.participants.models import Participant

    result = runner.invoke(args=["trial", "demo", "--participants", "9"])
    assert result.exit_code == 0, result.output
    db.session.remove()
    for site in ("s01", "s02", "s03"):
        user = services.get_user_by_username(f"investigator.{site}")
        state = approval.approval_state(user)
        assert state.valid, state.problem
        assert state.approval.approved_by.username == "unblinded_statistician"
    text = (Path(app.instance_path) / "demo-tokens.txt").read_text()
    password = text.splitlines()[0].rsplit(" ", 1)[1]
    pid = db.session.scalar(
        select(Participant.participant_id)
        .join(RandomizationSlot, RandomizationSlot.participant_id == Participant.id)
        .where(Participant.participant_id.like("S01-%"))
        .limit(1)
    )
    assert pid is not None
    token = login(client, "investigator.s01", password)
    response = break_code(client, token, pid, password)
    assert response.status_code == 200, response.json
    assert response.json["arm"] in ARMS
