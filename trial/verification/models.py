"""A monitor's source data verification mark on a visit, kept for ever: a later change to
the visit or one of its forms voids it (who, when, why), as it voids a signature."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from trial.database import UTCDateTime
from trial.extensions import db


class SourceVerification(db.Model):
    """One mark: the visit (at a version) was checked against source by a monitor.

    A visit has at most one standing mark (a partial unique index); a voided mark stays as
    the history of what was verified before the change.
    """

    __tablename__ = "source_verifications"
    __table_args__ = (
        # Voided says who, when and why, or none of them.
        CheckConstraint(
            "(voided_at IS NULL AND voided_by_id IS NULL AND void_reason IS NULL)"
            " OR (voided_at IS NOT NULL AND voided_by_id IS NOT NULL"
            " AND void_reason IS NOT NULL AND length(void_reason) > 0)",
            name="void_is_whole",
        ),
        CheckConstraint("visit_version >= 1", name="visit_version_positive"),
        Index(
            "uq_source_verifications_standing",
            "visit_id",
            unique=True,
            sqlite_where=text("voided_at IS NULL"),
            postgresql_where=text("voided_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id"), index=True)
    # The visit's version the monitor read when marking (the page's and the API's precondition).
    visit_version: Mapped[int] = mapped_column(Integer)
    verified_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    verified_at: Mapped[datetime] = mapped_column(UTCDateTime())
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    voided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    void_reason: Mapped[str | None] = mapped_column(Text)

    verifier = relationship("User", foreign_keys=[verified_by_id], lazy="joined")
    voider = relationship("User", foreign_keys=[voided_by_id], lazy="joined")

    @property
    def status(self) -> str:
        return "verified" if self.voided_at is None else "voided"

    @property
    def verified_by(self) -> str:
        return self.verifier.username

    @property
    def voided_by(self) -> str | None:
        return self.voider.username if self.voider is not None else None
