"""gunicorn.conf.py: every worker started from the project root freezes what it has loaded."""

from __future__ import annotations

import pytest
import requests

from tests.live_server import live_server


def app_reporting_gc():
    """The real app plus a public ``GET /api/v1/_test/gc``: the objects the answering worker
    has frozen (``gc.get_freeze_count``). Test-only: gunicorn loads it as
    ``tests.test_gunicorn_config:app_reporting_gc()``."""
    import gc

    from trial import create_app
    from trial.auth.policy import public

    app = create_app()

    @public
    def frozen():
        return {"frozen": gc.get_freeze_count()}

    app.add_url_rule("/api/v1/_test/gc", "test_gc", frozen)
    return app


APP = "tests.test_gunicorn_config:app_reporting_gc()"


def frozen_objects(server) -> int:
    response = requests.get(f"{server.api}/_test/gc", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["frozen"]


@pytest.mark.slow
def test_each_worker_freezes_the_loaded_application(database_url, tmp_path):
    # From the project root gunicorn reads gunicorn.conf.py by itself: the worker has moved
    # the application's objects (tens of thousands) out of the collector's generations.
    with live_server(database_url, tmp_path / "srv", workers=1, app=APP) as server:
        assert frozen_objects(server) > 50_000
    # The control: the same server with an empty configuration file freezes nothing, so the
    # figure above comes from our hook.
    empty = tmp_path / "empty.conf.py"
    empty.write_text("")
    with live_server(
        database_url,
        tmp_path / "control",
        workers=1,
        app=APP,
        gunicorn_args=("--config", str(empty)),
    ) as server:
        assert frozen_objects(server) == 0
