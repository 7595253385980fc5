"""Randomization through the API and the command line: allocation, code-break, key, lists."""

import hashlib
import json

import pytest
from sqlalchemy import select

from randomization import lists
from randomization.models import RandomizationNotice, RandomizationSlot
from randomization.release import release_digest
from tests.conftest import bearer, make_ready_for_randomization
from trial.audit.models import AuditEvent
from trial.extensions import db

ARMS = ("baclofen", "placebo")
PASSWORD = "correct horse battery staple"


@pytest.fixture
def unblinded(make_user):
    return make_user("unblinded_statistician")


@pytest.fixture
def trial_list(make_site, unblinded):
    """Sites S01 and S02 (small) and a generated list."""
    make_site("S01", planned_enrollment=10)
    make_site("S02", planned_enrollment=10)
    row = lists.generate(unblinded[0])
    db.session.commit()
    return row


def randomize(client, token, pid, confirmed=True, ready=True):
    """Randomize as the token's user; ``ready``: first make the participant ready (screening
    visit and eligibility, entered with the same token)."""
    if ready:
        make_ready_for_randomization(client, bearer(token), pid)
    return client.post(
        f"/api/v1/participants/{pid}/randomize",
        headers=bearer(token),
        json={"eligibility_confirmed": confirmed},
    )


def test_randomize_then_repeat_returns_the_same_allocation(
    client, make_user, trial_list, make_participant
):
    pid = make_participant(site="S01")["participant_id"]
    _, token = make_user("coordinator", sites=["S01"])
    first = randomize(client, token, pid)
    assert first.status_code == 201
    assert set(first.json) == {
        "participant_id",
        "randomization_number",
        "kit_number",
        "randomized_at",
    }
    again = randomize(client, token, pid)
    assert again.status_code == 200 and again.json == first.json
    participant = client.get(f"/api/v1/participants/{pid}", headers=bearer(token)).json
    assert participant["status"] == "randomized" and participant["unblinded"] is False
    slot = db.session.scalar(
        select(RandomizationSlot).where(
            RandomizationSlot.randomization_number == first.json["randomization_number"]
        )
    )
    assert slot.sequence == 1 and slot.kit_number == first.json["kit_number"]


def test_allocations_take_the_first_free_slots_in_order(
    client, make_user, trial_list, make_participant
):
    _, token = make_user("coordinator", sites=["S01"])
    pids = [make_participant(site="S01", sex="M")["participant_id"] for _ in range(4)]
    numbers = [randomize(client, token, pid).json["randomization_number"] for pid in pids]
    assert numbers == ["R00001", "R00002", "R00003", "R00004"]
    used = db.session.scalars(
        select(RandomizationSlot.sequence)
        .where(RandomizationSlot.participant_id.is_not(None))
        .order_by(RandomizationSlot.sequence)
    )
    assert list(used) == [1, 2, 3, 4]
    assert lists.verify().ok


def test_eligibility_must_be_confirmed(client, make_user, trial_list, make_participant):
    pid = make_participant(site="S01")["participant_id"]
    _, token = make_user("coordinator", sites=["S01"])
    for body in ({"eligibility_confirmed": False}, {}):
        response = client.post(
            f"/api/v1/participants/{pid}/randomize", headers=bearer(token), json=body
        )
        assert response.status_code == 422
        assert set(response.json["errors"]) == {"eligibility_confirmed"}
    assert (
        db.session.scalar(
            select(RandomizationSlot).where(RandomizationSlot.participant_id.is_not(None))
        )
        is None
    )


def test_other_site_and_other_roles_cannot_randomize(
    client, make_user, trial_list, make_participant
):
    pid = make_participant(site="S01")["participant_id"]
    _, other_site = make_user("coordinator", sites=["S02"])
    assert randomize(client, other_site, pid, ready=False).status_code == 404
    for role in (
        "monitor",
        "data_manager",
        "statistician",
        "unblinded_statistician",
        "dsmb",
        "admin",
    ):
        _, token = make_user(role)
        assert randomize(client, token, pid, ready=False).status_code == 403, role


