"""The real app plus one deliberately unsafe allocation route: the concurrency test's control.

Served by gunicorn exactly like ``wsgi:app``
(``tests.unsafe_allocation_app:build_app()``, through ``tests.live_server``). The extra
route ``POST /api/v1/participants/<id>/randomize-unsafe`` does what several peers do: read the
first free slot of the stratum with no lock, then write it, in a plain transaction on its own
engine (so SQLite gets pysqlite's ordinary deferred transaction, not the app's BEGIN
IMMEDIATE, and PostgreSQL a plain READ COMMITTED one). Two requests can read the same free
slot; the second UPDATE then overwrites the first. The concurrency test sends the same load
here and expects the safety property to fail, proving that it can catch the bug.

Never import this from the application: it exists only under tests/.
"""

from __future__ import annotations

import os
import time

from flask import g, jsonify
from sqlalchemy import create_engine, select, update

from randomization.models import RandomizationSlot
from randomization.schemas import FixedTimestamp
from randomization.services import participant_stratum
from trial import create_app
from trial.auth.policy import allow
from trial.auth.roles import Role
from trial.database import utcnow
from trial.extensions import db
from trial.participants.services import get_visible_participant

UNSAFE_RULE = "/api/v1/participants/<participant_id>/randomize-unsafe"
# Stands for the work a real allocation does between its read and its write (eligibility and
# consent checks, audit rows, counters), in milliseconds; set through the server environment.
DELAY_MS = float(os.environ.get("UNSAFE_ALLOCATION_DELAY_MS", "0"))

_engines: dict[int, object] = {}


def _plain_engine(url: str):
    """One engine per worker process, created after gunicorn forks; no app hooks on it."""
    pid = os.getpid()
    if pid not in _engines:
        connect_args = {"timeout": 30} if url.startswith("sqlite") else {}
        _engines[pid] = create_engine(url, connect_args=connect_args)
    return _engines[pid]


def _body(participant_id: str, number: str, kit: str, at) -> dict:
    return {
        "participant_id": participant_id,
        "randomization_number": number,
        "kit_number": kit,
        "randomized_at": FixedTimestamp()._serialize(at, None, None),
    }


def randomize_unsafe(participant_id):
    """Allocate read-then-write, without a lock (the bug the real route must not have)."""
    participant = get_visible_participant(g.current_user, participant_id)
    key, stratum = participant.id, participant_stratum(participant)
    url = db.engine.url.render_as_string(hide_password=False)
    db.session.commit()  # release the app's transaction (on SQLite, its write lock)
    slots = RandomizationSlot.__table__
    with _plain_engine(url).begin() as connection:
        mine = connection.execute(
            select(slots.c.randomization_number, slots.c.kit_number, slots.c.allocated_at).where(
                slots.c.participant_id == key
            )
        ).first()
        if mine is not None:
            return jsonify(_body(participant_id, *mine)), 200
        free = connection.execute(
            select(slots.c.id, slots.c.kit_number)
            .where(slots.c.stratum == stratum, slots.c.participant_id.is_(None))
            .order_by(slots.c.sequence)
            .limit(1)
        ).first()
        if free is None:
            return jsonify(
                {"code": "conflict", "status": 409, "message": "stratum exhausted", "errors": {}}
            ), 409
        if DELAY_MS:
            time.sleep(DELAY_MS / 1000)
        now, number = utcnow(), f"U{key:05d}"
        connection.execute(
            update(slots)
            .where(slots.c.id == free.id)
            .values(participant_id=key, randomization_number=number, allocated_at=now)
        )
    return jsonify(_body(participant_id, number, free.kit_number, now)), 201


def build_app():
    application = create_app()
    view = allow(Role.COORDINATOR, Role.INVESTIGATOR)(randomize_unsafe)
    application.add_url_rule(
        UNSAFE_RULE, endpoint="unsafe_randomize", view_func=view, methods=["POST"]
    )
    return application
