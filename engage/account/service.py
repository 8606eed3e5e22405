"""A user's own account: password, sessions, calendar link. Functions mutate; callers commit.

The changes that replace the session token are conditional on the token the request signed
in with, so a double click (or two tabs) changes things once and the request that loses the
race never hands its browser a dead cookie.
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from werkzeug.security import generate_password_hash

from engage import audit
from engage.auth.service import KNOWN_BROWSERS, OTHER_BROWSERS, confirm_password, replace_session_token
from engage.errors import FieldError
from engage.extensions import db
from engage.models import User
from engage.models.users import new_session_token, password_matches
from engage.validators import password_problem


class AccountError(FieldError):
    """Refused account change; `field` names the offending input."""


class SessionReplaced(Exception):
    """Another request replaced the user's session token while this one ran: nothing changed."""


def change_password(user: User, acting_token: str | None, current: str, new: str) -> None:
    """Replace the password after checking the current one; every other session ends and the
    calendar link is revoked (a password change is what one does after a suspected leak).

    A wrong current password counts towards the account's sign-in backoff (its known-browsers
    budget). `acting_token` is the session token the request signed in with: the change is
    made only while it is still the stored one. When a concurrent request made the very same
    change first (a double click), this one is signed in with the new token like a sign-in
    with the new password; any other concurrent change raises SessionReplaced.
    Commits the check of the current password (see engage.auth.service.claim_check).
    """
    known_hash = user.password_hash  # as this request found it, before any commit reloads it
    if not confirm_password(user, current, password_hash=known_hash):
        audit.record("password_change_failed", f"{user.email} gave a wrong current password", obj=user)
        raise AccountError("current_password", "That is not your current password (after several wrong "
                                               "attempts, checks pause for a few minutes).")
    problem = password_problem(new)
    if problem:
        raise AccountError("new_password", problem)
    if new == current:
        raise AccountError("new_password", "The new password must differ from the current one.")
    token = new_session_token()
    cleared = {column.key: 0 if column is budget.failures else None
               for budget in (OTHER_BROWSERS, KNOWN_BROWSERS) for column in (budget.failures, budget.since, budget.until)}
    changed = db.session.execute(
        sa.update(User).where(User.id == user.id, User.session_token == acting_token, User.password_hash == known_hash)
        .values(password_hash=generate_password_hash(new, method="scrypt"), session_token=token, calendar_token=None,
                **cleared)
        .execution_options(synchronize_session=False)
    ).rowcount == 1
    db.session.expire(user)
    if not changed:
        if user.active and password_matches(user.password_hash, new):
            user.rotated_session_token = user.session_token  # the same change: keep this browser signed in
            return
        raise SessionReplaced
    user.rotated_session_token = token
    audit.record("password_change", f"{user.email} changed their password; other sessions and the calendar "
                                    "link ended", obj=user)


def sign_out_everywhere(user: User, acting_token: str | None) -> bool:
    """End every other session and the calendar link; the request that asks keeps its session.

    False when a concurrent request replaced the token first (nothing changed here).
    """
    if not replace_session_token(user, acting_token):
        return False
    had_link = user.calendar_token is not None
    user.revoke_calendar_link()
    audit.record("sessions_ended", f"all sessions of {user.email} ended: signed out everywhere from the account "
                                   f"page{' (calendar link revoked)' if had_link else ''}", obj=user)
    return True


def new_calendar_token(user: User) -> str:
    """Create or replace the secret calendar link; the old one stops working at once."""
    user.calendar_token = secrets.token_urlsafe(32)
    return user.calendar_token
