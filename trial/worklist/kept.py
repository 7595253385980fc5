"""What a page builds from the trial's data, kept per process for the state it was built from.

The state is the audit chain's head, its hash included: every change of the data writes an
audit row in its own transaction and moves the head, so a build kept under a head is the
build any request would make while the head stays there. A key also holds whatever else the
build depends on (the sites it covers, each site's date, the participant), and a page that
keeps rendered HTML adds whatever the markup depends on (the reader's role flags, the
address the application is served under). A key never holds the reader: what is kept must be
the same for every reader allowed to ask for it, and the caller checks that right before it
asks (a site's worklist, a participant the reader may see).

``WORKLIST_CACHE=0`` makes every build afresh (the worklist's and the participant page's).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from flask import current_app
from sqlalchemy import select

from trial.audit.models import AuditChainHead
from trial.extensions import db

_LOCK = threading.Lock()
# Builds kept per process and store (a large site's worklist is a few hundred kB; a
# participant's page a few kB).
SIZES = {"worklist": 32, "worklist_html": 32, "participant": 256, "participant_html": 256}


def trail_head() -> tuple:
    """The audit chain's head: its hash names the whole history (a database restored from a
    backup, or emptied by a test, may reach the same sequence number with other events).

    Read before the data a build reads: a change committed meanwhile moves it, so a build
    is never kept under a head that would claim it includes that change."""
    return tuple(db.session.execute(select(AuditChainHead.last_seq, AuditChainHead.last_hash)))


def kept(store: str, key: tuple, build: Callable[[], Any]) -> Any:
    """The value of ``build()`` for ``key``, made once per process and kept (the least
    recently used dropped past the store's size). The value is shared: read-only."""
    if not current_app.config.get("WORKLIST_CACHE", True):
        return build()
    builds = current_app.extensions.setdefault(f"trial_kept_{store}", OrderedDict())
    with _LOCK:
        if key in builds:
            builds.move_to_end(key)
            return builds[key]
    made = build()
    with _LOCK:
        builds[key] = made
        while len(builds) > SIZES[store]:
            builds.popitem(last=False)
    return made
