"""``flask notifications send [--watch]`` delivers the outbox; ``list`` shows it."""

from __future__ import annotations

import signal
import sys
import time

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import func, select

from trial.database import reading
from trial.extensions import db
from trial.notifications.models import OutboxMessage
from trial.notifications.sender import SmtpNotConfigured, send_pass

notifications_cli = AppGroup("notifications", help="Deliver and list e-mail notifications.")


def _pending_count() -> int:
    return db.session.scalar(
        select(func.count()).select_from(OutboxMessage).where(OutboxMessage.sent_at.is_(None))
    )


def _one_pass(retry_now: bool, quiet_if=None) -> tuple[bool, str]:
    """Run one pass and say what it did (unless it is ``quiet_if``, the last pass's words:
    a watching sender says nothing while nothing changes); return whether every delivery
    tried succeeded, and the words."""
    try:
        result = send_pass(ignore_backoff=retry_now)
    except SmtpNotConfigured as exc:
        pending = _pending_count()
        db.session.rollback()
        words = f"{exc} {pending} message(s) waiting."
        if words != quiet_if:
            click.echo(words, err=True)
        return pending == 0, words  # a failure only when something waits to go
    pending = _pending_count()
    db.session.rollback()
    words = f"sent {result.sent}, failed {result.failed}, {pending} waiting"
    idle = not (result.sent or result.failed or result.queued_overdue)
    if quiet_if is not None and idle and quiet_if.endswith(f" {pending} waiting"):
        return True, words
    if result.queued_overdue:
        click.echo(f"queued {result.queued_overdue} overdue expedited report message(s)")
    click.echo(words)
    for error in result.errors:
        click.echo(f"  {error}", err=True)
    if result.stopped:
        click.echo(f"pass stopped: {result.stopped}", err=True)
    return result.failed == 0 and result.stopped is None, words


@notifications_cli.command("send")
@click.option("--watch", is_flag=True, help="Keep sending: a pass every --interval seconds.")
@click.option(
    "--interval",
    type=float,
    default=None,
    help="Seconds between passes with --watch (NOTIFICATIONS_WATCH_SECONDS, 30).",
)
@click.option(
    "--retry-now", is_flag=True, help="Try messages waiting out a back-off too (this pass)."
)
def send_command(watch, interval, retry_now):
    """Deliver the due messages of the outbox over SMTP (one pass; exit 1 if one failed).

    Before delivering, queues a message for each expedited report that became overdue.
    Without SMTP_HOST nothing is sent, and the command fails if a message is waiting; the
    outbox keeps everything.
    """
    if not watch:
        sys.exit(0 if _one_pass(retry_now)[0] else 1)
    interval = interval or current_app.config.get("NOTIFICATIONS_WATCH_SECONDS", 30)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    click.echo(f"sending notifications every {interval:g} s (Ctrl-C stops)")
    said = None
    try:
        while not stopping:
            try:
                said = _one_pass(retry_now, quiet_if=said)[1]
            except Exception as exc:  # keep watching: the database may be back next time
                db.session.rollback()
                said = None
                click.echo(f"pass failed: {type(exc).__name__}: {exc}", err=True)
            end = time.monotonic() + interval
            while not stopping and time.monotonic() < end:
                time.sleep(min(0.5, interval))
    except KeyboardInterrupt:
        pass
    click.echo("stopped sending notifications")


@notifications_cli.command("list")
@click.option(
    "--status",
    type=click.Choice(["all", "pending", "sent", "failing"]),
    default="all",
    show_default=True,
)
@click.option("--limit", type=int, default=50, show_default=True, help="Newest first.")
@click.option("--body", "show_body", is_flag=True, help="Print each message's text too.")
def list_command(status, limit, show_body):
    """Show the outbox, newest first: kind, recipients, state, attempts, Message-ID."""
    statement = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
    if status == "pending":
        statement = statement.where(OutboxMessage.sent_at.is_(None))
    elif status == "sent":
        statement = statement.where(OutboxMessage.sent_at.is_not(None))
    elif status == "failing":
        statement = statement.where(OutboxMessage.sent_at.is_(None), OutboxMessage.attempts > 0)
    with reading():
        rows = list(db.session.scalars(statement))
        pending = _pending_count()
        total = db.session.scalar(select(func.count()).select_from(OutboxMessage))
        if not current_app.config.get("SMTP_HOST"):
            click.echo("SMTP_HOST is not set: messages stay in the outbox until it is.")
        click.echo(f"{total} message(s), {pending} not sent")
        for row in rows:
            if row.sent_at is not None:
                state = f"sent {row.sent_at:%Y-%m-%d %H:%M:%S} UTC"
            elif row.attempts:
                retry = row.next_attempt_at
                state = f"failing, retry after {retry:%Y-%m-%d %H:%M:%S} UTC" if retry else "due"
            else:
                state = "pending"
            click.echo(
                f"#{row.id} {row.created_at:%Y-%m-%d %H:%M:%S} UTC {row.kind} "
                f"[{state}; attempts {row.attempts}] {row.message_id}"
            )
            click.echo(f"  to: {', '.join(row.recipient_list)}")
            click.echo(f"  subject: {row.subject}")
            if row.last_error:
                click.echo(f"  last error: {row.last_error}")
            if show_body:
                click.echo("  " + row.body.rstrip().replace("\n", "\n  "))
        db.session.rollback()
