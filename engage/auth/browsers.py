"""Known browsers: a signed cookie that says "this account signed in here before".

After a successful sign-in the browser gets a long-lived cookie naming the accounts that
signed in on it (at most `MAX_ACCOUNTS`, most recent first), signed with SECRET_KEY. It
grants nothing by itself: the password is still checked. It only decides which failure
budget a sign-in attempt draws on (engage.auth.service), so that failures sent from
elsewhere, by anyone, never pause sign-in on the user's own browsers (OWASP "device
cookies"). Signing out keeps it; clearing the browser's cookies forgets it.
"""

from __future__ import annotations

from flask import Response, current_app, request
from itsdangerous import BadSignature, URLSafeTimedSerializer

#: Accounts one browser remembers (a shared office computer); older ones drop off.
MAX_ACCOUNTS = 5
_SALT = "engage.known-browser"
#: A cookie longer than this was not written by Engage; it is ignored unread.
_MAX_COOKIE_LENGTH = 512


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt=_SALT)


def _max_age() -> int:
    return int(current_app.config["KNOWN_BROWSER_DAYS"]) * 24 * 3600


def known_user_ids() -> list[int]:
    """Ids of the accounts that signed in on this browser (empty when the cookie is absent,
    forged, expired or signed with another key)."""
    raw = request.cookies.get(current_app.config["KNOWN_BROWSER_COOKIE_NAME"], "")
    if not raw or len(raw) > _MAX_COOKIE_LENGTH:
        return []
    try:
        ids = _serializer().loads(raw, max_age=_max_age())
    except BadSignature:  # includes SignatureExpired
        return []
    if not isinstance(ids, list):
        return []
    return [i for i in ids if isinstance(i, int) and not isinstance(i, bool)][:MAX_ACCOUNTS]


def remember_browser(response: Response, user_id: int) -> Response:
    """Mark this browser as known for `user_id` (renewing the cookie's lifetime)."""
    ids = [user_id] + [i for i in known_user_ids() if i != user_id]
    config = current_app.config
    response.set_cookie(
        config["KNOWN_BROWSER_COOKIE_NAME"],
        _serializer().dumps(ids[:MAX_ACCOUNTS]),
        max_age=_max_age(),
        secure=config["REMEMBER_COOKIE_SECURE"],
        httponly=True,
        samesite="Lax",
    )
    return response