def test_exhausted_stratum_is_409_without_arms_and_notifies(
    client, make_user, make_site, unblinded, make_participant
):
    make_site("S01")
    lists.import_list(
        unblinded[0],
        "stratum,sequence,arm,block\nsite=S01|sex=F,1,placebo,1\nsite=S01|sex=F,2,baclofen,1\n",
    )
    db.session.commit()
    _, token = make_user("coordinator", sites=["S01"])
    pids = [make_participant(site="S01", sex="F")["participant_id"] for _ in range(3)]
    assert randomize(client, token, pids[0]).status_code == 201
    assert randomize(client, token, pids[1]).status_code == 201
    refused = randomize(client, token, pids[2])
    assert refused.status_code == 409
    text = json.dumps(refused.json).lower()
    assert not any(arm in text for arm in ARMS)
    kinds = set(db.session.scalars(select(RandomizationNotice.kind)))
    assert {"stratum_low", "stratum_exhausted"} <= kinds
    # The refusal used up no randomization number: numbers stay gapless.
    lists.import_list(
        unblinded[0],
        "stratum,sequence,arm,block\nsite=S01|sex=M,1,placebo,1\nsite=S01|sex=M,2,baclofen,1\n",
        append=True,
    )
    db.session.commit()
    man = make_participant(site="S01", sex="M")["participant_id"]
    assert randomize(client, token, man).json["randomization_number"] == "R00003"


def test_code_break_by_investigator_with_password(
    client, make_user, trial_list, make_participant, approve_code_break
):
    pid = make_participant(site="S01")["participant_id"]
    _, coordinator = make_user("coordinator", sites=["S01"])
    randomize(client, coordinator, pid)
    user, investigator = make_user("investigator", sites=["S01"], password=PASSWORD)
    approve_code_break(user, PASSWORD)
    url = f"/api/v1/participants/{pid}/code-break"

    wrong = client.post(
        url, headers=bearer(investigator), json={"reason": "anaphylaxis", "password": "nope"}
    )
    assert wrong.status_code == 403 and "password" in wrong.json["errors"]
    no_reason = client.post(url, headers=bearer(investigator), json={"password": PASSWORD})
    assert no_reason.status_code == 422 and set(no_reason.json["errors"]) == {"reason"}
    assert (
        client.post(
            url, headers=bearer(coordinator), json={"reason": "x", "password": PASSWORD}
        ).status_code
        == 403
    )
    other, other_investigator = make_user("investigator", sites=["S02"], password=PASSWORD)
    approve_code_break(other, PASSWORD)  # approved, yet another site's participant is a 404
    assert (
        client.post(
            url, headers=bearer(other_investigator), json={"reason": "x", "password": PASSWORD}
        ).status_code
        == 404
    )

    ok = client.post(
        url,
        headers=bearer(investigator),
        json={"reason": "suspected overdose, ICU", "password": PASSWORD},
    )
    assert ok.status_code == 200 and ok.json["arm"] in ARMS
    key = dict(
        (p, a)
        for p, _, a in __import__("randomization.outputs", fromlist=["x"]).allocation_key(
            make_user("unblinded_statistician")[0]
        )
    )
    assert ok.json["arm"] == key[pid]
    again = client.post(
        url, headers=bearer(investigator), json={"reason": "again", "password": PASSWORD}
    )
    assert again.status_code == 409
    participant = client.get(f"/api/v1/participants/{pid}", headers=bearer(coordinator)).json
    assert participant["unblinded"] is True
    events = db.session.scalars(
        select(AuditEvent).where(
            AuditEvent.action.in_(["code_break", "code_break_refused"]),
            AuditEvent.entity_type == "participant",
        )
    )
    actions = [e.action for e in events]
    assert actions == ["code_break_refused", "code_break"]
    notices = db.session.scalars(
        select(RandomizationNotice).where(RandomizationNotice.kind == "code_break")
    ).all()
    assert len(notices) == 1 and pid in notices[0].message


