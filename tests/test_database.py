"""Durability settings are checked at start; SQLite writers take the write lock at BEGIN.

Each test either builds its own app on a scratch database (to check what happens at start) or
uses the ``app`` fixture, pinned to SQLite where the property is SQLite's.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from datetime import UTC, date, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from flask import g
from sqlalchemy import create_engine, func, select, text, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError, StatementError

import exports.download
import trial.database
from tests.conftest import make_config
from trial import create_app
from trial.database import UTCDateTime, check_durability, reading, writing
from trial.errors import ConfigurationError
from trial.extensions import db
from trial.sites.models import Site

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
needs_postgresql = pytest.mark.skipif(not TEST_DATABASE_URL, reason="TEST_DATABASE_URL is not set")
only_sqlite = pytest.mark.parametrize("backend", ["sqlite"])

BUSY_TIMEOUT_MS = 150


@pytest.fixture
def config_overrides() -> dict:
    # A second writer gives up quickly instead of waiting the production 30 s.
    return {"SQLITE_BUSY_TIMEOUT_MS": BUSY_TIMEOUT_MS}


def scratch_sqlite_app(tmp_path, **overrides):
    return create_app(
        make_config(f"sqlite:///{tmp_path / 'scratch.db'}", tmp_path / "instance", **overrides)
    )


def dispose(app) -> None:
    with app.app_context():
        db.engine.dispose()


# --- refusing unsafe durability at start --------------------------------------------------


@pytest.mark.parametrize("level", ["NORMAL", "OFF", "normal"])
def test_sqlite_below_full_synchronous_is_refused(tmp_path, level):
    with pytest.raises(ConfigurationError, match="synchronous") as excinfo:
        scratch_sqlite_app(tmp_path, SQLITE_SYNCHRONOUS=level)
    assert "FULL" in str(excinfo.value)


def test_unknown_sqlite_synchronous_level_is_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="SQLITE_SYNCHRONOUS"):
        scratch_sqlite_app(tmp_path, SQLITE_SYNCHRONOUS="SOMETIMES")


@pytest.mark.parametrize(("level", "value"), [("FULL", "2"), ("EXTRA", "3")])
def test_sqlite_full_or_extra_starts(tmp_path, level, value):
    app = scratch_sqlite_app(tmp_path, SQLITE_SYNCHRONOUS=level)
    assert app.extensions["trial_durability"] == {"journal_mode": "wal", "synchronous": value}
    dispose(app)


def test_allow_unsafe_durability_lets_the_app_start(tmp_path):
    app = scratch_sqlite_app(tmp_path, SQLITE_SYNCHRONOUS="NORMAL", ALLOW_UNSAFE_DURABILITY=True)
    assert app.extensions["trial_durability"]["synchronous"] == "1"
    dispose(app)


def test_sqlite_without_wal_is_refused(tmp_path):
    """An engine that never switched to WAL (no connect hook) fails the check, naming it."""
    path = tmp_path / "rollback-journal.db"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode = DELETE")
    app = scratch_sqlite_app(tmp_path)
    engine = create_engine(f"sqlite:///{path}")
    try:
        with pytest.raises(ConfigurationError, match="journal_mode"):
            check_durability(app, engine)
    finally:
        engine.dispose()
        dispose(app)


def test_sqlite_in_memory_is_refused(tmp_path):
    with pytest.raises(ConfigurationError):
        create_app(make_config("sqlite://", tmp_path / "instance"))


@needs_postgresql
def test_postgresql_with_synchronous_commit_off_is_refused(tmp_path):
    config = make_config(
        TEST_DATABASE_URL,
        tmp_path,
        SQLALCHEMY_ENGINE_OPTIONS={"connect_args": {"options": "-c synchronous_commit=off"}},
    )
    with pytest.raises(ConfigurationError, match="synchronous_commit"):
        create_app(config)


@needs_postgresql
def test_postgresql_unsafe_durability_can_be_allowed_explicitly(tmp_path):
    config = make_config(
        TEST_DATABASE_URL,
        tmp_path,
        ALLOW_UNSAFE_DURABILITY=True,
        SQLALCHEMY_ENGINE_OPTIONS={"connect_args": {"options": "-c synchronous_commit=off"}},
    )
    app = create_app(config)
    assert app.extensions["trial_durability"]["synchronous_commit"] == "off"
    dispose(app)


@needs_postgresql
def test_postgresql_default_settings_start(tmp_path):
    app = create_app(make_config(TEST_DATABASE_URL, tmp_path))
    settings = app.extensions["trial_durability"]
    assert settings["fsync"] == "on"
    assert settings["synchronous_commit"] != "off"
    dispose(app)


# --- SQLite connection settings and BEGIN IMMEDIATE ---------------------------------------


@only_sqlite
def test_every_sqlite_connection_is_wal_full_with_foreign_keys(app):
    connections = [db.engine.connect() for _ in range(3)]
    try:
        for connection in connections:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == BUSY_TIMEOUT_MS
            connection.rollback()  # release the write lock BEGIN IMMEDIATE took
    finally:
        for connection in connections:
            connection.close()


def _database_path() -> str:
    return db.engine.url.database


def _second_writer_can_begin() -> bool:
    """Try to take the write lock from a separate, plain sqlite3 connection."""
    other = sqlite3.connect(_database_path(), timeout=0.05, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return False
    else:
        other.execute("ROLLBACK")
        return True
    finally:
        other.close()


@only_sqlite
def test_transaction_outside_a_request_takes_the_write_lock_at_begin(app, make_site):
    make_site("S01")
    db.session.close()
    assert _second_writer_can_begin()
    # Only a read so far: a deferred BEGIN would not have locked anything yet.
    db.session.execute(select(Site.participant_counter)).all()
    assert not _second_writer_can_begin()
    db.session.rollback()
    assert _second_writer_can_begin()


@only_sqlite
@pytest.mark.parametrize("method", ["POST", "PATCH", "PUT", "DELETE"])
def test_write_request_takes_the_write_lock_at_begin(app, make_site, method):
    make_site("S01")
    db.session.close()
    with app.test_request_context("/api/v1/participants", method=method):
        db.session.execute(select(Site.participant_counter)).all()
        assert not _second_writer_can_begin()
        db.session.rollback()


@only_sqlite
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_read_request_transaction_is_deferred(app, make_site, method):
    make_site("S01")
    db.session.close()
    with app.test_request_context("/api/v1/participants", method=method):
        db.session.execute(select(Site.participant_counter)).all()
        assert db.session().in_transaction()
        assert _second_writer_can_begin()
        db.session.rollback()


class _Probe:
    """Stands in for an audited GET's service: reads, then says whether a writer could start."""

    def __init__(self):
        self.lock_held = None

    def read(self) -> None:
        db.session.execute(select(Site.participant_counter)).all()
        self.lock_held = not _second_writer_can_begin()


