"""Accounts have an e-mail address; notifications go out through an outbox.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06

- ``users.email``: where an account's notifications go (NULL: none reach it).
- ``notification_outbox``: one row per e-mail, written in the transaction of the event that
  causes it and delivered by ``flask notifications send`` (``trial.notifications``). A row is
  never deleted; ``sent_at`` says it went. ``message_id`` is fixed when the row is written (a
  resend carries the same one); ``event_key`` makes an event found by a periodic check (an
  expedited report becoming overdue) enqueue once.
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("users", sa.Column("email", sa.String(length=254), nullable=True))
    op.create_table(
        "notification_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("event_key", sa.String(length=200), nullable=True),
        sa.Column("recipients", sa.Text(), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=2000), nullable=True),
        sa.CheckConstraint(
            "attempts >= 0", name=op.f("ck_notification_outbox_attempts_not_negative")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_outbox")),
        sa.UniqueConstraint("event_key", name=op.f("uq_notification_outbox_event_key")),
        sa.UniqueConstraint("message_id", name=op.f("uq_notification_outbox_message_id")),
    )
    op.create_index(
        "ix_notification_outbox_pending",
        "notification_outbox",
        ["sent_at", "next_attempt_at"],
        unique=False,
    )


def downgrade():
    op.drop_index("ix_notification_outbox_pending", table_name="notification_outbox")
    op.drop_table("notification_outbox")
    if op.get_bind().dialect.name == "sqlite":
        # In place (SQLite 3.35+): a batch copy of ``users`` would have to drop the table
        # every other table refers to, which foreign keys (always on) refuse.
        op.execute("ALTER TABLE users DROP COLUMN email")
    else:
        op.drop_column("users", "email")
