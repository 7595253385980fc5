"""A CSV bundle written by helper processes is the bundle one process writes, byte for byte.

The helpers (exports/helpers.py) are forks that each take their own snapshot after the
parent's: these tests check the ranges join up exactly, that a helper whose snapshot sees
writes made after the cut-off still writes the cut, that the parent refuses a helper that
saw another cut, and that a failing helper fails the export with nothing written or audited.
Runs on SQLite and, with TEST_DATABASE_URL set, on PostgreSQL.
"""

from __future__ import annotations

import multiprocessing
from datetime import timedelta

import pytest
from sqlalchemy import func, select

import exports.bundle
import exports.helpers
import exports.snapshot
from tests import test_exports_bundle
from tests.capture_helpers import Trial, iso, today, vitals
from tests.test_adverse_events import body as ae_body
from tests.test_exports_bundle import export as export_bundle
from tests.test_exports_bundle import members, now_cutoff, table
from trial.audit.models import AuditEvent
from trial.extensions import db

demo = test_exports_bundle.demo  # the fixture: a 24-participant demo trial


@pytest.fixture
def config_overrides() -> dict:
    return {"EXPORT_HELPERS": 2, "EXPORT_HELPER_MIN_PARTICIPANTS": 1}


@pytest.fixture
def helpers_used(monkeypatch) -> list:
    """Records, per export, whether helpers wrote it (a silent fallback would pass else)."""
    used = []
    real = exports.bundle.record_helpers

    def spy(*args, **kwargs):
        manager = real(*args, **kwargs)

        class Recording:
            def __enter__(self):
                helpers = manager.__enter__()
                used.append(helpers is not None)
                return helpers

            def __exit__(self, *exc):
                return manager.__exit__(*exc)

        return Recording()

    monkeypatch.setattr(exports.bundle, "record_helpers", spy)
    return used


def export(app, runner, tmp_path, name, *options, helpers=2, user="statistician") -> bytes:
    app.config["EXPORT_HELPERS"] = helpers
    return export_bundle(runner, tmp_path, *options, user=user, name=name)


@pytest.mark.parametrize(
    ("count", "options"), [(2, ()), (3, ()), (7, ()), (2, ("--dummy-arms", "3"))]
)
def test_helpers_write_the_bundle_one_process_writes(
    demo, runner, tmp_path, helpers_used, count, options
):
    cutoff = now_cutoff()
    alone = export(demo, runner, tmp_path, "one.zip", "--cutoff", cutoff, *options, helpers=0)
    shared = export(demo, runner, tmp_path, "many.zip", "--cutoff", cutoff, *options, helpers=count)
    assert helpers_used == [False, True]
    assert shared == alone
    files = members(shared)
    assert len(table(files, "participants.csv")) == 24
    assert len(table(files, "drinking_calendar.csv")) > 24 * 28
    assert table(files, "drinking_outcomes.csv")  # written by the helpers, range by range


def test_csv_only_and_not_below_the_minimum(demo, runner, tmp_path, helpers_used):
    export(demo, runner, tmp_path, "x.zip", "--format", "xpt")
    demo.config["EXPORT_HELPER_MIN_PARTICIPANTS"] = 13  # 24 participants: one helper's worth
    export(demo, runner, tmp_path, "c.zip")
    assert helpers_used == [False, False]


@pytest.fixture
def trial(client, make_site, make_user, make_participant):
    """Two participants with a visit's vitals and an adverse event, and a statistician."""
    trial = Trial(client, make_site, make_user, make_participant)
    trial.first = trial.enrol(sex="F")
    trial.second = trial.enrol(sex="M")
    visit = trial.visit(
        trial.first.pid, "baseline", trial.first.day0, vitals=vitals(systolic_bp=150)
    )
    assert visit.status_code == 201, visit.json
    trial.vitals_id = visit.json["vitals"]["id"]
    ae = trial.post(
        f"/participants/{trial.second.pid}/adverse-events",
        ae_body(onset_date=iso(today() - timedelta(days=3))),
    )
    assert ae.status_code == 201, ae.json
    trial.ae_id = ae.json["id"]
    make_user("statistician", username="stat")
    db.session.commit()
    return trial


def write_before_the_helpers_snapshot(monkeypatch, trial):
    """Make the first helper correct a record, withdraw another and enrol a participant
    (all audited, through the API) after the parent's snapshot and before its own."""
    real = exports.helpers.read_snapshot

    def late_writes_then_snapshot(cutoff):
        if multiprocessing.current_process().name == "export-helper-1":
            fixed = trial.patch(
                f"/vitals/{trial.vitals_id}", {"systolic_bp": 128, "reason": "misread"}
            )
            assert fixed.status_code == 200, fixed.json
            gone = trial.post(
                f"/adverse-events/{trial.ae_id}/entered-in-error", {"reason": "wrong person"}
            )
            assert gone.status_code == 200, gone.json
            trial.enrol(sex="F", day0_ago=None, screening=False)
        return real(cutoff)

    monkeypatch.setattr(exports.helpers, "read_snapshot", late_writes_then_snapshot)


