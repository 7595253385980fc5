"""Durability settings are checked at start; SQLite writers take the write lock at BEGIN.

Each test either builds its own app on a scratch database (to check what happens at start) or
uses the ``app`` fixture, pinned to SQLite where the property is SQLite's.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, select, text, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError, StatementError

import trial.database
from tests.conftest import make_config
from trial import create_app
from trial.database import UTCDateTime, check_durability
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


@only_sqlite
@pytest.mark.parametrize("path", ["/api/v1/exports/key", "/api/v1/randomization/list"])
def test_audited_get_takes_the_write_lock_at_begin(app, make_site, path):
    """A GET that records its own release (key, unblinded list) must not start deferred:
    a deferred reader that later writes fails on SQLite if another writer got in first."""
    make_site("S01")
    db.session.close()
    with app.test_request_context(path, method="GET"):
        db.session.execute(select(Site.participant_counter)).all()
        assert not _second_writer_can_begin()
        db.session.rollback()


@only_sqlite
@pytest.mark.parametrize("helper", [True, False])
def test_a_write_request_reads_its_response_without_the_write_lock(app, make_site, helper):
    """After ``commit_then_read`` the response's reads open deferred and let the next
    writer in; after a plain commit (the control) they would hold the write lock."""
    from trial.database import commit_then_read

    make_site("S01")
    db.session.close()
    with app.test_request_context("/api/v1/participants", method="POST"):
        db.session.execute(update(Site).values(participant_counter=Site.participant_counter + 1))
        commit_then_read() if helper else db.session.commit()
        db.session.execute(select(Site.participant_counter)).all()  # reading the response
        assert _second_writer_can_begin() is helper
        db.session.rollback()
    with app.test_request_context("/api/v1/participants", method="POST"):
        db.session.execute(select(Site.participant_counter)).all()  # the next request
        assert not _second_writer_can_begin()  # writes again from its BEGIN
        db.session.rollback()


@only_sqlite
@pytest.mark.parametrize("before_the_lock", [True, False])
def test_authentication_reads_before_the_write_lock(app, make_site, make_user, before_the_lock):
    """A write request reads its token without SQLite's write lock, keeps the user it read,
    and takes the lock at its next statement; the control (the same read without the
    block) shows the read would otherwise hold the lock."""
    from trial.auth.services import authenticate_token
    from trial.database import reading_before_the_write_lock

    make_site("S01")
    _, token = make_user("coordinator", sites=["S01"])
    db.session.close()
    with app.test_request_context("/api/v1/participants", method="POST"):
        if before_the_lock:
            with reading_before_the_write_lock():
                user, _ = authenticate_token(token)
        else:
            user, _ = authenticate_token(token)
        assert _second_writer_can_begin() is before_the_lock
        assert not sa_inspect(user).expired_attributes  # still loaded: no query to read it
        assert user.role == "coordinator"
        db.session.execute(select(Site.participant_counter)).all()
        assert not _second_writer_can_begin()  # the write transaction holds it again
        db.session.rollback()


@only_sqlite
def test_read_only_block_is_deferred_outside_a_request(app, make_site):
    """``audit verify`` walks the chain in a read-only block and does not block writers."""
    from trial.database import read_only_transactions

    make_site("S01")
    db.session.close()
    with read_only_transactions():
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
    """Writers poll for the write lock themselves (``_begin_immediate``): one that starts
    while another holds the lock gets it once the holder commits, and its connection keeps
    the configured busy timeout afterwards."""
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
    monkeypatch.setattr(trial.database, "_wants_write_lock", lambda: False)
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


# --- constraints and the UTC type on both databases ---------------------------------------


def test_foreign_keys_are_enforced(app, make_user, make_site):
    user, _ = make_user("coordinator", sites=["S01"])
    good_site = make_site("S01").id
    statement = text(
        "INSERT INTO participants (participant_id, site_id, number, sex, year_of_birth,"
        " consent_date, status, created_at, created_by_id) VALUES (:pid, :site_id, 1, 'F',"
        " 1980, :consent, 'screened', :created, :user_id)"
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
