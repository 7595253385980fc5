from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from trial.database import UTCDateTime
from trial.extensions import db


class Site(db.Model):
    __tablename__ = "sites"
    __table_args__ = (
        CheckConstraint("participant_counter >= 0", name="counter_not_negative"),
        CheckConstraint("planned_enrollment >= 0", name="planned_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(10), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # IANA zone: "today" for date checks is the site's local date, not the server's.
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    planned_enrollment: Mapped[int] = mapped_column(Integer)
    # Last participant number issued at this site; incremented under a row lock.
    participant_counter: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
