"""Drop the unique index on audit_events.hash: it cost every audited write and checked nothing.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-21

Nothing looks a row up by its hash, and the chain needs no index to be verified (``audit
verify`` recomputes every hash in ``seq`` order, which the primary key keeps). A hash is
random, so each audit row went to a random page of that index: a visit's ~80 rows dirtied
~80 index pages, written at each commit (on a 600-participant bench trial SQLite's commit
took 2.7 ms with the index and 1.5 ms without it; the cost grows with the trail).

On SQLite the batch operation rebuilds the table, so the append-only triggers are dropped
first and re-created after, as in revision 0005.
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SQLITE_TRIGGERS = (
    """CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
       BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
       BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: DELETE refused'); END""",
)


def _rebuild(change) -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("DROP TRIGGER audit_events_no_update")
        op.execute("DROP TRIGGER audit_events_no_delete")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        change(batch_op)
    if sqlite:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def upgrade():
    _rebuild(lambda batch_op: batch_op.drop_constraint("uq_audit_events_hash", type_="unique"))


def downgrade():
    _rebuild(lambda batch_op: batch_op.create_unique_constraint("uq_audit_events_hash", ["hash"]))
