"""Every email Engage sends is first a row here, written with the change that caused it."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from engage import clock
from engage.extensions import db
from engage.models.base import OutboxStatus, TimestampMixin, enum_check


class OutboxEmail(TimestampMixin, db.Model):
    __tablename__ = "outbox_emails"
    __table_args__ = (
        enum_check("status", OutboxStatus),
        sa.Index("ix_outbox_emails_status_next_attempt", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The To addresses, comma-separated.
    recipient: Mapped[str] = mapped_column(sa.Text)
    #: Cc addresses, comma-separated.
    cc: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    #: From, when not MAIL_DEFAULT_SENDER (a campaign's sender address).
    sender: Mapped[str | None] = mapped_column(sa.String(254))
    reply_to: Mapped[str | None] = mapped_column(sa.String(254))
    subject: Mapped[str] = mapped_column(sa.String(300))
    body_text: Mapped[str] = mapped_column(sa.Text)
    body_html: Mapped[str | None] = mapped_column(sa.Text)
    #: Fixed when queued so a resend after a crash is recognisable as the same email.
    message_id: Mapped[str] = mapped_column(sa.String(255), unique=True)
    status: Mapped[str] = mapped_column(sa.String(16), default=OutboxStatus.QUEUED.value)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=clock.utcnow)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    sent_at: Mapped[dt.datetime | None]
    #: An attached file under instance/ (e.g. the monthly export) and the name it is sent as.
    attachment_path: Mapped[str | None] = mapped_column(sa.String(500))
    attachment_name: Mapped[str | None] = mapped_column(sa.String(255))
    #: Further files under instance/, each {"path", "name", "type"} (e.g. a letter's PDF).
    attachments: Mapped[list] = mapped_column(sa.JSON, default=list, server_default="[]")
    #: Set on engagement mail (a letter emailed to a company's contacts): a reply whose
    #: In-Reply-To or References names this message_id is filed on this engagement.
    engagement_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("engagements.id", ondelete="SET NULL"), index=True
    )
    letter_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("letters.id", ondelete="SET NULL"), index=True
    )


class ExportRun(TimestampMixin, db.Model):
    """One stored monthly export; the unique month makes the scheduler's job run once."""

    __tablename__ = "export_runs"
    __table_args__ = (sa.UniqueConstraint("kind", "month"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(32), default="monthly")
    #: YYYY-MM
    month: Mapped[str] = mapped_column(sa.String(7))
    #: File name under instance/exports.
    filename: Mapped[str] = mapped_column(sa.String(255))
    rows: Mapped[int] = mapped_column(default=0)
