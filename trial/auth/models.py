from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Integer,
    String,
    Table,
    false,
)
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
    # Changes whenever someone other than the owner sets the password, or the role or sites
    # change: a code-break approval is bound to the version it was given at, so any such
    # change voids it. The owner changing their own password keeps it.
    credential_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # Whether the password was last set by the account's owner (POST /auth/password), not by
    # an admin at creation or a reset: only then may the account be approved to break codes.
    password_set_by_owner: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    password_set_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Set by an admin's reset (the admin saw the temporary password): until the owner sets
    # their own, the account's tokens reach nothing but the password change
    # (``trial.auth.policy.enforce_access_policy``).
    must_change_password: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    # When a temporary password stops opening the account; NULL for one the owner chose.
    password_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Where the account's notifications go (``trial.notifications``); NULL: none reach it.
    email: Mapped[str | None] = mapped_column(String(254))

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


class CodeBreakApproval(db.Model):
    """An unblinded statistician's approval of one investigator account to break codes.

    Bound to the account as it was when approved (role, sites, credential version): any later
    change of those voids it without touching this row, so a void approval is seen as such
    by comparison. Revoking fills the ``revoked_*`` columns; a new approval is a new row, so
    the table keeps every approval given (the audit trail keeps every step too).
    """

    __tablename__ = "code_break_approvals"
    __table_args__ = (
        CheckConstraint("role = 'investigator'", name="investigators_only"),
        CheckConstraint("approved_by_id <> user_id", name="not_self_approved"),
        CheckConstraint(
            "(revoked_at IS NULL AND revoked_by_id IS NULL AND revoke_reason IS NULL)"
            " OR (revoked_at IS NOT NULL AND revoked_by_id IS NOT NULL"
            " AND revoke_reason IS NOT NULL)",
            name="revocation_whole",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    approved_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    approved_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(String(2000))
    # The account's state the approval is bound to.
    role: Mapped[str] = mapped_column(String(40))
    sites: Mapped[str] = mapped_column(String(400))
    credential_version: Mapped[int] = mapped_column(Integer)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    revoke_reason: Mapped[str | None] = mapped_column(String(2000))

    user: Mapped[User] = relationship(foreign_keys=[user_id], lazy="joined")
    approved_by: Mapped[User] = relationship(foreign_keys=[approved_by_id], lazy="joined")
    revoked_by: Mapped[User | None] = relationship(foreign_keys=[revoked_by_id], lazy="joined")