def test_no_arm_in_any_audit_row(
    client, make_user, trial_list, make_participant, approve_code_break
):
    """Randomizing and breaking the code leave arms out of the audit trail."""
    _, coordinator = make_user("coordinator", sites=["S01"])
    user, investigator = make_user("investigator", sites=["S01"], password=PASSWORD)
    approve_code_break(user, PASSWORD)
    pids = [make_participant(site="S01")["participant_id"] for _ in range(6)]
    for pid in pids:
        randomize(client, coordinator, pid)
    client.post(
        f"/api/v1/participants/{pids[0]}/code-break",
        headers=bearer(investigator),
        json={"reason": "emergency", "password": PASSWORD},
    )
    rows = db.session.scalars(select(AuditEvent)).all()
    blob = " ".join(
        json.dumps([r.old_value, r.new_value, r.detail, r.reason]) for r in rows
    ).lower()
    assert not any(arm in blob for arm in ARMS)
    # Control: the same scan does find an arm where one is.
    assert "placebo" in json.dumps(["placebo"]).lower()


def test_key_export_only_for_unblinded_statistician_and_audited(
    client, make_user, trial_list, unblinded, make_participant
):
    _, coordinator = make_user("coordinator", sites=["S01"])
    pid = make_participant(site="S01")["participant_id"]
    randomize(client, coordinator, pid)
    for role in (
        "admin",
        "coordinator",
        "investigator",
        "monitor",
        "data_manager",
        "statistician",
        "dsmb",
    ):
        _, token = make_user(role)
        assert client.get("/api/v1/exports/key", headers=bearer(token)).status_code == 403
    response = client.get("/api/v1/exports/key", headers=bearer(unblinded[1]))
    assert response.status_code == 200 and response.mimetype == "text/csv"
    lines = response.data.decode().splitlines()
    assert lines[0] == "participant_id,randomization_number,arm,padding"
    assert lines[1].startswith(f"{pid},R00001,") and lines[1].split(",")[2] in ARMS
    assert hashlib.sha256(response.data).hexdigest() == response.headers["X-Content-SHA256"]
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "export_key"))
    # A keyed digest only: the plain one is an oracle (tests/test_release_blinding.py).
    assert json.loads(event.detail) == {"rows": 1, "hmac_sha256": release_digest(response.data)}


def test_without_the_key_unblinded_operations_refuse_but_allocation_works(
    app, client, make_user, trial_list, unblinded, make_participant
):
    pid = make_participant(site="S01")["participant_id"]
    _, coordinator = make_user("coordinator", sites=["S01"])
    app.config["ARM_KEY"] = None
    assert randomize(client, coordinator, pid).status_code == 201
    response = client.get("/api/v1/exports/key", headers=bearer(unblinded[1]))
    assert response.status_code == 503 and "ARM_KEY" in response.json["message"]


def test_list_is_generated_once_and_verified(app, runner, make_user, make_site):
    make_site("S01", planned_enrollment=5)
    user, _ = make_user("unblinded_statistician", username="ustat")
    make_user("statistician", username="bstat")
    refused = runner.invoke(args=["randomization", "generate", "--as", "bstat"])
    assert refused.exit_code != 0 and "unblinded" in refused.output
    result = runner.invoke(args=["randomization", "generate", "--as", "ustat"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(args=["randomization", "generate", "--as", "ustat"]).exit_code != 0
    verified = runner.invoke(args=["randomization", "verify"])
    assert verified.exit_code == 0 and "identical" in verified.output
    summary = runner.invoke(
        args=["randomization", "summary", "--as", "ustat", "--simulations", "2000"]
    )
    assert summary.exit_code == 0 and "site=S01|sex=F" in summary.output


def drop_randomization_guards() -> None:
    """Tamper behind the app's back: remove the triggers that protect slots and decisions."""
    from sqlalchemy import text

    if db.engine.dialect.name == "postgresql":
        statements = (
            "DROP TRIGGER randomization_slots_guard ON randomization_slots",
            "DROP TRIGGER randomization_decisions_append_only ON randomization_decisions",
        )
    else:
        statements = tuple(
            f"DROP TRIGGER {name}"
            for name in (
                "randomization_slots_allocation_is_final",
                "randomization_slots_content_is_fixed",
                "randomization_slots_no_delete",
                "randomization_decisions_no_update",
                "randomization_decisions_no_delete",
            )
        )
    for statement in statements:
        db.session.execute(text(statement))
    db.session.commit()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE randomization_slots SET participant_id = {other} WHERE participant_id = {mine}",
        "UPDATE randomization_slots SET randomization_number = 'R99999' "
        "WHERE participant_id = {mine}",
        "UPDATE randomization_slots SET arm_encrypted = 'x' WHERE sequence = 2",
        "UPDATE randomization_slots SET kit_number = '123' WHERE sequence = 2",
        "DELETE FROM randomization_slots WHERE sequence = 3",
    ],
)
def test_database_refuses_to_reallocate_or_rewrite_slots(
    client, make_user, trial_list, make_participant, statement
):
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from trial.participants.models import Participant

    _, token = make_user("coordinator", sites=["S01"])
    first, second = (make_participant(site="S01")["participant_id"] for _ in range(2))
    randomize(client, token, first)
    ids = dict(db.session.execute(select(Participant.participant_id, Participant.id)).all())
    with pytest.raises(DBAPIError, match="refused"):
        db.session.execute(text(statement.format(mine=ids[first], other=ids[second])))
    db.session.rollback()
    assert lists.verify().ok


