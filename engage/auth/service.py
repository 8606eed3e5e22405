"""Signing in and out, with an audit event for every attempt."""

from __future__ import annotations

import sqlalchemy as sa
from werkzeug.security import check_password_hash, generate_password_hash

from engage import audit, clock
from engage.audit import Actor
from engage.extensions import db
from engage.models import User

#: Compared against when the email is unknown, so both failures take the same time.
_DUMMY_HASH = generate_password_hash("not-a-real-password", method="scrypt")


def find_user(email: str) -> User | None:
    return db.session.scalar(sa.select(User).where(User.email == email.strip().lower()))


def authenticate(email: str, password: str) -> User | None:
    """The active user with these credentials, or None. Records success or failure."""
    user = find_user(email)
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        reason = "unknown email"
    elif not user.check_password(password):
        reason = "wrong password"
    elif not user.active:
        reason = "inactive user"
    else:
        user.last_login_at = clock.utcnow()
        audit.record("login", f"{user.email} signed in", obj=user, actor=Actor(user.id, user.email))
        return user
    audit.record(
        "login_failed",
        f"failed sign-in for {email.strip().lower()[:200]}: {reason}",
        obj=user,
        actor=Actor(None, email.strip().lower()[:254] or "anonymous"),
    )
    return None
