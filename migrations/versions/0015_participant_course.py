"""The participant's course: statuses derived from events, screen failure, eligibility answers,
and the reason a visit is recorded outside its window.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05

- ``participants.status`` covers the whole course (``trial.participants.models.
  PARTICIPANT_STATUSES``); "screened" becomes "screening", and each existing participant's
  status is derived again from their randomization and active dispositions, by the rule of
  ``trial.conduct.course.course_status`` (written out here in SQL, as a migration must not
  import the application).
- ``dispositions`` accepts ``screen_failure``; the one-per-participant index becomes two: one
  final disposition, and at most one treatment discontinuation beside it.
- ``eligibility_answers``: one captured record per participant and protocol criterion.
- ``visits.out_of_window_reason``.

SQLite cannot alter a CHECK constraint in place. ``dispositions`` is copied (batch mode);
``participants`` cannot be: every record table refers to it, and with foreign keys on (they
always are) dropping the old copy would fail on any trial with data. Its CHECK is rewritten in
the schema instead, the procedure SQLite documents for changes that leave the stored rows as
they are (``PRAGMA writable_schema``, then ``schema_version`` moved on); the rows are updated
to the new statuses right after.
"""

import re

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

OLD_STATUSES = ("screened", "randomized")
NEW_STATUSES = (
    "screening",
    "screen_failure",
    "randomized",
    "off_treatment",
    "completed",
    "withdrew",
    "lost_to_follow_up",
    "died",
)
OLD_DISPOSITIONS = ("completed", "discontinued_treatment", "withdrew", "lost_to_follow_up", "death")
NEW_DISPOSITIONS = ("screen_failure", *OLD_DISPOSITIONS)


def _in(values) -> str:
    return ", ".join(f"'{value}'" for value in values)


def _active(bind) -> str:
    return "entered_in_error = 0" if bind.dialect.name == "sqlite" else "entered_in_error = false"


# A final disposition decides; else a treatment discontinuation; else randomization.
DERIVED_STATUS = """
UPDATE participants SET status = COALESCE(
  (SELECT CASE d.status WHEN 'death' THEN 'died' ELSE d.status END FROM dispositions d
    WHERE d.participant_id = participants.id AND d.{active}
      AND d.status <> 'discontinued_treatment'),
  (SELECT 'off_treatment' FROM dispositions d
    WHERE d.participant_id = participants.id AND d.{active}
      AND d.status = 'discontinued_treatment'),
  CASE WHEN randomized_at IS NULL THEN 'screening' ELSE 'randomized' END)
"""


def _set_statuses(statuses, update: str) -> None:
    """Make ``ck_participants_known_status`` admit ``statuses``, and run ``update`` (which
    gives every row one of them) where the constraint allows it."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        op.drop_constraint(op.f("ck_participants_known_status"), "participants", type_="check")
        op.execute(update)
        op.create_check_constraint("known_status", "participants", f"status IN ({_in(statuses)})")
        return
    table_sql = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'participants'"
    ).scalar_one()
    new_sql, found = re.subn(
        r"CONSTRAINT ck_participants_known_status CHECK \(status IN \([^)]*\)\)",
        f"CONSTRAINT ck_participants_known_status CHECK (status IN ({_in(statuses)}))",
        table_sql,
    )
    if found != 1:
        raise RuntimeError("participants: the status CHECK constraint was not found")
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    bind.execute(
        sa.text(
            "UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = 'participants'"
        ),
        {"sql": new_sql},
    )
    bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")
    op.execute(update)  # SQLite checks a row when it is written: these now pass


def upgrade():
    bind = op.get_bind()
    _set_statuses(NEW_STATUSES, DERIVED_STATUS.format(active=_active(bind)))

    with op.batch_alter_table("dispositions", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_dispositions_known_status"), type_="check")
        batch_op.create_check_constraint("known_status", f"status IN ({_in(NEW_DISPOSITIONS)})")
        batch_op.drop_index("uq_dispositions_participant")
        for name, condition in (
            ("uq_dispositions_final", "status <> 'discontinued_treatment'"),
            ("uq_dispositions_treatment", "status = 'discontinued_treatment'"),
        ):
            batch_op.create_index(
                name,
                ["participant_id"],
                unique=True,
                sqlite_where=sa.text(f"entered_in_error = 0 AND {condition}"),
                postgresql_where=sa.text(f"entered_in_error = false AND {condition}"),
            )

    op.create_table(
        "eligibility_answers",
        sa.Column("criterion", sa.String(length=40), nullable=False),
        sa.Column("met", sa.Boolean(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("entered_in_error", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("error_reason", sa.Text(), nullable=True),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_eligibility_answers_created_by_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_eligibility_answers_participant_id_participants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_eligibility_answers")),
    )
    with op.batch_alter_table("eligibility_answers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_eligibility_answers_participant_id"), ["participant_id"], unique=False
        )
        batch_op.create_index(
            "uq_eligibility_answers_criterion",
            ["participant_id", "criterion"],
            unique=True,
            sqlite_where=sa.text("entered_in_error = 0"),
            postgresql_where=sa.text("entered_in_error = false"),
        )

    with op.batch_alter_table("visits", schema=None) as batch_op:
        batch_op.add_column(sa.Column("out_of_window_reason", sa.Text(), nullable=True))


def downgrade():
    """Back to two statuses: any participant with a randomization is "randomized", any other
    "screened"; screen-failure dispositions and a second disposition block the downgrade
    (the old one-per-participant index refuses them) rather than being dropped."""
    with op.batch_alter_table("visits", schema=None) as batch_op:
        batch_op.drop_column("out_of_window_reason")
    op.drop_table("eligibility_answers")
    with op.batch_alter_table("dispositions", schema=None) as batch_op:
        batch_op.drop_index("uq_dispositions_treatment")
        batch_op.drop_index("uq_dispositions_final")
        batch_op.create_index(
            "uq_dispositions_participant",
            ["participant_id"],
            unique=True,
            sqlite_where=sa.text("entered_in_error = 0"),
            postgresql_where=sa.text("entered_in_error = false"),
        )
        batch_op.drop_constraint(op.f("ck_dispositions_known_status"), type_="check")
        batch_op.create_check_constraint("known_status", f"status IN ({_in(OLD_DISPOSITIONS)})")
    _set_statuses(
        OLD_STATUSES,
        "UPDATE participants SET status = CASE WHEN randomized_at IS NULL THEN 'screened' "
        "ELSE 'randomized' END",
    )
