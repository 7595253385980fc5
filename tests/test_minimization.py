"""Pocock-Simon minimization: balance, recorded draws, replay, and tamper detection."""

import random
from collections import Counter

import pytest
from sqlalchemy import func, select

from config import PROJECT_ROOT
from randomization import lists
from randomization.crypto import decrypt_json, encrypt_json
from randomization.minimization import Decision, choose, decide, replay
from randomization.models import MinimizationDecision
from tests.conftest import bearer, make_ready_for_randomization
from tests.test_randomization_api import drop_randomization_guards
from trial.extensions import db


def test_choose_follows_the_draws():
    scores = [0.0, 2.0]
    assert choose(scores, (0.5, 0.79, 0.0), 0.8) == (0, 0)  # coin under p: preferred arm
    assert choose(scores, (0.5, 0.80, 0.0), 0.8) == (0, 1)  # coin over p: the other arm
    assert choose([1.0, 1.0], (0.49, 0.0, 0.0), 0.8)[0] == 0  # tie broken by the first draw
    assert choose([1.0, 1.0], (0.51, 0.0, 0.0), 0.8)[0] == 1


def test_minimization_balances_every_factor_level():
    rng = random.Random(3)
    history = []
    for _ in range(300):
        levels = {"site": rng.choice(["S01", "S02", "S03"]), "sex": rng.choice("FMM")}
        decision = decide(history, levels, (1, 1), 0.8, (rng.random(), rng.random(), rng.random()))
        history.append((levels, decision.arm))
    counts = Counter()
    for levels, arm in history:
        for factor, level in levels.items():
            counts[(factor, level, arm)] += 1
    for factor, level in {(f, lv) for f, lv, _ in counts}:
        assert abs(counts[(factor, level, 0)] - counts[(factor, level, 1)]) <= 4


def test_replay_detects_an_altered_draw():
    rng = random.Random(5)
    history, decisions = [], []
    for _ in range(30):
        levels = {"site": rng.choice(["S01", "S02"]), "sex": rng.choice("FM")}
        decision = decide(history, levels, (1, 1), 0.8)
        decisions.append(decision)
        history.append((levels, decision.arm))
    assert replay(decisions, (1, 1)) == []
    flipped = [d for d in decisions if d.arm == d.preferred][5]
    index = decisions.index(flipped)
    altered = Decision(
        flipped.levels,
        flipped.counts,
        flipped.scores,
        flipped.preferred,
        (flipped.draws[0], 0.95, flipped.draws[2]),
        flipped.probability_best,
        flipped.arm,
    )
    problems = replay(decisions[:index] + [altered] + decisions[index + 1 :], (1, 1))
    assert problems and problems[0].startswith(f"decision {index + 1} ")


@pytest.fixture
def config_overrides(tmp_path):
    text = (PROJECT_ROOT / "trial" / "protocol.toml").read_text()
    path = tmp_path / "protocol-minimization.toml"
    path.write_text(text.replace('method = "blocks"', 'method = "minimization"'))
    return {"PROTOCOL_FILE": str(path)}


def test_minimization_through_the_api(client, make_user, make_site, make_participant):
    make_site("S01", planned_enrollment=30)
    make_site("S02", planned_enrollment=30)
    unblinded, _ = make_user("unblinded_statistician")
    lists.generate(unblinded)
    db.session.commit()
    tokens = {site: make_user("coordinator", sites=[site])[1] for site in ("S01", "S02")}
    rng = random.Random(11)
    for _ in range(40):
        site = rng.choice(["S01", "S02"])
        pid = make_participant(site=site, sex=rng.choice("FM"))["participant_id"]
        make_ready_for_randomization(client, bearer(tokens[site]), pid)
        response = client.post(
            f"/api/v1/participants/{pid}/randomize",
            headers=bearer(tokens[site]),
            json={"eligibility_confirmed": True},
        )
        assert response.status_code == 201, response.json
    rows = db.session.scalars(
        select(MinimizationDecision).order_by(MinimizationDecision.sequence)
    ).all()
    assert [row.sequence for row in rows] == list(range(1, 41))
    # Encrypted at rest: Fernet tokens, not readable JSON.
    assert all(row.payload_encrypted.startswith("gAAAAA") for row in rows)
    report = lists.verify()
    assert report.ok, report.lines
    # Tamper behind the app's back (triggers dropped): rewrite one decision's coin draw.
    drop_randomization_guards()
    rows = db.session.scalars(
        select(MinimizationDecision).order_by(MinimizationDecision.sequence)
    ).all()
    payload = decrypt_json(rows[10].payload_encrypted)
    payload["draws"][1] = 0.999 if payload["draws"][1] < 0.8 else 0.001
    rows[10].payload_encrypted = encrypt_json(payload)
    db.session.commit()
    report = lists.verify()
    assert not report.ok and any("decision 11" in line for line in report.lines)


def test_once_an_arm_is_spent_every_participant_is_refused_whatever_the_decision(
    client, make_user, make_site, make_participant
):
    """With one arm's slots all taken, minimization refuses every participant alike (409,
    no decision recorded), not only those it would give the spent arm: a refusal that
    followed the decided arm would tell the site each refused participant's arm, and that
    everyone let through had the other. (Under the old rule about half of these eight,
    those decided for the arm still free, were randomized.)"""
    from randomization.crypto import decrypt_arm
    from randomization.lists import POOL_STRATUM
    from randomization.models import RandomizationSlot

    make_site("S01", planned_enrollment=30)
    unblinded, _ = make_user("unblinded_statistician")
    lists.generate(unblinded)
    db.session.commit()
    drop_randomization_guards()
    spent = [
        slot
        for slot in db.session.scalars(
            select(RandomizationSlot).where(RandomizationSlot.stratum == POOL_STRATUM)
        )
        if decrypt_arm(slot.stratum, slot.sequence, slot.arm_encrypted) == 0  # baclofen
    ]
    assert spent
    for slot in spent:
        db.session.delete(slot)
    db.session.commit()
    token = make_user("coordinator", sites=["S01"])[1]
    answers = []
    for n in range(8):
        pid = make_participant(site="S01", sex="FM"[n % 2])["participant_id"]
        make_ready_for_randomization(client, bearer(token), pid)
        response = client.post(
            f"/api/v1/participants/{pid}/randomize",
            headers=bearer(token),
            json={"eligibility_confirmed": True},
        )
        answers.append((response.status_code, response.json.get("errors")))
    assert [status for status, _ in answers] == [409] * 8, answers
    assert len({str(errors) for _, errors in answers}) == 1  # the same refusal for each
    assert db.session.scalar(select(func.count()).select_from(MinimizationDecision)) == 0
