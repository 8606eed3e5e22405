"""Personal access tokens for the JSON API (engage.api)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from engage.extensions import db
from engage.models.base import TimestampMixin
from engage.models.users import User


class ApiToken(TimestampMixin, db.Model):
    """A bearer token a user made on the account page; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        sa.CheckConstraint("scope IN ('read', 'read_write')", name="scope_valid"),
    )

    #: Scopes: `read` answers GET only; `read_write` may also change what the user's role allows.
    SCOPES = ("read", "read_write")

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: The owner's label for it ("Power BI refresh").
    name: Mapped[str] = mapped_column(sa.String(120))
    #: Hex SHA-256 of the whole token; the token itself is shown once and never stored.
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    #: The token's first characters, shown in the list so the owner can tell tokens apart.
    prefix: Mapped[str] = mapped_column(sa.String(16))
    scope: Mapped[str] = mapped_column(sa.String(16))
    #: Last day the token works (inclusive, UTC).
    expires_on: Mapped[dt.date]
    #: Last request authenticated with it (UTC, updated at most once a minute).
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]

    user: Mapped[User] = relationship()

    def __repr__(self) -> str:
        return f"<ApiToken {self.id} {self.prefix} {self.scope}>"

    @property
    def can_write(self) -> bool:
        return self.scope == "read_write"

    def is_usable(self, today: dt.date) -> bool:
        """Not revoked, not expired, and its owner still active."""
        return self.revoked_at is None and today <= self.expires_on and self.user.active
