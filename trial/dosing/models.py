from __future__ import annotations

from datetime import date

from sqlalchemy import CheckConstraint, Date, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from trial.extensions import db
from trial.records.models import CapturedRecord, active_unique_index
from trial.records.registry import register_record_type


@register_record_type
class DosingRecord(CapturedRecord, db.Model):
    """Tablets per day from a date on. Doses are in tablets, identical for both arms; the
    tablet strength (mg) is protocol data for the unblinded side only and is never stored."""

    __tablename__ = "dosing_records"
    __table_args__ = (
        CheckConstraint("tablets_per_day BETWEEN 0 AND 20", name="tablets_range"),
        CheckConstraint(
            "tablets_returned IS NULL OR tablets_returned >= 0", name="returned_not_negative"
        ),
        active_unique_index("uq_dosing_records_participant_date", "participant_id", "date"),
    )
    ENTITY = "dosing"
    AUDITED_FIELDS = ("date", "tablets_per_day", "change_reason", "tablets_returned")

    date: Mapped[date] = mapped_column(Date)
    tablets_per_day: Mapped[int] = mapped_column(Integer)
    change_reason: Mapped[str | None] = mapped_column(Text)
    tablets_returned: Mapped[int | None] = mapped_column(Integer)
