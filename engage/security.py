"""Access control: one decorator declares who may use a view; everything else is denied.

`require_role("viewer")` lets any signed-in user read; `write=` sets the role needed for
unsafe methods (POST, PUT, PATCH, DELETE). `public` marks the few views open to everyone.
`enforce_access` runs before every request and refuses a view that declares nothing, so a
forgotten decorator fails closed.
"""

from __future__ import annotations

import hmac
from functools import wraps
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import abort, current_app, flash, g, redirect, request, session, url_for
from flask_login import current_user, login_url
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from engage.extensions import db, login_manager
from engage.models import User
from engage.models.base import Role

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
ACCESS_ATTR = "_engage_access"


def require_role(read: Role | str, write: Role | str | None = None, *, token: bool = False):
    """Declare the minimum role to read a view and (optionally) a stricter one to change.

    `token=True` (the JSON API's views): the caller is the user of a bearer token, which the
    API checks itself (engage.api.routes); a session cookie never signs such a request in.
    """
    read_role = Role(read)
    write_role = Role(write) if write is not None else read_role

    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            return view(*args, **kwargs)

        setattr(wrapped, ACCESS_ATTR, {"public": False, "read": read_role, "write": write_role, "token": token})
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
    if rule["public"] or rule.get("token"):  # token: checked by the API's own before_request
        return None
    if not current_user.is_authenticated:
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


def opens_with_get(target: str) -> bool:
    """True when the path of `target` is a page (answers GET), not a form action like /logout."""
    try:
        current_app.url_map.bind("localhost").match(urlsplit(target).path, method="GET")
    except RequestRedirect:  # /admin -> /admin/: a page after one redirect
        return True
    except HTTPException:  # 404, 405
        return False
    return True


def safe_next(target: str | None) -> str | None:
    """`target` when it may follow sign-in: a same-site page, never a POST-only action."""
    return target if is_safe_redirect(target) and opens_with_get(target) else None


def acting_session_token() -> str | None:
    """The session token this request signed in with (from its cookie), or None."""
    _, _, token = str(session.get("_user_id", "")).partition(":")
    return token or None


def signed_out_page():
    """The answer to a sign-out: the sign-in page saying so (the session is emptied)."""
    session.clear()
    if current_app.config.get("REMEMBER_COOKIE_NAME", "remember_token") in request.cookies:
        session["_remember"] = "clear"  # Flask-Login deletes the remember-me cookie
    flash("You are signed out. Your sessions on other devices ended too.", "info")
    return redirect(url_for("auth.login"))


def unauthorized():
    """Flask-Login's unauthorized handler: to the sign-in page, with `next` naming a page.

    `next` is the page asked for, or, for a form sent without a valid sign-in (the session
    expired or was ended elsewhere, or this is the second click of a double click whose first
    click replaced the session), the page the form lives on: its own address when that is a
    page, else the same-site referrer, else nothing. A form action (POST only) never becomes
    `next`, which used to end on "405 Method not allowed" after signing in. A form's answer
    writes no cookie when its session names a replaced token (`guard_session`): the browser
    may already hold the newer cookie the first click earned, and the sign-in page then sends
    it straight on to `next`. A repeated sign-out simply says the user is signed out.
    """
    manager = current_app.login_manager
    if request.method in SAFE_METHODS:
        target = request.full_path.rstrip("?") if request.query_string else request.path
    elif request.endpoint == "auth.logout":
        return signed_out_page()
    else:
        target = request.path if opens_with_get(request.path) else None
        referrer = urlsplit(request.referrer or "")
        if target is None and referrer.netloc == request.host and referrer.scheme in ("http", "https"):
            target = safe_next(referrer.path + (f"?{referrer.query}" if referrer.query else ""))
    flash(manager.login_message, manager.login_message_category)
    return redirect(login_url(manager.login_view, next_url=target))


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


def _stored_token_is(user_id_cookie: str) -> bool:
    """True when the "<id>:<token>" a session carries is that user's current, active one."""
    user_id, _, token = user_id_cookie.partition(":")
    if not (user_id.isascii() and user_id.isdigit()) or len(user_id) > 18:
        return False
    row = db.session.execute(sa.select(User.session_token, User.active).where(User.id == int(user_id))).one_or_none()
    return row is not None and row.active and hmac.compare_digest(row.session_token.encode(), token.encode())


def _write_no_cookie() -> None:
    """Send no session or remember-me cookie with this response; the browser keeps its own."""
    session.pop("_remember", None)
    session.modified = False


def guard_session(response):
    """after_request: never send a cookie that carries a replaced session token.

    A request that signed in with a token replaced meanwhile (by a concurrent sign-out, password
    change or "sign out everywhere", perhaps the other click of a double click) must not write
    its session back: it would replace the newer cookie the browser got from that request and
    sign the user out. A request whose session names a token that was already gone when it
    arrived is handled the same way for forms; for a page, the dead sign-in is dropped from the
    session and a dead remember-me cookie deleted, so the browser stops sending them.
    """
    if request.endpoint == "static" or "_user_id" not in session:
        return response
    looked = "_login_user" in g
    if looked and not g._login_user.is_authenticated:
        if request.method in SAFE_METHODS:
            for key in ("_user_id", "_fresh", "_id"):
                session.pop(key, None)
            if current_app.config.get("REMEMBER_COOKIE_NAME", "remember_token") in request.cookies:
                session["_remember"] = "clear"
        else:
            _write_no_cookie()
        return response
    if not session.modified:
        return response
    if looked:
        # The user as this request knows it: reloaded (fresh) when the request committed, as
        # a change usually does, else as loaded at its start; no query for a page that only
        # stored a CSRF token or showed a flash.
        user = g._login_user
        try:
            current = user.active and hmac.compare_digest(str(session["_user_id"]).encode(),
                                                          f"{user.id}:{user.session_token}".encode())
        except sa.orm.exc.ObjectDeletedError:
            current = False
    else:
        current = _stored_token_is(str(session["_user_id"]))
    if not current:
        _write_no_cookie()
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
