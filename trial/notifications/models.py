"""The outbox: each notification as a row written in the transaction of the event behind it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from trial.database import UTCDateTime
from trial.extensions import db


class OutboxMessage(db.Model):
    """One e-mail to send, kept after it is sent (``sent_at``) as the record that it went.

    ``message_id`` is fixed when the row is written, so every attempt to send it, a resend
    after a crash included, carries the same Message-ID header: a receiver can drop the
    duplicate. ``event_key``, when given, names the event the message is about (unique), so an
    event found by a periodic check (an overdue report) is enqueued once however often the
    check runs. Nothing here may depend on an arm: admins read this table (``notifications
    list``).
    """

    __tablename__ = "notification_outbox"
    __table_args__ = (
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        Index("ix_notification_outbox_pending", "sent_at", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    event_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    # Comma-separated addresses, sorted: the envelope's recipients, also the To header.
    recipients: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # NULL: due now. Set after a failed attempt, further each time (exponential back-off).
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(2000))

    @property
    def recipient_list(self) -> list[str]:
        return [address for address in self.recipients.split(",") if address]