def test_a_helper_that_snapshots_after_later_writes_still_writes_the_cut(
    app, runner, tmp_path, trial, helpers_used, monkeypatch
):
    cutoff = now_cutoff()
    alone = export(app, runner, tmp_path, "one.zip", "--cutoff", cutoff, helpers=0, user="stat")
    write_before_the_helpers_snapshot(monkeypatch, trial)
    shared = export(app, runner, tmp_path, "many.zip", "--cutoff", cutoff, helpers=2, user="stat")
    assert helpers_used == [False, True]
    assert shared == alone
    # The writes did happen: a bundle of now shows them.
    monkeypatch.undo()
    now = members(export(app, runner, tmp_path, "now.zip", helpers=0, user="stat"))
    assert [r["systolic_bp"] for r in table(now, "vitals.csv")] == ["128"]
    assert table(now, "adverse_events.csv") == []
    assert len(table(now, "participants.csv")) == 3


def test_the_same_late_writes_show_if_a_helper_skipped_the_rewind(
    app, runner, tmp_path, trial, helpers_used, monkeypatch
):
    """Negative control for the test above: a helper reading current rows as they are
    (its cut believed untouched) writes the later values, and the bundles differ."""
    cutoff = now_cutoff()
    alone = export(app, runner, tmp_path, "one.zip", "--cutoff", cutoff, helpers=0, user="stat")
    write_before_the_helpers_snapshot(monkeypatch, trial)
    real_load_cut = exports.snapshot.load_cut

    def unrewound_cut(instant):
        cut = real_load_cut(instant)
        if multiprocessing.current_process().name.startswith("export-helper"):
            cut.created_after.clear()
            cut.old_values.clear()
        return cut

    monkeypatch.setattr(exports.snapshot, "load_cut", unrewound_cut)
    shared = members(
        export(app, runner, tmp_path, "many.zip", "--cutoff", cutoff, helpers=2, user="stat")
    )
    assert helpers_used == [False, True]
    assert table(members(alone), "vitals.csv")[0]["systolic_bp"] == "150"
    assert [r["systolic_bp"] for r in table(shared, "vitals.csv")] == ["128"]


def test_a_helper_that_saw_another_cut_fails_the_export(
    app, runner, tmp_path, trial, helpers_used, monkeypatch
):
    real_load_cut = exports.snapshot.load_cut

    def later_cut(instant):
        if multiprocessing.current_process().name == "export-helper-2":
            instant = instant + timedelta(days=1)  # takes in events after the cut-off
        return real_load_cut(instant)

    monkeypatch.setattr(exports.snapshot, "load_cut", later_cut)
    cutoff = now_cutoff()
    trial.patch(f"/vitals/{trial.vitals_id}", {"systolic_bp": 131, "reason": "re-measured"})
    assert_export_fails(app, runner, tmp_path, cutoff, "cut the trail at event")
    assert helpers_used == [True]


def raise_error():
    raise RuntimeError("disk on fire")


def die():
    import os

    os._exit(9)  # as if killed: no message, no clean-up


@pytest.mark.parametrize(
    ("helper", "failure", "message"),
    [("export-helper-2", raise_error, "disk on fire"), ("export-helper-1", die, "exit code 9")],
)
def test_a_failing_or_dying_helper_fails_the_export_with_nothing_written(
    app, runner, tmp_path, trial, helpers_used, monkeypatch, helper, failure, message
):
    real = exports.helpers.build_context

    def broken(*args, **kwargs):
        if multiprocessing.current_process().name == helper:
            failure()
        return real(*args, **kwargs)

    monkeypatch.setattr(exports.helpers, "build_context", broken)
    assert_export_fails(app, runner, tmp_path, now_cutoff(), message)
    assert helpers_used == [True]


def assert_export_fails(app, runner, tmp_path, cutoff, message):
    app.config["EXPORT_HELPERS"] = 2
    exports_before = export_events()
    out = tmp_path / "failed.zip"
    result = runner.invoke(
        args=["exports", "blinded", "--as", "stat", "--out", str(out), "--cutoff", cutoff]
    )
    assert result.exit_code != 0
    assert message in str(result.exception), result.exception
    assert isinstance(result.exception, exports.helpers.ExportHelperFailed)
    assert not out.exists()
    db.session.rollback()
    assert export_events() == exports_before
    assert not multiprocessing.active_children()  # every helper was reaped


def export_events() -> int:
    return db.session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "export_blinded")
    )


