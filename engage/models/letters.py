"""Letter templates with their version history, and letters generated from them."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from engage.extensions import db
from engage.models.campaigns import Campaign
from engage.models.contacts import CompanyContact
from engage.models.base import LetterKind, LetterStatus, TimestampMixin, enum_check
from engage.models.engagements import Engagement, EngagementEvent, Interaction


class LetterTemplate(TimestampMixin, db.Model):
    """The current text of a template; every save also writes a LetterTemplateVersion."""

    __tablename__ = "letter_templates"
    __table_args__ = (enum_check("kind", LetterKind),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Stable key used by seeds, e.g. "xuar-initial".
    slug: Mapped[str] = mapped_column(sa.String(60), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    kind: Mapped[str] = mapped_column(sa.String(16))
    campaign_id: Mapped[int | None] = mapped_column(sa.ForeignKey("campaigns.id", ondelete="SET NULL"))
    #: Sandboxed Jinja source of the subject line.
    subject: Mapped[str] = mapped_column(sa.String(300))
    #: Sandboxed Jinja source of the letter body.
    body: Mapped[str] = mapped_column(sa.Text)
    version: Mapped[int] = mapped_column(default=1)
    active: Mapped[bool] = mapped_column(default=True)

    campaign: Mapped[Campaign | None] = relationship()
    versions: Mapped[list[LetterTemplateVersion]] = relationship(
        back_populates="template", order_by="LetterTemplateVersion.version", cascade="all, delete-orphan"
    )
    languages: Mapped[list[LetterTemplateLanguage]] = relationship(
        back_populates="template", order_by="LetterTemplateLanguage.language", cascade="all, delete-orphan"
    )


class LetterTemplateVersion(db.Model):
    __tablename__ = "letter_template_versions"
    __table_args__ = (sa.UniqueConstraint("template_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    template_id: Mapped[int] = mapped_column(sa.ForeignKey("letter_templates.id", ondelete="CASCADE"))
    version: Mapped[int]
    subject: Mapped[str] = mapped_column(sa.String(300))
    body: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime]
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))

    template: Mapped[LetterTemplate] = relationship(back_populates="versions")


class LetterTemplateLanguage(TimestampMixin, db.Model):
    """A template's text in another language (an admin's translation), used for contacts who read it."""

    __tablename__ = "letter_template_languages"
    __table_args__ = (sa.UniqueConstraint("template_id", "language"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    template_id: Mapped[int] = mapped_column(sa.ForeignKey("letter_templates.id", ondelete="CASCADE"))
    #: BCP 47 tag, as on CompanyContact.language ("zh-Hans").
    language: Mapped[str] = mapped_column(sa.String(16))
    #: Sandboxed Jinja sources, like LetterTemplate.subject and .body.
    subject: Mapped[str] = mapped_column(sa.String(300))
    body: Mapped[str] = mapped_column(sa.Text)
    updated_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))

    template: Mapped[LetterTemplate] = relationship(back_populates="languages")


class Letter(TimestampMixin, db.Model):
    """A generated letter; its subject and body are frozen when it is generated."""

    __tablename__ = "letters"
    __table_args__ = (
        enum_check("status", LetterStatus),
        enum_check("kind", LetterKind),
        sa.CheckConstraint("(status = 'sent') = (sent_on IS NOT NULL)", name="sent_has_date"),
        sa.Index("ix_letters_engagement_status", "engagement_id", "status"),
        sa.Index("ix_letters_sent_on", "sent_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    engagement_id: Mapped[int] = mapped_column(sa.ForeignKey("engagements.id", ondelete="CASCADE"))
    template_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("letter_templates.id", ondelete="SET NULL")
    )
    template_version: Mapped[int | None]
    kind: Mapped[str] = mapped_column(sa.String(16))
    subject: Mapped[str] = mapped_column(sa.String(300))
    body: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(16), default=LetterStatus.DRAFT.value)
    sent_on: Mapped[dt.date | None]
    #: How it went out: post, email, investor platform...
    channel: Mapped[str | None] = mapped_column(sa.String(40))
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    #: Set when the letter was generated with others in one bulk action.
    batch_id: Mapped[int | None] = mapped_column(sa.ForeignKey("letter_batches.id", ondelete="SET NULL"), index=True)
    #: The signatories when the letter was generated, frozen with the text: [{name, aum}].
    signatories: Mapped[list] = mapped_column(sa.JSON, default=list, server_default="[]")
    #: The campaign letterhead when the letter was generated.
    letterhead: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    #: The contact the letter is addressed to (the block printed is `addressee`, frozen with the text).
    contact_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("company_contacts.id", ondelete="SET NULL"), index=True)
    #: The addressee block when the letter was generated: {name, title, company, address}.
    addressee: Mapped[dict] = mapped_column(sa.JSON, default=dict, server_default="{}")
    #: BCP 47 tag of the language version the letter was written from ("en" for the template itself).
    language: Mapped[str] = mapped_column(sa.String(16), default="en", server_default="en")
    #: Message-ID of the email that carried the letter, when it was sent by email from Engage.
    message_id: Mapped[str | None] = mapped_column(sa.String(255))
    #: The timeline's record of the sending (one entry with the letter, not a second one).
    interaction_id: Mapped[int | None] = mapped_column(sa.ForeignKey("interactions.id", ondelete="SET NULL"),
                                                       index=True)
    #: The cycle move the sending made (initial letter: stage; follow-up: escalation), if any.
    event_id: Mapped[int | None] = mapped_column(sa.ForeignKey("engagement_events.id", ondelete="SET NULL"),
                                                 index=True)

    engagement: Mapped[Engagement] = relationship()
    interaction: Mapped[Interaction | None] = relationship()
    event: Mapped[EngagementEvent | None] = relationship()
    contact: Mapped[CompanyContact | None] = relationship()
    template: Mapped[LetterTemplate | None] = relationship()
    batch: Mapped[LetterBatch | None] = relationship(back_populates="letters")

    @property
    def is_sent(self) -> bool:
        return self.status == LetterStatus.SENT.value

    @property
    def addressee_lines(self) -> list[str]:
        """The printed addressee block: name, title, company, then the postal address lines."""
        block = self.addressee or {}
        lines = [block.get("name"), block.get("title"), block.get("company")]
        lines += (block.get("address") or "").splitlines()
        return [line.strip() for line in lines if line and line.strip()]


class LetterBatch(TimestampMixin, db.Model):
    """Letters generated from one template for many engagements in one action."""

    __tablename__ = "letter_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    template_id: Mapped[int | None] = mapped_column(sa.ForeignKey("letter_templates.id", ondelete="SET NULL"))
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    #: The bulk form's one-time key: submitting the same form again finds this batch, never makes a second.
    submit_token: Mapped[str | None] = mapped_column(sa.String(64), unique=True)

    template: Mapped[LetterTemplate | None] = relationship()
    letters: Mapped[list[Letter]] = relationship(back_populates="batch", order_by="Letter.id")
