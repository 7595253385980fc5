"""The protocol sets the drinks limit; the database keeps a wide guard.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05

``drinking_days.standard_drinks`` was checked against 0-60 in the database, the same number
as the protocol's default ``drinking.max_drinks_per_day``, so a protocol file could lower the
limit but never raise it. The service now checks the protocol's limit (its schema reads it
when a value is checked) and the database keeps a last guard of 0-100
(``trial.protocol.DRINKS_PER_DAY_CEILING``, which the protocol loader holds the limit to).

Batch mode: SQLite cannot alter a CHECK constraint, so the table is copied with the new one
(its partial unique index is created again); PostgreSQL alters it in place. Downgrade fails
if a day above 60 drinks has been recorded, rather than dropping it.
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

CONSTRAINT = "drinks_range"  # ck_drinking_days_drinks_range under the naming convention


def _set_range(upper: int) -> None:
    with op.batch_alter_table("drinking_days", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_drinking_days_drinks_range"), type_="check")
        batch_op.create_check_constraint(
            CONSTRAINT, f"standard_drinks >= 0 AND standard_drinks <= {upper}"
        )


def upgrade():
    _set_range(100)


def downgrade():
    _set_range(60)
