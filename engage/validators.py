"""Form validators shared by several features."""

from urllib.parse import urlsplit

from wtforms import ValidationError


def http_url(form, field):
    """Only absolute http(s) links: a javascript: or data: link must never reach a page."""
    value = (field.data or "").strip()
    if not value:
        return
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or " " in value:
        raise ValidationError("Give a full http:// or https:// address.")
    field.data = value
