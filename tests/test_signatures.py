"""Signatures: an investigator signs a visit with the password re-entered (21 CFR 11.50:
name, time, meaning); any later change to the visit or its forms voids the signature.
Runs on SQLite and, with TEST_DATABASE_URL set, on PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tests.capture_helpers import PASSWORD, Trial, calendar, counts, lab, ocds, vitals
from trial.audit.models import AuditEvent
from trial.extensions import db

D = timedelta(days=1)
MEANING = "reviewed and approved"


@pytest.fixture
def trial(client, make_site, make_user, make_participant) -> Trial:
    return Trial(client, make_site, make_user, make_participant)


@pytest.fixture
def visit(trial):
    """A completed baseline visit with a calendar, OCDS, vitals and a lab."""
    p = trial.enrol(day0_ago=30, screening_drinking=True)
    response = trial.visit(
        p.pid,
        "baseline",
        p.day0,
        drinking=calendar(p.screening_date, p.day0 - D),
        ocds=ocds(2),
        vitals=vitals(),
        labs=[lab()],
    )
    assert response.status_code == 201, response.json
    return response.json


def sign(trial, visit_id, password=PASSWORD, role="investigator", site="S01"):
    return trial.post(f"/visits/{visit_id}/sign", {"password": password}, site=site, role=role)


def visit_events(visit_id, action=None) -> list[AuditEvent]:
    statement = select(AuditEvent).where(
        AuditEvent.entity_type == "visit", AuditEvent.entity_id == str(visit_id)
    )
    if action:
        statement = statement.where(AuditEvent.action == action)
    return list(db.session.scalars(statement.order_by(AuditEvent.seq)))


def signature_status(trial, visit_id) -> str:
    return trial.get(f"/visits/{visit_id}").json["signature_status"]


def test_an_investigator_signs_with_name_time_and_meaning(trial, visit):
    assert visit["signature_status"] == "unsigned" and visit["signed_at"] is None
    before = datetime.now(UTC)
    response = sign(trial, visit["id"])
    after = datetime.now(UTC)
    assert response.status_code == 200, response.json
    body = response.json
    investigator = trial.investigator_user["S01"]
    assert body["signature_status"] == "signed"
    assert body["signed_by"] == investigator.username
    assert body["signature_meaning"] == MEANING
    signed_at = datetime.fromisoformat(body["signed_at"])
    assert signed_at.utcoffset() == timedelta(0)  # server time, in UTC
    assert before - timedelta(seconds=1) <= signed_at <= after + timedelta(seconds=1)
    assert "password" not in body
    (event,) = visit_events(visit["id"], "sign")
    assert (event.username, event.role, event.user_site) == (
        investigator.username,
        "investigator",
        "S01",
    )
    assert (event.field, event.old_value, event.new_value) == (
        "signature_status",
        '"unsigned"',
        '"signed"',
    )
    assert json.loads(event.detail)["meaning"] == MEANING
    assert datetime.fromisoformat(json.loads(event.detail)["signed_at"]) == signed_at
    assert event.entity_site == "S01"
    assert PASSWORD not in (event.detail or "") + (event.new_value or "")
    # What the investigator signed is what anyone reads back.
    assert trial.get(f"/visits/{visit['id']}").json["signed_by"] == investigator.username


@pytest.mark.parametrize("role", ["coordinator", "monitor"])
def test_other_roles_cannot_sign(trial, visit, role):
    before = counts()
    response = sign(trial, visit["id"], role=role)
    assert response.status_code == 403, response.json
    assert counts() == before
    assert signature_status(trial, visit["id"]) == "unsigned"


def _signed_by_another_role(trial, visit_id, roles) -> list[str]:
    """Call the sign service itself (no route, no policy) as each of ``roles`` (site roles at
    S01, the visit's site), with the right password; return what went wrong (a signature, a
    write)."""
    from trial.errors import Forbidden, RecordedRefusal
    from trial.visits import services

    problems = []
    for role in roles:
        actor = trial.make_user(role, password=PASSWORD)[0]  # site roles: S01
        before = counts()
        try:
            services.sign_visit(actor, visit_id, PASSWORD)
        except Forbidden as refused:
            if isinstance(refused, RecordedRefusal) or "investigator" not in refused.message:
                problems.append(f"{role}: refused for another cause: {refused.message}")
        else:
            problems.append(f"{role}: the service signed the visit")
        db.session.rollback()
        if counts() != before:
            problems.append(f"{role}: something was written")
    return problems


SIGNING_ROLES_REFUSED = ["coordinator", "monitor", "data_manager"]


def test_the_sign_service_itself_refuses_other_roles(trial, visit):
    """The route's policy refuses other roles before the service runs; a page or a command
    calling ``sign_visit`` relies on the service's own check."""
    assert _signed_by_another_role(trial, visit["id"], SIGNING_ROLES_REFUSED) == []
    assert signature_status(trial, visit["id"]) == "unsigned"


