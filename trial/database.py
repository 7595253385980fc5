"""Make both databases safe to write to, and refuse to start when they are not.

SQLite: WAL, ``synchronous=FULL``, foreign keys, and one rule for transactions: **a
transaction takes SQLite's write lock at its BEGIN unless it is a read — begun in a GET or
HEAD request or in a ``reading()`` block — and ``writing()`` makes one a write wherever it
is** (the innermost block decides, then the request's method; outside a request, in a CLI
command or a test, a transaction writes). ``takes_write_lock`` is that rule.

Why: pysqlite's own deferred ``BEGIN`` lets two writers read the same row; the loser fails
when it writes ("database is locked") or acted on a stale read. ``BEGIN IMMEDIATE`` serialises
writers from their first read. A read begins deferred, so WAL readers never wait for writers
and a long read (an export's snapshot, ``audit verify``) never blocks them. A GET that records
its own release (an audited export, key or list) declares it with ``@writes_on_read``, which
runs the view in ``writing()``: read deferred, its audit row would fail whenever another
writer committed in between. Its long read stays deferred inside ``reading()``.

A writer that finds the lock taken polls for it every half millisecond up to the busy
timeout (``_begin_immediate``) rather than leaving it to SQLite's busy handler, whose sleeps
grow to 100 ms: measured with bench/visits.py on SQLite, the busy handler alone cost about a
quarter of the visit throughput (the guardrail of issue 27), the polling nothing measurable.

PostgreSQL: ``fsync`` and ``synchronous_commit`` must be on, or an acknowledged write can be
lost in a crash. The rule changes nothing there (its ``BEGIN`` is PostgreSQL's own).
"""

from __future__ import annotations

import functools
import random
import sqlite3
import time
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from flask import Flask, has_request_context, request
from sqlalchemy import DateTime, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.types import TypeDecorator

from trial.errors import ConfigurationError
from trial.extensions import db

READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
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


_declared: ContextVar[bool | None] = ContextVar("trial_sqlite_write_lock", default=None)


@contextmanager
def reading():
    """Begin this block's transactions deferred: a long read must not block writers.

    It decides at ``BEGIN``, so end any transaction that is open before the block.
    """
    token = _declared.set(False)
    try:
        yield
    finally:
        _declared.reset(token)


@contextmanager
def writing():
    """Begin this block's transactions with SQLite's write lock (a GET's audited release).

    It decides at ``BEGIN``, so end any transaction that is open before the block.
    """
    token = _declared.set(True)
    try:
        yield
    finally:
        _declared.reset(token)


def writes_on_read(view):
    """Run a GET view that writes (an audited release) in ``writing()``.

    A read transaction that later writes fails on SQLite when another writer committed in
    between ("database is locked"), so the view's transactions take the write lock at
    ``BEGIN``; its long reads (an export's snapshot) stay in ``reading()`` blocks. The read
    the request opened before the view (authentication) is ended first.
    """

    @functools.wraps(view)
    def in_a_write_transaction(*args, **kwargs):
        db.session.commit()  # the authentication's read, begun deferred: nothing to write
        with writing():
            return view(*args, **kwargs)

    return in_a_write_transaction


def takes_write_lock() -> bool:
    """The rule: the innermost ``reading()``/``writing()`` block decides, else a GET or HEAD
    (or OPTIONS) request reads, else (any other request, a CLI command, a test) it writes."""
    declared = _declared.get()
    if declared is not None:
        return declared
    if has_request_context():
        return request.method not in READ_ONLY_METHODS
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
        if takes_write_lock():
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
