"""One cut-off, one bundle: simultaneous first pulls through real gunicorn workers agree.

Six requests for the same cut-off, released together against three gunicorn worker processes
(each forking its own export helper processes), must give the same bytes, the same
``X-Content-SHA256``, and six audit events whose details agree.

Whether first pulls overlap on a shared 2-core machine is luck, so the servers here hold each
pull, right after its snapshot opens (where the old manifest stamp was read), until one pull
per worker has got there (``rendezvous``; bounded). The first three pulls are then all inside
their snapshot before any of them commits its audit event: the worst case, every time. The
rendezvous only waits; it changes no data.

The control serves the same app with the old manifest stamp patched back (``generated_at``:
the time this cut was first generated, read back from the audit trail, else the pull's own
clock). It passes a serial check (a later pull reads the first one's time back) and fails
this one, since simultaneous first pulls each find no earlier pull and stamp their own time.

Slow (real server processes); runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import time
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select

from trial.audit.models import AuditEvent
from trial.extensions import db

pytestmark = pytest.mark.slow

PULLS = 6
WORKERS = 3
APP = "tests.test_exports_reproducible:app_with_rendezvous()"
CONTROL_APP = "tests.test_exports_reproducible:app_with_per_pull_stamp()"
# Helpers for every bundle, however small: each worker forks its own and they snapshot apart.
SERVER_SETTINGS = {"EXPORT_HELPERS": "2", "EXPORT_HELPER_MIN_PARTICIPANTS": "1"}
RENDEZVOUS_SECONDS = 20.0


# --- the servers' apps (imported by gunicorn workers, never by the application) -------------


def rendezvous() -> None:
    """Wait until ``WORKERS`` pulls have arrived here (files in ``RENDEZVOUS_DIR``), or give up
    after ``RENDEZVOUS_SECONDS``. Later pulls find them all there and go straight on."""
    folder = Path(os.environ["RENDEZVOUS_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / uuid.uuid4().hex).touch()
    deadline = time.monotonic() + RENDEZVOUS_SECONDS
    while len(list(folder.iterdir())) < WORKERS and time.monotonic() < deadline:
        time.sleep(0.005)


def _hold_pulls_after_snapshot(before=None) -> None:
    """Make every bundle wait at ``rendezvous`` once its snapshot is open (``before`` runs
    first, in the snapshot)."""
    import exports.bundle as bundle

    real_context = bundle.build_context

    def context_after_rendezvous(protocol, cut, **kwargs):
        if before is not None:
            before(cut)
        rendezvous()
        return real_context(protocol, cut, **kwargs)

    bundle.build_context = context_after_rendezvous


def app_with_rendezvous():
    """The real app, its pulls held at the rendezvous."""
    from trial import create_app

    _hold_pulls_after_snapshot()
    return create_app()


def app_with_per_pull_stamp():
    """The app with the manifest's old ``generated_at`` patched back (the control).

    As before the fix: right after the snapshot opens, the time this cut was first
    generated, read from the first ``export_blinded`` event's detail, or else this pull's own
    clock; written into both the manifest and the pull's audit detail. (The pulls here are
    CSV without dummy arms, which is how the cut is named in the trail.)
    """
    import exports.bundle as bundle
    from trial import create_app
    from trial.database import utcnow

    stamped: dict[str, str] = {}  # this worker's current pull (a sync worker: one at a time)

    def stamp(cut) -> None:
        key = bundle.ExportRequest(cut.cutoff, "csv", None).key
        detail = db.session.scalar(
            select(AuditEvent.detail)
            .where(
                AuditEvent.action == bundle.ACTION,
                AuditEvent.entity_type == "export",
                AuditEvent.entity_id == key,
            )
            .order_by(AuditEvent.seq)
            .limit(1)
        )
        first = json.loads(detail).get("generated_at") if detail else None
        stamped["generated_at"] = first or bundle.iso(utcnow())

    real_manifest, real_record_event = bundle.bundle_manifest, bundle.record_event

    def manifest_with_stamp(protocol, request, cut, files):
        return {**real_manifest(protocol, request, cut, files), **stamped}

    def record_event_with_stamp(actor, action, **kwargs):
        if action == bundle.ACTION:
            kwargs["detail"] = {**kwargs["detail"], **stamped}
        return real_record_event(actor, action, **kwargs)

    _hold_pulls_after_snapshot(before=stamp)
    bundle.bundle_manifest = manifest_with_stamp
    bundle.record_event = record_event_with_stamp
    return create_app()


# --- the tests ------------------------------------------------------------------------------


@pytest.fixture
def demo(app, runner):
    result = runner.invoke(args=["trial", "demo", "--participants", "12", "--seed", "8"])
    assert result.exit_code == 0, result.output
    db.session.remove()
    return app


@pytest.fixture
def statistician(demo, make_user) -> str:
    _, token = make_user("statistician", username="stat.concurrent")
    db.session.commit()
    return token


def now_cutoff() -> str:
    from tests.test_exports_bundle import now_cutoff as past_every_write

    return past_every_write()


def serve(database_url: str, folder: Path, app: str):
    from tests.live_server import live_server

    settings = {**SERVER_SETTINGS, "RENDEZVOUS_DIR": str(folder / "rendezvous")}
    return live_server(database_url, folder, workers=WORKERS, env=settings, app=app)


def pull_together(server, token: str, cutoff: str, count: int = PULLS) -> list:
    """``count`` GETs of one cut, released at once from as many threads."""
    import requests

    from tests.conftest import bearer

    start = threading.Barrier(count)

    def pull(_):
        start.wait(timeout=30)
        return requests.get(
            f"{server.api}/exports/blinded",
            params={"cutoff": cutoff},
            headers=bearer(token),
            timeout=120,
        )

    with ThreadPoolExecutor(max_workers=count) as pool:
        responses = list(pool.map(pull, range(count)))
    for response in responses:
        assert response.status_code == 200, response.text[:500]
    return responses


def digests(responses) -> list[str]:
    found = []
    for response in responses:
        digest = hashlib.sha256(response.content).hexdigest()
        assert response.headers["X-Content-SHA256"] == digest
        found.append(digest)
    return found


def audited_pulls(cutoff: str) -> list[dict]:
    """The details of the export events of one cut-off, in chain order (read afresh)."""
    db.session.remove()
    rows = db.session.scalars(
        select(AuditEvent.detail)
        .where(AuditEvent.action == "export_blinded")
        .order_by(AuditEvent.seq)
    ).all()
    return [detail for detail in map(json.loads, rows) if detail["cutoff"] == cutoff]


def manifest_of(content: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return json.loads(archive.read("manifest.json"))


def test_simultaneous_first_pulls_of_one_cut_give_one_bundle(
    statistician, database_url, runner, tmp_path
):
    cutoff = now_cutoff()
    with serve(database_url, tmp_path / "server", APP) as server:
        responses = pull_together(server, statistician, cutoff)
        log = server.log()
    assert "Traceback" not in log, log[-3000:]
    found = digests(responses)
    assert len(set(found)) == 1, found
    manifest = manifest_of(responses[0].content)
    assert "generated_at" not in manifest

    events = audited_pulls(manifest["cutoff"])
    assert len(events) == PULLS
    assert all(event == events[0] for event in events), events  # nothing per pull in them
    assert events[0]["sha256"] == found[0]

    # A later pull of the same cut, in another process (the command), is the same bundle.
    out = tmp_path / "later.zip"
    result = runner.invoke(
        args=["exports", "blinded", "--as", "stat.concurrent", "--out", str(out)]
        + ["--cutoff", cutoff]
    )
    assert result.exit_code == 0, result.output
    assert hashlib.sha256(out.read_bytes()).hexdigest() == found[0]


def test_control_the_old_first_generation_stamp_passes_serially_and_fails_here(
    statistician, database_url, tmp_path
):
    """With the stamp patched back, pulls one after another agree (a later pull reads the
    first one's time back), but simultaneous first pulls do not: what the test above
    catches, and what a serial test would miss."""
    cutoff, serial_cutoff = now_cutoff(), now_cutoff()
    with serve(database_url, tmp_path / "control", CONTROL_APP) as server:
        responses = pull_together(server, statistician, cutoff)  # the first pulls, as above
        serial = [pull_together(server, statistician, serial_cutoff, count=1)[0] for _ in range(2)]
        log = server.log()
    assert "Traceback" not in log, log[-3000:]
    assert "generated_at" in manifest_of(serial[0].content)  # the control is in place
    assert len(set(digests(serial))) == 1
    found = digests(responses)
    assert len(set(found)) >= WORKERS, found  # one per worker that stamped its own
    events = audited_pulls(manifest_of(responses[0].content)["cutoff"])
    assert len({event["sha256"] for event in events}) >= WORKERS
