"""The audit trail: append-only in the database, hash-chained, written with the change.

Every test here runs on SQLite and, with TEST_DATABASE_URL set, on PostgreSQL.
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import DBAPIError

from tests.conftest import bearer
from trial.audit.chain import GENESIS_HASH, chain_hash
from trial.audit.models import AuditChainHead, AuditEvent
from trial.audit.services import (
    encode_value,
    record_changes,
    record_event,
    verify_chain,
)
from trial.errors import ValidationFailed
from trial.extensions import db
from trial.participants.models import Participant
from trial.participants.services import register_participant

REGISTRATION = {"sex": "F", "year_of_birth": 1980, "consent_date": "2026-01-15"}


# --- helpers ------------------------------------------------------------------------------


def events() -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).order_by(AuditEvent.seq)))


def last_seq() -> int:
    return db.session.scalar(select(func.max(AuditEvent.seq))) or 0


def committed(sql: str):
    """Read what is committed, through a connection of its own (not the test's session)."""
    engine = create_engine(db.engine.url)
    try:
        with engine.connect() as connection:
            return connection.execute(text(sql)).scalar()
    finally:
        engine.dispose()


def build_chain(make_site, make_user) -> int:
    """Fill the trail with a few dozen events; return how many there are."""
    make_site("S01")
    make_site("S02")
    make_user("coordinator", sites=["S01"])
    make_user("admin")
    db.session.commit()
    return last_seq()


def drop_triggers(backend: str) -> None:
    """Tamper as a database owner would: remove the append-only guard behind the app's back."""
    if backend == "sqlite":
        db.session.execute(text("DROP TRIGGER audit_events_no_update"))
        db.session.execute(text("DROP TRIGGER audit_events_no_delete"))
    else:
        db.session.execute(text("DROP TRIGGER audit_events_no_update_delete ON audit_events"))
    db.session.commit()


def tamper(sql: str, **params) -> None:
    db.session.execute(text(sql), params)
    db.session.commit()
    db.session.expire_all()


def run_verify(runner):
    db.session.close()  # the command uses its own session; do not hold SQLite's write lock
    result = runner.invoke(args=["audit", "verify"])
    return result, result.output


# --- the database refuses to rewrite history ----------------------------------------------


REFUSED = {
    "update_one": "UPDATE audit_events SET new_value = '\"forged\"' WHERE seq = 2",
    "update_all": "UPDATE audit_events SET reason = 'rewritten'",
    "update_seq": "UPDATE audit_events SET seq = seq + 1000 WHERE seq = 1",
    "delete_one": "DELETE FROM audit_events WHERE seq = 2",
    "delete_all": "DELETE FROM audit_events",
}


def test_triggers_refuse_update_and_delete_through_the_session(app, make_site):
    make_site("S01")
    before = [(e.seq, e.new_value, e.reason, e.hash) for e in events()]
    assert len(before) >= 2
    for name, statement in REFUSED.items():
        with pytest.raises(DBAPIError, match="append-only"):
            db.session.execute(text(statement))
            pytest.fail(f"{name} was not refused")
        db.session.rollback()
    db.session.expire_all()
    assert [(e.seq, e.new_value, e.reason, e.hash) for e in events()] == before
    assert verify_chain().ok


def test_triggers_refuse_any_client_not_just_the_app(app, make_site):
    """A plain connection without the app's hooks is refused just the same."""
    make_site("S01")
    db.session.close()
    count = committed("SELECT count(*) FROM audit_events")
    engine = create_engine(db.engine.url)
    try:
        with engine.connect() as connection:
            for name, statement in REFUSED.items():
                with pytest.raises(DBAPIError, match="append-only"):
                    connection.execute(text(statement))
                    pytest.fail(f"{name} was not refused")
                connection.rollback()
    finally:
        engine.dispose()
    assert committed("SELECT count(*) FROM audit_events") == count
    assert verify_chain().ok


def test_orm_changes_to_an_event_are_refused(app, make_site):
    make_site("S01")
    event = events()[0]
    event.reason = "changed my mind"
    with pytest.raises(DBAPIError, match="append-only"):
        db.session.flush()
    db.session.rollback()
    db.session.delete(events()[0])
    with pytest.raises(DBAPIError, match="append-only"):
        db.session.flush()
    db.session.rollback()
    assert verify_chain().ok


def test_postgresql_refuses_truncate(app, backend, make_site):
    if backend != "postgresql":
        pytest.skip("TRUNCATE exists only on PostgreSQL")
    make_site("S01")
    count = last_seq()
    with pytest.raises(DBAPIError, match="append-only: TRUNCATE refused"):
        db.session.execute(text("TRUNCATE audit_events"))
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == count


def test_appending_is_allowed(app, make_site):
    make_site("S01")
    before = last_seq()
    record_event(None, "note", detail={"what": "appending still works"})
    db.session.commit()
    assert last_seq() == before + 1
    assert verify_chain().ok


# --- the hash chain catches what the triggers cannot prevent -------------------------------


def test_intact_chain_verifies_and_exits_zero(app, runner, make_site, make_user):
    total = build_chain(make_site, make_user)
    report = verify_chain()
    assert report.ok and report.rows_checked == total and report.broken_seq is None
    result, output = run_verify(runner)
    assert result.exit_code == 0, output
    assert f"{total} rows verified" in output


def test_empty_chain_verifies(app, runner):
    assert verify_chain().ok and verify_chain().rows_checked == 0
    result, output = run_verify(runner)
    assert result.exit_code == 0, output


def test_chain_links_every_row_to_the_one_before(app, make_site, make_user):
    build_chain(make_site, make_user)
    rows = events()
    assert rows[0].prev_hash == GENESIS_HASH
    for before, after in zip(rows, rows[1:], strict=False):
        assert after.seq == before.seq + 1
        assert after.prev_hash == before.hash
    for row in rows:
        assert chain_hash(row.prev_hash, row) == row.hash
    head = db.session.get(AuditChainHead, 1)
    assert (head.last_seq, head.last_hash) == (rows[-1].seq, rows[-1].hash)


ALTERATIONS = {
    "new_value": "UPDATE audit_events SET new_value = '\"forged\"' WHERE seq = :k",
    "old_value": "UPDATE audit_events SET old_value = '\"forged\"' WHERE seq = :k",
    "reason": "UPDATE audit_events SET reason = 'after the fact' WHERE seq = :k",
    "username": "UPDATE audit_events SET username = 'someone-else' WHERE seq = :k",
    "entity_site": "UPDATE audit_events SET entity_site = 'S99' WHERE seq = :k",
    "hash": "UPDATE audit_events SET hash = :fake WHERE seq = :k",
    "prev_hash": "UPDATE audit_events SET prev_hash = :fake WHERE seq = :k",
}


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_altered_row_is_reported_at_its_seq(app, backend, runner, make_site, make_user, where):
    total = build_chain(make_site, make_user)
    k = {"first": 1, "middle": total // 2, "last": total}[where]
    drop_triggers(backend)
    original = db.session.get(AuditEvent, k)
    saved = {
        column: getattr(original, column)
        for column in (
            "new_value",
            "old_value",
            "reason",
            "username",
            "entity_site",
            "hash",
            "prev_hash",
        )
    }
    for column, statement in ALTERATIONS.items():
        tamper(statement, k=k, fake="f" * 64)
        report = verify_chain()
        assert not report.ok, column
        assert report.broken_seq == k, (column, report)
        assert report.rows_checked == k - 1, (column, report)
        assert str(k) in report.problem

        result, output = run_verify(runner)
        assert result.exit_code != 0, column
        assert f"BROKEN at row {k}:" in output, (column, output)
        assert f"({k - 1} rows verified before it)" in output, (column, output)

        # Put the row back exactly as it was: the chain verifies again.
        tamper(
            f"UPDATE audit_events SET {column} = :value WHERE seq = :k", value=saved[column], k=k
        )
        assert verify_chain().ok, column


def test_altered_timestamp_is_reported(app, backend, make_site, make_user):
    total = build_chain(make_site, make_user)
    k = total // 2 + 1
    row = db.session.get(AuditEvent, k)
    shifted = row.occurred_at - timedelta(days=3)
    drop_triggers(backend)
    db.session.execute(
        AuditEvent.__table__.update().where(AuditEvent.seq == k).values(occurred_at=shifted)
    )
    db.session.commit()
    db.session.expire_all()
    report = verify_chain()
    assert (report.ok, report.broken_seq) == (False, k)


@pytest.mark.parametrize("where", ["first", "middle"])
def test_deleted_row_is_reported_at_its_seq(app, backend, runner, make_site, make_user, where):
    total = build_chain(make_site, make_user)
    k = {"first": 1, "middle": total // 2}[where]
    drop_triggers(backend)
    tamper("DELETE FROM audit_events WHERE seq = :k", k=k)

    report = verify_chain()
    assert (report.ok, report.broken_seq) == (False, k)
    assert "missing" in report.problem

    result, output = run_verify(runner)
    assert result.exit_code != 0
    assert f"BROKEN at row {k}:" in output


@pytest.mark.parametrize("removed", [1, 3])
def test_rows_removed_from_the_end_are_detected(
    app, backend, runner, make_site, make_user, removed
):
    total = build_chain(make_site, make_user)
    drop_triggers(backend)
    tamper("DELETE FROM audit_events WHERE seq > :k", k=total - removed)

    report = verify_chain()
    assert not report.ok
    assert report.rows_checked == total - removed
    assert report.broken_seq == total - removed + 1
    assert "removed from the end" in report.problem

    result, output = run_verify(runner)
    assert result.exit_code != 0
    assert f"BROKEN at row {total - removed + 1}:" in output


def test_row_appended_behind_the_apps_back_is_detected(app, make_site, make_user):
    """Triggers allow INSERT; a row that skipped the chain head does not verify."""
    total = build_chain(make_site, make_user)
    last = events()[-1]
    forged = AuditEvent(
        seq=total + 1,
        occurred_at=datetime.now(UTC),
        action="note",
        prev_hash=last.hash,
        detail='{"forged": true}',
    )
    for column in (
        "user_id",
        "username",
        "role",
        "user_site",
        "entity_type",
        "entity_id",
        "entity_site",
        "field",
        "old_value",
        "new_value",
        "reason",
    ):
        setattr(forged, column, None)
    forged.hash = chain_hash(last.hash, forged)
    db.session.add(forged)
    db.session.commit()
    report = verify_chain()
    assert not report.ok
    assert report.broken_seq == total + 1


# --- written in the same transaction as the change ----------------------------------------


def test_refused_request_writes_no_audit_row(app, client, make_user, make_site):
    make_site("S02")
    _, token = make_user("coordinator", sites=["S01"])
    before = last_seq()
    bad_bodies = [
        {"site": "S01", **REGISTRATION, "sex": "X"},  # schema: 422
        {"site": "S01", **REGISTRATION, "consent_date": "2099-01-01"},  # service: 422
        {"site": "S02", **REGISTRATION},  # other site: 403
    ]
    for body in bad_bodies:
        response = client.post("/api/v1/participants", headers=bearer(token), json=body)
        assert response.status_code in (403, 422), response.json
        db.session.rollback()
        assert committed("SELECT count(*) FROM participants") == 0
        assert committed("SELECT max(seq) FROM audit_events") == before
        assert committed("SELECT last_seq FROM audit_chain_head") == before


def test_failure_after_the_audit_row_leaves_neither_change_nor_row(app, make_user):
    user, _ = make_user("coordinator", sites=["S01"])
    before = last_seq()
    head_before = db.session.get(AuditChainHead, 1).last_hash

    participant = register_participant(
        user, site="S01", sex="M", year_of_birth=1975, consent_date=date(2026, 1, 10)
    )
    assert participant.participant_id == "S01-0001"
    assert last_seq() == before + 5  # flushed, inside the open transaction
    db.session.rollback()  # e.g. the commit never happened: an exception came first

    assert db.session.scalar(select(func.count()).select_from(Participant)) == 0
    assert last_seq() == before
    head = db.session.get(AuditChainHead, 1)
    assert (head.last_seq, head.last_hash) == (before, head_before)

    # The next change continues the chain without a gap.
    again = register_participant(
        user, site="S01", sex="M", year_of_birth=1975, consent_date=date(2026, 1, 10)
    )
    db.session.commit()
    assert again.participant_id == "S01-0001"
    assert [e.seq for e in events()] == list(range(1, before + 6))
    assert verify_chain().ok


def test_exception_in_a_request_after_recording_commits_nothing(
    app, client, make_user, monkeypatch
):
    _, token = make_user("coordinator", sites=["S01"])
    before = last_seq()
    db.session.close()
    import trial.participants.services as participant_services

    original = participant_services.record_events

    def record_then_fail(*args, **kwargs):
        original(*args, **kwargs)
        raise RuntimeError("crash between the audit row and the commit")

    monkeypatch.setattr(participant_services, "record_events", record_then_fail)
    # A request in its own thread gets its own app context and session, as in production.
    responses = []
    worker = threading.Thread(
        target=lambda: responses.append(
            app.test_client().post(
                "/api/v1/participants", headers=bearer(token), json={"site": "S01", **REGISTRATION}
            )
        )
    )
    worker.start()
    worker.join(timeout=60)
    assert responses and responses[0].status_code == 500
    assert "crash" not in responses[0].get_data(as_text=True)
    assert committed("SELECT count(*) FROM participants") == 0
    assert committed("SELECT max(seq) FROM audit_events") == before
    assert committed("SELECT participant_counter FROM sites WHERE code = 'S01'") == 0
    assert verify_chain().ok


# --- what a change records ----------------------------------------------------------------


def test_a_change_needs_a_reason(app, make_user):
    user, _ = make_user("coordinator", sites=["S01"])
    before = last_seq()
    for reason in (None, "", "   "):
        with pytest.raises(ValidationFailed) as excinfo:
            record_changes(
                user,
                "participant",
                "S01-0001",
                {"sex": ("F", "M")},
                reason=reason,
                entity_site="S01",
            )
        assert excinfo.value.status == 422
        assert "reason" in excinfo.value.errors
        assert last_seq() == before


def test_only_changed_fields_are_recorded_with_who_when_and_why(app, make_user):
    user, _ = make_user("investigator", sites=["S01"])
    before = last_seq()
    changed = record_changes(
        user,
        "participant",
        "S01-0001",
        {
            "sex": ("F", "M"),
            "year_of_birth": (1980, 1980),
            "consent_date": (date(2026, 1, 15), date(2026, 1, 15)),
            "status": ("screening", "screening"),
        },
        reason="  transcription error  ",
        entity_site="S01",
    )
    db.session.commit()
    assert changed == 1
    rows = [e for e in events() if e.seq > before]
    assert len(rows) == 1
    row = rows[0]
    assert (row.action, row.entity_type, row.entity_id, row.entity_site, row.field) == (
        "update",
        "participant",
        "S01-0001",
        "S01",
        "sex",
    )
    assert (row.old_value, row.new_value, row.reason) == ('"F"', '"M"', "transcription error")
    assert (row.user_id, row.username, row.role, row.user_site) == (
        user.id,
        user.username,
        "investigator",
        "S01",
    )


def test_no_change_needs_no_reason_and_records_nothing(app, make_user):
    user, _ = make_user("coordinator", sites=["S01"])
    before = last_seq()
    assert record_changes(user, "participant", "S01-0001", {"sex": ("F", "F")}, reason=None) == 0
    assert last_seq() == before


def test_a_change_to_or_from_empty_counts(app, make_user):
    user, _ = make_user("coordinator", sites=["S01"])
    before = last_seq()
    changes = {
        "to_empty_string": (None, ""),
        "from_empty_string": ("", None),
        "zero_to_none": (0, None),
        "false_to_zero": (False, 0),
        "empty_list": (None, []),
        "still_none": (None, None),
        "still_empty": ("", ""),
    }
    changed = record_changes(
        user, "participant", "S01-0001", changes, reason="correction", entity_site="S01"
    )
    db.session.commit()
    rows = {e.field: e for e in events() if e.seq > before}
    assert changed == len(rows) == 5
    assert set(rows) == set(changes) - {"still_none", "still_empty"}
    assert (rows["to_empty_string"].old_value, rows["to_empty_string"].new_value) == (None, '""')
    assert (rows["from_empty_string"].old_value, rows["from_empty_string"].new_value) == (
        '""',
        None,
    )
    assert (rows["zero_to_none"].old_value, rows["zero_to_none"].new_value) == ("0", None)
    assert (rows["false_to_zero"].old_value, rows["false_to_zero"].new_value) == ("false", "0")


def test_values_are_encoded_so_empty_none_and_zero_differ():
    encoded = [encode_value(v) for v in (None, "", 0, False, "0", [], date(2026, 1, 2))]
    assert encoded == [None, '""', "0", "false", '"0"', "[]", '"2026-01-02"']


def test_first_entry_records_each_field_without_a_reason(app, make_participant):
    pid = make_participant(site="S01")["participant_id"]
    rows = [e for e in events() if e.entity_id == pid]
    assert {r.field for r in rows} == {"site", "sex", "year_of_birth", "consent_date", "status"}
    assert all(r.action == "create" and r.old_value is None and r.reason is None for r in rows)


def test_occurred_at_is_timezone_aware_utc(app, make_site):
    start = datetime.now(UTC)
    make_site("S01")
    db.session.expire_all()
    rows = events()
    assert rows
    for row in rows:
        assert row.occurred_at.tzinfo is not None
        assert row.occurred_at.utcoffset() == timedelta(0)
        assert start - timedelta(seconds=1) <= row.occurred_at <= datetime.now(UTC)
    # Read back from the database, the hash still matches: the instant survived the trip.
    assert verify_chain().ok


# --- reading the trail: GET /api/v1/audit -------------------------------------------------


@pytest.fixture
def trail(make_site, make_participant, make_user):
    """Events at three sites plus trial-wide events (users, tokens) with no site."""
    for code in ("S01", "S02", "S03"):
        make_site(code)
    for site in ("S01", "S02", "S02", "S03"):
        make_participant(site=site)
    db.session.commit()


def all_events_api(client, token, page_size=7, **params) -> list[dict]:
    """Fetch every visible event by paging with after_seq."""
    collected, after = [], 0
    for _ in range(1000):
        response = client.get(
            "/api/v1/audit",
            headers=bearer(token),
            query_string={"after_seq": after, "limit": page_size, **params},
        )
        assert response.status_code == 200, response.json
        page = response.json
        assert len(page) <= page_size
        collected.extend(page)
        if len(page) < page_size:
            return collected
        after = page[-1]["seq"]
    raise AssertionError("paging never ended")


def seqs_in_db(sites: set[str] | None) -> list[int]:
    statement = select(AuditEvent.seq).order_by(AuditEvent.seq)
    if sites is not None:
        statement = statement.where(AuditEvent.entity_site.in_(sites))
    return list(db.session.scalars(statement))


READERS = [
    ("coordinator", ["S01"], {"S01"}),
    ("investigator", ["S02"], {"S02"}),
    ("monitor", ["S02", "S03"], {"S02", "S03"}),
    ("admin", [], None),
    ("data_manager", [], None),
]


def test_readers_see_exactly_their_sites(app, client, trail, make_user):
    for role, sites, visible in READERS:
        _, token = make_user(role, sites=sites)
        seen = all_events_api(client, token)
        assert [e["seq"] for e in seen] == seqs_in_db(visible), role
        if visible is not None:
            assert {e["entity_site"] for e in seen} == visible, role
        else:
            assert None in {e["entity_site"] for e in seen}  # trial-wide events included


def test_roles_without_audit_access_get_403(app, client, trail, make_user):
    for role in ("statistician", "dsmb", "unblinded_statistician"):
        _, token = make_user(role, sites=[])
        response = client.get("/api/v1/audit", headers=bearer(token))
        assert response.status_code == 403, role
        assert response.json["code"] == "forbidden"


def test_no_token_gets_401(app, client):
    assert client.get("/api/v1/audit").status_code == 401


def test_site_filter_cannot_widen_a_site_role(app, client, trail, make_user):
    _, token = make_user("coordinator", sites=["S01"])
    response = client.get(
        "/api/v1/audit", headers=bearer(token), query_string={"site": "S02", "limit": 1000}
    )
    assert response.status_code == 200
    assert response.json == []


def test_filters_and_decoded_values(app, client, trail, make_user):
    _, token = make_user("data_manager")
    response = client.get(
        "/api/v1/audit",
        headers=bearer(token),
        query_string={"entity_type": "participant", "entity_id": "S02-0002", "limit": 1000},
    )
    assert response.status_code == 200
    rows = response.json
    assert {r["field"] for r in rows} == {"site", "sex", "year_of_birth", "consent_date", "status"}
    by_field = {r["field"]: r for r in rows}
    assert by_field["year_of_birth"]["new_value"] == 1980
    assert by_field["consent_date"]["new_value"] == "2026-01-15"
    assert by_field["sex"]["old_value"] is None
    assert all(r["occurred_at"].endswith("+00:00") for r in rows)
    assert all(r["role"] == "coordinator" and r["user_site"] == "S02" for r in rows)


def test_paging_returns_every_event_once_in_order(app, client, trail, make_user):
    _, token = make_user("admin")
    expected = seqs_in_db(None)
    for size in (1, 5, 1000):
        assert [e["seq"] for e in all_events_api(client, token, page_size=size)] == expected
    response = client.get(
        "/api/v1/audit", headers=bearer(token), query_string={"after_seq": expected[-3], "limit": 2}
    )
    assert [e["seq"] for e in response.json] == expected[-2:]


def test_bad_paging_parameters_are_422(app, client, make_user):
    _, token = make_user("admin")
    for query in ({"limit": 0}, {"limit": 1001}, {"after_seq": -1}, {"limit": "many"}):
        response = client.get("/api/v1/audit", headers=bearer(token), query_string=query)
        assert response.status_code == 422, query
        assert set(response.json["errors"]) == set(query)


# --- concurrency ---------------------------------------------------------------------------


def test_concurrent_writers_leave_an_intact_gapless_chain(app, make_site, make_user):
    sites = ["S01", "S02", "S03", "S04"]
    per_site = 5
    tokens = {site: make_user("coordinator", sites=[site])[1] for site in sites}
    before = last_seq()
    db.session.close()  # hold no transaction (and on SQLite no lock) while threads write

    barrier = threading.Barrier(len(sites))
    failures: list[str] = []

    def register_many(site: str) -> None:
        client = app.test_client()  # each request gets its own app context and session
        barrier.wait()
        for _ in range(per_site):
            response = client.post(
                "/api/v1/participants",
                headers=bearer(tokens[site]),
                json={"site": site, **REGISTRATION},
            )
            if response.status_code != 201:
                failures.append(f"{site}: {response.status_code} {response.get_data(True)}")

    threads = [threading.Thread(target=register_many, args=(site,)) for site in sites]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []

    db.session.expire_all()
    rows = events()
    assert [row.seq for row in rows] == list(range(1, len(rows) + 1))
    assert len(rows) == before + len(sites) * per_site * 5
    report = verify_chain()
    assert report.ok, report
    assert report.rows_checked == len(rows)
    ids = sorted(db.session.scalars(select(Participant.participant_id)))
    assert ids == sorted(f"{site}-{n:04d}" for site in sites for n in range(1, per_site + 1))
    # Every participant's five creation rows are present and name its own site.
    for pid in ids:
        fields = [(r.field, r.entity_site) for r in rows if r.entity_id == pid]
        assert sorted(fields) == sorted(
            (f, pid[:3]) for f in ("site", "sex", "year_of_birth", "consent_date", "status")
        )


def test_concurrent_service_calls_in_separate_app_contexts(app, make_site, make_user):
    """Direct record_event calls from many contexts still chain without gaps."""
    make_site("S01")
    db.session.close()
    threads_n, per_thread = 6, 8
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def append_events(n: int) -> None:
        try:
            with app.app_context():
                barrier.wait()
                for i in range(per_thread):
                    record_event(None, "note", entity_type="test", entity_id=f"t{n}-{i}")
                    db.session.commit()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    before = committed("SELECT last_seq FROM audit_chain_head")
    threads = [threading.Thread(target=append_events, args=(n,)) for n in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    rows = events()
    assert [row.seq for row in rows] == list(range(1, before + threads_n * per_thread + 1))
    assert verify_chain().ok


def _concurrent_visits(app, trial, *, threads_n=4, per_thread=2):
    """Each of ``threads_n`` threads records a full week-8 visit for ``per_thread``
    participants of its own, released together; returns the failures (status and body)."""
    from tests.capture_helpers import calendar, lab, ocds, vitals, window
    from tests.capture_helpers import iso as as_iso

    work = []
    for n in range(threads_n * per_thread):
        p = trial.enrol(site=("S01", "S02")[n % 2], day0_ago=56)
        target, _, _ = window("week_8", p.day0)
        body = {
            "visit_code": "week_8",
            "visit_date": as_iso(target),
            "drinking": calendar(target - timedelta(days=10), target - timedelta(days=1)),
            "ocds": ocds(2),
            "vitals": vitals(),
            "labs": [lab()],
        }
        work.append((p.pid, p.site, body))
    db.session.close()  # hold no transaction (and on SQLite no lock) while threads write
    barrier = threading.Barrier(threads_n)
    failures: list[str] = []

    def record(share) -> None:
        client = app.test_client()  # each request gets its own app context and session
        barrier.wait()
        for pid, site, body in share:
            response = client.post(
                f"/api/v1/participants/{pid}/visits", headers=trial.headers(site), json=body
            )
            if response.status_code != 201:
                failures.append(f"{pid}: {response.status_code} {response.get_data(True)}")

    threads = [
        threading.Thread(target=record, args=(work[k::threads_n],)) for k in range(threads_n)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return failures, [pid for pid, _, _ in work]


def test_concurrent_visits_leave_an_intact_gapless_chain(
    app, client, make_site, make_user, make_participant
):
    """Each visit's transaction locks the chain head before its first audit row and holds it
    to commit: concurrent visits still chain one by one."""
    from tests.capture_helpers import Trial
    from trial.visits.models import Visit

    trial = Trial(client, make_site, make_user, make_participant)
    failures, pids = _concurrent_visits(app, trial)
    assert failures == []
    rows = events()
    assert [row.seq for row in rows] == list(range(1, len(rows) + 1))
    assert verify_chain().ok
    week_8 = db.session.scalars(select(Visit).where(Visit.visit_code == "week_8")).all()
    assert sorted(v.participant.participant_id for v in week_8) == sorted(pids)
    for visit in week_8:  # each visit's creation recorded field by field, once
        created = [
            r.field
            for r in rows
            if r.entity_type == "visit" and r.entity_id == str(visit.id) and r.action == "create"
        ]
        assert sorted(created) == sorted(Visit.AUDITED_FIELDS)


def test_control_visits_reading_an_unlocked_head_are_caught(
    app, client, make_site, make_user, make_participant, backend, monkeypatch
):
    """Negative control: with the head read but not locked, and the writers made to read it
    side by side, the concurrency test above fails (writers chain from the same row)."""
    if backend != "postgresql":
        pytest.skip("SQLite writers are serialised at BEGIN; the head statement is PostgreSQL's")
    from tests.capture_helpers import Trial
    from trial.audit import services

    trial = Trial(client, make_site, make_user, make_participant)
    unlocked = (
        select(AuditChainHead)
        .where(AuditChainHead.id == 1)
        .execution_options(populate_existing=True)
    )
    assert "FOR UPDATE" in str(services._HEAD_FOR_UPDATE.compile(dialect=db.engine.dialect))
    monkeypatch.setattr(services, "_HEAD_FOR_UPDATE", unlocked)
    lock_head, side_by_side = services._lock_head, threading.Barrier(4)

    def read_together():
        session = db.session()
        cached = session.info.get("audit_head")
        fresh = cached is None or cached[0] is not session.get_transaction()
        head = lock_head()
        if fresh:
            try:
                side_by_side.wait(timeout=5)  # the first four writers have all read the head
            except threading.BrokenBarrierError:
                pass
        return head

    monkeypatch.setattr(services, "_lock_head", read_together)
    failures, _ = _concurrent_visits(app, trial)
    assert failures or not verify_chain().ok


def _head_lock_held_after_a_rolled_back_savepoint() -> bool:
    """Lock the chain head inside a savepoint, roll the savepoint back, append one more event:
    is the head locked against another connection once that event is chained (before the
    flush, whose UPDATE of the head would lock it anyway, too late: the head was read)?"""
    from trial.cli_support import system_actor

    actor = system_actor()
    savepoint = db.session.begin_nested()
    record_event(actor, "note", entity_type="test", entity_id="undone")
    db.session.flush()
    savepoint.rollback()  # PostgreSQL releases the head's row lock taken after the savepoint
    record_event(actor, "note", entity_type="test", entity_id="kept")
    try:
        with db.engine.connect() as other:
            other.execute(text("SELECT 1 FROM audit_chain_head WHERE id = 1 FOR UPDATE NOWAIT"))
            other.rollback()
        held = False
    except DBAPIError:
        held = True
    db.session.commit()
    assert verify_chain().ok
    assert [row.entity_id for row in events() if row.entity_type == "test"] == ["kept"]
    return held


def test_a_head_locked_in_a_rolled_back_savepoint_is_locked_again(app, backend):
    if backend != "postgresql":
        pytest.skip(
            "SQLite's writers hold the database lock from BEGIN; row locks are PostgreSQL's"
        )
    assert _head_lock_held_after_a_rolled_back_savepoint()


def test_control_a_head_kept_across_a_rolled_back_savepoint_is_unlocked(app, backend, monkeypatch):
    """Negative control: with the head kept for the whole transaction (the savepoint not
    told apart), the event after the rollback is appended without the lock."""
    if backend != "postgresql":
        pytest.skip(
            "SQLite's writers hold the database lock from BEGIN; row locks are PostgreSQL's"
        )
    monkeypatch.setattr(type(db.session()), "get_nested_transaction", lambda self: None)
    assert not _head_lock_held_after_a_rolled_back_savepoint()
