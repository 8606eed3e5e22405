"""Form submissions already acted on: the database decides that a form is acted on once."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from engage import clock
from engage.extensions import db


class FormSubmission(db.Model):
    """One form token claimed by the request that acted on it (see engage.idempotency)."""

    __tablename__ = "form_submissions"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The random token the rendered form carried; unique, so a second claim of it fails.
    token: Mapped[str] = mapped_column(sa.String(64), unique=True)
    #: What the form did, e.g. "engagement.stage" or "scoring.score".
    purpose: Mapped[str] = mapped_column(sa.String(60))
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    #: Where the result of the first submission is shown (the duplicate is sent there).
    result_url: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.utcnow, index=True)
