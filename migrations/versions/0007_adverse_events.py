"""Adverse events, the MedDRA dictionary and expedited reports.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21

adverse_events carries the AE rules as check constraints (grade 1-5, end not before onset,
serious exactly when a seriousness criterion is ticked, grade 5 = fatal = the death
criterion, coded PT and SOC together); meddra_terms holds the sponsor's licensed dictionary
(the built-in one ships as a CSV in trial/safety); expedited_reports has one row per AE at most.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "meddra_terms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("term", sa.String(length=200), nullable=False),
        sa.Column("preferred_term", sa.String(length=200), nullable=False),
        sa.Column("soc", sa.String(length=120), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("length(preferred_term) > 0", name=op.f("ck_meddra_terms_pt_not_empty")),
        sa.CheckConstraint("length(soc) > 0", name=op.f("ck_meddra_terms_soc_not_empty")),
        sa.CheckConstraint("length(term) > 0", name=op.f("ck_meddra_terms_term_not_empty")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meddra_terms")),
        sa.UniqueConstraint("term", name=op.f("uq_meddra_terms_term")),
    )
    op.create_table(
        "adverse_events",
        sa.Column("term", sa.String(length=200), nullable=False),
        sa.Column("onset_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("grade", sa.Integer(), nullable=False),
        sa.Column("serious", sa.Boolean(), nullable=False),
        sa.Column("criterion_death", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column(
            "criterion_life_threatening", sa.Boolean(), server_default=sa.false(), nullable=False
        ),
        sa.Column(
            "criterion_hospitalisation", sa.Boolean(), server_default=sa.false(), nullable=False
        ),
        sa.Column("criterion_disability", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column(
            "criterion_congenital_anomaly", sa.Boolean(), server_default=sa.false(), nullable=False
        ),
        sa.Column(
            "criterion_other_important", sa.Boolean(), server_default=sa.false(), nullable=False
        ),
        sa.Column("relatedness", sa.String(length=20), nullable=False),
        sa.Column("action_taken", sa.String(length=20), nullable=False),
        sa.Column("outcome", sa.String(length=30), nullable=False),
        sa.Column("preferred_term", sa.String(length=200), nullable=True),
        sa.Column("system_organ_class", sa.String(length=120), nullable=True),
        sa.Column("coding_source", sa.String(length=10), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("entered_in_error", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("error_reason", sa.Text(), nullable=True),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "(coding_source = 'uncoded' AND preferred_term IS NULL AND system_organ_class IS NULL) OR (coding_source <> 'uncoded' AND preferred_term IS NOT NULL AND system_organ_class IS NOT NULL)",
            name=op.f("ck_adverse_events_coding_complete"),
        ),
        sa.CheckConstraint(
            "(grade = 5 AND outcome = 'fatal' AND criterion_death) OR (grade <> 5 AND outcome <> 'fatal' AND NOT criterion_death)",
            name=op.f("ck_adverse_events_fatal_consistent"),
        ),
        sa.CheckConstraint(
            "action_taken IN ('none', 'dose_reduced', 'drug_interrupted', 'drug_withdrawn', 'not_applicable')",
            name=op.f("ck_adverse_events_known_action"),
        ),
        sa.CheckConstraint(
            "coding_source IN ('builtin', 'sponsor', 'uncoded')",
            name=op.f("ck_adverse_events_known_coding_source"),
        ),
        sa.CheckConstraint(
            "outcome IN ('recovered', 'recovering', 'not_recovered', 'recovered_with_sequelae', 'fatal', 'unknown')",
            name=op.f("ck_adverse_events_known_outcome"),
        ),
        sa.CheckConstraint(
            "relatedness IN ('not_related', 'unlikely', 'possible', 'probable', 'definite')",
            name=op.f("ck_adverse_events_known_relatedness"),
        ),
        sa.CheckConstraint(
            "(serious AND (criterion_death OR criterion_life_threatening OR criterion_hospitalisation OR criterion_disability OR criterion_congenital_anomaly OR criterion_other_important)) OR (NOT serious AND NOT (criterion_death OR criterion_life_threatening OR criterion_hospitalisation OR criterion_disability OR criterion_congenital_anomaly OR criterion_other_important))",
            name=op.f("ck_adverse_events_serious_iff_criterion"),
        ),
        sa.CheckConstraint(
            "end_date IS NULL OR end_date >= onset_date",
            name=op.f("ck_adverse_events_end_after_onset"),
        ),
        sa.CheckConstraint("grade BETWEEN 1 AND 5", name=op.f("ck_adverse_events_grade_range")),
        sa.CheckConstraint("length(trim(term)) > 0", name=op.f("ck_adverse_events_term_not_blank")),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_adverse_events_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_adverse_events_participant_id_participants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adverse_events")),
    )
    with op.batch_alter_table("adverse_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_adverse_events_coding_source"), ["coding_source"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_adverse_events_participant_id"), ["participant_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_adverse_events_preferred_term"), ["preferred_term"], unique=False
        )

    op.create_table(
        "expedited_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("adverse_event_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('open', 'submitted', 'withdrawn')",
            name=op.f("ck_expedited_reports_known_status"),
        ),
        sa.CheckConstraint(
            "due_at > created_at", name=op.f("ck_expedited_reports_due_after_created")
        ),
        sa.ForeignKeyConstraint(
            ["adverse_event_id"],
            ["adverse_events.id"],
            name=op.f("fk_expedited_reports_adverse_event_id_adverse_events"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_expedited_reports")),
        sa.UniqueConstraint("adverse_event_id", name=op.f("uq_expedited_reports_adverse_event_id")),
    )
    with op.batch_alter_table("expedited_reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_expedited_reports_due_at"), ["due_at"], unique=False)


def downgrade():
    with op.batch_alter_table("expedited_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_expedited_reports_due_at"))

    op.drop_table("expedited_reports")
    with op.batch_alter_table("adverse_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_adverse_events_preferred_term"))
        batch_op.drop_index(batch_op.f("ix_adverse_events_participant_id"))
        batch_op.drop_index(batch_op.f("ix_adverse_events_coding_source"))

    op.drop_table("adverse_events")
    op.drop_table("meddra_terms")
