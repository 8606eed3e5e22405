"""Access control: one decorator declares who may use a view; everything else is denied.

`require_role("viewer")` lets any signed-in user read; `write=` sets the role needed for
unsafe methods (POST, PUT, PATCH, DELETE). `public` marks the few views open to everyone.
`enforce_access` runs before every request and refuses a view that declares nothing, so a
forgotten decorator fails closed.
"""

from __future__ import annotations

from functools import wraps
from urllib.parse import urlsplit

from flask import abort, current_app, g, request, session
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


def login_rate_limit() -> str:
    """Flask-Limiter limit for every form that checks a password (per client address)."""
    return current_app.config["LOGIN_RATE_LIMIT"]


def login_throttle_off() -> bool:
    return not current_app.config["LOGIN_THROTTLE"]


def is_safe_redirect(target: str | None) -> bool:
    """Only same-site relative paths ("/engagements/3") are followed after login."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return False
    if "\\" in target or any(ord(c) < 32 for c in target):
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


def _signed_in_user():
    """The user this request signed in as, without loading one (static files load none)."""
    user = g.get("_login_user")
    return user if user is not None and user.is_authenticated else None


def keep_acting_session(response):
    """after_request: a request that rotated its own user's session token stays signed in.

    Changing one's password, role or "sign out everywhere" replaces the token, which ends
    every other session; the browser that made the change gets a cookie with the new token
    (and a new remember-me cookie if it had one). Sign-out leaves no user, so nothing is kept.
    """
    user = _signed_in_user()
    rotated = getattr(user, "rotated_session_token", None)
    if rotated is None or "_user_id" not in session:
        return response
    # Only the token this request wrote, and only once it is the stored one (not rolled back,
    # not replaced meanwhile by another request's rotation, which must win).
    if user.session_token == rotated and session["_user_id"] != user.get_id():
        session["_user_id"] = user.get_id()
        cookie_name = current_app.config.get("REMEMBER_COOKIE_NAME", "remember_token")
        if cookie_name in request.cookies:
            session["_remember"] = "set"
    return response


def no_store(response):
    """after_request: nothing a signed-in user sees (pages, downloads) is kept by any cache.

    Anonymous answers (sign-in page, errors) are no-store too unless the view chose its own
    caching (the calendar feed); static files keep their normal caching.
    """
    if request.endpoint == "static":
        return response
    if _signed_in_user() is not None or "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    return response
