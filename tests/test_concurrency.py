"""Concurrent registrations through real gunicorn workers get exact, gapless ids.

Many clients register participants at one site at the same moment, through four gunicorn
worker processes on SQLite and on PostgreSQL. Every request must succeed, the ids must be
exactly S01-0001..S01-00NN, the database must hold what each client was told, and the audit
chain must verify. A negative control runs the same load and the same checks against a
registration that reads the site counter without a lock in a plain deferred transaction (the
way peers often do it) and shows that the checks catch it.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import pytest
import requests
from sqlalchemy import select

from tests.conftest import bearer
from tests.live_server import live_server
from trial.audit.models import AuditEvent
from trial.audit.services import verify_chain
from trial.extensions import db
from trial.participants.models import Participant
from trial.sites.models import Site

pytestmark = pytest.mark.slow

CLIENTS = 64
WORKERS = 4
REGISTRATION_FIELDS = {"site", "sex", "year_of_birth", "consent_date", "status"}


def payload(index: int) -> dict:
    """A distinct, valid registration per client, so each can be traced in the database."""
    consent = date.today() - timedelta(days=2 + index)
    return {
        "site": "S01",
        "sex": "FM"[index % 2],
        "year_of_birth": consent.year - 20 - index % 45,
        "consent_date": consent.isoformat(),
    }


def fire(url: str, token: str, clients: int = CLIENTS) -> list[tuple[dict, int, dict | str]]:
    """POST ``clients`` registrations at once (a barrier releases them together)."""
    barrier = threading.Barrier(clients)

    def register(index: int):
        body = payload(index)
        barrier.wait(timeout=60)
        try:
            response = requests.post(url, json=body, headers=bearer(token), timeout=120)
        except requests.RequestException as exc:  # a dropped connection is a result too
            return body, None, repr(exc)
        try:
            answer = response.json()
        except ValueError:
            answer = response.text
        return body, response.status_code, answer

    with ThreadPoolExecutor(max_workers=clients) as pool:
        return list(pool.map(register, range(clients)))


def find_problems(results, site_code: str = "S01") -> list[str]:
    """Everything that is wrong with a concurrent registration run, as readable lines."""
    problems = []
    statuses = Counter(status for _, status, _ in results)
    if set(statuses) != {201}:
        failures = sorted({str(answer)[:200] for _, status, answer in results if status != 201})
        problems.append(f"statuses {dict(statuses)} (all must be 201): {failures[:3]}")
    told = {}
    for body, status, answer in results:
        if status == 201:
            told.setdefault(answer["participant_id"], []).append((body, answer))
    duplicates = sorted(pid for pid, answers in told.items() if len(answers) > 1)
    if duplicates:
        problems.append(f"ids handed out twice: {duplicates}")
    expected = {f"{site_code}-{n:04d}" for n in range(1, len(results) + 1)}
    if set(told) != expected:
        problems.append(
            f"ids are not exactly {site_code}-0001..{len(results):04d}: missing "
            f"{sorted(expected - set(told))[:10]}, unexpected "
            f"{sorted(set(told) - expected)[:10]}"
        )

    # The database, read fresh, must hold exactly what each client was told.
    db.session.remove()
    rows = {
        p.participant_id: p
        for p in db.session.scalars(
            select(Participant).join(Participant.site).where(Site.code == site_code)
        )
    }
    if set(rows) != set(told):
        problems.append(
            f"database holds {len(rows)} participants, clients were told of "
            f"{len(told)}: {sorted(set(rows) ^ set(told))[:10]}"
        )
    for pid, answers in told.items():
        row = rows.get(pid)
        for body, answer in answers:
            if row is None:
                continue
            stored = {
                "site": row.site_code,
                "sex": row.sex,
                "year_of_birth": row.year_of_birth,
                "consent_date": row.consent_date.isoformat(),
            }
            if (
                stored != body
                or answer.get("sex") != row.sex
                or answer.get("consent_date") != stored["consent_date"]
            ):
                problems.append(
                    f"{pid}: client sent {body}, was told {answer}, database holds {stored}"
                )
    counter = db.session.scalar(select(Site.participant_counter).where(Site.code == site_code))
    if counter != len(rows):
        problems.append(f"site counter is {counter}, {len(rows)} participants stored")

    # One audited creation per participant, in a chain that still verifies.
    audited = Counter(
        e.entity_id
        for e in db.session.scalars(
            select(AuditEvent).where(
                AuditEvent.entity_type == "participant", AuditEvent.action == "create"
            )
        )
    )
    wrong = {pid: n for pid, n in audited.items() if n != len(REGISTRATION_FIELDS)}
    if set(audited) != set(rows) or wrong:
        problems.append(
            f"audit creations do not match participants: {len(audited)} audited, "
            f"{len(rows)} stored, wrong field counts {wrong}"
        )
    report = verify_chain()
    if not report.ok:
        problems.append(f"audit chain broken at {report.broken_seq}: {report.problem}")
    return problems


@pytest.fixture
def coordinator_token(app, make_user):
    """Site S01 and its coordinator, committed before the server starts."""
    _, token = make_user("coordinator", sites=["S01"])
    db.session.remove()
    return token


def test_concurrent_registrations_get_exact_gapless_ids(database_url, tmp_path, coordinator_token):
    with live_server(database_url, tmp_path / "server", workers=WORKERS) as server:
        assert len(server.worker_pids()) == WORKERS
        started = time.monotonic()
        results = fire(f"{server.api}/participants", coordinator_token)
        elapsed = time.monotonic() - started
        log = server.log()
    assert not find_problems(results), "\n".join(find_problems(results))
    # The access log shows no server error and the error log no traceback.
    assert not re.search(r'HTTP/1\.[01]" 5\d\d ', log) and "Traceback" not in log, log[-3000:]
    print(f"{CLIENTS} concurrent registrations through {WORKERS} workers in {elapsed:.2f}s")


# --- negative control -------------------------------------------------------------------


def make_unsafe_app():
    """The real app plus ``POST /api/v1/_unsafe/participants``: the naive registration.

    It reads the site counter with a plain SELECT (no row lock) on an engine without the
    ``BEGIN IMMEDIATE`` hook, so the transaction is deferred on SQLite and READ COMMITTED
    without ``FOR UPDATE`` on PostgreSQL, then writes counter + 1. The short sleep stands for
    the validation and audit work a real registration does between the read and the write.
    Test-only: gunicorn loads it as ``tests.test_concurrency:make_unsafe_app()``.
    """
    from flask import g, request
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from trial import create_app
    from trial.auth.policy import allow
    from trial.auth.roles import Role
    from trial.database import utcnow

    app = create_app()
    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])

    def unsafe_register():
        body = request.get_json()
        user_id = g.current_user.id
        # End the request session's transaction (token lookup) so it holds no lock.
        db.session.rollback()
        with Session(engine) as session:
            site = session.scalar(select(Site).where(Site.code == body["site"]))
            number = site.participant_counter + 1
            time.sleep(0.005)
            site.participant_counter = number
            participant = Participant(
                participant_id=f"{site.code}-{number:04d}",
                site_id=site.id,
                number=number,
                sex=body["sex"],
                year_of_birth=body["year_of_birth"],
                consent_date=date.fromisoformat(body["consent_date"]),
                status="screening",
                created_at=utcnow(),
                created_by_id=user_id,
            )
            session.add(participant)
            session.commit()
            return {
                "participant_id": participant.participant_id,
                "sex": participant.sex,
                "consent_date": body["consent_date"],
            }, 201

    app.add_url_rule(
        "/api/v1/_unsafe/participants",
        "unsafe_register",
        allow(Role.COORDINATOR)(unsafe_register),
        methods=["POST"],
    )
    return app


def test_negative_control_unlocked_counter_is_caught(database_url, tmp_path, coordinator_token):
    """The same load and checks against the unlocked counter report duplicates or errors."""
    with live_server(
        database_url,
        tmp_path / "server",
        workers=WORKERS,
        app="tests.test_concurrency:make_unsafe_app()",
    ) as server:
        results = fire(f"{server.api}/_unsafe/participants", coordinator_token)
        log = server.log()
    problems = find_problems(results)
    statuses = Counter(status for _, status, _ in results)
    print(
        f"negative control: statuses {dict(statuses)}; problems found:\n  " + "\n  ".join(problems)
    )
    assert problems, "the checks did not notice an unlocked counter"
    # Specifically the race: requests failed on a duplicate id, or ids were handed out twice.
    assert statuses[201] < CLIENTS or any("twice" in p for p in problems), problems
    if statuses[201] < CLIENTS:
        # ...and the failures were the unique constraint refusing a duplicate id.
        assert "IntegrityError" in log, log[-3000:]