def test_control_without_the_services_role_check_another_role_signs(trial, visit, monkeypatch):
    """The service's role check removed: the same calls sign the visit, and the check above
    reports each role."""
    from trial.visits import services

    monkeypatch.setattr(services, "require_signer", lambda actor: None)
    problems = _signed_by_another_role(trial, visit["id"], SIGNING_ROLES_REFUSED)
    assert problems == [f"{role}: the service signed the visit" for role in SIGNING_ROLES_REFUSED]


def test_a_wrong_password_is_refused_and_audited(trial, visit):
    before = counts()
    response = sign(trial, visit["id"], password="not the password")
    assert response.status_code == 403, response.json
    assert "password" in response.json["errors"]
    assert signature_status(trial, visit["id"]) == "unsigned"
    (refused,) = visit_events(visit["id"], "sign_refused")
    assert refused.username == trial.investigator_user["S01"].username
    assert "not the password" not in (refused.detail or "")
    assert counts() == {**before, "audit_events": before["audit_events"] + 1}
    assert visit_events(visit["id"], "sign") == []
    empty = sign(trial, visit["id"], password="")
    assert empty.status_code == 422 and "password" in empty.json["errors"]  # not even tried


def _invalidated_once_and_resigned(trial, visit_id, change):
    assert sign(trial, visit_id).status_code == 200
    n_before = len(visit_events(visit_id, "signature_invalidated"))
    response = change()
    assert response.status_code == 200, response.json
    assert signature_status(trial, visit_id) == "invalidated"
    events = visit_events(visit_id, "signature_invalidated")
    assert len(events) == n_before + 1
    event = events[-1]
    assert (event.field, event.old_value, event.new_value) == (
        "signature_status",
        '"signed"',
        '"invalidated"',
    )
    assert event.reason
    # Signing again restores it.
    again = sign(trial, visit_id)
    assert again.status_code == 200 and again.json["signature_status"] == "signed"


def test_any_later_change_invalidates_the_signature_until_signed_again(trial, visit):
    vid = visit["id"]
    day = visit["drinking"][3]
    changes = [
        lambda: trial.patch(f"/vitals/{visit['vitals']['id']}", {"heart_rate": 64, "reason": "x"}),
        lambda: trial.patch(f"/ocds/{visit['ocds']['id']}", {"item_3": 4, "reason": "misread"}),
        lambda: trial.patch(
            f"/labs/{visit['labs'][0]['id']}", {"value": 61.0, "reason": "lab report"}
        ),
        lambda: trial.patch(
            f"/drinking-days/{day['id']}", {"standard_drinks": 9, "reason": "recalled"}
        ),
        lambda: trial.post(f"/drinking-days/{day['id']}/entered-in-error", {"reason": "dup"}),
        lambda: trial.patch(
            f"/vitals/{visit['vitals']['id']}", {"weight_kg": None, "reason": "not weighed"}
        ),
    ]
    for change in changes:
        _invalidated_once_and_resigned(trial, vid, change)