def test_a_gunicorn_worker_serves_the_same_bundle_through_helpers(
    demo, database_url, make_user, runner, tmp_path
):
    """The helpers fork from a real gunicorn worker (its signal handlers and sockets)."""
    import requests

    from tests.conftest import bearer
    from tests.live_server import live_server

    _, token = make_user("statistician", username="stat-live")
    db.session.commit()
    cutoff = now_cutoff()
    alone = export(demo, runner, tmp_path, "one.zip", "--cutoff", cutoff, helpers=0)
    settings = {"EXPORT_HELPERS": "3", "EXPORT_HELPER_MIN_PARTICIPANTS": "1"}
    with live_server(database_url, tmp_path / "server", workers=1, env=settings) as server:
        pulls = [
            requests.get(
                f"{server.api}/exports/blinded",
                params={"cutoff": cutoff},
                headers=bearer(token),
                timeout=120,
            )
            for _ in range(2)
        ]
        log = server.log()
    for response in pulls:
        assert response.status_code == 200, response.text[:500]
        assert response.content == alone
    assert "Traceback" not in log and "export helper" not in log, log[-3000:]


@pytest.fixture
def forked(monkeypatch) -> list:
    """The helpers forked, one list per bundle that forked any."""
    bundles = []
    real = exports.helpers._fork_helpers

    def spy(app, count):
        helpers = real(app, count)
        bundles.append(helpers)
        return helpers

    monkeypatch.setattr(exports.helpers, "_fork_helpers", spy)
    return bundles


def pids(helpers) -> set[int]:
    return {helper.process.pid for helper in helpers}


def test_each_bundle_forks_its_own_helpers_which_end_with_it(
    app, runner, tmp_path, trial, helpers_used, forked
):
    """No helper outlives its bundle (a web worker keeps nothing between requests), and the
    second bundle shows what was written between the two."""
    first = export(app, runner, tmp_path, "first.zip", helpers=2, user="stat")
    assert len(forked) == 1 and len(forked[0]) == 2
    assert not multiprocessing.active_children()
    assert all(helper.process.exitcode == 0 for helper in forked[0])
    fixed = trial.patch(f"/vitals/{trial.vitals_id}", {"systolic_bp": 126, "reason": "misread"})
    assert fixed.status_code == 200, fixed.json
    cutoff = now_cutoff()
    alone = export(app, runner, tmp_path, "one.zip", "--cutoff", cutoff, helpers=0, user="stat")
    shared = export(app, runner, tmp_path, "two.zip", "--cutoff", cutoff, helpers=2, user="stat")
    assert helpers_used == [True, False, True]
    assert len(forked) == 2
    assert [helper.number for helper in forked[1]] == [1, 2]
    assert not pids(forked[1]) & pids(forked[0])
    assert not multiprocessing.active_children()
    assert shared == alone
    assert [r["systolic_bp"] for r in table(members(first), "vitals.csv")] == ["150"]
    assert [r["systolic_bp"] for r in table(members(shared), "vitals.csv")] == ["126"]


def test_after_a_failed_bundle_new_helpers_write_the_next(
    app, runner, tmp_path, trial, helpers_used, monkeypatch, forked
):
    real = exports.helpers.build_context

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    export(app, runner, tmp_path, "warm.zip", helpers=2, user="stat")  # helpers forked
    monkeypatch.setattr(exports.helpers, "build_context", broken)
    assert_export_fails(app, runner, tmp_path, now_cutoff(), "disk on fire")
    monkeypatch.setattr(exports.helpers, "build_context", real)
    cutoff = now_cutoff()
    alone = export(app, runner, tmp_path, "one.zip", "--cutoff", cutoff, helpers=0, user="stat")
    again = export(app, runner, tmp_path, "again.zip", "--cutoff", cutoff, helpers=2, user="stat")
    assert again == alone
    before, failed, after = forked
    assert len(after) == 2 and not pids(after) & (pids(before) | pids(failed))
    assert helpers_used == [True, True, False, True]


def test_a_helper_exits_when_its_parent_end_of_the_pipe_closes(app):
    """As when the parent dies mid-bundle: the first helper's pipe is its only link, although
    the second was forked later, while our end of the first's pipe was open (the second
    closes its copy; had it kept it, the first would wait for ever)."""
    helpers = exports.helpers._fork_helpers(app, 2)
    first, second = helpers
    try:
        first.pipe.close()
        first.process.join(timeout=30)
        assert first.process.exitcode == 0
        assert second.process.is_alive()
    finally:
        exports.helpers._end_helpers(helpers)
    assert not multiprocessing.active_children()


def test_control_helpers_left_running_are_caught(app, runner, tmp_path, trial, monkeypatch, forked):
    """Negative control: were the helpers kept after their bundle (the old pool: a helper
    waiting for the next bundle), the check of the test above would see them."""
    import os
    import time

    real_main = exports.helpers._helper_main

    def lingering(*args):
        os._exit = lambda code: time.sleep(60)  # in the helper only: it stays
        real_main(*args)

    monkeypatch.setattr(exports.helpers, "_helper_main", lingering)
    monkeypatch.setattr(exports.helpers, "_end_helpers", lambda helpers: None)
    export(app, runner, tmp_path, "kept.zip", helpers=2, user="stat")
    try:
        assert multiprocessing.active_children()
    finally:
        for helper in forked[0]:
            helper.process.kill()
            helper.process.join()
