"""Signing in and out, with an audit event for every attempt and per-account backoff.

Backoff. Each account has two failure budgets of the same shape: one for attempts from
browsers where it signed in before (they carry the known-browser cookie, see
engage.auth.browsers; a signed-in session counts too), one for every other attempt. In a
budget, after `LOGIN_BACKOFF_AFTER` failed password checks, checks pause for
`LOGIN_BACKOFF_SECONDS`, doubling with each further failure up to
`LOGIN_BACKOFF_MAX_SECONDS`. Attempts during a pause are refused unchecked and neither
count nor extend it. Failures are forgotten `LOGIN_BACKOFF_WINDOW_SECONDS` after the first
one of their window, so a stale count never turns one typo into a long pause, and a
success resets the budget it drew on. Anyone can exhaust the "other browsers" budget of an
account, but not the budget of its known browsers: the user's own browsers keep working.

Concurrency. A check is claimed before the password is hashed: one conditional UPDATE counts
the attempt as a failure in advance (and starts the pause when it reaches the threshold),
only if the budget is not paused, and is committed at once. Concurrent attempts therefore
queue on the row (PostgreSQL row lock, SQLite write lock) and see each other's claims: no
more than `LOGIN_BACKOFF_AFTER` guesses are checked however many are sent together. A
correct password then gives the claim back.

Every refusal reads the same and costs one password hash, whether or not the account exists.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import InstrumentedAttribute
from werkzeug.security import check_password_hash, generate_password_hash

from engage import audit, clock
from engage.audit import Actor
from engage.extensions import db
from engage.models import User
from engage.models.users import new_session_token, password_matches

#: Compared against when the password is not checked, so every failure takes the same time.
_DUMMY_HASH = generate_password_hash("not-a-real-password", method="scrypt")


@dataclass(frozen=True)
class Budget:
    """One failure budget of an account: its three columns and how audit events name it."""

    failures: InstrumentedAttribute
    since: InstrumentedAttribute
    until: InstrumentedAttribute
    label: str


#: Attempts from browsers where the account never signed in (anyone on the internet).
OTHER_BROWSERS = Budget(User.failed_logins, User.failed_since, User.locked_until, "")
#: Attempts from browsers where it did (the known-browser cookie) or from its own session.
KNOWN_BROWSERS = Budget(User.device_failed_logins, User.device_failed_since, User.device_locked_until,
                        " from browsers it signed in on before")
BUDGETS = (OTHER_BROWSERS, KNOWN_BROWSERS)


@dataclass(frozen=True)
class Claim:
    """A password check the account's budget allowed, counted as a failure until it succeeds."""

    failures: int
    password_hash: str
    active: bool
    #: The pause this check started, should it fail (None: it starts none).
    pauses_until: dt.datetime | None


def find_user(email: str) -> User | None:
    return db.session.scalar(sa.select(User).where(User.email == email.strip().lower()))


def backoff_delay(failures: int, after: int, first_seconds: int, max_seconds: int) -> dt.timedelta | None:
    """How long checks pause after `failures` failures in the window (None: no pause yet)."""
    if after <= 0 or failures < after:
        return None
    doublings = min(failures - after, 32)  # 2**32 seconds is far past any cap
    return dt.timedelta(seconds=min(first_seconds * 2**doublings, max_seconds))


