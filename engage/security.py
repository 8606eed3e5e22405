"""Access control: one decorator declares who may use a view; everything else is denied.

`require_role("viewer")` lets any signed-in user read; `write=` sets the role needed for
unsafe methods (POST, PUT, PATCH, DELETE). `public` marks the few views open to everyone.
`enforce_access` runs before every request and refuses a view that declares nothing, so a
forgotten decorator fails closed.
"""

from __future__ import annotations

from functools import wraps
from urllib.parse import urlsplit

from flask import abort, current_app, request
from flask_login import current_user

from engage.models.base import Role

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
ACCESS_ATTR = "_engage_access"


def require_role(read: Role | str, write: Role | str | None = None):
    """Declare the minimum role to read a view and (optionally) a stricter one to change."""
    read_role = Role(read)
    write_role = Role(write) if write is not None else read_role

    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            return view(*args, **kwargs)

        setattr(wrapped, ACCESS_ATTR, {"public": False, "read": read_role, "write": write_role})
        return wrapped

    return decorator


def public(view):
    """Mark a view as reachable without signing in (login page only)."""
    setattr(view, ACCESS_ATTR, {"public": True})
    return view


def access_rule(endpoint: str | None) -> dict | None:
    view = current_app.view_functions.get(endpoint) if endpoint else None
    if view is None:
        return None
    return getattr(view, ACCESS_ATTR, None)


def enforce_access():
    """before_request hook: sign-in and role checks for every endpoint."""
    if request.endpoint is None:  # 404/405: let the error handler answer
        return None
    if request.endpoint == "static":
        return None
    rule = access_rule(request.endpoint)
    if rule is None:
        current_app.logger.error("view %s declares no access rule; denied", request.endpoint)
        abort(403)
    if rule["public"]:
        return None
    if not current_user.is_authenticated:
        from engage.extensions import login_manager

        return login_manager.unauthorized()
    needed = rule["read"] if request.method in SAFE_METHODS else rule["write"]
    if not current_user.has_role(needed):
        abort(403)
    return None


def is_safe_redirect(target: str | None) -> bool:
    """Only same-site relative paths ("/engagements/3") are followed after login."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return False
    if "\\" in target or any(ord(c) < 32 for c in target):
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc
