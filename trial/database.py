"""Make both databases safe to write to, and refuse to start when they are not.

SQLite: WAL, ``synchronous=FULL``, foreign keys, and write transactions opened with
``BEGIN IMMEDIATE``. pysqlite's own transaction handling opens transactions lazily with a
deferred ``BEGIN``; two deferred writers can both read the same row and the loser either fails
at commit or, worse, acted on a stale read. Taking the write lock at ``BEGIN`` serialises
writers from their first read. Reads (GET/HEAD) keep a deferred ``BEGIN`` so WAL readers never
wait for writers.

PostgreSQL: ``fsync`` and ``synchronous_commit`` must be on, or an acknowledged write can be
lost in a crash.
"""

from __future__ import annotations

import random
import sqlite3
import time
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from flask import Flask, current_app, has_request_context, request
from sqlalchemy import DateTime, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.types import TypeDecorator

from trial.errors import ConfigurationError
from trial.extensions import db

READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WRITES_COMMITTED = "trial.writes_committed"  # request.environ key set by commit_then_read
SQLITE_SYNCHRONOUS_LEVELS = {"OFF": 0, "NORMAL": 1, "FULL": 2, "EXTRA": 3}


class UTCDateTime(TypeDecorator):
    """Store timezone-aware UTC instants and always return them aware.

    SQLite keeps no offset, so a value read back would otherwise be naive; the audit hash
    chain needs the same instant from both databases.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


_read_only = ContextVar("trial_read_only_transaction", default=False)


@contextmanager
def read_only_transactions():
    """Open deferred transactions inside this block (a long read must not block writers)."""
    token = _read_only.set(True)
    try:
        yield
    finally:
        _read_only.reset(token)


@contextmanager
def reading_before_the_write_lock():
    """Run a write request's first reads (authentication) before SQLite's write lock.

    A write request takes SQLite's write lock at its transaction's ``BEGIN``; reading the
    token and parsing the body need none, and holding the lock through them serialised them
    across workers. Here, on SQLite, the block's reads run in a deferred transaction that
    ends with the block without expiring what it loaded (the user stays readable), and the
    request's next statement opens the write transaction. Elsewhere (PostgreSQL, or a
    request that takes no write lock) the block changes nothing: reading locks nothing
    there, and ending the transaction would cost a round trip.
    """
    if db.engine.dialect.name != "sqlite" or not _wants_write_lock():
        yield
        return
    session = db.session()
    if session.in_transaction():  # something read or wrote already: keep one transaction
        yield
        return
    token = _read_only.set(True)
    try:
        yield
    finally:
        _read_only.reset(token)
    if session.new or session.dirty or session.deleted:
        return  # not a read after all: the request's transaction goes on as it began
    session.expire_on_commit = False
    try:
        session.commit()  # ends the read; nothing to write
    finally:
        session.expire_on_commit = True


def writes_on_read(view):
    """Mark a GET view that writes (an audited release), so it takes the write lock at BEGIN.

    Without it, a deferred read transaction that later writes its audit row fails on SQLite
    when another writer committed in between ("database is locked").
    """
    view.writes_on_read = True
    return view


def commit_then_read() -> None:
    """Commit the request's writes; all it does afterwards is read back its response.

    A write request's later transactions then open deferred, so on SQLite the response's
    reads (the record and its forms, reloaded as stored) do not hold the write lock: the
    next writer starts at the commit. Only for views that write nothing more.
    """
    db.session.commit()
    request.environ[WRITES_COMMITTED] = True  # per request (``g`` may outlive it in tests)


def _wants_write_lock() -> bool:
    """Take SQLite's write lock at BEGIN for anything but a read-only request or block."""
    if _read_only.get():
        return False
    if has_request_context():
        if request.environ.get(WRITES_COMMITTED):
            return False
        if request.method not in READ_ONLY_METHODS:
            return True
        view = current_app.view_functions.get(request.endpoint or "")
        return bool(getattr(view, "writes_on_read", False))
    return True


def configure_sqlite(engine: Engine, synchronous: str, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Hand transaction control to the "begin" hook below (SQLAlchemy's documented recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA synchronous = {synchronous}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        if _wants_write_lock():
            _begin_immediate(connection, busy_timeout_ms)
        else:
            connection.exec_driver_sql("BEGIN")


# How long a writer waiting for SQLite's write lock sleeps between tries (jittered).
WRITE_LOCK_POLL_SECONDS = 0.0005


def _begin_immediate(connection, busy_timeout_ms: int) -> None:
    """``BEGIN IMMEDIATE``, waiting for the write lock with short polls up to the busy timeout.

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15 ... 100 ms between tries: under steady
    contention a waiter sleeps on long after the lock is free (bench/visits.py showed half
    the CPU idle with writers queued). A try costs microseconds, so polling every half
    millisecond wakes a waiter within about that of the commit before it, for the same bound.
    """
    raw = connection.connection.driver_connection
    deadline = time.monotonic() + busy_timeout_ms / 1000
    raw.execute("PRAGMA busy_timeout = 0")
    try:
        while time.monotonic() < deadline:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:  # any SQLITE_BUSY_*
                    raise
            time.sleep(WRITE_LOCK_POLL_SECONDS * random.uniform(0.5, 1.5))
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # a last try, refused as SQLite says
    finally:
        raw.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")


def check_durability(app: Flask, engine: Engine) -> dict[str, str]:
    """Read the durability settings in force and refuse to run on unsafe ones."""
    allow_unsafe = app.config.get("ALLOW_UNSAFE_DURABILITY", False)
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            journal = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
            sync = connection.exec_driver_sql("PRAGMA synchronous").scalar()
            fkeys = connection.exec_driver_sql("PRAGMA foreign_keys").scalar()
            settings = {"journal_mode": str(journal), "synchronous": str(sync)}
            problems = []
            if str(journal).lower() != "wal":
                problems.append(f"journal_mode is {journal!r}, WAL is required")
            if int(sync) < SQLITE_SYNCHRONOUS_LEVELS["FULL"]:
                problems.append(f"synchronous is {sync}, FULL (2) or EXTRA (3) is required")
            if int(fkeys) != 1:
                problems.append("foreign_keys is off")
        elif engine.dialect.name == "postgresql":
            fsync = connection.execute(text("SHOW fsync")).scalar()
            commit = connection.execute(text("SHOW synchronous_commit")).scalar()
            settings = {"fsync": fsync, "synchronous_commit": commit}
            problems = []
            if fsync != "on":
                problems.append(f"fsync is {fsync!r}, it must be 'on'")
            if commit == "off":
                problems.append("synchronous_commit is 'off', it must not be")
        else:
            raise ConfigurationError(f"unsupported database {engine.dialect.name!r}")
        connection.rollback()
    if problems and not allow_unsafe:
        raise ConfigurationError(
            "refusing to start: unsafe database durability settings ("
            + "; ".join(problems)
            + "). A record a user was told is saved could be lost in a crash."
        )
    return settings


def init_database(app: Flask, engine: Engine) -> None:
    if engine.dialect.name == "sqlite":
        sync = app.config["SQLITE_SYNCHRONOUS"].upper()
        if sync not in SQLITE_SYNCHRONOUS_LEVELS:
            raise ConfigurationError(f"SQLITE_SYNCHRONOUS={sync!r} is not a SQLite level")
        configure_sqlite(engine, sync, app.config["SQLITE_BUSY_TIMEOUT_MS"])
    app.extensions["trial_durability"] = check_durability(app, engine)
