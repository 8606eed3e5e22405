"""Form validators shared by several features."""

from urllib.parse import urlsplit

from wtforms import ValidationError


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