def test_verify_catches_an_altered_slot(app, runner, make_user, make_site):
    from randomization.crypto import encrypt_arm

    make_site("S01", planned_enrollment=5)
    lists.generate(make_user("unblinded_statistician")[0])
    db.session.commit()
    drop_randomization_guards()
    slot = db.session.scalar(
        select(RandomizationSlot)
        .where(RandomizationSlot.sequence == 1)
        .order_by(RandomizationSlot.stratum)
        .limit(1)
    )
    arm = __import__("randomization.crypto", fromlist=["x"]).decrypt_arm(
        slot.stratum, slot.sequence, slot.arm_encrypted
    )
    slot.arm_encrypted = encrypt_arm(slot.stratum, slot.sequence, 1 - arm)
    db.session.commit()
    result = runner.invoke(args=["randomization", "verify"])
    assert result.exit_code == 1 and "FAIL" in result.output


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (
            "stratum,sequence,arm,block\nsite=S01|sex=F,1,placebo,1\nsite=S01|sex=F,2,placebo,1\n",
            "unbalanced",
        ),
        ("stratum,sequence,arm\nsite=S01|sex=F,1,placebo\nsite=S01|sex=F,1,baclofen\n", "repeats"),
        ("stratum,sequence,arm\nsite=S01|sex=F,1,aspirin\n", "unknown arm"),
        ("stratum,sequence,arm\nsite=S77|sex=F,1,placebo\n", "unknown stratum"),
        ("stratum,sequence\nsite=S01|sex=F,1\n", "missing column"),
        ("stratum,sequence,arm\nsite=S01|sex=F,2,placebo\n", "without gaps"),
    ],
)
def test_import_refuses_bad_lists_and_writes_nothing(app, make_user, make_site, body, problem):
    from trial.errors import ValidationFailed

    make_site("S01")
    user, _ = make_user("unblinded_statistician")
    with pytest.raises(ValidationFailed) as caught:
        lists.import_list(user, body)
    assert problem in json.dumps(caught.value.errors)
    db.session.rollback()
    assert db.session.scalar(select(RandomizationSlot)) is None


def test_import_refuses_a_second_list_unless_appended(app, make_user, make_site):
    from trial.errors import Conflict

    make_site("S01")
    user, _ = make_user("unblinded_statistician")
    lists.import_list(
        user,
        "stratum,sequence,arm,block,kit\n"
        "site=S01|sex=F,1,placebo,1,111111\nsite=S01|sex=F,2,baclofen,1,222222\n",
    )
    db.session.commit()
    more = "stratum,sequence,arm,block\nsite=S01|sex=F,3,baclofen,2\nsite=S01|sex=F,4,placebo,2\n"
    with pytest.raises(Conflict):
        lists.import_list(user, more)
    db.session.rollback()
    lists.import_list(user, more, append=True)
    db.session.commit()
    assert lists.verify().ok


def test_code_break_password_guessing_locks_the_account(
    client, make_user, trial_list, make_participant, approve_code_break
):
    """A stolen token alone cannot guess the password without limit."""
    pid = make_participant(site="S01")["participant_id"]
    _, coordinator = make_user("coordinator", sites=["S01"])
    randomize(client, coordinator, pid)
    user, investigator = make_user("investigator", sites=["S01"], password=PASSWORD)
    approve_code_break(user, PASSWORD)
    url = f"/api/v1/participants/{pid}/code-break"
    for attempt in range(10):
        response = client.post(
            url,
            headers=bearer(investigator),
            json={"reason": "emergency", "password": f"guess-{attempt}"},
        )
        assert response.status_code == 403
    locked = client.post(
        url, headers=bearer(investigator), json={"reason": "emergency", "password": PASSWORD}
    )
    assert locked.status_code == 429 and "arm" not in locked.json
    assert int(locked.headers["Retry-After"]) > 0
    participant = client.get(f"/api/v1/participants/{pid}", headers=bearer(coordinator)).json
    assert participant["unblinded"] is False


