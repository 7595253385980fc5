"""The blinding assessment: each respondent's guess of the arm at a visit.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06

``blinding_assessments``: a captured record (versioned, audited, correctable, may be marked
entered in error) holding one respondent's (the participant's or the investigator's) guess of
the participant's arm, an arm's name or ``dont_know``, with its confidence (``strongly`` or
``somewhat``) for a guess of an arm and none for "don't know". At most one active guess per
respondent at a visit.
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "blinding_assessments",
        sa.Column("visit_id", sa.Integer(), nullable=False),
        sa.Column("respondent", sa.String(length=20), nullable=False),
        sa.Column("guess", sa.String(length=40), nullable=False),
        sa.Column("confidence", sa.String(length=20), nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("entered_in_error", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("error_reason", sa.Text(), nullable=True),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "respondent IN ('participant', 'investigator')",
            name=op.f("ck_blinding_assessments_known_respondent"),
        ),
        sa.CheckConstraint(
            "(guess = 'dont_know' AND confidence IS NULL) OR (guess <> 'dont_know' AND "
            "confidence IS NOT NULL AND confidence IN ('strongly', 'somewhat'))",
            name=op.f("ck_blinding_assessments_confidence_of_a_guess"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_blinding_assessments_created_by_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_blinding_assessments_participant_id_participants"),
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"], ["visits.id"], name=op.f("fk_blinding_assessments_visit_id_visits")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blinding_assessments")),
    )
    with op.batch_alter_table("blinding_assessments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_blinding_assessments_participant_id"), ["participant_id"], unique=False
        )
        batch_op.create_index(
            "uq_blinding_assessments_visit_respondent",
            ["visit_id", "respondent"],
            unique=True,
            sqlite_where=sa.text("entered_in_error = 0"),
            postgresql_where=sa.text("entered_in_error = false"),
        )


def downgrade():
    with op.batch_alter_table("blinding_assessments", schema=None) as batch_op:
        batch_op.drop_index("uq_blinding_assessments_visit_respondent")
        batch_op.drop_index(batch_op.f("ix_blinding_assessments_participant_id"))
    op.drop_table("blinding_assessments")
