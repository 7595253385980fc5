from __future__ import annotations

from datetime import date

from sqlalchemy import Boolean, CheckConstraint, Date, ForeignKey, Index, String, Text, false, text
from sqlalchemy.orm import Mapped, mapped_column

from trial.extensions import db
from trial.records.models import CapturedRecord, active_unique_index
from trial.records.registry import register_record_type

DISPOSITIONS = (
    "screen_failure",
    "completed",
    "discontinued_treatment",
    "withdrew",
    "lost_to_follow_up",
    "death",
)
# Dispositions whose reason must be given.
DISPOSITIONS_NEEDING_REASON = ("screen_failure", "discontinued_treatment", "withdrew")
# Stopping the study drug is not leaving the study (follow-up goes on, intention to treat): a
# participant has at most one of it and at most one of the others, the final disposition.
TREATMENT_DISCONTINUATION = "discontinued_treatment"
DEVIATION_CATEGORIES = (
    "visit_out_of_window",
    "eligibility",
    "consent",
    "study_drug",
    "procedure",
    "other",
)


def _in(values) -> str:
    return ", ".join(f"'{value}'" for value in values)


def _one_active(name: str, condition: str) -> Index:
    """Unique per participant among active dispositions meeting ``condition``."""
    return Index(
        name,
        "participant_id",
        unique=True,
        sqlite_where=text(f"entered_in_error = 0 AND {condition}"),
        postgresql_where=text(f"entered_in_error = false AND {condition}"),
    )


@register_record_type
class Disposition(CapturedRecord, db.Model):
    """How the participant's course ended (the final disposition), or that they stopped the
    study drug while still followed: one of each at most (a second is refused while one
    stands)."""

    __tablename__ = "dispositions"
    __table_args__ = (
        CheckConstraint(f"status IN ({_in(DISPOSITIONS)})", name="known_status"),
        _one_active("uq_dispositions_final", f"status <> '{TREATMENT_DISCONTINUATION}'"),
        _one_active("uq_dispositions_treatment", f"status = '{TREATMENT_DISCONTINUATION}'"),
    )
    ENTITY = "disposition"
    AUDITED_FIELDS = ("status", "date", "reason")

    status: Mapped[str] = mapped_column(String(30))
    date: Mapped[date] = mapped_column(Date)
    reason: Mapped[str | None] = mapped_column(Text)


@register_record_type
class ProtocolDeviation(CapturedRecord, db.Model):
    __tablename__ = "protocol_deviations"
    __table_args__ = (
        CheckConstraint(f"category IN ({_in(DEVIATION_CATEGORIES)})", name="known_category"),
    )
    ENTITY = "protocol_deviation"
    AUDITED_FIELDS = ("category", "description", "date")

    category: Mapped[str] = mapped_column(String(30))
    description: Mapped[str] = mapped_column(Text)
    date: Mapped[date] = mapped_column(Date)
    # Raised by the system (e.g. a visit outside its window), not entered by staff.
    automatic: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id"))


@register_record_type
class EligibilityAnswer(CapturedRecord, db.Model):
    """The answer to one of the protocol's eligibility criteria for one participant: met or
    not (``eligibility.criteria`` in the protocol file names them)."""

    __tablename__ = "eligibility_answers"
    __table_args__ = (
        active_unique_index("uq_eligibility_answers_criterion", "participant_id", "criterion"),
    )
    ENTITY = "eligibility_answer"
    AUDITED_FIELDS = ("criterion", "met")

    criterion: Mapped[str] = mapped_column(String(40))
    met: Mapped[bool] = mapped_column(Boolean)