def test_code_break_answers_have_one_length_whatever_the_arm(
    client, make_user, trial_list, unblinded, make_participant, approve_code_break, monkeypatch
):
    """The access log and anyone watching encrypted traffic see the answer's size: it was 92
    bytes for baclofen and 91 for placebo."""
    from randomization.outputs import allocation_key

    _, coordinator = make_user("coordinator", sites=["S01"])
    pids = [make_participant(site="S01", sex="F")["participant_id"] for _ in range(8)]
    for pid in pids:
        assert randomize(client, coordinator, pid).status_code == 201
    arm_of = {pid: arm for pid, _number, arm in allocation_key(unblinded[0])}
    db.session.rollback()
    by_arm = {arm: [pid for pid in pids if arm_of[pid] == arm] for arm in ARMS}
    assert all(len(group) >= 2 for group in by_arm.values())  # 8 slots hold a whole block
    user, investigator = make_user("investigator", sites=["S01"], password=PASSWORD)
    approve_code_break(user, PASSWORD)

    def answer(pid):
        response = client.post(
            f"/api/v1/participants/{pid}/code-break",
            headers=bearer(investigator),
            json={"reason": "overdose, treating physician asks", "password": PASSWORD},
        )
        assert response.status_code == 200, response.json
        assert response.json["arm"] == arm_of[pid]
        return len(response.data)

    assert answer(by_arm["baclofen"][0]) == answer(by_arm["placebo"][0])
    # Control: the answer as it was (plain JSON) gives the arm away by its length.
    monkeypatch.setattr(
        "randomization.views.padded_json_response",
        lambda payload, _paths, _names: client.application.json.response(payload),
    )
    assert answer(by_arm["baclofen"][1]) != answer(by_arm["placebo"][1])


# --- randomize and randomize_many leave the same things ----------------------------------------


def screening_deviations_after(client, make_site, make_user, make_participant, how) -> list:
    """Randomize a participant screened 40 days ago (outside the screening window of day -28
    to -1 once day 0 is today), through the API or ``randomize_many``; return the automatic
    deviations they then have, with their screening visit's id."""
    from randomization.bulk import randomize_many
    from tests.capture_helpers import Trial
    from trial.database import utcnow

    trial = Trial(client, make_site, make_user, make_participant)
    p = trial.enrol(day0_ago=None, screening_ago=40, consent_ago=45)
    if how == "randomize":
        response = trial.post(f"/participants/{p.pid}/randomize", {"eligibility_confirmed": True})
        assert response.status_code == 201, response.json
    else:
        randomize_many([(make_user("coordinator")[0], p.pid, utcnow())])
        db.session.commit()
    response = trial.get(f"/participants/{p.pid}/deviations")
    assert response.status_code == 200, response.json
    return [(row["automatic"], row["visit_id"] == p.screening_id) for row in response.json]


@pytest.mark.parametrize("how", ["randomize", "randomize_many"])
def test_either_allocation_window_checks_the_screening_visit(
    client, make_site, make_user, make_participant, how
):
    """``randomize_many`` (the demo's load) shares ``randomize``'s steps after the claim, the
    window check of visits recorded before day 0 among them (it used to skip it)."""
    found = screening_deviations_after(client, make_site, make_user, make_participant, how)
    assert found == [(True, True)]


def test_control_without_the_window_check_no_deviation_is_raised(
    client, make_site, make_user, make_participant, monkeypatch
):
    """The old ``randomize_many`` (no window check) patched in: the check above fails."""
    import randomization.services

    monkeypatch.setattr(
        randomization.services, "flag_visits_in_new_schedule", lambda *args, **kwargs: None
    )
    how = "randomize_many"
    assert screening_deviations_after(client, make_site, make_user, make_participant, how) == []
