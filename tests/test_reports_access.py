"""Who gets which safety report, through the API and the command line, and what is refused.

Blinded roles get 403 for the closed report, before anything is read or written; bad
requests (unknown session, named arms on the open report, a cut-off in the future or without
a time zone) are 422 naming the field; every report released is one audit event with the
SHA-256 of the bytes sent.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from tests.conftest import bearer
from trial.audit.models import AuditEvent
from trial.extensions import db

ARMS = ("baclofen", "placebo")


def audit_count() -> int:
    return db.session.scalar(select(func.count()).select_from(AuditEvent))


def report_events() -> list[dict]:
    rows = db.session.scalars(select(AuditEvent.detail).where(AuditEvent.action == "report_safety"))
    return [json.loads(detail) for detail in rows]


def recorded_digest(event: dict) -> str:
    """The digest the trail keeps: SHA-256 for an open report, keyed for a closed one (whose
    plain digest would be an oracle for the arms; tests/test_release_blinding.py)."""
    if event["session"] == "closed":
        assert "sha256" not in event and "bytes" not in event
        return event["hmac_sha256"]
    return event["sha256"]


def digest_of(pdf: bytes, session: str) -> str:
    from randomization.release import release_digest

    return release_digest(pdf) if session == "closed" else hashlib.sha256(pdf).hexdigest()


@pytest.fixture
def people(make_user, make_participant, client):
    """A small trial (participants registered, none randomized) and one user of each role."""
    make_participant(site="S01")
    return {
        role: make_user(role)
        for role in ("dsmb", "unblinded_statistician", "data_manager", "statistician", "admin")
    }


@pytest.mark.parametrize(
    "role, session, status",
    [
        ("dsmb", "closed", 200),
        ("unblinded_statistician", "closed", 200),
        ("data_manager", "closed", 403),
        ("statistician", "closed", 403),
        ("dsmb", "open", 200),
        ("data_manager", "open", 200),
        ("statistician", "open", 200),
        ("admin", "open", 403),
    ],
)
def test_who_gets_which_report(client, people, role, session, status):
    before = audit_count()
    response = client.get(
        f"/api/v1/reports/safety?session={session}", headers=bearer(people[role][1])
    )
    assert response.status_code == status, response.get_data()[:300]
    if status == 403:
        assert audit_count() == before
        body = response.get_data(as_text=True).casefold()
        assert not any(arm in body for arm in ARMS)
        return
    assert response.mimetype == "application/pdf"
    assert response.data.startswith(b"%PDF")
    digest = hashlib.sha256(response.data).hexdigest()
    assert response.headers["X-Content-SHA256"] == digest
    assert audit_count() == before + 1
    (event,) = report_events()
    assert recorded_digest(event) == digest_of(response.data, session)
    assert event["session"] == session


def test_bad_requests_are_422_naming_the_field(client, people):
    token = people["dsmb"][1]
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    cases = {
        "session=sideways": "session",
        "session=open&arms=named": "arms",
        "session=closed&arms=shuffled": "arms",
        f"session=open&cutoff={future.replace('+', '%2B')}": "cutoff",
        "session=open&cutoff=2026-01-01T00:00:00": "cutoff",
        "session=open&cutoff=yesterday": "cutoff",
    }
    for query, field in cases.items():
        response = client.get(f"/api/v1/reports/safety?{query}", headers=bearer(token))
        assert response.status_code == 422, (query, response.json)
        assert field in response.json["errors"], (query, response.json)
    assert report_events() == []


def test_cli_writes_the_report_and_refuses_blinded_roles(runner, people, tmp_path):
    out = tmp_path / "closed.pdf"
    cutoff = (datetime.now(UTC) - timedelta(seconds=1)).replace(microsecond=0).isoformat()
    args = ["reports", "safety", "--session", "closed", "--cutoff", cutoff, "--out", str(out)]
    result = runner.invoke(args=[*args, "--as", people["dsmb"][0].username])
    assert result.exit_code == 0, result.output
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert digest in result.output
    assert recorded_digest(report_events()[-1]) == digest_of(out.read_bytes(), "closed")

    refused = tmp_path / "refused.pdf"
    result = runner.invoke(
        args=[*args[:-1], str(refused), "--as", people["data_manager"][0].username]
    )
    assert result.exit_code != 0 and "DSMB and the unblinded statistician" in result.output
    assert not refused.exists()

    result = runner.invoke(
        args=["reports", "safety", "--session", "open", "--cutoff", "2026-01-01T00:00:00",
              "--out", str(refused), "--as", people["dsmb"][0].username]
    )  # fmt: skip
    assert result.exit_code != 0 and "time zone" in result.output
    result = runner.invoke(
        args=["reports", "safety", "--session", "open", "--arms", "named",
              "--out", str(refused), "--as", people["dsmb"][0].username]
    )  # fmt: skip
    assert result.exit_code != 0 and "closed report" in result.output
    assert not refused.exists()
    assert len(report_events()) == 1


def test_same_request_twice_gives_the_same_bytes(client, people):
    cutoff = (datetime.now(UTC) - timedelta(seconds=1)).replace(microsecond=0)
    url = f"/api/v1/reports/safety?session=closed&cutoff={cutoff.isoformat().replace('+', '%2B')}"
    token = people["unblinded_statistician"][1]
    first, second = client.get(url, headers=bearer(token)), client.get(url, headers=bearer(token))
    assert first.status_code == second.status_code == 200
    assert first.headers["X-Content-SHA256"] == second.headers["X-Content-SHA256"]
    assert first.data == second.data
    assert [recorded_digest(e) for e in report_events()] == [digest_of(first.data, "closed")] * 2


def test_many_sites_and_an_empty_site_still_give_a_report(client, people, make_site):
    """More sites than the chart has colours, one planning no one: still a report, not a 500."""
    for n in range(2, 12):
        make_site(f"S{n:02d}", planned_enrollment=0 if n == 11 else 10)
    response = client.get("/api/v1/reports/safety", headers=bearer(people["dsmb"][1]))
    assert response.status_code == 200, response.get_data()[:300]
    response = client.get(
        "/api/v1/reports/safety?session=closed", headers=bearer(people["dsmb"][1])
    )
    assert response.status_code == 200, response.get_data()[:300]
