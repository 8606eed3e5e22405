"""Users and their roles."""

from __future__ import annotations

import datetime as dt
import hmac
import secrets

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, validates
from sqlalchemy.orm.attributes import flag_modified
from werkzeug.security import check_password_hash, generate_password_hash

from engage.extensions import db
from engage.models.base import Role, TimestampMixin, enum_check


def password_matches(password_hash: str, password: str) -> bool:
    """True when `password` is the one `password_hash` was made from (scrypt, ~50 ms)."""
    return check_password_hash(password_hash, password)


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
    #: Per-account sign-in backoff (engage.auth.service), two budgets of the same shape:
    #: attempts from browsers the user never signed in on, and from "known" browsers (those
    #: holding the signed device cookie of an earlier successful sign-in, or a session).
    #: Password checks that failed in the current window (a success resets it)...
    failed_logins: Mapped[int] = mapped_column(default=0, server_default="0")
    #: ...which began with the first of them; failures are forgotten once it is over...
    failed_since: Mapped[dt.datetime | None]
    #: ...and password checks are refused until then (UTC); None when not backing off.
    locked_until: Mapped[dt.datetime | None]
    device_failed_logins: Mapped[int] = mapped_column(default=0, server_default="0")
    device_failed_since: Mapped[dt.datetime | None]
    device_locked_until: Mapped[dt.datetime | None]

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

    def revoke_calendar_link(self) -> None:
        """The secret calendar link stops working; the user creates a new one on the account page."""
        self.calendar_token = None

    def clear_backoff(self) -> None:
        """Forget failed sign-ins and lift any pause (both budgets), e.g. after a password reset."""
        for key in ("failed_logins", "device_failed_logins"):
            setattr(self, key, 0)
            flag_modified(self, key)  # written even if this object's copy was already 0
        for key in ("failed_since", "locked_until", "device_failed_since", "device_locked_until"):
            setattr(self, key, None)
            flag_modified(self, key)

    @validates("role", "active")
    def _end_sessions_on_access_change(self, key: str, value):
        """A role change or deactivation ends the user's sessions, whoever makes it.

        Deactivation also revokes the calendar link, so reactivating the user does not bring
        an old link (perhaps copied by someone else meanwhile) back to life.
        """
        if self.id is not None and getattr(self, key) != value:
            self.end_sessions()
            if key == "active" and not value:
                self.revoke_calendar_link()
        return value

    def set_password(self, password: str) -> None:
        """Store the hash of a new password; for an existing user, also end every session
        opened with the old one, revoke the calendar link and forget failed sign-ins (a
        pause guarding the old password would only keep the user out)."""
        self.password_hash = generate_password_hash(password, method="scrypt")
        if self.id is not None:
            self.end_sessions()
            self.revoke_calendar_link()
            self.clear_backoff()

    def check_password(self, password: str) -> bool:
        return password_matches(self.password_hash, password)

    def has_role(self, minimum: Role | str) -> bool:
        """True when this user's role is `minimum` or above (viewer < analyst < admin)."""
        return Role(self.role).rank >= Role(minimum).rank

    @property
    def can_edit(self) -> bool:
        return self.has_role(Role.ANALYST)

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN.value
