"""Exactly once for forms a double click (or a retried request) can send twice.

Each rendered form carries a random token (`FormTokenMixin` adds the hidden `form_token`
field, `new_token()` makes one). The view that acts on the form claims the token first, in
the request's own transaction:

    try:
        claimed = idempotency.claim(form.form_token.data, "engagement.stage", current_user.id)
    except idempotency.AlreadySubmitted as duplicate:
        db.session.rollback()
        return idempotency.answer_duplicate(duplicate, default_url)
    ... act, flush ...
    idempotency.record_result(claimed, url_of_the_result)
    db.session.commit()

The claim is an INSERT ... ON CONFLICT DO NOTHING on a unique column, so the database decides:
a concurrent second request waits for the first transaction and then finds the token taken
(PostgreSQL), or waits for the write lock (SQLite). If the first request fails and rolls back,
its claim goes with it and the same form can be sent again. A form posted without a token (an
old page, a script) is acted on without this protection. `prune(before)` forgets old tokens.
"""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from flask import flash, redirect
from wtforms import HiddenField
from wtforms.validators import Optional, Regexp

from engage import clock
from engage.dbutil import insert_ignoring_conflicts
from engage.extensions import db
from engage.models import FormSubmission

#: Days a claimed token is kept; a form is refused long before (its CSRF token lasts 8 hours).
KEEP_DAYS = 2
#: What the second submission of a form is told.
DUPLICATE_MESSAGE = "Already saved: this form was sent twice, and the second time changed nothing."


def new_token() -> str:
    return uuid.uuid4().hex


class FormTokenMixin:
    """Mix into a FlaskForm: a hidden `form_token`, fresh on every rendering of a new form."""

    form_token = HiddenField(default=new_token, validators=[
        Optional(), Regexp(r"^[0-9a-f]{32}$", message="The form is damaged; reload the page.")])


class AlreadySubmitted(Exception):
    """The token was claimed by an earlier request; `result_url` is where its result is shown."""

    def __init__(self, purpose: str, result_url: str | None):
        super().__init__(DUPLICATE_MESSAGE)
        self.purpose = purpose
        self.result_url = result_url


def claim(token: str | None, purpose: str, user_id: int | None) -> int | None:
    """Claim the form's token in the current transaction, or raise AlreadySubmitted.

    Returns the claim's id (None when the form carried no token: nothing to protect).
    """
    if not token:
        return None
    inserted = insert_ignoring_conflicts(FormSubmission, [
        {"token": token, "purpose": purpose, "user_id": user_id, "created_at": clock.utcnow()}])
    if inserted:
        return inserted[0]
    earlier = db.session.execute(
        sa.select(FormSubmission.user_id, FormSubmission.result_url).where(FormSubmission.token == token)
    ).first()
    # Only the user who sent the form is shown where its result is.
    url = earlier.result_url if earlier is not None and earlier.user_id == user_id else None
    raise AlreadySubmitted(purpose, url)


def record_result(claim_id: int | None, url: str) -> None:
    """Remember where the result of a claimed form is shown (in the same transaction)."""
    if claim_id is not None:
        db.session.execute(sa.update(FormSubmission).where(FormSubmission.id == claim_id)
                           .values(result_url=url[:500]))


def answer_duplicate(duplicate: AlreadySubmitted, default_url: str):
    """The answer to a second submission: back to the first one's result, with a message."""
    flash(DUPLICATE_MESSAGE, "info")
    return redirect(duplicate.result_url or default_url, code=303)


def prune(before: dt.datetime) -> int:
    """Forget tokens claimed before `before` (a form older than that is long gone); returns how many."""
    result = db.session.execute(sa.delete(FormSubmission).where(FormSubmission.created_at < before))
    return result.rowcount or 0
