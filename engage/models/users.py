"""Users and their roles."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from engage.extensions import db
from engage.models.base import Role, TimestampMixin, enum_check


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

    def __repr__(self) -> str:
        return f"<User {self.email}>"

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return self.active

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password, method="scrypt")

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
