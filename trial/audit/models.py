from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from trial.database import UTCDateTime
from trial.extensions import db


class AuditEvent(db.Model):
    """One recorded fact: who did what to which field, when and why.

    Append-only: database triggers (see the migrations) refuse UPDATE, DELETE and TRUNCATE.
    ``seq`` is assigned by the application under the chain-head lock, so it is gapless and its
    order is the chain order; ``hash`` covers every column and the previous row's hash.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        CheckConstraint("seq >= 1", name="seq_positive"),
        Index("ix_audit_events_entity", "entity_type", "entity_id"),
        Index("ix_audit_events_entity_site", "entity_site"),
        # Time ranges (GET /audit?from=&to=); appended in time order, so cheap to keep.
        Index("ix_audit_events_occurred_at", "occurred_at"),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    user_id: Mapped[int | None] = mapped_column(Integer)
    username: Mapped[str | None] = mapped_column(String(150))
    role: Mapped[str | None] = mapped_column(String(40))
    # All of a monitor's sites, comma-separated ("S01,S02,S03").
    user_site: Mapped[str | None] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(40))
    entity_type: Mapped[str | None] = mapped_column(String(40))
    entity_id: Mapped[str | None] = mapped_column(String(80))
    entity_site: Mapped[str | None] = mapped_column(String(10))
    field: Mapped[str | None] = mapped_column(String(80))
    # JSON-encoded values: SQL NULL means "no value", '""' an empty string.
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    # Not indexed: nothing looks a row up by hash, and verifying the chain walks ``seq``.
    # (A unique index on random hashes cost every audited write a scattered index page per
    # row; dropped in revision 0009.)
    hash: Mapped[str] = mapped_column(String(64))


class AuditChainHead(db.Model):
    """The single row that serialises appends to the chain (locked FOR UPDATE)."""

    __tablename__ = "audit_chain_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(Integer)
    last_hash: Mapped[str] = mapped_column(String(64))