def _stub_audited_get(monkeypatch, path, probe, tmp_path):
    """Replace the service behind an audited GET with ``probe`` (nothing else changes)."""
    import exports.download
    import randomization.outputs
    import reports.pdf

    if path == "/api/v1/exports/key":

        def key(actor):
            probe()
            return "", "0"

        monkeypatch.setattr(exports.download, "build_key_csv", key)
    elif path == "/api/v1/randomization/list":
        monkeypatch.setattr(randomization.outputs, "unblinded_slots", lambda actor: probe() or [])
    elif path == "/api/v1/exports/blinded":

        def bundle(actor, request, target):
            probe()
            target.write_bytes(b"PK")
            return SimpleNamespace(manifest={"cutoff": "2026-01-01T00:00:00Z"}, sha256="0")

        monkeypatch.setattr(exports.download, "write_bundle", bundle)
    else:

        def report(actor, session, arms, cutoff):
            probe()
            return SimpleNamespace(pdf=b"%PDF", filename="r.pdf", sha256="0")

        monkeypatch.setattr(reports.pdf, "produce_safety_report", report)


AUDITED_GETS = {
    "/api/v1/exports/key": "unblinded_statistician",
    "/api/v1/randomization/list": "unblinded_statistician",
    "/api/v1/exports/blinded": "data_manager",
    "/api/v1/reports/safety": "dsmb",
}


@only_sqlite
@pytest.mark.parametrize("path", sorted(AUDITED_GETS))
def test_audited_get_takes_the_write_lock_at_begin(
    app, client, make_site, make_user, monkeypatch, tmp_path, path
):
    """A GET that records its own release (key, unblinded list, bundle, report) runs its view
    in ``writing()``: a deferred reader that later writes fails on SQLite if another writer
    got in first. Its service's first read already holds the write lock."""
    make_site("S01")
    _, token = make_user(AUDITED_GETS[path], sites=[])
    db.session.close()
    probe = _Probe()
    _stub_audited_get(monkeypatch, path, probe.read, tmp_path)
    response = client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert probe.lock_held is True


