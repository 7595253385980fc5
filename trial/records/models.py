from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, Text, false, text
from sqlalchemy.orm import Mapped, declared_attr, mapped_column, relationship

from trial.database import UTCDateTime


def active_unique_index(name: str, *columns: str) -> Index:
    """Unique among records not entered in error: a withdrawn record frees its slot."""
    return Index(
        name,
        *columns,
        unique=True,
        sqlite_where=text("entered_in_error = 0"),
        postgresql_where=text("entered_in_error = false"),
    )


class CapturedRecord:
    """Columns of every captured record (a mixin for form models).

    ``ENTITY`` names the record in the audit trail and in data queries; ``AUDITED_FIELDS`` are
    the entered values, recorded one audit row each at creation and on every change.
    """

    ENTITY: str = ""
    AUDITED_FIELDS: tuple[str, ...] = ()

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1)
    entered_in_error: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    error_reason: Mapped[str | None] = mapped_column(Text)

    @declared_attr
    def participant_id(cls) -> Mapped[int]:  # noqa: N805 - SQLAlchemy declared_attr
        return mapped_column(ForeignKey("participants.id"), index=True)

    @declared_attr
    def created_by_id(cls) -> Mapped[int]:  # noqa: N805
        return mapped_column(ForeignKey("users.id"))

    @declared_attr
    def participant(cls):  # noqa: N805
        return relationship("Participant", lazy="joined")

    @property
    def entity_id(self) -> str:
        return str(self.id)

    @property
    def participant_code(self) -> str:
        return self.participant.participant_id
