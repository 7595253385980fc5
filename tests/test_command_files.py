"""Files the commands write hold trial data: owner-only, never overwritten where a recipient
relies on them, and a refused restore leaves nothing behind (issue 22, item 10)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from randomization import lists
from tests.conftest import bearer, make_config, make_ready_for_randomization
from trial import create_app
from trial.extensions import db


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.fixture
def randomized_trial(app, make_site, make_user, make_participant, client):
    make_site("S01", planned_enrollment=10)
    statistician, _ = make_user("unblinded_statistician", username="unblinded")
    make_user("dsmb", username="dsmb")
    make_user("statistician", username="stat")
    lists.generate(statistician)
    db.session.commit()
    _, coordinator = make_user("coordinator", sites=["S01"])
    for _ in range(2):
        pid = make_participant(site="S01")["participant_id"]
        make_ready_for_randomization(client, bearer(coordinator), pid)
        response = client.post(
            f"/api/v1/participants/{pid}/randomize",
            headers=bearer(coordinator),
            json={"eligibility_confirmed": True},
        )
        assert response.status_code == 201, response.json


@pytest.fixture
def usual_umask():
    previous = os.umask(0o022)  # group and others may read what is created
    yield
    os.umask(previous)


def test_every_file_the_commands_write_is_readable_by_its_owner_only(
    randomized_trial, runner, tmp_path, usual_umask
):
    written = {
        "key": (["exports", "key", "--as", "unblinded"], tmp_path / "key.csv"),
        "bundle": (["exports", "blinded", "--as", "stat"], tmp_path / "bundle.zip"),
        "report": (
            ["reports", "safety", "--as", "dsmb", "--session", "open"],
            tmp_path / "open.pdf",
        ),
        "backup": (["db", "backup"], tmp_path / "trial.backup"),
    }
    for name, (args, out) in written.items():
        result = runner.invoke(args=[*args, "--out", str(out)])
        assert result.exit_code == 0, (name, result.output)
        assert private(out), name
    assert private(Path(f"{tmp_path / 'trial.backup'}.manifest.json"))
    # Control: a file written as before (Path.write_bytes under the usual umask) fails it.
    plain = tmp_path / "plain.csv"
    plain.write_bytes(b"x")
    assert not private(plain)


def test_an_existing_bundle_or_report_is_narrowed_to_the_owner_when_rewritten(
    randomized_trial, runner, tmp_path, usual_umask
):
    out = tmp_path / "open.pdf"
    out.write_bytes(b"old")
    out.chmod(0o644)
    result = runner.invoke(
        args=["reports", "safety", "--as", "dsmb", "--session", "open", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert private(out) and out.read_bytes().startswith(b"%PDF")


def test_the_key_command_never_overwrites_a_file(randomized_trial, runner, tmp_path):
    from sqlalchemy import func, select

    from trial.audit.models import AuditEvent

    def releases() -> int:
        count = select(func.count()).where(AuditEvent.action == "export_key")
        return db.session.scalar(count)

    out = tmp_path / "key.csv"
    out.write_text("the key already handed to the DSMB")
    result = runner.invoke(args=["exports", "key", "--as", "unblinded", "--out", str(out)])
    assert result.exit_code == 1 and "already exists" in result.output
    assert out.read_text() == "the key already handed to the DSMB"
    assert releases() == 0  # nothing released, nothing audited
    # Control: a new path is written (and audited), so the refusal above is the rule.
    fresh = tmp_path / "key-2.csv"
    result = runner.invoke(args=["exports", "key", "--as", "unblinded", "--out", str(fresh)])
    assert result.exit_code == 0 and fresh.read_bytes().startswith(b"participant_id,")
    assert releases() == 1


def test_a_refused_key_release_leaves_no_file(randomized_trial, runner, tmp_path):
    out = tmp_path / "key.csv"
    result = runner.invoke(args=["exports", "key", "--as", "stat", "--out", str(out)])
    assert result.exit_code == 1 and not out.exists()


@pytest.mark.parametrize("bad", ["junk", "sqlite-but-damaged"])
def test_a_refused_sqlite_restore_leaves_no_empty_database(tmp_path, monkeypatch, bad):
    backup = tmp_path / "bad.backup"
    backup.write_bytes(b"junk" if bad == "junk" else b"SQLite format 3\x00" + b"\x00" * 100)
    target = tmp_path / "restored" / "trial.db"

    def refused_restore():
        application = create_app(make_config(f"sqlite:///{target}", tmp_path / "instance"))
        with application.app_context():
            assert target.exists()  # the application's start opened (and so created) it
            result = application.test_cli_runner().invoke(args=["db", "restore", str(backup)])
            db.session.remove()
            db.engine.dispose()
        assert result.exit_code == 1, result.output

    refused_restore()
    assert not target.exists()
    assert not Path(f"{target}-wal").exists() and not Path(f"{target}-shm").exists()
    # Control: without the clean-up, the refused restore leaves the empty file behind.
    monkeypatch.setattr("trial.maintenance.cli.discard_empty_sqlite", lambda url: False)
    refused_restore()
    assert target.exists()


def test_a_refused_restore_never_removes_a_database_that_holds_data(app, runner, tmp_path):
    (tmp_path / "bad.backup").write_bytes(b"junk")
    result = runner.invoke(args=["db", "restore", str(tmp_path / "bad.backup")])
    assert result.exit_code == 1
    from trial.cli_support import system_actor
    from trial.sites.services import create_site  # the database still answers, intact

    create_site(system_actor(), code="S09", name="Still here", timezone="UTC")
    db.session.commit()
