"""Randomization invariants in the database: an allocated slot never changes hands, a slot's
arm, stratum, sequence and kit never change, slots are never deleted, and minimization
decisions are append-only.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21

The application already allocates under a lock; these triggers make any other path that
tries to re-allocate or rewrite a slot (a bug, a hand-written UPDATE) fail loudly instead of
silently handing one kit to two participants.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SQLITE = (
    """CREATE TRIGGER randomization_slots_allocation_is_final
       BEFORE UPDATE ON randomization_slots
       WHEN OLD.participant_id IS NOT NULL AND (
            NEW.participant_id IS NOT OLD.participant_id
            OR NEW.randomization_number IS NOT OLD.randomization_number
            OR NEW.allocated_at IS NOT OLD.allocated_at)
       BEGIN SELECT RAISE(ABORT, 'randomization slot already allocated: refused'); END""",
    """CREATE TRIGGER randomization_slots_content_is_fixed
       BEFORE UPDATE ON randomization_slots
       WHEN NEW.arm_encrypted IS NOT OLD.arm_encrypted OR NEW.stratum IS NOT OLD.stratum
            OR NEW.sequence IS NOT OLD.sequence OR NEW.kit_number IS NOT OLD.kit_number
            OR NEW.list_id IS NOT OLD.list_id
       BEGIN SELECT RAISE(ABORT, 'randomization slot content is fixed: refused'); END""",
    """CREATE TRIGGER randomization_slots_no_delete BEFORE DELETE ON randomization_slots
       BEGIN SELECT RAISE(ABORT, 'randomization slots are never deleted: refused'); END""",
    """CREATE TRIGGER randomization_decisions_no_update BEFORE UPDATE ON randomization_decisions
       BEGIN SELECT RAISE(ABORT, 'randomization_decisions is append-only: refused'); END""",
    """CREATE TRIGGER randomization_decisions_no_delete BEFORE DELETE ON randomization_decisions
       BEGIN SELECT RAISE(ABORT, 'randomization_decisions is append-only: refused'); END""",
)

POSTGRESQL = (
    """CREATE FUNCTION randomization_slots_guard() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF TG_OP = 'DELETE' THEN
           RAISE EXCEPTION 'randomization slots are never deleted: refused'
             USING ERRCODE = 'insufficient_privilege';
         END IF;
         IF OLD.participant_id IS NOT NULL AND (
              NEW.participant_id IS DISTINCT FROM OLD.participant_id
              OR NEW.randomization_number IS DISTINCT FROM OLD.randomization_number
              OR NEW.allocated_at IS DISTINCT FROM OLD.allocated_at) THEN
           RAISE EXCEPTION 'randomization slot already allocated: refused'
             USING ERRCODE = 'insufficient_privilege';
         END IF;
         IF NEW.arm_encrypted IS DISTINCT FROM OLD.arm_encrypted
            OR NEW.stratum IS DISTINCT FROM OLD.stratum
            OR NEW.sequence IS DISTINCT FROM OLD.sequence
            OR NEW.kit_number IS DISTINCT FROM OLD.kit_number
            OR NEW.list_id IS DISTINCT FROM OLD.list_id THEN
           RAISE EXCEPTION 'randomization slot content is fixed: refused'
             USING ERRCODE = 'insufficient_privilege';
         END IF;
         RETURN NEW;
       END $$""",
    """CREATE TRIGGER randomization_slots_guard BEFORE UPDATE OR DELETE ON randomization_slots
       FOR EACH ROW EXECUTE FUNCTION randomization_slots_guard()""",
    """CREATE FUNCTION randomization_decisions_refuse_change() RETURNS trigger
       LANGUAGE plpgsql AS $$
       BEGIN
         RAISE EXCEPTION 'randomization_decisions is append-only: % refused', TG_OP
           USING ERRCODE = 'insufficient_privilege';
       END $$""",
    """CREATE TRIGGER randomization_decisions_append_only
       BEFORE UPDATE OR DELETE ON randomization_decisions
       FOR EACH ROW EXECUTE FUNCTION randomization_decisions_refuse_change()""",
)


def upgrade():
    statements = {"sqlite": SQLITE, "postgresql": POSTGRESQL}[op.get_bind().dialect.name]
    for statement in statements:
        op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER randomization_decisions_append_only ON randomization_decisions")
        op.execute("DROP FUNCTION randomization_decisions_refuse_change()")
        op.execute("DROP TRIGGER randomization_slots_guard ON randomization_slots")
        op.execute("DROP FUNCTION randomization_slots_guard()")
    else:
        for name in (
            "randomization_slots_allocation_is_final",
            "randomization_slots_content_is_fixed",
            "randomization_slots_no_delete",
            "randomization_decisions_no_update",
            "randomization_decisions_no_delete",
        ):
            op.execute(f"DROP TRIGGER {name}")
