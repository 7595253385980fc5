from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from trial.database import UTCDateTime
from trial.extensions import db
from trial.sites.models import Site

# The participant's course, derived from recorded events (``trial.conduct.course``): never
# set by hand. "randomized" is randomized and on study; "off_treatment" stopped the study
# drug and is still followed.
PARTICIPANT_STATUSES = (
    "screening",
    "screen_failure",
    "randomized",
    "off_treatment",
    "completed",
    "withdrew",
    "lost_to_follow_up",
    "died",
)


class Participant(db.Model):
    __tablename__ = "participants"
    __table_args__ = (
        UniqueConstraint("site_id", "number", name="uq_participants_site_number"),
        CheckConstraint("sex IN ('F', 'M')", name="known_sex"),
        CheckConstraint("year_of_birth BETWEEN 1900 AND 2100", name="plausible_birth_year"),
        CheckConstraint("number >= 1", name="number_positive"),
        CheckConstraint(
            f"status IN ({', '.join(repr(s) for s in PARTICIPANT_STATUSES)})",
            name="known_status",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Public identifier, e.g. S01-0007: site code and the site's registration number.
    participant_id: Mapped[str] = mapped_column(String(20), unique=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    sex: Mapped[str] = mapped_column(String(1))
    year_of_birth: Mapped[int] = mapped_column(Integer)
    consent_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), default="screening")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # Set by randomization; readable by every role. The arm itself lives only in the
    # randomization module's tables.
    randomized_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Set by an emergency code-break: every role may know THAT a participant was unblinded,
    # never to which arm.
    unblinded: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    unblinded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    site: Mapped[Site] = relationship(lazy="joined")

    @property
    def site_code(self) -> str:
        return self.site.code
