"""Errors of the JSON API as RFC 9457 problem details (`application/problem+json`)."""

from __future__ import annotations

from flask import Response, json, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

PROBLEM_TYPE = "application/problem+json"
#: Every path of the API starts with this.
API_PREFIX = "/api/v1/"


def is_api_request() -> bool:
    """True for a request to the JSON API (its errors are problem details, not HTML pages)."""
    return request.path.startswith(API_PREFIX) or request.path == API_PREFIX.rstrip("/")


def problem(status: int, detail: str, *, title: str | None = None, errors: dict | None = None,
            headers: dict | None = None) -> Response:
    """A problem-details response: `errors` maps a field (or `_`) to its messages."""
    body = {"type": "about:blank", "title": title or HTTP_STATUS_CODES.get(status, "Error"), "status": status,
            "detail": detail}
    if errors:
        body["errors"] = errors
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_TYPE)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _flatten(prefix: str, messages, out: dict) -> None:
    """Nested messages ({"criteria": {2: {"level": [...]}}}) as dotted fields ("criteria.2.level")."""
    if isinstance(messages, dict):
        for name, inner in messages.items():
            _flatten(f"{prefix}.{name}" if prefix else str(name), inner, out)
    elif isinstance(messages, (list, tuple)):
        for item in messages:
            if isinstance(item, (dict, list, tuple)):
                _flatten(prefix, item, out)
            else:
                out.setdefault(prefix or "_", []).append(str(item))
    else:
        out.setdefault(prefix or "_", []).append(str(messages))


def _messages(data) -> dict:
    """webargs' {"json": {"field": ["message"]}} as {"field": ["message"]} (a header or path keeps its location)."""
    out: dict = {}
    for location, fields in (data or {}).items():
        _flatten("" if location in ("json", "query") else str(location), fields, out)
    return out


def from_http_exception(error: HTTPException) -> Response:
    """Any HTTP error raised in an API view (abort, webargs validation, Flask-Limiter) as a problem."""
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    errors = _messages(data.get("messages")) if isinstance(data, dict) else {}
    detail = data.get("message") if isinstance(data, dict) else None
    if not detail:
        detail = error.description or HTTP_STATUS_CODES.get(status, "")
        if errors:
            detail = "The request has invalid values: " + "; ".join(
                f"{field}: {' '.join(msgs)}" for field, msgs in errors.items())
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="engage"'
    if status == 405 and getattr(error, "valid_methods", None):
        headers["Allow"] = ", ".join(error.valid_methods)
    response = problem(status, str(detail), errors=errors or None, headers=headers)
    limit_headers = getattr(error, "response", None)
    if limit_headers is not None and status == 429:  # Flask-Limiter's Retry-After and friends
        for key in ("Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
            if key in limit_headers.headers:
                response.headers[key] = limit_headers.headers[key]
    return response
