"""Shared by tests that load a whole demo trial once: a database of their own and a fixed
randomization list seed (the seed is cryptographic in production; fixed here, the
allocation and with it the whole demo is the same on every run)."""

from __future__ import annotations

import secrets
import shutil
import uuid
from contextlib import contextmanager
from types import SimpleNamespace

import pytest

from randomization import lists
from tests.conftest import RUN_ID, create_pg_database, drop_pg_database, make_config
from trial import create_app
from trial.extensions import db

LIST_SEED = bytes(range(1, 33))


@contextmanager
def fixed_list_seed(seed: bytes = LIST_SEED):
    """Fix the list seed (and so the allocation) for the demos run inside the block."""
    fixed = SimpleNamespace(token_bytes=lambda n: seed[:n], randbelow=secrets.randbelow)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lists.generation, "secrets", fixed)
        yield


@contextmanager
def fresh_app(backend: str, request, directory):
    """An app on a freshly migrated database of its own, inside its app context."""
    directory.mkdir(parents=True, exist_ok=True)
    if backend == "sqlite":
        path = directory / "trial.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        url, name = f"sqlite:///{path}", None
    else:
        name = f"trial_demo_{RUN_ID}_{uuid.uuid4().hex[:10]}"
        url = create_pg_database(name, template=request.getfixturevalue("postgresql_template"))
    application = create_app(make_config(url, directory / "instance"))
    try:
        with application.app_context():
            yield application
            db.session.remove()
            db.engine.dispose()
    finally:
        if name is not None:
            drop_pg_database(name)
