"""Users and their roles."""

from __future__ import annotations

import datetime as dt
import hmac
import secrets

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, validates
from werkzeug.security import check_password_hash, generate_password_hash

from engage.extensions import db
from engage.models.base import Role, TimestampMixin, enum_check


def new_session_token() -> str:
    """A fresh random session token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


class User(UserMixin, TimestampMixin, db.Model):
    __tablename__ = "users"
    __table_args__ = (enum_check("role", Role),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Login name; stored lower-case so uniqueness ignores case.
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    role: Mapped[str] = mapped_column(sa.String(16), default=Role.ANALYST.value)
    #: Werkzeug scrypt hash; never the password itself.
    password_hash: Mapped[str] = mapped_column(sa.String(256))
    active: Mapped[bool] = mapped_column(default=True)
    last_login_at: Mapped[dt.datetime | None]
    #: Secret in the URL of the user's reminders calendar feed; None until they create one.
    calendar_token: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    #: Carried by every session and remember-me cookie (see get_id); replacing it signs the
    #: user out everywhere. Rotated on sign-out, password change, role change, deactivation.
    session_token: Mapped[str] = mapped_column(sa.String(64), default=new_session_token)
    #: Consecutive failed sign-ins since the last successful one (per-account backoff).
    failed_logins: Mapped[int] = mapped_column(default=0, server_default="0")
    #: Sign-in attempts for this account are refused until then (UTC); None when not backing off.
    locked_until: Mapped[dt.datetime | None]

    def __repr__(self) -> str:
        return f"<User {self.email}>"

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return self.active

    def get_id(self) -> str:
        """What the session and remember-me cookies carry: "<id>:<session token>"."""
        if not self.session_token:
            self.session_token = new_session_token()
        return f"{self.id}:{self.session_token}"

    def matches_session(self, token: str) -> bool:
        """True when a cookie's token is this user's current one (constant-time compare)."""
        return bool(self.session_token) and hmac.compare_digest(self.session_token.encode(), token.encode())

    def end_sessions(self) -> None:
        """Invalidate every session and remember-me cookie of this user."""
        self.session_token = new_session_token()
        #: Not a column: lets the request that rotated the token keep its own session
        #: (engage.security.keep_acting_session), and no other request.
        self.rotated_session_token = self.session_token

    @validates("role", "active")
    def _end_sessions_on_access_change(self, key: str, value):
        """A role change or deactivation ends the user's sessions, whoever makes it."""
        if self.id is not None and getattr(self, key) != value:
            self.end_sessions()
        return value

    def set_password(self, password: str) -> None:
        """Store the hash of a new password and end every session opened with the old one."""
        self.password_hash = generate_password_hash(password, method="scrypt")
        if self.id is not None:
            self.end_sessions()

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    def has_role(self, minimum: Role | str) -> bool:
        """True when this user's role is `minimum` or above (viewer < analyst < admin)."""
        return Role(self.role).rank >= Role(minimum).rank

    @property
    def can_edit(self) -> bool:
        return self.has_role(Role.ANALYST)

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN.value
