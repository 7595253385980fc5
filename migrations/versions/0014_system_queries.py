"""Queries raised by the system: an edit check's query says so, and its thread may hold notes.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06

``data_queries`` gains ``origin`` ('manual' for every existing query, or 'system'), ``rule``
(the edit check of a system query, and only of one) and ``checked_value`` (the value the check
last saw). ``query_messages`` gains ``automatic`` (false for every existing message) and a
fourth kind, 'note', which only the system writes.

On SQLite the new columns of data_queries are added with ALTER TABLE, each check attached to
its column: copying the table (batch mode) would drop it while query_messages refers to it,
and SQLite's foreign key check fails that even when deferred. query_messages, which nothing
refers to, is copied in batch mode to change its kinds; its append-only triggers go with the
copy, so they are dropped first and created again after (as in revisions 0005 and 0009).
PostgreSQL alters both in place.
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

SQLITE_TRIGGERS = (
    """CREATE TRIGGER query_messages_no_update BEFORE UPDATE ON query_messages
       BEGIN SELECT RAISE(ABORT, 'query_messages is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER query_messages_no_delete BEFORE DELETE ON query_messages
       BEGIN SELECT RAISE(ABORT, 'query_messages is append-only: DELETE refused'); END""",
)
KINDS_BEFORE = "kind IN ('raise', 'answer', 'close', 'reopen')"
KINDS_AFTER = "kind IN ('raise', 'answer', 'close', 'reopen', 'note')"


ORIGIN_CHECK = "origin IN ('manual', 'system')"
RULE_CHECK = "(origin = 'system' AND rule IS NOT NULL) OR (origin = 'manual' AND rule IS NULL)"


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _change_messages(change) -> None:
    if _sqlite():
        op.execute("DROP TRIGGER query_messages_no_update")
        op.execute("DROP TRIGGER query_messages_no_delete")
    with op.batch_alter_table("query_messages", schema=None) as batch_op:
        change(batch_op)
    if _sqlite():
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def _add_to_queries() -> None:
    if _sqlite():
        op.execute(
            "ALTER TABLE data_queries ADD COLUMN origin VARCHAR(10) DEFAULT 'manual' NOT NULL"
            f" CONSTRAINT ck_data_queries_known_origin CHECK ({ORIGIN_CHECK})"
        )
        op.execute(
            "ALTER TABLE data_queries ADD COLUMN rule VARCHAR(80)"
            f" CONSTRAINT ck_data_queries_system_has_rule CHECK ({RULE_CHECK})"
        )
        op.execute("ALTER TABLE data_queries ADD COLUMN checked_value VARCHAR(200)")
        return
    op.add_column(
        "data_queries",
        sa.Column("origin", sa.String(length=10), server_default="manual", nullable=False),
    )
    op.add_column("data_queries", sa.Column("rule", sa.String(length=80), nullable=True))
    op.add_column("data_queries", sa.Column("checked_value", sa.String(length=200), nullable=True))
    op.create_check_constraint("known_origin", "data_queries", ORIGIN_CHECK)
    op.create_check_constraint("system_has_rule", "data_queries", RULE_CHECK)


def _drop_from_queries() -> None:
    if not _sqlite():  # SQLite drops a column's own checks with it
        op.drop_constraint(op.f("ck_data_queries_system_has_rule"), "data_queries", type_="check")
        op.drop_constraint(op.f("ck_data_queries_known_origin"), "data_queries", type_="check")
    for column in ("checked_value", "rule", "origin"):
        op.drop_column("data_queries", column)


def _add_to_messages(batch_op) -> None:
    batch_op.add_column(
        sa.Column("automatic", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    batch_op.drop_constraint(op.f("ck_query_messages_known_kind"), type_="check")
    batch_op.create_check_constraint("known_kind", KINDS_AFTER)
    batch_op.create_check_constraint("note_is_automatic", "kind <> 'note' OR automatic")


def _drop_from_messages(batch_op) -> None:
    batch_op.drop_constraint(op.f("ck_query_messages_note_is_automatic"), type_="check")
    batch_op.drop_constraint(op.f("ck_query_messages_known_kind"), type_="check")
    batch_op.create_check_constraint("known_kind", KINDS_BEFORE)
    batch_op.drop_column("automatic")


def upgrade():
    _add_to_queries()
    _change_messages(_add_to_messages)


def downgrade():
    """Refused while a system query exists, rather than leaving it as if a person had asked."""
    system = op.get_bind().execute(
        sa.text("SELECT count(*) FROM data_queries WHERE origin = 'system'")
    )
    if system.scalar():
        raise RuntimeError(
            "data_queries holds queries raised by edit checks; downgrading would make them "
            "look raised by people."
        )
    _change_messages(_drop_from_messages)
    _drop_from_queries()
