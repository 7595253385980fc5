"""Data queries raised by monitors on captured records.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-21

A query's thread (query_messages) is its history: triggers refuse UPDATE and DELETE (and
TRUNCATE on PostgreSQL) on it, as on the audit trail.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SQLITE_TRIGGERS = (
    """CREATE TRIGGER query_messages_no_update BEFORE UPDATE ON query_messages
       BEGIN SELECT RAISE(ABORT, 'query_messages is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER query_messages_no_delete BEFORE DELETE ON query_messages
       BEGIN SELECT RAISE(ABORT, 'query_messages is append-only: DELETE refused'); END""",
)

POSTGRESQL_TRIGGERS = (
    """CREATE FUNCTION query_messages_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         RAISE EXCEPTION 'query_messages is append-only: % refused', TG_OP
           USING ERRCODE = 'insufficient_privilege';
       END $$""",
    """CREATE TRIGGER query_messages_no_update_delete BEFORE UPDATE OR DELETE ON query_messages
       FOR EACH ROW EXECUTE FUNCTION query_messages_refuse_change()""",
    """CREATE TRIGGER query_messages_no_truncate BEFORE TRUNCATE ON query_messages
       FOR EACH STATEMENT EXECUTE FUNCTION query_messages_refuse_change()""",
)


def upgrade():
    op.create_table(
        "data_queries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entity", sa.String(length=40), nullable=False),
        sa.Column("record_id", sa.String(length=80), nullable=False),
        sa.Column("field", sa.String(length=80), nullable=True),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_by_id", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "(status = 'closed' AND closed_at IS NOT NULL AND closed_by_id IS NOT NULL)"
            " OR (status <> 'closed' AND closed_at IS NULL AND closed_by_id IS NULL)",
            name=op.f("ck_data_queries_closed_has_closer"),
        ),
        sa.CheckConstraint(
            "status IN ('open', 'answered', 'closed')", name=op.f("ck_data_queries_known_status")
        ),
        sa.CheckConstraint("length(entity) > 0", name=op.f("ck_data_queries_entity_not_empty")),
        sa.CheckConstraint(
            "length(record_id) > 0", name=op.f("ck_data_queries_record_id_not_empty")
        ),
        sa.CheckConstraint("length(text) > 0", name=op.f("ck_data_queries_text_not_empty")),
        sa.ForeignKeyConstraint(
            ["closed_by_id"], ["users.id"], name=op.f("fk_data_queries_closed_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["opened_by_id"], ["users.id"], name=op.f("fk_data_queries_opened_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_data_queries_participant_id_participants"),
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_data_queries_site_id_sites")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_queries")),
    )
    with op.batch_alter_table("data_queries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_data_queries_participant_id"), ["participant_id"], unique=False
        )
        batch_op.create_index("ix_data_queries_record", ["entity", "record_id"], unique=False)
        batch_op.create_index("ix_data_queries_site_status", ["site_id", "status"], unique=False)

    op.create_table(
        "query_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("query_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "kind = 'close' OR (text IS NOT NULL AND length(text) > 0)",
            name=op.f("ck_query_messages_text_unless_close"),
        ),
        sa.CheckConstraint(
            "kind IN ('raise', 'answer', 'close', 'reopen')",
            name=op.f("ck_query_messages_known_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["by_id"], ["users.id"], name=op.f("fk_query_messages_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["query_id"],
            ["data_queries.id"],
            name=op.f("fk_query_messages_query_id_data_queries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_query_messages")),
    )
    with op.batch_alter_table("query_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_query_messages_query_id"), ["query_id"], unique=False)

    dialect = op.get_bind().dialect.name
    for statement in {"sqlite": SQLITE_TRIGGERS, "postgresql": POSTGRESQL_TRIGGERS}[dialect]:
        op.execute(statement)


def downgrade():
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER query_messages_no_truncate ON query_messages")
        op.execute("DROP TRIGGER query_messages_no_update_delete ON query_messages")
        op.execute("DROP FUNCTION query_messages_refuse_change()")
    else:
        op.execute("DROP TRIGGER query_messages_no_update")
        op.execute("DROP TRIGGER query_messages_no_delete")
    with op.batch_alter_table("query_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_query_messages_query_id"))

    op.drop_table("query_messages")
    with op.batch_alter_table("data_queries", schema=None) as batch_op:
        batch_op.drop_index("ix_data_queries_site_status")
        batch_op.drop_index("ix_data_queries_record")
        batch_op.drop_index(batch_op.f("ix_data_queries_participant_id"))

    op.drop_table("data_queries")
