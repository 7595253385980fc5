"""Accounts an admin resets must change their password; the audit trail is read by time.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06

- ``users.must_change_password``: set when an admin resets the password (the admin saw the
  temporary one); until the owner sets their own, their tokens reach only the password change.
  Existing accounts start false: nothing about them changes.
- ``users.password_expires_at``: when a temporary password stops opening the account (NULL for
  a password the owner chose).
- ``ix_audit_events_occurred_at``: ``GET /audit?from=&to=`` reads a time range without
  scanning the trail. Rows are appended in time order, so the index grows at its right edge
  (one page per commit, unlike the random hash index dropped in 0009). An index only: no row
  of ``audit_events`` is touched and no hash changes; CREATE INDEX needs no table rebuild, so
  the append-only triggers stay as they are.
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column(
        "users",
        sa.Column("must_change_password", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column(
        "users", sa.Column("password_expires_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index("ix_audit_events_occurred_at", "audit_events", ["occurred_at"])


def downgrade():
    op.drop_index("ix_audit_events_occurred_at", table_name="audit_events")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("password_expires_at")
        batch_op.drop_column("must_change_password")
