from __future__ import annotations

from datetime import date

from sqlalchemy import Boolean, CheckConstraint, Date, ForeignKey, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from trial.extensions import db
from trial.records.models import CapturedRecord, active_unique_index
from trial.records.services import register_record_type

DISPOSITIONS = ("completed", "discontinued_treatment", "withdrew", "lost_to_follow_up", "death")
# Dispositions whose reason must be given.
DISPOSITIONS_NEEDING_REASON = ("discontinued_treatment", "withdrew")
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


@register_record_type
class Disposition(CapturedRecord, db.Model):
    """The participant's one final disposition (a second is refused while one stands)."""

    __tablename__ = "dispositions"
    __table_args__ = (
        CheckConstraint(f"status IN ({_in(DISPOSITIONS)})", name="known_status"),
        active_unique_index("uq_dispositions_participant", "participant_id"),
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
