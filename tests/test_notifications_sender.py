"""The sender's guarantees against a real SMTP server on loopback (aiosmtpd): at least once,
each message under one Message-ID for every attempt; a refusing or absent server leaves the
outbox intact (not sent, attempts counted, backed off) and the event committed; a sender
killed in the middle of a batch and started again loses nothing; the exit code says when a
delivery failed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.pool import NullPool

from config import PROJECT_ROOT
from tests.conftest import bearer
from tests.live_server import server_environment
from tests.notification_helpers import SmtpServer, free_port, outbox
from trial.auth import services as auth_services
from trial.database import utcnow
from trial.extensions import db
from trial.notifications.models import OutboxMessage
from trial.notifications.sender import backoff, send_pass
from trial.notifications.services import notify


@pytest.fixture
def smtp():
    with SmtpServer() as server:
        yield server


@pytest.fixture
def config_overrides(smtp):
    return {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": smtp.port,
        "SMTP_TIMEOUT_SECONDS": 5,
        "MAIL_FROM": "trial@trial.example",
    }


def queue(count: int) -> list[str]:
    """``count`` messages in the outbox (committed); their Message-IDs."""
    rows = [
        notify("test", [f"r{n}@people.example"], f"message {n}", f"body {n}\n")
        for n in range(count)
    ]
    ids = [row.message_id for row in rows]  # read before the commit expires them: a read
    db.session.commit()  # after it would begin a transaction (SQLite: the write lock)
    return ids


def send(runner, *args):
    return runner.invoke(args=["notifications", "send", *args])


def an_account_is_created(client, make_user, make_site) -> None:
    """The event: an admin creates an account with an address (its owner is told)."""
    make_site("S01")
    _, admin = make_user("admin", username="root")
    response = client.post(
        "/api/v1/users",
        headers=bearer(admin),
        json={"username": "cora", "role": "coordinator", "sites": ["S01"], "email": "c@x.example"},
    )
    assert response.status_code == 201, response.json


def test_message_ids_are_fixed_when_written_and_name_the_configured_domain(app):
    (first,) = queue(1)
    assert re.fullmatch(r"<[0-9a-f]{32}@trial\.example>", first)
    app.config["MAIL_MESSAGE_ID_DOMAIN"] = "ids.example"
    (second,) = queue(1)
    assert second.endswith("@ids.example>") and second != first


def test_backoff_doubles_up_to_its_cap(app):
    app.config.update(NOTIFICATIONS_RETRY_SECONDS=60, NOTIFICATIONS_RETRY_MAX_SECONDS=3600)
    assert [backoff(n).total_seconds() for n in (1, 2, 3, 7, 8, 30)] == [
        60,
        120,
        240,
        3600,
        3600,
        3600,
    ]


def test_a_pass_delivers_each_message_once_under_its_message_id(app, runner, smtp):
    ids = queue(3)
    result = send(runner)
    assert result.exit_code == 0, result.output
    assert "sent 3, failed 0, 0 waiting" in result.output
    assert [m.message_id for m in smtp.received] == ids
    assert [m.rcpt_tos for m in smtp.received] == [[f"r{n}@people.example"] for n in range(3)]
    assert all(row.sent_at is not None and row.attempts == 1 for row in outbox())
    assert send(runner).exit_code == 0 and len(smtp.received) == 3  # nothing twice


def test_a_refusing_server_leaves_the_outbox_intact_with_back_off_and_the_event_committed(
    app, client, runner, smtp, make_user, make_site
):
    smtp.recorder.refuse = "550 5.7.1 Delivery not authorized"
    an_account_is_created(client, make_user, make_site)
    before = utcnow()
    result = send(runner)
    assert result.exit_code == 1, result.output
    assert "550" in result.output
    (row,) = outbox()
    assert row.sent_at is None and row.attempts == 1 and "550" in row.last_error
    assert row.next_attempt_at >= before + timedelta(seconds=60)
    assert auth_services.get_user_by_username("cora") is not None  # the event stands

    # Waiting out its back-off, the message is not tried (and nothing failed).
    assert send(runner).exit_code == 0
    assert outbox()[0].attempts == 1
    # Tried again at once on request: refused again, the wait doubles.
    retried_at = utcnow()
    assert send(runner, "--retry-now").exit_code == 1
    (row,) = outbox()
    assert row.attempts == 2 and row.next_attempt_at >= retried_at + timedelta(seconds=120)
    # The server accepts at last: the same message, the same Message-ID.
    smtp.recorder.refuse = None
    assert send(runner, "--retry-now").exit_code == 0
    (row,) = outbox()
    assert row.sent_at is not None and row.attempts == 3 and row.last_error is None
    assert {m.message_id for m in smtp.received} == {row.message_id}
    assert len(smtp.received) == 3  # two refused, one accepted: all under one Message-ID


def test_a_server_that_is_down_leaves_the_outbox_intact_and_ends_the_pass(
    app, client, runner, make_user, make_site
):
    app.config["SMTP_PORT"] = free_port()  # nothing listens there
    an_account_is_created(client, make_user, make_site)
    queue(2)
    result = send(runner)
    assert result.exit_code == 1
    assert "pass stopped" in result.output
    rows = outbox()
    assert all(row.sent_at is None for row in rows)
    # The first was tried; the others were not (they would fail alike), all still due.
    assert [row.attempts for row in rows] == [1, 0, 0]
    assert "refused" in rows[0].last_error.lower() or "connect" in rows[0].last_error.lower()
    assert auth_services.get_user_by_username("cora") is not None


def test_some_recipients_refused_is_a_failure_but_the_others_are_not_sent_twice(app, runner, smtp):
    smtp.recorder.refuse_rcpt = {"gone@people.example"}
    notify("test", ["here@people.example", "gone@people.example"], "s", "b\n")
    db.session.commit()
    result = send(runner)
    assert result.exit_code == 1 and "gone@people.example" in result.output
    (row,) = outbox()
    assert row.sent_at is not None and "gone@people.example" in row.last_error
    assert [m.rcpt_tos for m in smtp.received] == [["here@people.example"]]
    assert send(runner).exit_code == 0 and len(smtp.received) == 1


def test_without_smtp_host_the_outbox_fills_and_the_commands_say_so(app, runner):
    app.config["SMTP_HOST"] = None
    empty = send(runner)
    assert empty.exit_code == 0 and "0 message(s) waiting" in empty.output  # nothing to fail
    queue(2)
    result = send(runner)
    assert result.exit_code == 1
    assert "SMTP_HOST is not set" in result.output and "2 message(s) waiting" in result.output
    listing = runner.invoke(args=["notifications", "list", "--body"])
    assert listing.exit_code == 0, listing.output
    assert "SMTP_HOST is not set" in listing.output and "2 message(s), 2 not sent" in listing.output
    assert "r1@people.example" in listing.output and "body 1" in listing.output
    assert all(row.sent_at is None and row.attempts == 0 for row in outbox())


def test_an_exception_after_some_sends_loses_nothing_and_the_duplicate_keeps_its_id(app, smtp):
    ids = queue(4)
    sent = []

    def crash_on_the_second(row):
        sent.append(row.id)
        if len(sent) == 2:
            raise RuntimeError("the sender dies here")

    with pytest.raises(RuntimeError):
        send_pass(after_send=crash_on_the_second)
    rows = outbox()
    assert [row.sent_at is not None for row in rows] == [True, False, False, False]
    result = send_pass()
    assert (result.sent, result.failed) == (3, 0)
    assert all(row.sent_at is not None for row in outbox())
    received = Counter(m.message_id for m in smtp.received)
    assert set(received) == set(ids)  # nothing lost
    assert received[ids[1]] == 2 and sum(received.values()) == 5  # one duplicate, same id


def test_a_sender_killed_in_the_middle_of_a_batch_and_restarted_loses_no_message(
    app, smtp, tmp_path
):
    """A real ``flask notifications send`` process, killed with SIGKILL while the server
    holds its first message unanswered; a second process then delivers everything."""
    ids = queue(3)
    db.session.remove()
    env = server_environment(
        app.config["SQLALCHEMY_DATABASE_URI"],
        tmp_path / "instance",
        {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp.port), "MAIL_FROM": "t@trial.example"},
    )
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "notifications", "send"]
    smtp.recorder.hold = True
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        assert smtp.recorder.first_arrived.wait(60), "the first message never arrived"
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    smtp.recorder.hold = False
    smtp.recorder.release.set()
    assert process.returncode == -signal.SIGKILL
    assert [m.message_id for m in smtp.received] == ids[:1]
    assert all(row.sent_at is None for row in outbox())  # the kill came before the commit
    db.session.remove()  # this test's transaction holds SQLite's write lock: end it

    restarted = subprocess.run(
        command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert all(row.sent_at is not None for row in outbox())
    received = Counter(m.message_id for m in smtp.received)
    assert set(received) == set(ids)  # at least once each
    assert received == Counter({ids[0]: 2, ids[1]: 1, ids[2]: 1})  # the resend: same id


def test_watch_keeps_sending_until_interrupted(app, smtp, tmp_path):
    db.session.remove()
    env = server_environment(
        app.config["SQLALCHEMY_DATABASE_URI"],
        tmp_path / "instance",
        {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp.port)},
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "notifications", "send", "--watch"]
        + ["--interval", "0.2"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(1)
        queue(2)  # written while it watches
        smtp.recorder.wait_for(2, timeout=60)
        assert len(smtp.received) == 2
        process.send_signal(signal.SIGINT)  # what Ctrl-C in `make serve` sends
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert "stopped sending notifications" in output


def test_a_row_another_sender_holds_is_skipped_not_sent_twice(app, runner, smtp, backend):
    """PostgreSQL: the claim is FOR UPDATE SKIP LOCKED, so a row another sender is sending
    is left to it. (SQLite has no row locks: one sender per SQLite database.)"""
    if backend != "postgresql":
        pytest.skip("row locks: PostgreSQL only")
    ids = queue(2)
    other = create_engine(app.config["SQLALCHEMY_DATABASE_URI"], poolclass=NullPool)
    with other.connect() as connection:
        transaction = connection.begin()
        first_id = db.session.scalar(
            select(OutboxMessage.id).where(OutboxMessage.message_id == ids[0])
        )
        db.session.commit()
        connection.execute(
            text("SELECT id FROM notification_outbox WHERE id = :id FOR UPDATE"), {"id": first_id}
        )
        started = time.monotonic()
        assert send(runner).exit_code == 0
        assert time.monotonic() - started < 10  # it did not wait for the lock
        assert [m.message_id for m in smtp.received] == ids[1:]
        transaction.rollback()
    other.dispose()
    assert send(runner).exit_code == 0
    assert [m.message_id for m in smtp.received] == [ids[1], ids[0]]


def test_the_environment_configures_the_sender():
    script = (
        "from config import Config as C; print(C.SMTP_HOST, C.SMTP_PORT, C.SMTP_USERNAME, "
        "C.SMTP_STARTTLS, C.MAIL_FROM, C.SAFETY_DESK_EMAILS)"
    )
    env = {
        **os.environ,
        "SMTP_HOST": "mail.example",
        "SMTP_PORT": "587",
        "SMTP_USERNAME": "u",
        "SMTP_STARTTLS": "1",
        "MAIL_FROM": "f@x.example",
        "SAFETY_DESK_EMAILS": "a@x.example,b@x.example",
    }
    output = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    ).stdout.split()
    assert output == ["mail.example", "587", "u", "True", "f@x.example", "a@x.example,b@x.example"]
