"""Code-break approvals bound to an account's credentials; login throttling leaves the database.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22

- ``code_break_approvals``: an unblinded statistician's approval of an investigator account,
  bound to its role, sites and credential version at the time.
- ``users.credential_version`` (changes when anyone but the owner sets the password, or the
  role or sites change), ``users.password_set_by_owner`` and ``users.password_set_at``.
  Existing accounts start at version 1 with ``password_set_by_owner`` false: nobody can say
  who chose their passwords, so their owners set their own before any approval.
- ``login_failures`` is dropped: Flask-Limiter counts failed logins now (in its own storage),
  and the audit trail still records each one.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column(
        "users",
        sa.Column("credential_version", sa.Integer(), server_default="1", nullable=False),
    )
    op.add_column(
        "users",
        sa.Column("password_set_by_owner", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column("users", sa.Column("password_set_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "code_break_approvals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("approved_by_id", sa.Integer(), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=2000), nullable=False),
        sa.Column("role", sa.String(length=40), nullable=False),
        sa.Column("sites", sa.String(length=400), nullable=False),
        sa.Column("credential_version", sa.Integer(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by_id", sa.Integer(), nullable=True),
        sa.Column("revoke_reason", sa.String(length=2000), nullable=True),
        sa.CheckConstraint(
            "role = 'investigator'", name=op.f("ck_code_break_approvals_investigators_only")
        ),
        sa.CheckConstraint(
            "approved_by_id <> user_id", name=op.f("ck_code_break_approvals_not_self_approved")
        ),
        sa.CheckConstraint(
            "(revoked_at IS NULL AND revoked_by_id IS NULL AND revoke_reason IS NULL)"
            " OR (revoked_at IS NOT NULL AND revoked_by_id IS NOT NULL"
            " AND revoke_reason IS NOT NULL)",
            name=op.f("ck_code_break_approvals_revocation_whole"),
        ),
        sa.ForeignKeyConstraint(
            ["approved_by_id"],
            ["users.id"],
            name=op.f("fk_code_break_approvals_approved_by_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["revoked_by_id"],
            ["users.id"],
            name=op.f("fk_code_break_approvals_revoked_by_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_code_break_approvals_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_code_break_approvals")),
    )
    op.create_index(
        op.f("ix_code_break_approvals_user_id"), "code_break_approvals", ["user_id"], unique=False
    )
    op.drop_index(op.f("ix_login_failures_username"), table_name="login_failures")
    op.drop_index(op.f("ix_login_failures_occurred_at"), table_name="login_failures")
    op.drop_table("login_failures")


def downgrade():
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=150), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failures")),
    )
    op.create_index(
        op.f("ix_login_failures_occurred_at"), "login_failures", ["occurred_at"], unique=False
    )
    op.create_index(
        op.f("ix_login_failures_username"), "login_failures", ["username"], unique=False
    )
    op.drop_index(op.f("ix_code_break_approvals_user_id"), table_name="code_break_approvals")
    op.drop_table("code_break_approvals")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("password_set_at")
        batch_op.drop_column("password_set_by_owner")
        batch_op.drop_column("credential_version")
