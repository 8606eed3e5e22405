"""Personal access tokens: made on the account page, shown once, stored as a SHA-256.

Functions mutate; callers commit. `authenticate` is what every API request goes through.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from engage import audit
from engage.errors import FieldError
from engage.extensions import db
from engage.models import ApiToken, User

#: Every token starts with this, so a leaked one is recognisable (secret scanners, logs).
TOKEN_PREFIX = "engage_"
#: last_used_at is written at most this often per token (one small UPDATE, not one per request).
LAST_USED_GRANULARITY = dt.timedelta(minutes=1)
SCOPE_LABELS = {"read": "Read only", "read_write": "Read and write"}


class TokenError(FieldError):
    """A refused token request; `field` names the form field."""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def create(user: User, *, name: str, scope: str, expires_on: dt.date | None, today: dt.date,
           max_days: int) -> tuple[ApiToken, str]:
    """A new token for `user`: the row and the secret (shown once, never stored)."""
    name = (name or "").strip()
    if not name:
        raise TokenError("name", "Give the token a name that says what uses it, e.g. \"Power BI refresh\".")
    if len(name) > 120:
        raise TokenError("name", f"The name is {len(name)} characters long; keep it to 120.")
    if scope not in ApiToken.SCOPES:
        raise TokenError("scope", f"Unknown scope {scope!r}: choose read or read_write.")
    if scope == "read_write" and not user.can_edit:
        raise TokenError("scope", "Your role (viewer) cannot change anything, so your tokens are read only.")
    if expires_on is None:
        raise TokenError("expires_on", "Give the last day the token works.")
    if expires_on < today:
        raise TokenError("expires_on", f"{expires_on.isoformat()} is in the past.")
    if expires_on > today + dt.timedelta(days=max_days):
        raise TokenError("expires_on", f"{expires_on.isoformat()} is more than {max_days} days ahead; "
                                       "make a new token when this one ends.")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user=user, name=name, scope=scope, expires_on=expires_on, token_hash=digest(secret),
                     prefix=secret[:len(TOKEN_PREFIX) + 6])
    db.session.add(token)
    db.session.flush()
    audit.record("api_token_created", f"{user.email} created API token {token.prefix}… ({scope}, "
                                      f"until {expires_on.isoformat()}): {name}", obj=token)
    return token, secret


def tokens_of(user: User) -> list[ApiToken]:
    """The user's tokens, newest first (revoked ones too: the list is their history)."""
    return list(db.session.scalars(
        sa.select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id.desc())))


def revoke(user: User, token_id: int, now: dt.datetime) -> ApiToken:
    """Revoke one of the user's own tokens (it stops working at once); revoking twice is harmless."""
    token = db.session.scalar(sa.select(ApiToken).where(ApiToken.id == token_id, ApiToken.user_id == user.id))
    if token is None:
        raise TokenError("token", "No such token of yours.")
    if token.revoked_at is None:
        token.revoked_at = now
        audit.record("api_token_revoked", f"{user.email} revoked API token {token.prefix}…: {token.name}", obj=token)
    return token


class Refused(Exception):
    """The request's token cannot be used; `detail` says why (in words safe to show the caller)."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


def bearer_of(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    scheme, _, value = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def authenticate(header: str | None, now: dt.datetime) -> ApiToken:
    """The usable token the Authorization header carries (last use recorded), or Refused."""
    secret = bearer_of(header)
    if secret is None:
        raise Refused("Send a personal access token as 'Authorization: Bearer <token>' "
                      "(create one on your account page).")
    token = db.session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == digest(secret))
                              .options(selectinload(ApiToken.user)))
    if token is None:
        raise Refused("The token is not known.")
    if token.revoked_at is not None:
        raise Refused("The token was revoked.")
    if now.date() > token.expires_on:
        raise Refused(f"The token expired on {token.expires_on.isoformat()}.")
    if not token.user.active:
        raise Refused("The token's user is deactivated.")
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_GRANULARITY:
        # A plain UPDATE: bookkeeping, not a change the audit trail should list.
        db.session.execute(sa.update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=now)
                           .execution_options(synchronize_session=False))
        db.session.commit()
    return token
