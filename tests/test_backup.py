"""Online backup and restore: ``flask db backup --out FILE`` and ``flask db restore FILE``.

The main test backs up while clients keep submitting participants and visits through
gunicorn, restores into an empty database and checks the restore against the backup point:
every table's row count equals the manifest's (read in the backup's own snapshot), the
snapshot lies between the counts seen just before and just after the backup, every write
acknowledged before the backup started is in it, nothing in it is half-written (the crash
test's check), the audit chain verifies and its append-only triggers still refuse changes.
The other tests show what is refused: a non-empty target, a damaged file, an existing output.
Every test runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from config import PROJECT_ROOT
from tests.conftest import create_pg_database, drop_pg_database, make_config
from tests.live_server import live_server, server_environment
from tests.test_crash import (
    CLIENTS,
    Submissions,
    audit_verify_command,
    check_database,
    migrate_and_seed,
)
from trial.maintenance.backup import MaintenanceError, manifest_path_for, restore

COUNTED = ("participants", "visits", "drinking_days", "audit_events")


@pytest.fixture
def empty_target(backend, tmp_path):
    """An empty database to restore into: a new SQLite path, or a new PostgreSQL database."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'restored' / 'trial.db'}"
        return
    name = f"trial_restore_{uuid.uuid4().hex[:10]}"
    url = create_pg_database(name)
    try:
        yield url
    finally:
        drop_pg_database(name)


def flask_command(database_url: str, instance: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=PROJECT_ROOT,
        env=server_environment(database_url, instance),
        capture_output=True,
        text=True,
        timeout=600,
    )


def counts(url: str, tables=COUNTED) -> dict[str, int]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return {
                name: connection.execute(text(f"SELECT count(*) FROM {name}")).scalar_one()
                for name in tables
            }
    finally:
        engine.dispose()


