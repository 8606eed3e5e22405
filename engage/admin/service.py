"""User management shared by the admin pages and the CLI. Functions mutate; callers commit."""

from __future__ import annotations

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email

from engage.errors import FieldError
from engage.extensions import db
from engage.models import Role, User
from engage.validators import password_problem


class UserError(FieldError):
    """Refused user input; `field` names the offending input."""


def normalize_email(email: str) -> str:
    """Validated, lower-cased address, or UserError saying what is wrong with it."""
    try:
        result = validate_email((email or "").strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise UserError("email", f"Not a valid email address: {exc}") from exc
    return result.normalized.lower()


def check_password_strength(password: str) -> None:
    """UserError on the password field when `password` breaks the one password rule."""
    problem = password_problem(password)
    if problem:
        raise UserError("password", problem)


def email_taken(email: str, except_user: User | None = None) -> bool:
    query = sa.select(User.id).where(User.email == email)
    if except_user is not None and except_user.id is not None:
        query = query.where(User.id != except_user.id)
    return db.session.scalar(query) is not None


def active_admin_count() -> int:
    return db.session.scalar(
        sa.select(sa.func.count(User.id)).where(User.role == Role.ADMIN.value, User.active.is_(True))
    )


def create_user(email: str, name: str, role: str, password: str) -> User:
    email = normalize_email(email)
    if email_taken(email):
        raise UserError("email", f"A user with the email {email} already exists.")
    if role not in Role.values():
        raise UserError("role", f"Unknown role {role!r}; choose one of {', '.join(Role.values())}.")
    name = (name or "").strip()
    if not name:
        raise UserError("name", "A name is required.")
    check_password_strength(password)
    user = User(email=email, name=name, role=role, active=True)
    user.set_password(password)
    db.session.add(user)
    return user


def update_user(user: User, *, acting: User, email: str, name: str, role: str, active: bool) -> User:
    """Edit a user; an admin cannot lock out the last active admin (themselves included).

    A new role or deactivation ends the user's sessions (see User._end_sessions_on_access_change).
    """
    email = normalize_email(email)
    if email_taken(email, except_user=user):
        raise UserError("email", f"A user with the email {email} already exists.")
    if role not in Role.values():
        raise UserError("role", f"Unknown role {role!r}.")
    loses_admin = user.role == Role.ADMIN.value and user.active and (role != Role.ADMIN.value or not active)
    if loses_admin and active_admin_count() <= 1:
        raise UserError("role", "This is the last active admin; make someone else admin first.")
    if user.id == acting.id and not active:
        raise UserError("active", "You cannot deactivate your own account.")
    user.email = email
    user.name = name.strip()
    user.role = role
    user.active = active
    return user


def reset_password(user: User, password: str) -> None:
    """An admin sets a user's password; the user's sessions end (User.set_password)."""
    check_password_strength(password)
    user.set_password(password)
