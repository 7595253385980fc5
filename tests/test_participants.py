"""Participants end to end: registration, validation, site scoping, audit."""

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from tests.conftest import bearer
from trial.audit.models import AuditEvent
from trial.extensions import db
from trial.participants.models import Participant

VALID = {"site": "S01", "sex": "F", "year_of_birth": 1980, "consent_date": "2026-01-15"}


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def test_register_returns_id_and_is_audited(client, make_user):
    _, token = make_user("coordinator", sites=["S01"])
    response = client.post("/api/v1/participants", headers=bearer(token), json=VALID)
    assert response.status_code == 201
    body = response.json
    assert body["participant_id"] == "S01-0001"
    assert body["site"] == "S01" and body["sex"] == "F" and body["status"] == "screening"
    rows = db.session.scalars(
        select(AuditEvent).where(
            AuditEvent.entity_type == "participant", AuditEvent.entity_id == "S01-0001"
        )
    ).all()
    fields = {row.field: row for row in rows}
    assert set(fields) == {"site", "sex", "year_of_birth", "consent_date", "status"}
    assert all(row.old_value is None and row.reason is None for row in rows)
    assert fields["consent_date"].new_value == '"2026-01-15"'
    assert all(row.role == "coordinator" and row.user_site == "S01" for row in rows)


def test_ids_are_consecutive_per_site(client, make_participant):
    ids = [make_participant(site="S01")["participant_id"] for _ in range(3)]
    ids.append(make_participant(site="S02")["participant_id"])
    assert ids == ["S01-0001", "S01-0002", "S01-0003", "S02-0001"]


@pytest.mark.parametrize(
    ("change", "bad_fields"),
    [
        ({"sex": "X"}, {"sex"}),
        ({"year_of_birth": "1980"}, {"year_of_birth"}),
        ({"year_of_birth": 1850}, {"year_of_birth"}),
        ({"consent_date": "15/01/2026"}, {"consent_date"}),
        ({"consent_date": (date.today() + timedelta(days=3)).isoformat()}, {"consent_date"}),
        ({"year_of_birth": 2015}, {"year_of_birth"}),  # 11 at consent: under 18
        ({"year_of_birth": 1940}, {"year_of_birth"}),  # 86 at consent: over 70
        ({"site": "S99"}, {"site"}),
        ({"shoe_size": 44}, {"shoe_size"}),
        ({"sex": "X", "consent_date": "nope", "extra": 1}, {"sex", "consent_date", "extra"}),
    ],
)
def test_bad_input_is_refused_whole_naming_each_field(client, make_user, change, bad_fields):
    _, token = make_user("coordinator", sites=["S01"])
    before = (count(Participant), count(AuditEvent))
    response = client.post("/api/v1/participants", headers=bearer(token), json={**VALID, **change})
    assert response.status_code == 422
    body = response.json
    assert set(body) == {"code", "status", "message", "errors"}
    assert body["status"] == 422 and body["code"] == "validation_error"
    assert set(body["errors"]) == bad_fields
    assert (count(Participant), count(AuditEvent)) == before


def test_missing_fields_are_named(client, make_user):
    _, token = make_user("coordinator")
    response = client.post("/api/v1/participants", headers=bearer(token), json={})
    assert response.status_code == 422
    assert set(response.json["errors"]) == {"site", "sex", "year_of_birth", "consent_date"}


def test_coordinator_registers_only_at_own_site(client, make_user, make_site):
    make_site("S02")
    _, token = make_user("coordinator", sites=["S01"])
    response = client.post(
        "/api/v1/participants", headers=bearer(token), json={**VALID, "site": "S02"}
    )
    assert response.status_code == 403
    assert count(Participant) == 0


def test_other_sites_participant_is_404_and_hidden_from_lists(client, make_user, make_participant):
    own = make_participant(site="S01")["participant_id"]
    other = make_participant(site="S02")["participant_id"]
    _, token = make_user("coordinator", sites=["S01"])
    assert client.get(f"/api/v1/participants/{own}", headers=bearer(token)).status_code == 200
    response = client.get(f"/api/v1/participants/{other}", headers=bearer(token))
    assert response.status_code == 404
    missing = client.get("/api/v1/participants/S01-9999", headers=bearer(token))
    # Another site's participant and a missing one are indistinguishable.
    assert response.json["code"] == missing.json["code"] == "not_found"
    listed = client.get("/api/v1/participants", headers=bearer(token)).json
    assert [p["participant_id"] for p in listed] == [own]


def test_monitor_sees_assigned_sites_and_data_manager_all(client, make_user, make_participant):
    make_participant(site="S01")
    make_participant(site="S02")
    make_participant(site="S03")
    _, monitor = make_user("monitor", sites=["S01", "S03"])
    _, manager = make_user("data_manager")
    seen = {p["site"] for p in client.get("/api/v1/participants", headers=bearer(monitor)).json}
    assert seen == {"S01", "S03"}
    seen = {p["site"] for p in client.get("/api/v1/participants", headers=bearer(manager)).json}
    assert seen == {"S01", "S02", "S03"}
    # A monitor reads but never registers.
    response = client.post("/api/v1/participants", headers=bearer(monitor), json=VALID)
    assert response.status_code == 403


def test_site_local_today_bounds_consent_date(client, make_user, make_site):
    """Kiritimati (UTC+14) is already on tomorrow's date for most of the UTC day."""
    from trial.participants.services import site_today
    from trial.sites.models import Site

    make_site("S09", timezone="Pacific/Kiritimati")
    _, token = make_user("coordinator", sites=["S09"])
    site = db.session.scalar(select(Site).where(Site.code == "S09"))
    today = site_today(site)
    ok = client.post(
        "/api/v1/participants",
        headers=bearer(token),
        json={**VALID, "site": "S09", "consent_date": today.isoformat()},
    )
    assert ok.status_code == 201
    late = client.post(
        "/api/v1/participants",
        headers=bearer(token),
        json={**VALID, "site": "S09", "consent_date": (today + timedelta(days=1)).isoformat()},
    )
    assert late.status_code == 422 and set(late.json["errors"]) == {"consent_date"}
