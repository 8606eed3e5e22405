"""Campaigns, the investors who co-sign them, and their scoring rubrics."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from engage.extensions import db
from engage.models.base import InvestorKind, StrEnum, TimestampMixin, enum_check


class PaperSize(StrEnum):
    """The paper a campaign's letters are laid out on, in the PDF and the DOCX alike."""

    A4 = "A4"
    LETTER = "letter"

    @property
    def label(self) -> str:
        return {"A4": "A4 (210 × 297 mm)", "letter": "US Letter (8.5 × 11 in)"}[self.value]

campaign_signatories = sa.Table(
    "campaign_signatories",
    db.metadata,
    sa.Column("campaign_id", sa.ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("investor_id", sa.ForeignKey("investors.id", ondelete="CASCADE"), primary_key=True),
)


class Campaign(TimestampMixin, db.Model):
    __tablename__ = "campaigns"
    __table_args__ = (
        sa.CheckConstraint("response_window_days > 0", name="response_window_positive"),
        sa.CheckConstraint("follow_up_interval_days > 0", name="follow_up_interval_positive"),
        sa.CheckConstraint("follow_ups_before_escalation >= 0", name="follow_ups_non_negative"),
        sa.CheckConstraint("warn_days_before >= 0", name="warn_days_non_negative"),
        enum_check("paper_size", PaperSize),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Stable key used by seeds and the CLI, e.g. "xuar".
    slug: Mapped[str] = mapped_column(sa.String(60), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    summary: Mapped[str] = mapped_column(sa.Text, default="")
    #: The asks made of every company, in order (list of {key, title, text}).
    expectations: Mapped[list] = mapped_column(sa.JSON, default=list)
    #: What the company is asked to sign or commit to, with its source.
    call_to_action: Mapped[str] = mapped_column(sa.Text, default="")
    call_to_action_url: Mapped[str | None] = mapped_column(sa.String(500))
    #: Where the campaign's asks come from (document title and URL).
    source: Mapped[str] = mapped_column(sa.Text, default="")
    #: Days a company has to reply after a letter.
    response_window_days: Mapped[int] = mapped_column(default=30)
    follow_up_interval_days: Mapped[int] = mapped_column(default=14)
    #: Follow-ups without reply after which escalation is suggested.
    follow_ups_before_escalation: Mapped[int] = mapped_column(default=2)
    #: Days before a due date that the owner is warned.
    warn_days_before: Mapped[int] = mapped_column(default=3)
    active: Mapped[bool] = mapped_column(default=True)
    #: The block printed at the top of the campaign's letters (sender organisation, address).
    letterhead: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    #: From address of letters emailed for the campaign (MAIL_DEFAULT_SENDER when empty).
    sender_email: Mapped[str | None] = mapped_column(sa.String(254))
    #: Sandboxed Jinja source of the cover note of letters emailed for the campaign (a default when empty).
    cover_note: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    #: Paper size of the campaign's letters (PDF and DOCX): A4 unless the campaign says US Letter.
    paper_size: Mapped[str] = mapped_column(sa.String(8), default=PaperSize.A4.value,
                                            server_default=PaperSize.A4.value)

    signatories: Mapped[list[Investor]] = relationship(
        secondary=campaign_signatories, back_populates="campaigns", order_by="Investor.name"
    )
    rubrics: Mapped[list[Rubric]] = relationship(
        back_populates="campaign", order_by="Rubric.version", cascade="all, delete-orphan"
    )

    def __repr__(self) -> str:
        return f"<Campaign {self.slug}>"

    @property
    def signatories_aum_usd(self) -> Decimal:
        return sum((i.aum_usd or Decimal(0) for i in self.signatories), Decimal(0))


class Investor(TimestampMixin, db.Model):
    __tablename__ = "investors"
    __table_args__ = (
        enum_check("kind", InvestorKind),
        sa.CheckConstraint("aum_usd IS NULL OR aum_usd >= 0", name="aum_non_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(16), default=InvestorKind.INVESTOR.value)
    #: Assets under management in US dollars, when the investor discloses it.
    aum_usd: Mapped[Decimal | None] = mapped_column(sa.Numeric(20, 2))
    contact_name: Mapped[str | None] = mapped_column(sa.String(120))
    contact_email: Mapped[str | None] = mapped_column(sa.String(254))
    website: Mapped[str | None] = mapped_column(sa.String(500))

    campaigns: Mapped[list[Campaign]] = relationship(
        secondary=campaign_signatories, back_populates="signatories"
    )


class Rubric(TimestampMixin, db.Model):
    """One version of a campaign's rubric; a version used by a score is never edited."""

    __tablename__ = "rubrics"
    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "version"),
        sa.CheckConstraint("version > 0", name="version_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaigns.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(default=1)
    name: Mapped[str] = mapped_column(sa.String(200))
    #: When this version superseded the previous one (None while a draft).
    published_at: Mapped[dt.datetime | None]

    campaign: Mapped[Campaign] = relationship(back_populates="rubrics")
    criteria: Mapped[list[Criterion]] = relationship(
        back_populates="rubric", order_by="Criterion.position", cascade="all, delete-orphan"
    )


class Criterion(TimestampMixin, db.Model):
    __tablename__ = "criteria"
    __table_args__ = (
        sa.UniqueConstraint("rubric_id", "key"),
        sa.CheckConstraint("weight > 0", name="weight_positive"),
        sa.CheckConstraint(
            "stage_hint IS NULL OR stage_hint IN ('acknowledged', 'value_chain_mapped', 'disengaging', 'disclosed')",
            name="stage_hint_valid",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    rubric_id: Mapped[int] = mapped_column(sa.ForeignKey("rubrics.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(sa.String(60))
    title: Mapped[str] = mapped_column(sa.String(200))
    guidance: Mapped[str] = mapped_column(sa.Text, default="")
    weight: Mapped[Decimal] = mapped_column(sa.Numeric(6, 2), default=Decimal(1))
    #: Descriptors for levels 0-4, as a list of five strings.
    levels: Mapped[list] = mapped_column(sa.JSON, default=list)
    position: Mapped[int] = mapped_column(default=0)
    #: The stage a score of 3 or more on this criterion suggests (e.g. value_chain_mapped).
    stage_hint: Mapped[str | None] = mapped_column(sa.String(24))

    rubric: Mapped[Rubric] = relationship(back_populates="criteria")