def claim_check(user_id: int, budget: Budget, now: dt.datetime) -> Claim | None:
    """Reserve one password check for the account, or None while its budget pauses.

    Commits: the claim must be visible to concurrent attempts before the slow hash starts.
    """
    config = current_app.config
    window_start = now - dt.timedelta(seconds=config["LOGIN_BACKOFF_WINDOW_SECONDS"])
    window_over = sa.or_(budget.since.is_(None), budget.since <= window_start)
    row = db.session.execute(
        sa.update(User)
        .where(User.id == user_id, sa.or_(budget.until.is_(None), budget.until <= now))
        .values({budget.failures: sa.case((window_over, 1), else_=budget.failures + 1),
                 budget.since: sa.case((window_over, now), else_=budget.since)})
        .returning(budget.failures, User.password_hash, User.active)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    pauses_until = None
    if row is not None:
        delay = backoff_delay(row[0], config["LOGIN_BACKOFF_AFTER"], config["LOGIN_BACKOFF_SECONDS"],
                              config["LOGIN_BACKOFF_MAX_SECONDS"])
        if delay is not None:  # in the same transaction: concurrent attempts see the pause at once
            pauses_until = now + delay
            db.session.execute(sa.update(User).where(User.id == user_id).values({budget.until: pauses_until})
                               .execution_options(synchronize_session=False))
    db.session.commit()  # also ends the write transaction of a refused claim (SQLite holds a lock)
    if row is None:
        return None
    return Claim(failures=row[0], password_hash=row[1], active=row[2], pauses_until=pauses_until)


def reset_budget(user_id: int, budget: Budget) -> None:
    """A correct password: forget the budget's failures and lift its pause (caller commits)."""
    db.session.execute(sa.update(User).where(User.id == user_id)
                       .values({budget.failures: 0, budget.since: None, budget.until: None})
                       .execution_options(synchronize_session=False))


def _record_pause(user: User, budget: Budget, claim: Claim, now: dt.datetime) -> None:
    seconds = int((claim.pauses_until - now).total_seconds())
    audit.record(
        "login_backoff",
        f"sign-in for {user.email} paused for {seconds} s after {claim.failures} failed attempts{budget.label}",
        obj=user,
        changes={budget.failures.key: claim.failures, budget.until.key: claim.pauses_until.isoformat()},
        actor=Actor(None, user.email),
    )


def authenticate(email: str, password: str, known_user_ids=()) -> User | None:
    """The active user with these credentials, or None. Records success or failure.

    `known_user_ids`: accounts that signed in on this browser before (their attempts draw
    on the known-browsers budget). Commits the claim of a check (see `claim_check`).
    """
    now = clock.utcnow()
    user = find_user(email)
    claim = None
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        reason = "unknown email"
    else:
        budget = KNOWN_BROWSERS if user.id in known_user_ids else OTHER_BROWSERS
        claim = claim_check(user.id, budget, now)
        if claim is None:
            check_password_hash(_DUMMY_HASH, password)  # the password is not checked during a pause
            until = getattr(user, budget.until.key)
            reason = f"refused during backoff{budget.label} (until {until.isoformat(sep=' ') if until else '?'} UTC)"
        elif not password_matches(claim.password_hash, password):
            reason = "wrong password"
        elif not claim.active:
            reason = "inactive user"
        else:
            reset_budget(user.id, budget)
            user.last_login_at = now
            audit.record("login", f"{user.email} signed in", obj=user, actor=Actor(user.id, user.email))
            return user
        if claim is not None and claim.pauses_until is not None:
            _record_pause(user, budget, claim, now)
    audit.record(
        "login_failed",
        f"failed sign-in for {email.strip().lower()[:200]}: {reason}",
        obj=user,
        actor=Actor(None, email.strip().lower()[:254] or "anonymous"),
    )
    return None


def paused_until(user: User, now: dt.datetime, budget: Budget = OTHER_BROWSERS) -> dt.datetime | None:
    """When the budget's pause ends, or None when it is not paused."""
    until = getattr(user, budget.until.key)
    return until if until is not None and until > now else None


def confirm_password(user: User, password: str, password_hash: str | None = None) -> bool:
    """Re-check a signed-in user's password (before changing it) under the same backoff.

    A signed-in session is a known browser, so this draws on the known-browsers budget: a
    borrowed session cannot guess faster than sign-in allows, and attempts from elsewhere
    cannot stop the user from changing their password. `password_hash`: the hash to check
    against (the one the request started with), else the stored one. Commits the claim.
    """
    now = clock.utcnow()
    claim = claim_check(user.id, KNOWN_BROWSERS, now)
    if claim is None:
        check_password_hash(_DUMMY_HASH, password)
        return False
    if password_matches(password_hash or claim.password_hash, password):
        reset_budget(user.id, KNOWN_BROWSERS)
        return True
    if claim.pauses_until is not None:
        _record_pause(user, KNOWN_BROWSERS, claim, now)
    return False


def lift_pause(user: User, reason: str) -> None:
    """Forget the account's failed sign-ins and lift its pauses (an admin's unlock)."""
    was = {b.failures.key: getattr(user, b.failures.key) for b in BUDGETS}
    user.clear_backoff()
    audit.record("login_unlock", f"sign-in pause of {user.email} lifted: {reason}", obj=user, changes=was)


def replace_session_token(user: User, expected: str | None) -> bool:
    """Give `user` a new session token (ending every session) if the stored one is still
    `expected`, the token this request signed in with. False when another request replaced
    it first (the other click of a double click, a sign-out elsewhere): exactly one wins.

    On success the request that asked keeps its session (engage.security.keep_acting_session).
    """
    if not expected:
        return False
    token = new_session_token()
    result = db.session.execute(
        sa.update(User).where(User.id == user.id, User.session_token == expected).values(session_token=token)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    sa.orm.attributes.set_committed_value(user, "session_token", token)
    user.rotated_session_token = token
    return True


def end_sessions(user: User, reason: str) -> None:
    """Sign `user` out everywhere (a new session token), with an audit event."""
    user.end_sessions()
    audit.record("sessions_ended", f"all sessions of {user.email} ended: {reason}", obj=user)
