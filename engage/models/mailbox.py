"""Messages read from the engagement mailbox: one row per message, filed exactly once.

The row is the decision: it is inserted (INSERT ... ON CONFLICT DO NOTHING) in the same
transaction as the interaction it files, and only after that commit is the message flagged on
the IMAP server. `message_key` (the Message-ID, or the folder/UIDVALIDITY/UID of a message
without one) and the server position are both unique, so two fetchers, or a fetch repeated
after a crash between the commit and the flag, never file a message twice.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from engage.extensions import db
from engage.models.base import Direction, StrEnum, TimestampMixin, enum_check
from engage.models.engagements import Engagement, Interaction
from engage.models.users import User


class InboundStatus(StrEnum):
    FILED = "filed"  # an interaction on an engagement
    TRIAGE = "triage"  # waiting for an analyst
    DISCARDED = "discarded"  # an analyst decided it belongs nowhere


class InboundMessage(TimestampMixin, db.Model):
    __tablename__ = "inbound_messages"
    __table_args__ = (
        enum_check("status", InboundStatus),
        enum_check("direction", Direction),
        sa.UniqueConstraint("folder", "uidvalidity", "uid"),
        sa.Index("ix_inbound_messages_status_received", "status", "received_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: SHA-256 of "mid:<Message-ID>" (or "uid:<folder>:<uidvalidity>:<uid>" without one): one row per message.
    message_key: Mapped[str] = mapped_column(sa.String(64), unique=True)
    #: The Message-ID header as sent (angle brackets included); None when the message had none.
    message_id: Mapped[str | None] = mapped_column(sa.String(998))
    folder: Mapped[str] = mapped_column(sa.String(200))
    uidvalidity: Mapped[int] = mapped_column(sa.BigInteger)
    uid: Mapped[int] = mapped_column(sa.BigInteger)
    #: Lower-cased sender address and display name.
    from_address: Mapped[str] = mapped_column(sa.String(254), default="")
    from_name: Mapped[str] = mapped_column(sa.String(200), default="")
    #: Recipients, comma-separated lower-cased addresses.
    to_addresses: Mapped[str] = mapped_column(sa.Text, default="")
    cc_addresses: Mapped[str] = mapped_column(sa.Text, default="")
    subject: Mapped[str] = mapped_column(sa.String(300), default="")
    #: The Date header when it was usable (UTC).
    sent_at: Mapped[dt.datetime | None]
    received_at: Mapped[dt.datetime]
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    status: Mapped[str] = mapped_column(sa.String(16))
    #: inbound (a company wrote) or outbound (an analyst's message with the mailbox in Bcc).
    direction: Mapped[str] = mapped_column(sa.String(16), default=Direction.INBOUND.value)
    #: How it was matched, or why it waits in triage.
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    #: The start of the text (plain text, never HTML) for the triage list.
    snippet: Mapped[str] = mapped_column(sa.Text, default="")
    #: The whole message as received, under the attachments folder (header only when too large).
    raw_name: Mapped[str | None] = mapped_column(sa.String(255))
    engagement_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("engagements.id", ondelete="SET NULL"), index=True)
    interaction_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("interactions.id", ondelete="SET NULL"), index=True)
    #: Who filed or discarded it from triage, and when.
    handled_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    handled_at: Mapped[dt.datetime | None]

    engagement: Mapped[Engagement | None] = relationship()
    interaction: Mapped[Interaction | None] = relationship()
    handled_by: Mapped[User | None] = relationship()

    def __repr__(self) -> str:
        return f"<InboundMessage {self.id} {self.status}>"

    @property
    def sender(self) -> str:
        return f"{self.from_name} <{self.from_address}>" if self.from_name else self.from_address
