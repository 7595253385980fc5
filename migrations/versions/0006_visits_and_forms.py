"""Visits and captured forms (visits, drinking calendar, OCDS, CIWA-Ar, vitals, labs, study drug, disposition, protocol deviations).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "visits",
        sa.Column("visit_code", sa.String(length=40), nullable=False),
        sa.Column("visit_date", sa.Date(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("missed_reason", sa.Text(), nullable=True),
        sa.Column("signature_status", sa.String(length=20), nullable=False),
        sa.Column("signed_by_id", sa.Integer(), nullable=True),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("signature_meaning", sa.String(length=80), nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("entered_in_error", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("error_reason", sa.Text(), nullable=True),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "signature_status IN ('unsigned', 'signed', 'invalidated')",
            name=op.f("ck_visits_known_signature_status"),
        ),
        sa.CheckConstraint(
            "status = 'missed' OR visit_date IS NOT NULL", name=op.f("ck_visits_completed_has_date")
        ),
        sa.CheckConstraint(
            "status IN ('completed', 'missed')", name=op.f("ck_visits_known_status")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_visits_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_visits_participant_id_participants"),
        ),
        sa.ForeignKeyConstraint(
            ["signed_by_id"], ["users.id"], name=op.f("fk_visits_signed_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visits")),
    )

    with op.batch_alter_table("visits", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_visits_participant_id"), ["participant_id"], unique=False
        )
        batch_op.create_index(
            "uq_visits_participant_code",
            ["participant_id", "visit_code"],
            unique=True,
            sqlite_where=sa.text("entered_in_error = 0"),
            postgresql_where=sa.text("entered_in_error = false"),
        )

    op.create_table(
        "drinking_days",
        sa.Column("visit_id", sa.Integer(), nullable=True),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("standard_drinks", sa.Float(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("entered_in_error", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("error_reason", sa.Text(), nullable=True),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "standard_drinks >= 0 AND standard_drinks <= 60",
            name=op.f("ck_drinking_days_drinks_range"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_drinking_days_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_drinking_days_participant_id_participants"),
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"], ["visits.id"], name=op.f("fk_drinking_days_visit_id_visits")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drinking_days")),
    )

    with op.batch_alter_table("drinking_days", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_drinking_days_participant_id"), ["participant_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_drinking_days_visit_id"), ["visit_id"], unique=False)
        batch_op.create_index(
            "uq_drinking_days_participant_day",
            ["participant_id", "day"],
            unique=True,
            sqlite_where=sa.text("entered_in_error = 0"),
            postgresql_where=sa.text("entered_in_error = false"),
        )

    op.create_table(
        "ocds_assessments",
        sa.Column("visit_id", sa.Integer(), nullable=False),
        sa.Column("item_1", sa.Integer(), nullable=False),
        sa.Column("item_2", sa.Integer(), nullable=False),
        sa.Column("item_3", sa.Integer(), nullable=False),
        sa.Column("item_4", sa.Integer(), nullable=False),
        sa.Column("item_5", sa.Integer(), nullable=False),
        sa.Column("item_6", sa.Integer(), nullable=False),
        sa.Column("item_7", sa.Integer(), nullable=False),
        sa.Column("item_8", sa.Integer(), nullable=False),
        sa.Column("item_9", sa.Integer(), nullable=False),
        sa.Column("item_10", sa.Integer(), nullable=False),
        sa.Column("item_11", sa.Integer(), nullable=False),
        sa.Column("item_12", sa.Integer(), nullable=False),
        sa.Column("item_13", sa.Integer(), nullable=False),
        sa.Column("item_14", sa.Integer(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("entered_in_error", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("error_reason", sa.Text(), nullable=True),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.CheckConstraint("item_1 BETWEEN 0 AND 4", name=op.f("ck_ocds_assessments_item_1_range")),
        sa.CheckConstraint(
            "item_10 BETWEEN 0 AND 4", name=op.f("ck_ocds_assessments_item_10_range")
        ),
        sa.CheckConstraint(
            "item_11 BETWEEN 0 AND 4", name=op.f("ck_ocds_assessments_item_11_range")
        ),
        sa.CheckConstraint(
            "item_12 BETWEEN 0 AND 4", name=op.f("ck_ocds_assessments_item_12_range")
        ),
        sa.CheckConstraint(
            "item_13 BETWEEN 0 AND 4", name=op.f("ck_ocds_assessments_item_13_range")
        ),
        sa.CheckConstraint(
            "item_14 BETWEEN 0 AND 4", name=op.f("ck_ocds_assessments_item_14_range")
        ),
        sa.CheckConstraint("item_2 BETWEEN 0 AND 4", name=op.f("ck_ocds_assessments_item_2_range")),
        sa.CheckConstraint("item_3 BETWEEN 0 AND 4", name=op.f("ck_ocds_assessments_item_3_range")),
        sa.CheckConstraint("item_4 BETWEEN 0 AND 4", name=op.f("ck_ocds_assessments_item_4_range")),
        sa.CheckConstraint("item_5 BETWEEN 0 AND 4", name=op.f("ck_ocds_assessments_item_5_range")),
        sa.CheckConstraint("item_6 BETWEEN 0 AND 4", name=op.f("ck_ocds_assessments_item_6_range")),
        sa.CheckConstraint("item_7 BETWEEN 0 AND 4", name=op.f("ck_ocds_assessments_item_7_range")),
        sa.CheckConstraint("item_8 BETWEEN 0 AND 4", name=op.f("ck_ocds_assessments_item_8_range")),
        sa.CheckConstraint("item_9 BETWEEN 0 AND 4", name=op.f("ck_ocds_assessments_item_9_range")),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_ocds_assessments_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_ocds_assessments_participant_id_participants"),
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"], ["visits.id"], name=op.f("fk_ocds_assessments_visit_id_visits")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ocds_assessments")),
    )

    with op.batch_alter_table("ocds_assessments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ocds_assessments_participant_id"), ["participant_id"], unique=False
        )
        batch_op.create_index(
            "uq_ocds_assessments_visit",
            ["visit_id"],
            unique=True,
            sqlite_where=sa.text("entered_in_error = 0"),
            postgresql_where=sa.text("entered_in_error = false"),
        )

    op.create_table(
        "ciwa_assessments",
        sa.Column("visit_id", sa.Integer(), nullable=False),
        sa.Column("nausea_vomiting", sa.Integer(), nullable=False),
        sa.Column("tremor", sa.Integer(), nullable=False),
        sa.Column("paroxysmal_sweats", sa.Integer(), nullable=False),
        sa.Column("anxiety", sa.Integer(), nullable=False),
        sa.Column("agitation", sa.Integer(), nullable=False),
        sa.Column("tactile_disturbances", sa.Integer(), nullable=False),
        sa.Column("auditory_disturbances", sa.Integer(), nullable=False),
        sa.Column("visual_disturbances", sa.Integer(), nullable=False),
        sa.Column("headache", sa.Integer(), nullable=False),
        sa.Column("orientation", sa.Integer(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("entered_in_error", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("error_reason", sa.Text(), nullable=True),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "agitation BETWEEN 0 AND 7", name=op.f("ck_ciwa_assessments_agitation_range")
        ),
        sa.CheckConstraint(
            "anxiety BETWEEN 0 AND 7", name=op.f("ck_ciwa_assessments_anxiety_range")
        ),
        sa.CheckConstraint(
            "auditory_disturbances BETWEEN 0 AND 7",
            name=op.f("ck_ciwa_assessments_auditory_disturbances_range"),
        ),
        sa.CheckConstraint(
            "headache BETWEEN 0 AND 7", name=op.f("ck_ciwa_assessments_headache_range")
        ),
        sa.CheckConstraint(
            "nausea_vomiting BETWEEN 0 AND 7",
            name=op.f("ck_ciwa_assessments_nausea_vomiting_range"),
        ),
        sa.CheckConstraint(
            "orientation BETWEEN 0 AND 4", name=op.f("ck_ciwa_assessments_orientation_range")
        ),
        sa.CheckConstraint(
            "paroxysmal_sweats BETWEEN 0 AND 7",
            name=op.f("ck_ciwa_assessments_paroxysmal_sweats_range"),
        ),
        sa.CheckConstraint(
            "tactile_disturbances BETWEEN 0 AND 7",
            name=op.f("ck_ciwa_assessments_tactile_disturbances_range"),
        ),
        sa.CheckConstraint("tremor BETWEEN 0 AND 7", name=op.f("ck_ciwa_assessments_tremor_range")),
        sa.CheckConstraint(
            "visual_disturbances BETWEEN 0 AND 7",
            name=op.f("ck_ciwa_assessments_visual_disturbances_range"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_ciwa_assessments_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_ciwa_assessments_participant_id_participants"),
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"], ["visits.id"], name=op.f("fk_ciwa_assessments_visit_id_visits")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ciwa_assessments")),
    )

    with op.batch_alter_table("ciwa_assessments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ciwa_assessments_participant_id"), ["participant_id"], unique=False
        )
        batch_op.create_index(
            "uq_ciwa_assessments_visit",
            ["visit_id"],
            unique=True,
            sqlite_where=sa.text("entered_in_error = 0"),
            postgresql_where=sa.text("entered_in_error = false"),
        )

    op.create_table(
        "vitals",
        sa.Column("visit_id", sa.Integer(), nullable=False),
        sa.Column("systolic_bp", sa.Integer(), nullable=False),
        sa.Column("diastolic_bp", sa.Integer(), nullable=False),
        sa.Column("heart_rate", sa.Integer(), nullable=False),
        sa.Column("weight_kg", sa.Float(), nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("entered_in_error", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("error_reason", sa.Text(), nullable=True),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "diastolic_bp < systolic_bp", name=op.f("ck_vitals_diastolic_below_systolic")
        ),
        sa.CheckConstraint(
            "diastolic_bp BETWEEN 30 AND 160", name=op.f("ck_vitals_diastolic_range")
        ),
        sa.CheckConstraint(
            "heart_rate BETWEEN 30 AND 220", name=op.f("ck_vitals_heart_rate_range")
        ),
        sa.CheckConstraint("systolic_bp BETWEEN 60 AND 260", name=op.f("ck_vitals_systolic_range")),
        sa.CheckConstraint(
            "weight_kg IS NULL OR weight_kg BETWEEN 30 AND 300", name=op.f("ck_vitals_weight_range")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_vitals_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_vitals_participant_id_participants"),
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"], ["visits.id"], name=op.f("fk_vitals_visit_id_visits")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vitals")),
    )

    with op.batch_alter_table("vitals", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_vitals_participant_id"), ["participant_id"], unique=False
        )
        batch_op.create_index(
            "uq_vitals_visit",
            ["visit_id"],
            unique=True,
            sqlite_where=sa.text("entered_in_error = 0"),
            postgresql_where=sa.text("entered_in_error = false"),
        )

    op.create_table(
        "lab_results",
        sa.Column("visit_id", sa.Integer(), nullable=False),
        sa.Column("test", sa.String(length=20), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("unit", sa.String(length=20), nullable=False),
        sa.Column("upper_limit_normal", sa.Float(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("entered_in_error", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("error_reason", sa.Text(), nullable=True),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "test IN ('GGT', 'ALT', 'AST', 'bilirubin', 'CDT')",
            name=op.f("ck_lab_results_known_test"),
        ),
        sa.CheckConstraint("upper_limit_normal > 0", name=op.f("ck_lab_results_uln_positive")),
        sa.CheckConstraint("value > 0", name=op.f("ck_lab_results_value_positive")),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_lab_results_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_lab_results_participant_id_participants"),
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"], ["visits.id"], name=op.f("fk_lab_results_visit_id_visits")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lab_results")),
    )

    with op.batch_alter_table("lab_results", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_lab_results_participant_id"), ["participant_id"], unique=False
        )
        batch_op.create_index(
            "uq_lab_results_visit_test",
            ["visit_id", "test"],
            unique=True,
            sqlite_where=sa.text("entered_in_error = 0"),
            postgresql_where=sa.text("entered_in_error = false"),
        )

    op.create_table(
        "dosing_records",
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("tablets_per_day", sa.Integer(), nullable=False),
        sa.Column("change_reason", sa.Text(), nullable=True),
        sa.Column("tablets_returned", sa.Integer(), nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("entered_in_error", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("error_reason", sa.Text(), nullable=True),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "tablets_per_day BETWEEN 0 AND 20", name=op.f("ck_dosing_records_tablets_range")
        ),
        sa.CheckConstraint(
            "tablets_returned IS NULL OR tablets_returned >= 0",
            name=op.f("ck_dosing_records_returned_not_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_dosing_records_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_dosing_records_participant_id_participants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dosing_records")),
    )

    with op.batch_alter_table("dosing_records", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dosing_records_participant_id"), ["participant_id"], unique=False
        )
        batch_op.create_index(
            "uq_dosing_records_participant_date",
            ["participant_id", "date"],
            unique=True,
            sqlite_where=sa.text("entered_in_error = 0"),
            postgresql_where=sa.text("entered_in_error = false"),
        )

    op.create_table(
        "dispositions",
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("entered_in_error", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("error_reason", sa.Text(), nullable=True),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "status IN ('completed', 'discontinued_treatment', 'withdrew', 'lost_to_follow_up', 'death')",
            name=op.f("ck_dispositions_known_status"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_dispositions_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_dispositions_participant_id_participants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispositions")),
    )

    with op.batch_alter_table("dispositions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dispositions_participant_id"), ["participant_id"], unique=False
        )
        batch_op.create_index(
            "uq_dispositions_participant",
            ["participant_id"],
            unique=True,
            sqlite_where=sa.text("entered_in_error = 0"),
            postgresql_where=sa.text("entered_in_error = false"),
        )

    op.create_table(
        "protocol_deviations",
        sa.Column("category", sa.String(length=30), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("automatic", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("visit_id", sa.Integer(), nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("entered_in_error", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("error_reason", sa.Text(), nullable=True),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "category IN ('visit_out_of_window', 'eligibility', 'consent', 'study_drug', 'procedure', 'other')",
            name=op.f("ck_protocol_deviations_known_category"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_protocol_deviations_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_protocol_deviations_participant_id_participants"),
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"], ["visits.id"], name=op.f("fk_protocol_deviations_visit_id_visits")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_protocol_deviations")),
    )

    with op.batch_alter_table("protocol_deviations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_protocol_deviations_participant_id"), ["participant_id"], unique=False
        )


def downgrade():
    op.drop_table("protocol_deviations")
    op.drop_table("dispositions")
    op.drop_table("dosing_records")
    op.drop_table("lab_results")
    op.drop_table("vitals")
    op.drop_table("ciwa_assessments")
    op.drop_table("ocds_assessments")
    op.drop_table("drinking_days")
    op.drop_table("visits")
