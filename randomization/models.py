"""The unblinded store: lists, slots with encrypted arms, kits and allocations.

Only this package reads these tables. The arm is stored encrypted (Fernet, key from
configuration), bound to its slot, so a database dump without the key reveals nothing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from trial.database import UTCDateTime
from trial.extensions import db


class RandomizationList(db.Model):
    __tablename__ = "randomization_lists"
    __table_args__ = (CheckConstraint("source IN ('generated', 'imported')", name="known_source"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(20))
    # JSON: arms, ratio, block sizes, strata factors and lengths, kit digits, generator.
    parameters: Mapped[str] = mapped_column(Text)
    seed_encrypted: Mapped[str | None] = mapped_column(Text)
    list_sha256: Mapped[str] = mapped_column(String(64))
    slot_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class RandomizationSlot(db.Model):
    __tablename__ = "randomization_slots"
    __table_args__ = (
        UniqueConstraint("stratum", "sequence", name="uq_randomization_slots_stratum_sequence"),
        CheckConstraint("sequence >= 1", name="sequence_positive"),
        CheckConstraint(
            "(participant_id IS NULL AND randomization_number IS NULL AND allocated_at IS NULL)"
            " OR (participant_id IS NOT NULL AND randomization_number IS NOT NULL"
            " AND allocated_at IS NOT NULL)",
            name="allocation_complete",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("randomization_lists.id"), index=True)
    stratum: Mapped[str] = mapped_column(String(120))
    sequence: Mapped[int] = mapped_column(Integer)
    block: Mapped[int | None] = mapped_column(Integer)
    block_size: Mapped[int | None] = mapped_column(Integer)
    arm_encrypted: Mapped[str] = mapped_column(Text)
    kit_number: Mapped[str] = mapped_column(String(20), unique=True)
    # One slot per participant, one participant per slot: both unique.
    participant_id: Mapped[int | None] = mapped_column(ForeignKey("participants.id"), unique=True)
    randomization_number: Mapped[str | None] = mapped_column(String(20), unique=True)
    allocated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    allocated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class AllocationLock(db.Model):
    """One row locked FOR UPDATE by every allocation; also holds the last number issued.

    Allocation is serialised trial-wide: the next free slot of a stratum is read only by the
    holder of this lock, so no two requests can take the same slot or skip one.
    """

    __tablename__ = "randomization_allocation_lock"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_number: Mapped[int] = mapped_column(Integer)


class RandomizationNotice(db.Model):
    """A message for the unblinded statistician and the DSMB chair; never carries an arm."""

    __tablename__ = "randomization_notices"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('stratum_low', 'stratum_exhausted', 'code_break')", name="known_kind"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    stratum: Mapped[str | None] = mapped_column(String(120))
    participant_id: Mapped[int | None] = mapped_column(ForeignKey("participants.id"))
    message: Mapped[str] = mapped_column(Text)


class MinimizationDecision(db.Model):
    """One minimization decision; its content (levels, counts, scores, draws, arm) is
    encrypted because the counts and the preferred arm reveal the arm."""

    __tablename__ = "randomization_decisions"
    __table_args__ = (CheckConstraint("sequence >= 1", name="sequence_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sequence: Mapped[int] = mapped_column(Integer, unique=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), unique=True)
    payload_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
