"""Signing in and out, with an audit event for every attempt and per-account backoff.

After `LOGIN_BACKOFF_AFTER` consecutive failures for one account, attempts for it are refused
for a delay that doubles with each further failure, from `LOGIN_BACKOFF_SECONDS` up to
`LOGIN_BACKOFF_MAX_SECONDS`. Attempts during the delay are refused unchecked and do not
extend it, so an attacker can delay a user's sign-in by at most the cap, never lock it.
Every refusal reads the same and costs one password hash, whether or not the account exists.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from flask import current_app
from werkzeug.security import check_password_hash, generate_password_hash

from engage import audit, clock
from engage.audit import Actor
from engage.extensions import db
from engage.models import User

#: Compared against when the password is not checked, so every failure takes the same time.
_DUMMY_HASH = generate_password_hash("not-a-real-password", method="scrypt")


def find_user(email: str) -> User | None:
    return db.session.scalar(sa.select(User).where(User.email == email.strip().lower()))


def backoff_delay(failures: int, after: int, first_seconds: int, max_seconds: int) -> dt.timedelta | None:
    """How long sign-in pauses after `failures` consecutive failures (None: no pause yet)."""
    if after <= 0 or failures < after:
        return None
    doublings = min(failures - after, 32)  # 2**32 seconds is far past any cap
    return dt.timedelta(seconds=min(first_seconds * 2**doublings, max_seconds))


def _register_failure(user: User, now: dt.datetime) -> dt.datetime | None:
    """Count one failure atomically; start a pause when the count reaches the threshold."""
    failures = db.session.execute(
        sa.update(User).where(User.id == user.id)
        .values(failed_logins=User.failed_logins + 1)
        .returning(User.failed_logins)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    config = current_app.config
    delay = backoff_delay(failures, config["LOGIN_BACKOFF_AFTER"], config["LOGIN_BACKOFF_SECONDS"],
                          config["LOGIN_BACKOFF_MAX_SECONDS"])
    if delay is None:
        return None
    until = now + delay
    db.session.execute(sa.update(User).where(User.id == user.id).values(locked_until=until)
                       .execution_options(synchronize_session=False))
    audit.record(
        "login_backoff",
        f"sign-in for {user.email} paused for {int(delay.total_seconds())} s after {failures} failed attempts",
        obj=user,
        changes={"failed_logins": failures, "locked_until": until.isoformat()},
        actor=Actor(None, user.email),
    )
    return until


def authenticate(email: str, password: str) -> User | None:
    """The active user with these credentials, or None. Records success or failure."""
    now = clock.utcnow()
    user = find_user(email)
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        reason = "unknown email"
    elif paused_until(user, now):
        check_password_hash(_DUMMY_HASH, password)  # the password is not checked during a pause
        reason = f"refused during backoff (until {user.locked_until.isoformat(sep=' ')} UTC)"
    elif not user.check_password(password):
        reason = "wrong password"
        _register_failure(user, now)
    elif not user.active:
        reason = "inactive user"
    else:
        user.last_login_at = now
        user.failed_logins = 0
        user.locked_until = None
        audit.record("login", f"{user.email} signed in", obj=user, actor=Actor(user.id, user.email))
        return user
    audit.record(
        "login_failed",
        f"failed sign-in for {email.strip().lower()[:200]}: {reason}",
        obj=user,
        actor=Actor(None, email.strip().lower()[:254] or "anonymous"),
    )
    return None


def paused_until(user: User, now: dt.datetime) -> dt.datetime | None:
    """When the account's sign-in pause ends, or None when it is not paused."""
    if user.locked_until is not None and user.locked_until > now:
        return user.locked_until
    return None


def confirm_password(user: User, password: str) -> bool:
    """Re-check a signed-in user's password (before changing it) under the same backoff.

    A wrong password counts as a failed sign-in, so a borrowed session cannot be used to
    guess the password faster than the sign-in page allows.
    """
    now = clock.utcnow()
    if paused_until(user, now):
        check_password_hash(_DUMMY_HASH, password)
        return False
    if user.check_password(password):
        return True
    _register_failure(user, now)
    return False


def end_sessions(user: User, reason: str) -> None:
    """Sign `user` out everywhere (a new session token), with an audit event."""
    user.end_sessions()
    audit.record("sessions_ended", f"all sessions of {user.email} ended: {reason}", obj=user)
