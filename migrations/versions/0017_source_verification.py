"""Source data verification marks on visits.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06

``source_verifications``: a monitor's mark that a visit's forms (at a version) were checked
against source. At most one standing mark per visit (a partial unique index on the marks not
voided); a later change to the visit or its forms voids the mark, which is kept with who
voided it, when and why.
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "source_verifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("visit_id", sa.Integer(), nullable=False),
        sa.Column("visit_version", sa.Integer(), nullable=False),
        sa.Column("verified_by_id", sa.Integer(), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("voided_by_id", sa.Integer(), nullable=True),
        sa.Column("void_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "(voided_at IS NULL AND voided_by_id IS NULL AND void_reason IS NULL)"
            " OR (voided_at IS NOT NULL AND voided_by_id IS NOT NULL"
            " AND void_reason IS NOT NULL AND length(void_reason) > 0)",
            name=op.f("ck_source_verifications_void_is_whole"),
        ),
        sa.CheckConstraint(
            "visit_version >= 1", name=op.f("ck_source_verifications_visit_version_positive")
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"], ["visits.id"], name=op.f("fk_source_verifications_visit_id_visits")
        ),
        sa.ForeignKeyConstraint(
            ["verified_by_id"],
            ["users.id"],
            name=op.f("fk_source_verifications_verified_by_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["voided_by_id"],
            ["users.id"],
            name=op.f("fk_source_verifications_voided_by_id_users"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_source_verifications")),
    )
    with op.batch_alter_table("source_verifications", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_source_verifications_visit_id"), ["visit_id"], unique=False
        )
        batch_op.create_index(
            "uq_source_verifications_standing",
            ["visit_id"],
            unique=True,
            sqlite_where=sa.text("voided_at IS NULL"),
            postgresql_where=sa.text("voided_at IS NULL"),
        )


def downgrade():
    with op.batch_alter_table("source_verifications", schema=None) as batch_op:
        batch_op.drop_index("uq_source_verifications_standing")
        batch_op.drop_index(batch_op.f("ix_source_verifications_visit_id"))
    op.drop_table("source_verifications")
