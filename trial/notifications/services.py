"""Write notifications to the outbox, in the transaction of the event behind them.

``notify`` only adds a row to the current session: the caller's commit (the view's or the
command's, with the event and its audit rows) writes it, and a rollback drops it with the
event. A notification therefore exists exactly when its event does; the sender delivers it
later, however long the SMTP server is away.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from trial.database import utcnow
from trial.extensions import db
from trial.notifications.models import OutboxMessage

log = logging.getLogger(__name__)

DEFAULT_MESSAGE_ID_DOMAIN = "trial.local"
SUBJECT_PREFIX = "[Trial] "


def message_id_domain() -> str:
    """The domain of every Message-ID: configured, else MAIL_FROM's, else trial.local."""
    configured = current_app.config.get("MAIL_MESSAGE_ID_DOMAIN")
    if configured:
        return configured
    sender = current_app.config.get("MAIL_FROM") or ""
    domain = sender.rpartition("@")[2].strip().strip(">")
    return domain or DEFAULT_MESSAGE_ID_DOMAIN


def new_message_id() -> str:
    """A Message-ID that is the same for every attempt at one message: random, so it says
    nothing about what the message is about."""
    return f"<{uuid.uuid4().hex}@{message_id_domain()}>"


def _addresses(recipients: Iterable[str]) -> list[str]:
    return sorted({address.strip() for address in recipients if address and address.strip()})


def notify(
    kind: str,
    recipients: Iterable[str],
    subject: str,
    body: str,
    *,
    event_key: str | None = None,
) -> OutboxMessage | None:
    """Add one message to the outbox in the current session (no commit, no flush).

    Nobody to tell (no address among ``recipients``) writes nothing. ``event_key`` names
    the event when it may be found again (``enqueue_once``).
    """
    addresses = _addresses(recipients)
    if not addresses:
        log.info("notification %s: no recipient has an e-mail address; nothing queued", kind)
        return None
    row = OutboxMessage(
        kind=kind,
        event_key=event_key,
        recipients=",".join(addresses),
        subject=(SUBJECT_PREFIX + subject)[:300],
        body=body,
        message_id=new_message_id(),
        created_at=utcnow(),
        attempts=0,
    )
    db.session.add(row)
    return row


def already_queued(event_key: str) -> bool:
    return (
        db.session.scalar(select(OutboxMessage.id).where(OutboxMessage.event_key == event_key))
        is not None
    )


def enqueue_once(kind, recipients, subject, body, *, event_key: str) -> bool:
    """Queue a message for an event found by a periodic check, once however often (or by
    however many senders at once) the check runs: the event key is unique, a second insert
    fails and is undone alone (a savepoint). Returns whether this call queued it."""
    if already_queued(event_key):
        return False
    try:
        with db.session.begin_nested():
            row = notify(kind, recipients, subject, body, event_key=event_key)
            if row is None:
                return False
            db.session.flush()
    except IntegrityError:
        return False  # another sender queued it first
    return True