def test_a_visit_correction_invalidates_the_signature(trial):
    p = trial.enrol(day0_ago=30)
    vid = trial.visit(p.pid, "titration_w1", p.day0 + 7 * D).json["id"]
    _invalidated_once_and_resigned(
        trial,
        vid,
        lambda: trial.patch(
            f"/visits/{vid}", {"visit_date": (p.day0 + 8 * D).isoformat(), "reason": "typo"}
        ),
    )


def test_a_correction_that_changes_nothing_keeps_the_signature(trial, visit):
    assert sign(trial, visit["id"]).status_code == 200
    same = trial.patch(
        f"/vitals/{visit['vitals']['id']}",
        {"heart_rate": visit["vitals"]["heart_rate"], "reason": "checked"},
    )
    assert same.status_code == 422 and same.json["code"] == "no_change", same.json
    assert signature_status(trial, visit["id"]) == "signed"


def test_a_change_to_another_visit_leaves_this_signature(trial, visit):
    assert sign(trial, visit["id"]).status_code == 200
    other = trial.visit(
        visit["participant_id"],
        "titration_w1",
        datetime.fromisoformat(visit["visit_date"]).date() + 7 * D,
        vitals=vitals(),
    ).json
    trial.patch(f"/vitals/{other['vitals']['id']}", {"heart_rate": 90, "reason": "typo"})
    assert signature_status(trial, visit["id"]) == "signed"


def test_entered_in_error_invalidates_and_cannot_be_signed(trial, visit):
    assert sign(trial, visit["id"]).status_code == 200
    marked = trial.post(f"/visits/{visit['id']}/entered-in-error", {"reason": "wrong person"})
    assert marked.status_code == 200
    assert marked.json["signature_status"] == "invalidated"
    assert len(visit_events(visit["id"], "signature_invalidated")) == 1
    before = counts()
    assert sign(trial, visit["id"]).status_code == 409
    assert counts() == before


# --- the services void the signature themselves, whoever calls them ------------------------------


def _status_after_service_changes(trial, visit) -> dict[str, str]:
    """Sign the visit, change it through each whole operation called directly (as a page or a
    command would, without the API's views), and return the signature status after each."""
    from trial.records.services import correct_any_record, mark_any_record_in_error
    from trial.visits.services import mark_visit_in_error

    vitals_id = visit["vitals"]["id"]
    changes = {
        "correct_any_record": lambda actor: correct_any_record(
            actor, "vitals", vitals_id, {"heart_rate": 61}, "source document checked"
        ),
        "mark_any_record_in_error": lambda actor: mark_any_record_in_error(
            actor, "vitals", vitals_id, "entered for the wrong visit"
        ),
        "mark_visit_in_error": lambda actor: mark_visit_in_error(
            actor, visit["id"], "entered for the wrong participant"
        ),
    }
    actor = trial.make_user("coordinator")[0]  # of S01, the visit's site
    status = {}
    for name, change in changes.items():
        if signature_status(trial, visit["id"]) != "signed":
            assert sign(trial, visit["id"]).status_code == 200, name
        change(actor)
        db.session.commit()
        status[name] = signature_status(trial, visit["id"])
    return status


def test_each_service_that_changes_a_signed_visit_voids_its_signature(trial, visit):
    assert _status_after_service_changes(trial, visit) == {
        "correct_any_record": "invalidated",
        "mark_any_record_in_error": "invalidated",
        "mark_visit_in_error": "invalidated",
    }


def test_control_without_the_services_invalidation_the_visit_stays_signed(
    trial, visit, monkeypatch
):
    """The invalidation patched out of the services (where the views' hook list used to do
    it): every change leaves the visit signed, and the check above reports it."""
    from trial.records import services as records_services
    from trial.visits import services as visits_services

    for module in (records_services, visits_services):
        monkeypatch.setattr(module, "invalidate_signature", lambda actor, record: None)
    assert set(_status_after_service_changes(trial, visit).values()) == {"signed"}
