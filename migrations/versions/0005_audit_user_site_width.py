"""Widen audit_events.user_site: a monitor's sites ("S01,S02,S03") overflowed 10 characters.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21

On SQLite the batch operation rebuilds the table, so the append-only triggers are dropped
first and re-created after (SQLite keeps no trigger across a table rebuild).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SQLITE_TRIGGERS = (
    """CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
       BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
       BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: DELETE refused'); END""",
)


def _alter(length: int) -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("DROP TRIGGER audit_events_no_update")
        op.execute("DROP TRIGGER audit_events_no_delete")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column(
            "user_site",
            existing_type=sa.String(),
            type_=sa.String(length=length),
            existing_nullable=True,
        )
    if sqlite:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def upgrade():
    _alter(255)


def downgrade():
    _alter(10)
