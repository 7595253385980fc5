"""Deliver the outbox over SMTP (Flask-Mailman's SMTP backend): at least once, each message
under the Message-ID it was given when written.

One pass takes the due messages (not sent, no back-off pending) in order, each in its own
transaction: claim the row, send it, mark it sent, commit. On PostgreSQL the claim is
``SELECT ... FOR UPDATE SKIP LOCKED``, held while the message is sent, so two senders never
send one row at once and neither waits for the other. On SQLite the row is read without a
lock (SQLite has none to take short of locking the whole database while SMTP talks), so two
senders running at once may both send it: run one sender per SQLite database.

A sender killed after the SMTP server accepted a message but before its commit leaves the
row unsent, and the next pass sends it again with the same Message-ID: a duplicate the
receiver can recognise, never a loss. A failure (the server refuses, or is away) counts an
attempt, keeps the error and puts the message back after an exponential back-off; nothing
is ever given up. A refused connection ends the pass (the rest would fail alike).
"""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass, field
from datetime import timedelta

from flask import current_app
from flask_mailman import EmailMessage, Mail
from flask_mailman.backends.smtp import EmailBackend
from sqlalchemy import or_, select

from trial.database import reading, utcnow
from trial.extensions import db
from trial.notifications.models import OutboxMessage

log = logging.getLogger(__name__)


# Failures of the session rather than of one message: they end the pass.
_SESSION_ERRORS = (
    smtplib.SMTPConnectError,
    smtplib.SMTPHeloError,
    smtplib.SMTPAuthenticationError,
    smtplib.SMTPNotSupportedError,
    smtplib.SMTPServerDisconnected,
    OSError,
)


class SmtpNotConfigured(RuntimeError):
    pass


@dataclass
class PassResult:
    sent: int = 0
    failed: int = 0
    queued_overdue: int = 0
    errors: list[str] = field(default_factory=list)
    stopped: str | None = None  # why the pass ended early (the server is away)


def smtp_configured() -> bool:
    return bool(current_app.config.get("SMTP_HOST"))


def _mail_state():
    """Flask-Mailman's settings from ours (SMTP_*), built for each pass so a changed
    configuration is used at once; installed for the messages' own lookups."""
    config = current_app.config
    state = Mail.init_mail(
        {
            "MAIL_SERVER": config["SMTP_HOST"],
            "MAIL_PORT": config.get("SMTP_PORT", 25),
            "MAIL_USERNAME": config.get("SMTP_USERNAME"),
            "MAIL_PASSWORD": config.get("SMTP_PASSWORD"),
            "MAIL_USE_TLS": bool(config.get("SMTP_STARTTLS")),
            "MAIL_USE_SSL": False,
            "MAIL_DEFAULT_SENDER": config.get("MAIL_FROM"),
            "MAIL_TIMEOUT": config.get("SMTP_TIMEOUT_SECONDS", 30),
            "MAIL_BACKEND": "smtp",
        }
    )
    current_app.extensions["mailman"] = state
    return state


class _Backend(EmailBackend):
    """Flask-Mailman's SMTP backend, returning the recipients the server refused (smtplib
    reports them when it accepted others; the stock backend drops that answer)."""

    def send_one(self, email_message) -> dict:
        self.open()
        encoding = email_message.encoding or self.mailman.default_charset
        from flask_mailman.message import sanitize_address

        return self.connection.sendmail(
            sanitize_address(email_message.from_email, encoding),
            [sanitize_address(a, encoding) for a in email_message.recipients()],
            email_message.message().as_bytes(linesep="\r\n"),
            mail_options=self.mailman.mail_options,
        )


