"""Source data verification over the API: a monitor marks a visit verified, a later change
voids the mark (as it voids a signature), and each site's progress is counted by the stated
rule. Runs on SQLite and, with TEST_DATABASE_URL set, on PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.capture_helpers import Trial, audit_count, iso
from trial.audit.models import AuditEvent
from trial.extensions import db
from trial.verification.models import SourceVerification


@pytest.fixture
def trial(client, make_site, make_user, make_participant) -> Trial:
    return Trial(client, make_site, make_user, make_participant)


@pytest.fixture
def screening(trial):
    """A participant of S01 with a completed screening visit (one calendar day)."""
    return trial.enrol(day0_ago=None)


def verify(trial, visit_id, body=None, *, site="S01", role="monitor"):
    return trial.post(f"/visits/{visit_id}/verify", body, site=site, role=role)


def events(visit_id, action):
    return list(
        db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.entity_type == "visit", AuditEvent.entity_id == str(visit_id))
            .where(AuditEvent.action == action)
            .order_by(AuditEvent.seq)
        )
    )


def progress(trial, role="monitor", site="S01"):
    response = trial.get("/verification", role=role, site=site)
    assert response.status_code == 200, response.json
    return {row["site"]: row for row in response.json["sites"]}


def test_a_monitor_marks_a_visit_verified_and_it_is_audited(trial, screening):
    visit_id = screening.screening_id
    response = verify(trial, visit_id, {"version": 1})
    assert response.status_code == 201, response.json
    body = response.json
    assert body["status"] == "verified" and body["visit_id"] == visit_id
    assert body["visit_version"] == 1 and body["voided_at"] is None
    (event,) = events(visit_id, "source_verified")
    assert (event.role, event.user_site, event.entity_site) == ("monitor", "S01", "S01")
    assert event.field == "source_verification"
    marks = trial.get(f"/visits/{visit_id}/verifications", role="coordinator").json
    assert [m["status"] for m in marks] == ["verified"]
    assert marks[0]["verified_by"] == body["verified_by"]


def test_verifying_twice_is_a_conflict_and_writes_nothing(trial, screening):
    assert verify(trial, screening.screening_id).status_code == 201
    before = audit_count()
    again = verify(trial, screening.screening_id)
    assert again.status_code == 409 and "verified already" in again.json["message"]
    assert audit_count() == before


def test_a_stale_version_is_refused_with_412(trial, screening):
    before = audit_count()
    response = verify(trial, screening.screening_id, {"version": 7})
    assert response.status_code == 412
    assert "version" in response.json["errors"]
    assert audit_count() == before


def test_a_bad_body_names_each_field(trial, screening):
    response = verify(trial, screening.screening_id, {"version": "x", "extra": 1})
    assert response.status_code == 422
    assert set(response.json["errors"]) == {"version", "extra"}
    assert db.session.scalar(select(SourceVerification.id)) is None


@pytest.mark.parametrize("role", ["coordinator", "investigator"])
def test_site_staff_cannot_verify(trial, screening, role):
    assert verify(trial, screening.screening_id, role=role).status_code == 403


def test_a_monitor_of_another_site_gets_404(trial, screening):
    before = audit_count()
    response = verify(trial, screening.screening_id, site="S02")
    assert response.status_code == 404
    assert trial.get(f"/visits/{screening.screening_id}/verifications", role="monitor",
                     site="S02").status_code == 404  # fmt: skip
    assert audit_count() == before


def test_a_correction_of_a_form_voids_the_mark(trial, screening):
    visit_id = screening.screening_id
    assert verify(trial, visit_id).status_code == 201
    day = trial.get(f"/visits/{visit_id}").json["drinking"][0]
    corrected = trial.patch(
        f"/drinking-days/{day['id']}", {"standard_drinks": 9, "reason": "diary re-read"}
    )
    assert corrected.status_code == 200, corrected.json
    (mark,) = trial.get(f"/visits/{visit_id}/verifications").json
    assert mark["status"] == "voided"
    assert mark["void_reason"] == f"drinking_day {day['id']} changed after source verification"
    (event,) = events(visit_id, "source_verification_voided")
    assert (event.old_value, event.new_value) == ('"verified"', '"voided"')
    assert event.role == "coordinator"
    # It can be verified again, as it now is.
    assert verify(trial, visit_id).status_code == 201
    marks = trial.get(f"/visits/{visit_id}/verifications").json
    assert [m["status"] for m in marks] == ["verified", "voided"]
    assert marks[0]["visit_version"] == 1  # the visit itself did not change; its form did


def test_a_correction_of_the_visit_voids_the_mark(trial, screening):
    visit_id = screening.screening_id
    assert verify(trial, visit_id).status_code == 201
    later = screening.screening_date + timedelta(days=1)
    response = trial.patch(f"/visits/{visit_id}", {"visit_date": iso(later), "reason": "typo"})
    assert response.status_code == 200, response.json
    (mark,) = trial.get(f"/visits/{visit_id}/verifications").json
    assert mark["status"] == "voided" and mark["void_reason"].startswith(f"visit {visit_id}")


def test_entered_in_error_voids_the_mark_and_the_visit_is_not_counted(trial, screening):
    visit_id = screening.screening_id
    assert verify(trial, visit_id).status_code == 201
    assert progress(trial)["S01"] == {
        "site": "S01", "completed": 1, "verified": 1, "left_to_verify": 0}  # fmt: skip
    response = trial.post(f"/visits/{visit_id}/entered-in-error", {"reason": "wrong person"})
    assert response.status_code == 200, response.json
    (mark,) = trial.get(f"/visits/{visit_id}/verifications").json
    assert mark["status"] == "voided"
    assert len(events(visit_id, "source_verification_voided")) == 1  # once, not per form
    assert progress(trial)["S01"]["completed"] == 0
    refused = verify(trial, visit_id)
    assert refused.status_code == 409


def test_progress_counts_per_site_against_a_hand_count(trial):
    visits = [trial.enrol(day0_ago=None).screening_id for _ in range(3)]
    other = trial.enrol(day0_ago=None, site="S02").screening_id
    assert verify(trial, visits[0]).status_code == 201
    assert verify(trial, other, site="S02").status_code == 201
    # S01: three completed, one verified; S02: one completed, one verified.
    data_manager = trial.make_user("data_manager")[1]
    response = trial.get("/verification", role="monitor")
    assert response.json["counting_rule"].startswith("Visits counted: completed visits")
    assert progress(trial)["S01"] == {
        "site": "S01", "completed": 3, "verified": 1, "left_to_verify": 2}  # fmt: skip
    assert set(progress(trial)) == {"S01"}  # a monitor sees their own sites only
    everyone = trial.request("GET", "/verification", token=data_manager).json["sites"]
    assert {row["site"]: row["left_to_verify"] for row in everyone} == {"S01": 2, "S02": 0}
    pending = trial.get("/verification/pending", role="monitor").json
    assert sorted(p["visit_id"] for p in pending) == sorted(visits[1:])
    assert all(p["site"] == "S01" and not p["voided_before"] for p in pending)


@pytest.mark.parametrize("role", ["statistician", "unblinded_statistician", "dsmb", "admin"])
def test_blinded_and_other_roles_cannot_read_progress(trial, make_user, role):
    token = make_user(role)[1]
    assert trial.request("GET", "/verification", token=token).status_code == 403
