"""A user's own account: password, sessions, calendar link. Functions mutate; callers commit."""

from __future__ import annotations

import secrets

from engage import audit
from engage.auth.service import confirm_password, end_sessions
from engage.errors import FieldError
from engage.models import User
from engage.validators import password_problem


class AccountError(FieldError):
    """Refused account change; `field` names the offending input."""


def change_password(user: User, current: str, new: str) -> None:
    """Replace the password after checking the current one; every other session ends.

    A wrong current password counts towards the account's sign-in backoff.
    """
    if not confirm_password(user, current):
        audit.record("password_change_failed", f"{user.email} gave a wrong current password", obj=user)
        raise AccountError("current_password", "That is not your current password (after several wrong "
                                               "attempts, checks pause for a few minutes).")
    problem = password_problem(new)
    if problem:
        raise AccountError("new_password", problem)
    if new == current:
        raise AccountError("new_password", "The new password must differ from the current one.")
    user.set_password(new)
    audit.record("password_change", f"{user.email} changed their password; other sessions ended", obj=user)


def sign_out_everywhere(user: User) -> None:
    """End every session of the user; the request that asks keeps its own (new) session."""
    end_sessions(user, "signed out everywhere from the account page")


def new_calendar_token(user: User) -> str:
    """Create or replace the secret calendar link; the old one stops working at once."""
    user.calendar_token = secrets.token_urlsafe(32)
    return user.calendar_token
