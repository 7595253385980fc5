"""The blinding assessment captured with a visit: the participant's and the investigator's
guess of the arm with their confidence, checked whole, audited, correctable, and guarded by
the database. Every test runs on SQLite and, with TEST_DATABASE_URL set, on PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from tests.capture_helpers import CAPTURE_TABLES, Trial, counts
from trial.audit.models import AuditEvent
from trial.extensions import db

D = timedelta(days=1)
# Week 12 is day 84 (window -5/+5): a participant randomized 90 days ago can have it today.
WEEK_12_DAY = 84


@pytest.fixture
def trial(client, make_site, make_user, make_participant) -> Trial:
    return Trial(client, make_site, make_user, make_participant)


def guesses(participant=("placebo", "somewhat"), investigator=("dont_know", None)) -> list:
    rows = []
    for respondent, answer in (("participant", participant), ("investigator", investigator)):
        if answer is not None:
            guess, confidence = answer
            rows.append({"respondent": respondent, "guess": guess, "confidence": confidence})
    return rows


def week_12(trial, p, **body):
    return trial.visit(p.pid, "week_12", p.day0 + WEEK_12_DAY * D, **body)


def blinding_rows() -> int:
    return db.session.scalar(sa.text("SELECT count(*) FROM blinding_assessments"))


def test_the_protocol_names_the_visits_that_ask_for_guesses(trial):
    p = trial.enrol(day0_ago=90)
    schedule = {
        row["code"]: row["forms"] for row in trial.get(f"/participants/{p.pid}/schedule").json
    }
    assert [code for code, forms in schedule.items() if "blinding" in forms] == [
        "week_12",
        "end_of_treatment",
    ]


def test_guesses_are_recorded_with_the_visit_and_audited_field_by_field(trial):
    p = trial.enrol(day0_ago=90)
    # Sent investigator first; listed as the form asks them, the participant's first (the
    # answer as written and the visit as read back alike).
    sent = list(reversed(guesses(("baclofen", "strongly"))))
    assert sent[0]["respondent"] == "investigator"
    response = week_12(trial, p, blinding=sent)
    assert response.status_code == 201, response.json
    visit = response.json
    assert [(g["respondent"], g["guess"], g["confidence"]) for g in visit["blinding"]] == [
        ("participant", "baclofen", "strongly"),
        ("investigator", "dont_know", None),
    ]
    assert "blinding" not in visit["missing_forms"]
    # The answer is the visit as stored.
    visit.pop("warnings")
    assert trial.get(f"/visits/{visit['id']}").json == visit
    ids = [str(g["id"]) for g in visit["blinding"]]
    rows = db.session.execute(
        select(AuditEvent.entity_id, AuditEvent.field, AuditEvent.new_value).where(
            AuditEvent.entity_type == "blinding_assessment"
        )
    ).all()
    decoded = [(i, field, None if new is None else json.loads(new)) for i, field, new in rows]
    assert sorted(decoded, key=str) == sorted(
        [
            (ids[0], "respondent", "participant"),
            (ids[0], "guess", "baclofen"),
            (ids[0], "confidence", "strongly"),
            (ids[1], "respondent", "investigator"),
            (ids[1], "guess", "dont_know"),
            (ids[1], "confidence", None),
        ],
        key=str,
    )


def test_a_visit_without_its_guesses_lists_the_form_as_missing(trial):
    p = trial.enrol(day0_ago=90)
    response = week_12(trial, p)
    assert response.status_code == 201, response.json
    assert "blinding" in response.json["missing_forms"]
    assert response.json["blinding"] == []


def test_every_bad_guess_is_named_at_once_and_nothing_is_written(trial):
    p = trial.enrol(day0_ago=90)
    before = counts()
    bad = [
        {"respondent": "participant", "guess": "baclofen", "confidence": None},
        {"respondent": "participant", "guess": "dont_know", "confidence": "strongly"},
    ]
    response = week_12(trial, p, blinding=bad)
    assert response.status_code == 422, response.json
    assert set(response.json["errors"]) >= {
        "blinding.0.confidence",
        "blinding.1.respondent",
        "blinding.1.confidence",
    }
    unknown = [
        {"respondent": "nurse", "guess": "aspirin", "confidence": "very"},
    ]
    response = week_12(trial, p, blinding=unknown)
    assert response.status_code == 422, response.json
    assert set(response.json["errors"]) >= {
        "blinding.0.respondent",
        "blinding.0.guess",
        "blinding.0.confidence",
    }
    three = guesses() + [
        {"respondent": "participant", "guess": "placebo", "confidence": "somewhat"}
    ]
    assert week_12(trial, p, blinding=three).status_code == 422
    assert counts() == before


def test_a_missed_visit_carries_no_guesses(trial):
    p = trial.enrol(day0_ago=90)
    response = trial.visit(
        p.pid, "week_12", status="missed", missed_reason="ill", blinding=guesses()
    )
    assert response.status_code == 422, response.json
    assert "blinding" in response.json["errors"]


def test_a_corrected_guess_is_rechecked_and_audited(trial):
    p = trial.enrol(day0_ago=90)
    visit = week_12(trial, p, blinding=guesses()).json
    participant_guess = next(g for g in visit["blinding"] if g["respondent"] == "participant")
    path = f"/blinding-assessments/{participant_guess['id']}"
    # To "don't know" while keeping a confidence: refused, with the field named.
    refused = trial.patch(path, {"guess": "dont_know", "reason": "misheard", "version": 1})
    assert refused.status_code == 422, refused.json
    assert "confidence" in refused.json["errors"]
    # The investigator's slot is taken: a second investigator guess is refused.
    taken = trial.patch(path, {"respondent": "investigator", "reason": "wrong row", "version": 1})
    assert taken.status_code == 422, taken.json
    assert "respondent" in taken.json["errors"]
    fixed = trial.patch(
        path, {"guess": "dont_know", "confidence": None, "reason": "misheard", "version": 1}
    )
    assert fixed.status_code == 200, fixed.json
    assert (fixed.json["guess"], fixed.json["confidence"], fixed.json["version"]) == (
        "dont_know",
        None,
        2,
    )
    changes = db.session.execute(
        select(AuditEvent.field, AuditEvent.old_value, AuditEvent.new_value, AuditEvent.reason)
        .where(
            AuditEvent.entity_type == "blinding_assessment",
            AuditEvent.entity_id == str(participant_guess["id"]),
            AuditEvent.action == "update",
        )
        .order_by(AuditEvent.seq)
    ).all()
    assert [
        (field, json.loads(old), None if new is None else json.loads(new), why)
        for field, old, new, why in changes
    ] == [
        ("guess", "placebo", "dont_know", "misheard"),
        ("confidence", "somewhat", None, "misheard"),
    ]


def test_a_guess_entered_in_error_frees_its_respondent_slot_and_leaves_the_form_missing(trial):
    p = trial.enrol(day0_ago=90)
    visit = week_12(trial, p, blinding=guesses(investigator=None)).json
    (only,) = visit["blinding"]
    marked = trial.post(
        f"/blinding-assessments/{only['id']}/entered-in-error",
        {"reason": "asked the wrong person", "version": 1},
    )
    assert marked.status_code == 200, marked.json
    stored = trial.get(f"/visits/{visit['id']}").json
    assert stored["blinding"] == [] and "blinding" in stored["missing_forms"]


def test_the_database_refuses_an_incoherent_guess(trial, app):
    """The CHECKs are the last guard: a row written around the service is refused (and the
    same insert with a coherent answer passes, so the refusal is the CHECK's)."""
    p = trial.enrol(day0_ago=90)
    visit = week_12(trial, p).json
    user_id = trial.coordinator_user["S01"].id
    insert = sa.text(
        "INSERT INTO blinding_assessments (visit_id, respondent, guess, confidence, "
        "created_at, updated_at, version, entered_in_error, participant_id, created_by_id) "
        "VALUES (:visit, :respondent, :guess, :confidence, CURRENT_TIMESTAMP, "
        "CURRENT_TIMESTAMP, 1, :in_error, :participant, :user)"
    )
    base = {"visit": visit["id"], "participant": p.id, "user": user_id, "in_error": False}
    for respondent, guess, confidence in (
        ("participant", "baclofen", None),
        ("participant", "dont_know", "somewhat"),
        ("participant", "placebo", "maybe"),
        ("nurse", "placebo", "somewhat"),
    ):
        with pytest.raises(sa.exc.IntegrityError):
            with db.session.begin_nested():
                db.session.execute(
                    insert,
                    {**base, "respondent": respondent, "guess": guess, "confidence": confidence},
                )
    row = {**base, "respondent": "participant", "guess": "placebo", "confidence": "somewhat"}
    db.session.execute(insert, row)
    # One active guess per respondent at a visit; one entered in error does not count.
    with pytest.raises(sa.exc.IntegrityError):
        with db.session.begin_nested():
            db.session.execute(insert, row)
    db.session.execute(insert, {**row, "in_error": True})
    db.session.rollback()
    assert blinding_rows() == 0


def test_capture_tables_include_the_guesses():
    # The "nothing was written" checks of the capture tests count this table too.
    assert "blinding_assessments" in CAPTURE_TABLES