def _other_writer_commits() -> bool:
    """A plain sqlite3 writer (a change SQLite must write); True if it got in and committed."""
    other = sqlite3.connect(_database_path(), timeout=0.05, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("UPDATE sites SET participant_counter = participant_counter + 1")
        other.execute("COMMIT")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        other.close()


@only_sqlite
@pytest.mark.parametrize("rule", [True, False])
def test_audited_get_records_its_release_when_another_writer_comes_between(
    app, client, make_site, make_user, monkeypatch, tmp_path, rule
):
    """Another writer tries to commit between the GET's read and its audit row: with the rule
    it waits and the release is recorded; the control (the view's ``writing()`` disabled, so
    the GET reads deferred) lets it in and the audit row then fails ("database is locked")."""
    from trial.audit.models import AuditEvent
    from trial.audit.services import record_event

    make_site("S01")
    user, token = make_user("unblinded_statistician", sites=[])
    db.session.close()
    if not rule:
        monkeypatch.setattr(trial.database, "writing", contextlib.nullcontext)
    got_in = []

    def read_then_audit():
        db.session.execute(select(Site.participant_counter)).all()
        got_in.append(_other_writer_commits())
        record_event(g.current_user, "probe_release", entity_type="probe")
        return "", "0"

    monkeypatch.setattr(exports.download, "build_key_csv", lambda actor: read_then_audit())
    if rule:
        response = client.get("/api/v1/exports/key", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
        assert got_in == [False]
        released = select(func.count()).where(AuditEvent.action == "probe_release")
        assert db.session.scalar(released) == 1
    else:
        response = client.get("/api/v1/exports/key", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 500  # sqlite3: "database is locked" at the audit row
        assert got_in == [True]
        db.session.rollback()  # the request's failed flush, in the session the test shares
        released = select(func.count()).where(AuditEvent.action == "probe_release")
        assert db.session.scalar(released) == 0


@only_sqlite
def test_writing_and_reading_blocks_override_the_request_method(app, make_site):
    """The innermost block decides: ``writing()`` in a GET locks, ``reading()`` in a POST not."""
    make_site("S01")
    db.session.close()
    with app.test_request_context("/api/v1/participants", method="GET"), writing():
        db.session.execute(select(Site.participant_counter)).all()
        assert not _second_writer_can_begin()
        db.session.rollback()
        with reading():
            db.session.execute(select(Site.participant_counter)).all()
            assert _second_writer_can_begin()
            db.session.rollback()
    with app.test_request_context("/api/v1/participants", method="POST"), reading():
        db.session.execute(select(Site.participant_counter)).all()
        assert _second_writer_can_begin()
        db.session.rollback()


@only_sqlite
def test_a_write_request_reads_its_response_under_the_write_lock(app, make_site):
    """One rule for a write request's every transaction: after its commit, the response's
    reads take the write lock again (no commit that changes the mode of what follows)."""
    make_site("S01")
    db.session.close()
    with app.test_request_context("/api/v1/participants", method="POST"):
        db.session.execute(update(Site).values(participant_counter=Site.participant_counter + 1))
        db.session.commit()
        db.session.execute(select(Site.participant_counter)).all()  # reading the response
        assert not _second_writer_can_begin()
        db.session.rollback()
    with app.test_request_context("/api/v1/participants", method="POST"):
        db.session.execute(select(Site.participant_counter)).all()  # the next request
        assert not _second_writer_can_begin()  # writes again from its BEGIN
        db.session.rollback()


@only_sqlite
def test_a_write_request_authenticates_under_the_write_lock(app, make_site, make_user):
    """A write request reads its token in its write transaction, which keeps the lock on to
    its next statement and the user it read."""
    from trial.auth.tokens import authenticate_token

    make_site("S01")
    _, token = make_user("coordinator", sites=["S01"])
    db.session.close()
    with app.test_request_context("/api/v1/participants", method="POST"):
        user, _ = authenticate_token(token)
        assert not _second_writer_can_begin()
        assert not sa_inspect(user).expired_attributes  # still loaded: no query to read it
        assert user.role == "coordinator"
        db.session.execute(select(Site.participant_counter)).all()
        assert not _second_writer_can_begin()  # the write transaction holds it still
        db.session.rollback()


@only_sqlite
def test_read_only_block_is_deferred_outside_a_request(app, make_site):
    """``audit verify`` walks the chain in ``reading()`` and does not block writers."""
    make_site("S01")
    db.session.close()
    with reading():
        db.session.execute(select(Site.participant_counter)).all()
        assert _second_writer_can_begin()
        db.session.rollback()


def _read_counter(connection) -> int:
    return connection.execute(
        select(Site.participant_counter).where(Site.code == "S01")
    ).scalar_one()


@only_sqlite
def test_second_writer_waits_instead_of_reading_a_stale_counter(app, make_site):
    """With BEGIN IMMEDIATE the second read-modify-write cannot even start."""
    make_site("S01")
    db.session.close()
    with db.engine.connect() as first, db.engine.connect() as second:
        assert _read_counter(first) == 0
        with pytest.raises(OperationalError, match="locked"):
            _read_counter(second)
        second.rollback()
        first.execute(
            update(Site)
            .where(Site.code == "S01")
            .values(participant_counter=Site.participant_counter + 1)
        )
        first.commit()
        assert _read_counter(second) == 1
        second.rollback()


@only_sqlite
def test_a_waiting_writer_gets_the_lock_when_it_is_released_within_the_timeout(app, make_site):
    """A writer that starts while another holds the lock gets it once the holder commits,
    and its connection keeps the configured busy timeout afterwards."""
    make_site("S01")
    db.session.close()
    holder = sqlite3.connect(_database_path(), isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    released = threading.Timer(BUSY_TIMEOUT_MS / 3000, lambda: holder.execute("COMMIT"))
    released.start()
    try:
        with db.engine.connect() as waiter:
            assert _read_counter(waiter) == 0  # BEGIN IMMEDIATE waited, then got the lock
            assert not _second_writer_can_begin()
            assert waiter.exec_driver_sql("PRAGMA busy_timeout").scalar() == BUSY_TIMEOUT_MS
            waiter.rollback()
    finally:
        released.join()
        holder.close()


@only_sqlite
def test_companion_deferred_begin_lets_two_writers_read_the_same_counter(
    app, make_site, monkeypatch
):
    """Negative control: with plain deferred transactions both writers read 0.

    This is the bug BEGIN IMMEDIATE prevents; the test above would catch its return.
    """
    make_site("S01")
    db.session.close()
    monkeypatch.setattr(trial.database, "takes_write_lock", lambda: False)
    with db.engine.connect() as first, db.engine.connect() as second:
        assert _read_counter(first) == 0
        assert _read_counter(second) == 0  # same value, both inside open transactions
        assert _second_writer_can_begin()
        first.execute(
            update(Site)
            .where(Site.code == "S01")
            .values(participant_counter=Site.participant_counter + 1)
        )
        first.commit()
        with pytest.raises(OperationalError):
            # Its snapshot is stale: SQLite refuses the upgrade to a write lock.
            second.execute(
                update(Site)
                .where(Site.code == "S01")
                .values(participant_counter=Site.participant_counter + 1)
            )
        second.rollback()


@only_sqlite
@pytest.mark.parametrize("config_overrides", [{"SQLITE_BUSY_TIMEOUT_MS": 10_000}])
@pytest.mark.parametrize("rule", [True, False])
def test_two_concurrent_write_requests_both_succeed(app, make_site, monkeypatch, rule):
    """Two write requests read the counter and write it plus one, the second starting while
    the first holds its read: with the rule the second waits at BEGIN and both land (2);
    the control (every transaction deferred) lets the second read the same 0, and one of
    the two then fails. A busy timeout far above the test's pauses: no flaky waits."""
    make_site("S01")
    db.session.close()
    if not rule:
        monkeypatch.setattr(trial.database, "takes_write_lock", lambda: False)
    first_has_read, second_has_read = threading.Event(), threading.Event()
    outcomes = {}

    def write_request(name: str, wait_for: threading.Event | None) -> None:
        if wait_for is not None:
            wait_for.wait(5)
        with app.app_context(), app.test_request_context("/api/v1/participants", method="POST"):
            try:
                seen = _read_counter(db.session)
                if wait_for is None:
                    first_has_read.set()
                    # With the rule the second cannot read before this commits: give up soon.
                    second_has_read.wait(0.2)
                else:
                    second_has_read.set()
                db.session.execute(
                    update(Site).where(Site.code == "S01").values(participant_counter=seen + 1)
                )
                db.session.commit()
                outcomes[name] = "ok"
            except OperationalError as exc:
                outcomes[name] = str(exc.orig)
                db.session.rollback()
            finally:
                db.session.remove()

    threads = [
        threading.Thread(target=write_request, args=("first", None)),
        threading.Thread(target=write_request, args=("second", first_has_read)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    counter = _read_counter(db.session)
    db.session.rollback()
    if rule:
        assert outcomes == {"first": "ok", "second": "ok"}
        assert counter == 2
    else:
        assert sorted(outcomes.values()) == ["database is locked", "ok"]
        assert counter == 1


# --- constraints and the UTC type on both databases ---------------------------------------


def test_foreign_keys_are_enforced(app, make_user, make_site):
    user, _ = make_user("coordinator", sites=["S01"])
    good_site = make_site("S01").id
    statement = text(
        "INSERT INTO participants (participant_id, site_id, number, sex, year_of_birth,"
        " consent_date, status, created_at, created_by_id) VALUES (:pid, :site_id, 1, 'F',"
        " 1980, :consent, 'screening', :created, :user_id)"
    )
    values = {
        "consent": date(2026, 1, 15),
        "user_id": user.id,
        "created": datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" "),
    }
    # Positive control: the same statement with a real site is accepted.
    db.session.execute(statement, {**values, "pid": "S01-0001", "site_id": good_site})
    db.session.rollback()
    with pytest.raises(IntegrityError, match=r"(?i)foreign key"):
        db.session.execute(statement, {**values, "pid": "S99-0001", "site_id": 999_999})
    db.session.rollback()
    assert db.session.scalar(text("SELECT count(*) FROM participants")) == 0


def test_check_constraints_are_enforced(app, make_site):
    make_site("S01")
    with pytest.raises(IntegrityError):
        db.session.execute(update(Site).values(participant_counter=-1))
    db.session.rollback()


def test_utc_datetime_round_trips_as_aware_utc(app, make_site):
    site = make_site("S01")
    paris_summer = datetime(2026, 7, 1, 14, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    db.session.execute(update(Site).where(Site.id == site.id).values(created_at=paris_summer))
    db.session.commit()
    db.session.expire_all()
    stored = db.session.scalar(select(Site.created_at).where(Site.id == site.id))
    assert stored.tzinfo is not None and stored.utcoffset() == timedelta(0)
    assert stored == paris_summer
    assert stored.replace(tzinfo=None) == datetime(2026, 7, 1, 12, 30, 15, 123456)


def test_utc_datetime_refuses_a_naive_value_in_the_database(app, make_site):
    site = make_site("S01")
    with pytest.raises(StatementError, match="naive datetime"):
        db.session.execute(
            update(Site).where(Site.id == site.id).values(created_at=datetime(2026, 1, 1, 12, 0))
        )
    db.session.rollback()


@pytest.mark.parametrize(
    "dialect", [sqlite.dialect(), postgresql.dialect()], ids=["sqlite", "postgresql"]
)
def test_utc_datetime_type_refuses_naive_and_returns_aware(dialect):
    column_type = UTCDateTime()
    with pytest.raises(ValueError, match="naive"):
        column_type.process_bind_param(datetime(2026, 1, 1), dialect)
    assert column_type.process_bind_param(None, dialect) is None
    assert column_type.process_result_value(None, dialect) is None
    aware = datetime(2026, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1)))
    bound = column_type.process_bind_param(aware, dialect)
    assert bound == datetime(2026, 1, 1, tzinfo=UTC) or bound == datetime(2026, 1, 1)
    for raw in (datetime(2026, 1, 1), aware):
        result = column_type.process_result_value(raw, dialect)
        assert result.tzinfo is UTC
        assert result == datetime(2026, 1, 1, tzinfo=UTC)


def test_utc_datetime_binds_utc_wall_time_on_sqlite():
    bound = UTCDateTime().process_bind_param(
        datetime(2026, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1))), sqlite.dialect()
    )
    assert bound == datetime(2026, 1, 1, 0, 0) and bound.tzinfo is None