def build_email(row: OutboxMessage, connection=None) -> EmailMessage:
    """The e-mail of an outbox row; its Message-ID is the row's, whatever the attempt."""
    return EmailMessage(
        subject=row.subject,
        body=row.body,
        from_email=current_app.config.get("MAIL_FROM"),
        to=row.recipient_list,
        headers={"Message-ID": row.message_id, "X-Trial-Notification": row.kind},
        connection=connection,
    )


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failure: the base, doubled each time, capped."""
    base = current_app.config.get("NOTIFICATIONS_RETRY_SECONDS", 60)
    cap = current_app.config.get("NOTIFICATIONS_RETRY_MAX_SECONDS", 3600)
    return timedelta(seconds=min(cap, base * 2 ** max(0, attempts - 1)))


def _next_due(after_id: int, now, *, ignore_backoff: bool, connection):
    """The next due row after ``after_id`` and its e-mail, built now; None when none is
    left. On PostgreSQL the row stays locked (skipped by other senders) until the caller
    commits; on SQLite the read is ended before SMTP is spoken, so the database's single
    write lock is never held while a server answers."""
    statement = (
        select(OutboxMessage)
        .where(OutboxMessage.sent_at.is_(None), OutboxMessage.id > after_id)
        .order_by(OutboxMessage.id)
        .limit(1)
    )
    if not ignore_backoff:
        statement = statement.where(
            or_(OutboxMessage.next_attempt_at.is_(None), OutboxMessage.next_attempt_at <= now)
        )
    if db.engine.dialect.name != "sqlite":
        statement = statement.with_for_update(skip_locked=True)
        row = db.session.scalars(statement).first()
        return None if row is None else (row, build_email(row, connection))
    with reading():
        row = db.session.scalars(statement).first()
        email = None if row is None else build_email(row, connection)
        db.session.commit()
    return None if row is None else (row, email)


def _record_failure(row: OutboxMessage, error: str, now) -> None:
    row.attempts += 1
    row.last_error = error[:2000]
    row.next_attempt_at = now + backoff(row.attempts)
    db.session.commit()
    log.warning(
        "notification %s (%s) not sent, attempt %s, retry after %s: %s",
        row.id,
        row.kind,
        row.attempts,
        f"{row.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC",
        error,
    )


def _refusals(refused: dict) -> str:
    return "; ".join(f"{address} {code} {_text(text)}" for address, (code, text) in refused.items())


def _describe(exc: Exception) -> str:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "every recipient refused: " + _refusals(exc.recipients)
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_text(exc.smtp_error)}"
    return f"{type(exc).__name__}: {exc}"


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def send_pass(*, ignore_backoff: bool = False, after_send=None) -> PassResult:
    """Queue what the overdue check finds, then try every due message once, in order.

    ``ignore_backoff``: try messages still waiting out a back-off too. ``after_send(row)``:
    called after the server accepted a message and before it is marked sent (the tests
    crash a pass there).
    """
    from trial.notifications.events import check_overdue_reports

    result = PassResult()
    result.queued_overdue = check_overdue_reports()
    db.session.commit()
    if not smtp_configured():
        raise SmtpNotConfigured(
            "SMTP_HOST is not set: nothing was sent; the outbox keeps every message "
            "(flask notifications list)."
        )
    _mail_state()
    backend = _Backend(fail_silently=False)
    last_id = 0
    try:
        while True:
            now = utcnow()
            due = _next_due(last_id, now, ignore_backoff=ignore_backoff, connection=backend)
            if due is None:
                break
            row, email = due
            last_id = row.id
            try:
                refused = backend.send_one(email)
            except _SESSION_ERRORS as exc:
                # No server, it went away, or it will not let us in: the rest would fail alike.
                backend.connection = None
                _fail(result, row, _describe(exc), now)
                result.stopped = _describe(exc)
                break
            except (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused) as exc:
                # The server answered no (a refused sender, recipients or content): this
                # message waits, the next may go.
                _fail(result, row, _describe(exc), now)
                _reset(backend)
                continue
            if after_send is not None:
                after_send(row)
            _mark_sent(result, row, refused)
    finally:
        db.session.rollback()
        try:
            backend.close()
        except (smtplib.SMTPException, OSError):
            pass
    return result


def _fail(result: PassResult, row: OutboxMessage, error: str, now) -> None:
    _record_failure(row, error, now)
    result.failed += 1
    result.errors.append(f"message {row.id}: {error}")


def _mark_sent(result: PassResult, row: OutboxMessage, refused: dict) -> None:
    row.sent_at = utcnow()
    row.attempts += 1
    row.next_attempt_at = None
    row.last_error = None
    if refused:
        # Some addresses refused for good while the others took it: kept with the row and
        # reported as a failure of the pass, but not sent again to those who have it.
        row.last_error = ("refused by the server: " + _refusals(refused))[:2000]
        result.failed += 1
        result.errors.append(f"message {row.id}: {row.last_error}")
    db.session.commit()
    result.sent += 1
    log.info(
        "notification %s (%s) sent to %s recipient(s)", row.id, row.kind, len(row.recipient_list)
    )


def _reset(backend) -> None:
    """Put the connection back in a state to send again after a refused message."""
    try:
        if backend.connection is not None:
            backend.connection.rset()
    except (smtplib.SMTPException, OSError):
        backend.connection = None
