from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, Column, ForeignKey, Integer, String, Table
from sqlalchemy.orm import Mapped, mapped_column, relationship

from trial.auth.roles import SINGLE_SITE_ROLES, SITE_ROLES, Role
from trial.database import UTCDateTime
from trial.extensions import db
from trial.sites.models import Site

_ROLE_LIST = ", ".join(f"'{role.value}'" for role in Role)

user_sites = Table(
    "user_sites",
    db.metadata,
    Column("user_id", ForeignKey("users.id"), primary_key=True),
    Column("site_id", ForeignKey("sites.id"), primary_key=True),
)


class User(db.Model):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(f"role IN ({_ROLE_LIST})", name="known_role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    role: Mapped[str] = mapped_column(String(40))
    # argon2id encoded hash; NULL for token-only accounts.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    sites: Mapped[list[Site]] = relationship(
        secondary=user_sites, lazy="selectin", order_by=Site.code
    )

    @property
    def is_site_bound(self) -> bool:
        return self.role in SITE_ROLES

    @property
    def site_codes(self) -> list[str]:
        return [site.code for site in self.sites]

    @property
    def site_label(self) -> str | None:
        """The user's site(s) as recorded in the audit trail."""
        return ",".join(self.site_codes) or None

    @property
    def home_site(self) -> Site | None:
        return self.sites[0] if self.role in SINGLE_SITE_ROLES and self.sites else None

    def visible_site_ids(self) -> set[int] | None:
        """Sites whose records this user may see; None means every site."""
        if self.is_site_bound:
            return {site.id for site in self.sites}
        return None


class ApiToken(db.Model):
    """A bearer token, stored only as its SHA-256 (tokens are 32 random bytes, so a fast hash
    is enough: there is nothing to brute-force)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship(lazy="joined")


class LoginFailure(db.Model):
    """Failed logins by attempted name (known or not), for the lockout window.

    Keyed by the name typed, not by user, so an unknown name locks exactly like a real one and
    the answers cannot tell them apart. Each failure is also an audit event.
    """

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(150), index=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
