"""Data queries: a question about one captured record (or one of its fields), asked by a
monitor or data manager, or raised by an edit check when an entry is unusual (origin "system").

A query keeps its current state on one row and its history as a thread of messages; the
audit trail holds the same steps, so the thread can be checked against it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from trial.auth.models import User
from trial.database import UTCDateTime, utcnow
from trial.extensions import db
from trial.participants.models import Participant
from trial.sites.models import Site

QUERY_STATUSES = ("open", "answered", "closed")
# A query is raised by a person (manual) or by an edit check on data entry (system:
# ``trial.forms.edit_checks``); both are answered and closed the same way.
QUERY_ORIGINS = ("manual", "system")
# "note": a line the system adds to a system query's thread when the queried value changes.
MESSAGE_KINDS = ("raise", "answer", "close", "reopen", "note")


def age_in_days(since: datetime, until: datetime) -> int:
    """Completed 24-hour periods between two instants (never negative)."""
    return max((until - since).days, 0)


def _in(values) -> str:
    return ", ".join(f"'{value}'" for value in values)


class DataQuery(db.Model):
    __tablename__ = "data_queries"
    __table_args__ = (
        CheckConstraint(f"status IN ({_in(QUERY_STATUSES)})", name="known_status"),
        CheckConstraint(f"origin IN ({_in(QUERY_ORIGINS)})", name="known_origin"),
        # A system query names the edit check that raised it; a person's query names none.
        CheckConstraint(
            "(origin = 'system' AND rule IS NOT NULL) OR (origin = 'manual' AND rule IS NULL)",
            name="system_has_rule",
        ),
        CheckConstraint("length(entity) > 0", name="entity_not_empty"),
        CheckConstraint("length(record_id) > 0", name="record_id_not_empty"),
        CheckConstraint("length(text) > 0", name="text_not_empty"),
        # A closed query says who closed it and when; any other query says neither.
        CheckConstraint(
            "(status = 'closed' AND closed_at IS NOT NULL AND closed_by_id IS NOT NULL)"
            " OR (status <> 'closed' AND closed_at IS NULL AND closed_by_id IS NULL)",
            name="closed_has_closer",
        ),
        Index("ix_data_queries_site_status", "site_id", "status"),
        Index("ix_data_queries_record", "entity", "record_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The queried record by its audit name: entity "participant" with the public participant
    # id, or a registered record type with the record's id as text.
    entity: Mapped[str] = mapped_column(String(40))
    record_id: Mapped[str] = mapped_column(String(80))
    field: Mapped[str | None] = mapped_column(String(80))
    # Denormalised from the record at raise time, for site scoping and per-site counts.
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="open")
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Who raised it; for a system query, the user whose entry or correction fired the check.
    opened_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    origin: Mapped[str] = mapped_column(String(10), default="manual", server_default="manual")
    # System queries: the edit check's id, and the value it last saw (as the thread quotes
    # it), so a re-run raises nothing twice and notes only a change.
    rule: Mapped[str | None] = mapped_column(String(80))
    checked_value: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    participant: Mapped[Participant] = relationship(lazy="joined")
    site: Mapped[Site] = relationship(lazy="joined")
    opened_by: Mapped[User] = relationship(foreign_keys=[opened_by_id], lazy="joined")
    messages: Mapped[list[QueryMessage]] = relationship(
        back_populates="data_query", order_by="QueryMessage.id"
    )

    @property
    def site_code(self) -> str:
        return self.site.code

    @property
    def participant_code(self) -> str:
        return self.participant.participant_id

    @property
    def opened_by_username(self) -> str:
        return self.opened_by.username

    @property
    def age_days(self) -> int:
        """Whole days since opening (server UTC); a closed query's age stops at its closing."""
        return age_in_days(self.opened_at, self.closed_at or utcnow())


class QueryMessage(db.Model):
    """One step of a query's thread; rows are only ever added."""

    __tablename__ = "query_messages"
    __table_args__ = (
        CheckConstraint(f"kind IN ({_in(MESSAGE_KINDS)})", name="known_kind"),
        # Only closing may be silent; raising, answering and re-opening must say something.
        CheckConstraint(
            "kind = 'close' OR (text IS NOT NULL AND length(text) > 0)", name="text_unless_close"
        ),
        CheckConstraint("kind <> 'note' OR automatic", name="note_is_automatic"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    query_id: Mapped[int] = mapped_column(ForeignKey("data_queries.id"), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    text: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The user who acted; ``automatic``: the system wrote the message on that user's entry.
    by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    automatic: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    data_query: Mapped[DataQuery] = relationship(back_populates="messages")
    by: Mapped[User] = relationship(lazy="joined")

    @property
    def by_username(self) -> str:
        return self.by.username

    @property
    def by_role(self) -> str:
        return self.by.role
