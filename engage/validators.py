"""Form validators shared by several features."""

from urllib.parse import urlsplit

from wtforms import ValidationError

#: The password rule for every way a password is set: `flask users create`, the admin's
#: create and reset, and a user's own change on the account page.
MIN_PASSWORD_LENGTH = 12
#: Longer input is refused rather than hashed (the sign-in form accepts no more either).
MAX_PASSWORD_LENGTH = 256


def http_url_problem(value: str | None) -> str | None:
    """None for an absolute http(s) link (or nothing), else what is wrong with it."""
    value = (value or "").strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or " " in value:
        return "Give a full http:// or https:// address."
    return None


def http_url(form, field):
    """Only absolute http(s) links: a javascript: or data: link must never reach a page."""
    problem = http_url_problem(field.data)
    if problem:
        raise ValidationError(problem)
    field.data = (field.data or "").strip()


def password_problem(password: str | None) -> str | None:
    """None for an acceptable new password, else what is wrong with it."""
    password = password or ""
    if len(password) < MIN_PASSWORD_LENGTH or not password.strip():
        return f"The password must be at least {MIN_PASSWORD_LENGTH} characters long."
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"The password must be at most {MAX_PASSWORD_LENGTH} characters long."
    return None


def strong_password(form, field):
    """Form validator for a new password: the same rule as password_problem."""
    problem = password_problem(field.data)
    if problem:
        raise ValidationError(problem)