@pytest.mark.slow
def test_online_backup_under_write_load_restores_to_the_backup_point(
    database_url, empty_target, tmp_path
):
    instance = tmp_path / "instance"
    _, token = migrate_and_seed(database_url, instance)
    subs = Submissions(token)
    out = tmp_path / "backups" / "trial.backup"
    stop = threading.Event()
    with live_server(
        database_url,
        tmp_path / "server",
        workers=2,
        app="tests.test_crash:preforked_app()",
        gunicorn_args=("--preload",),
    ) as server:
        clients = [
            threading.Thread(target=subs.client, args=(server.api, stop), daemon=True)
            for _ in range(CLIENTS)
        ]
        for thread in clients:
            thread.start()
        try:
            assert subs.first_acknowledgement.wait(timeout=60), server.log_tail()
            time.sleep(1.0)
            with subs.lock:
                acked_before = (list(subs.acked_participants), list(subs.acked_visits))
            before = counts(database_url)
            started = time.monotonic()
            backup = flask_command(database_url, instance, "db", "backup", "--out", str(out))
            backup_seconds = time.monotonic() - started
            after = counts(database_url)
            time.sleep(0.5)
        finally:
            stop.set()
            for thread in clients:
                thread.join(timeout=60)
        log = server.log()
    assert backup.returncode == 0, backup.stdout + backup.stderr
    assert not subs.unexpected, subs.unexpected[:5]
    assert " 500 " not in log and "Traceback" not in log, log[-3000:]

    manifest = json.loads(manifest_path_for(out).read_text())
    snapshot = {name: manifest["tables"][name] for name in COUNTED}
    # The writes went on during the backup, and the snapshot is one moment within it.
    assert after["audit_events"] > before["audit_events"], "no writes during the backup"
    for name in COUNTED:
        assert before[name] <= snapshot[name] <= after[name], (name, before, snapshot, after)
    assert manifest["audit_head"]["seq"] == snapshot["audit_events"]

    # The live trail records the backup, after its snapshot, naming the file.
    engine = create_engine(database_url, poolclass=NullPool)
    with engine.connect() as connection:
        detail = connection.execute(
            text("SELECT detail FROM audit_events WHERE action = 'backup'")
        ).scalar_one()
    engine.dispose()
    assert json.loads(detail)["sha256"] == manifest["sha256"]
    assert json.loads(detail)["snapshot_audit_seq"] == manifest["audit_head"]["seq"]

    started = time.monotonic()
    restored = flask_command(empty_target, tmp_path / "restore-instance", "db", "restore", str(out))
    restore_seconds = time.monotonic() - started
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "match the manifest" in restored.stdout and "audit chain intact" in restored.stdout

    # Every table as at the backup point, plus the one audit row saying it was restored.
    restored_counts = counts(empty_target, tuple(manifest["tables"]))
    expected = dict(manifest["tables"])
    expected["audit_events"] += 1
    assert restored_counts == expected
    engine = create_engine(empty_target, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            action, detail = connection.execute(
                text("SELECT action, detail FROM audit_events ORDER BY seq DESC LIMIT 1")
            ).one()
            assert action == "restore" and json.loads(detail)["sha256"] == manifest["sha256"]
        # The append-only triggers came back with the data.
        with pytest.raises(DBAPIError, match="append-only|refused|not allowed"):
            with engine.begin() as connection:
                connection.execute(text("UPDATE audit_events SET reason = 'x' WHERE seq = 1"))
    finally:
        engine.dispose()

    # Acknowledged before the backup began: in it, whole. Nothing half-written in it.
    from trial import create_app

    restored_app = create_app(make_config(empty_target, tmp_path / "restore-instance"))
    at_backup = Submissions(token)
    at_backup.attempted_participants = set(subs.attempted_participants)
    at_backup.attempted_visits = set(subs.attempted_visits)
    at_backup.acked_participants, at_backup.acked_visits = acked_before
    with restored_app.app_context():
        problems = check_database(restored_app, at_backup)
    assert not problems, problems
    assert at_backup.acknowledged > 0
    assert "audit chain intact" in audit_verify_command(empty_target, tmp_path / "restore-instance")
    print(
        f"backup under load: snapshot {snapshot} (before {before}, after {after}); "
        f"backup {backup_seconds:.2f}s ({manifest['size']:,} bytes), restore "
        f"{restore_seconds:.2f}s (both with the flask command's start-up)"
    )


def test_restore_refuses_a_database_that_is_not_empty(app, runner, make_user, tmp_path):
    make_user("coordinator", sites=["S01"])
    out = tmp_path / "trial.backup"
    result = runner.invoke(args=["db", "backup", "--out", str(out)])
    assert result.exit_code == 0, result.output
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    before = counts(url, ("users", "audit_events"))
    result = runner.invoke(args=["db", "restore", str(out)])
    assert result.exit_code != 0
    assert "not empty" in result.output and "Restore into a new, empty database" in result.output
    assert counts(url, ("users", "audit_events")) == before


def test_restore_refuses_a_damaged_backup_and_leaves_the_target_alone(
    app, runner, make_user, tmp_path, empty_target
):
    make_user("coordinator", sites=["S01"])
    out = tmp_path / "trial.backup"
    assert runner.invoke(args=["db", "backup", "--out", str(out)]).exit_code == 0
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0xFF
    out.write_bytes(bytes(data))
    with pytest.raises(MaintenanceError, match="does not match its manifest"):
        restore(empty_target, out)
    if empty_target.startswith("sqlite"):
        assert not Path(empty_target.removeprefix("sqlite:///")).exists()
        return
    engine = create_engine(empty_target, poolclass=NullPool)
    with engine.connect() as connection:
        tables = connection.execute(
            text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        ).scalar_one()
    engine.dispose()
    assert tables == 0


def test_backup_never_overwrites_a_file(app, runner, tmp_path):
    out = tmp_path / "trial.backup"
    out.write_text("an earlier backup")
    result = runner.invoke(args=["db", "backup", "--out", str(out)])
    assert result.exit_code != 0 and "already exists" in result.output
    assert out.read_text() == "an earlier backup"
