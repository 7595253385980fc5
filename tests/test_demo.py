"""``flask trial demo``: a complete, working demo trial from an empty database, once.

Sites S01-S03, one user of every role with a printed token that works, N participants, a
refusal to load twice (``--if-empty`` makes that a no-op), and an intact audit chain.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from tests.conftest import bearer
from trial.audit.models import AuditEvent
from trial.audit.services import verify_chain
from trial.auth.models import User
from trial.auth.roles import ALL_ROLES, SINGLE_SITE_ROLES
from trial.extensions import db
from trial.participants.models import Participant
from trial.sites.models import Site

TOKEN_LINE = re.compile(r"^(\S+)\s+([A-Za-z0-9_-]{40,})$")


def count(model) -> int:
    db.session.remove()  # read what the command committed, not a cached view
    return db.session.scalar(select(func.count()).select_from(model))


def counts() -> tuple[int, int, int, int]:
    return count(Site), count(User), count(Participant), count(AuditEvent)


def run_demo(runner, *args: str):
    return runner.invoke(args=["trial", "demo", *args])


def printed_tokens(output: str) -> dict[str, str]:
    return dict(m.groups() for line in output.splitlines() if (m := TOKEN_LINE.match(line)))


def test_demo_with_no_participants_sets_up_sites_and_every_role(app, runner, client):
    result = run_demo(runner, "--participants", "0")
    assert result.exit_code == 0, result.output

    db.session.remove()
    assert [s.code for s in db.session.scalars(select(Site).order_by(Site.code))][:3] == [
        "S01",
        "S02",
        "S03",
    ]
    users = list(db.session.scalars(select(User)))
    assert {u.role for u in users} == {role.value for role in ALL_ROLES}
    for user in users:
        if user.role in SINGLE_SITE_ROLES:
            assert len(user.site_codes) == 1
    assert count(Participant) == 0

    # Every printed token works and, together, they cover every role.
    tokens = printed_tokens(result.output)
    assert len(tokens) == len(users)
    roles = set()
    for name, token in tokens.items():
        response = client.get("/api/v1/auth/me", headers=bearer(token))
        assert response.status_code == 200, (name, response.json)
        assert response.json["username"] == name
        roles.add(response.json["role"])
    assert roles == {role.value for role in ALL_ROLES}
    # A coordinator's token reaches the participant list (empty, but allowed).
    coordinator = next(
        t
        for n, t in tokens.items()
        if client.get("/api/v1/auth/me", headers=bearer(t)).json["role"] == "coordinator"
    )
    listed = client.get("/api/v1/participants", headers=bearer(coordinator))
    assert listed.status_code == 200 and listed.json == []

    # The same tokens are kept in the instance directory, readable by the owner only.
    path = Path(app.instance_path) / "demo-tokens.txt"
    assert printed_tokens(path.read_text()) == tokens
    assert path.stat().st_mode & 0o077 == 0

    assert verify_chain().ok
    verified = runner.invoke(args=["audit", "verify"])
    assert verified.exit_code == 0, verified.output


def test_demo_registers_the_participants_asked_for(app, runner, client):
    result = run_demo(runner, "--participants", "12")
    assert result.exit_code == 0, result.output
    assert count(Participant) == 12
    per_site = dict(
        db.session.execute(
            select(Site.code, func.count(Participant.id)).join(Participant.site).group_by(Site.code)
        ).all()
    )
    assert set(per_site) <= {"S01", "S02", "S03"} and sum(per_site.values()) == 12
    ids = sorted(db.session.scalars(select(Participant.participant_id)))
    assert all(re.fullmatch(r"S0[123]-\d{4}", pid) for pid in ids)
    # Each site numbers its own participants from 0001 without gaps.
    for code, n in per_site.items():
        assert [pid for pid in ids if pid.startswith(code)] == [
            f"{code}-{i:04d}" for i in range(1, n + 1)
        ]
    # Every registration is in the audit trail, and the chain verifies.
    audited = set(
        db.session.scalars(
            select(AuditEvent.entity_id).where(
                AuditEvent.entity_type == "participant", AuditEvent.action == "create"
            )
        )
    )
    assert audited == set(ids)
    assert verify_chain().ok
    assert runner.invoke(args=["audit", "verify"]).exit_code == 0

    # The data manager's printed token sees all twelve.
    tokens = printed_tokens(result.output)
    seen = None
    for token in tokens.values():
        me = client.get("/api/v1/auth/me", headers=bearer(token)).json
        if me["role"] == "data_manager":
            seen = client.get("/api/v1/participants", headers=bearer(token)).json
    assert seen is not None and sorted(p["participant_id"] for p in seen) == ids


@pytest.mark.parametrize("participants", ["0", "3"])
def test_second_run_refuses_and_if_empty_does_nothing(app, runner, participants):
    first = run_demo(runner, "--participants", participants)
    assert first.exit_code == 0, first.output
    before = counts()

    again = run_demo(runner, "--participants", participants)
    assert again.exit_code != 0
    assert "not empty" in again.output
    assert counts() == before

    quiet = run_demo(runner, "--participants", participants, "--if-empty")
    assert quiet.exit_code == 0, quiet.output
    assert printed_tokens(quiet.output) == {}  # no new users, no new tokens
    assert counts() == before

    assert verify_chain().ok
    assert runner.invoke(args=["audit", "verify"]).exit_code == 0


def test_if_empty_on_an_empty_database_loads_the_demo(app, runner):
    result = run_demo(runner, "--participants", "2", "--if-empty")
    assert result.exit_code == 0, result.output
    assert count(Site) >= 3 and count(Participant) == 2
    assert verify_chain().ok


def test_negative_participant_count_is_refused(app, runner):
    before = counts()
    result = run_demo(runner, "--participants", "-1")
    assert result.exit_code != 0
    assert counts() == before and before[0] == 0


def test_on_postgresql_the_demo_leaves_the_planner_statistics_of_its_load(app, runner, backend):
    """The demo is a bulk load: PostgreSQL's statistics must describe it (ANALYZE), or the
    planner guesses (an export then scanned the whole audit trail for the events after its
    cut-off). ANALYZE reads every row of tables this small, so the row count it records is
    exact; a demo without it leaves the count the table had before (none: -1)."""
    if backend != "postgresql":
        pytest.skip("PostgreSQL's planner statistics")

    def planned_rows() -> float:
        db.session.remove()
        return db.session.scalar(
            select(func.max(text("reltuples")))
            .select_from(text("pg_class"))
            .where(text("relname = 'audit_events'"))
        )

    before = planned_rows()
    assert run_demo(runner, "--participants", "6").exit_code == 0
    events = count(AuditEvent)
    assert before != events  # the control: the statistics did not already say so
    assert planned_rows() == events
