"""Companies, their alternative names, and the risk flags that put them on our radar."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from decimal import Decimal

from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from engage import names
from engage.extensions import db
from engage.models.base import FlagLink, RiskSource, TimestampMixin, enum_check

if TYPE_CHECKING:  # type hints only: models.engagements imports this module
    from engage.models.engagements import Engagement

_LEGAL_SUFFIXES = re.compile(
    r"\b(co|company|corp|corporation|inc|incorporated|ltd|limited|llc|plc|sa|ag|nv|se|"
    r"holdings?|group|class [a-z]|[a-h])\b"
)


def normalize_name(name: str) -> str:
    """Lower-case, strip accents, punctuation, legal and share-class suffixes."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    text = re.sub(r"[^a-z0-9 ]+", " ", text)
    text = _LEGAL_SUFFIXES.sub(" ", text)
    return " ".join(text.split())


class Company(TimestampMixin, db.Model):
    __tablename__ = "companies"
    __table_args__ = (
        sa.Index("ix_companies_ticker_exchange", "ticker", "exchange"),
        sa.CheckConstraint("isin IS NULL OR length(isin) = 12", name="isin_length"),
        sa.CheckConstraint("lei IS NULL OR length(lei) = 20", name="lei_length"),
        sa.CheckConstraint("parent_id IS NULL OR parent_id <> id", name="not_own_parent"),
        # The stored score and change (migration 0037): the list's score and change sorts read a
        # page of these, the score and trend filters a range.
        sa.Index("ix_companies_latest_score", "latest_score", "id"),
        sa.Index("ix_companies_score_change", "score_change", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), index=True)
    #: normalize_name(name), for matching holdings rows and sorting.
    normalized_name: Mapped[str] = mapped_column(sa.String(200), index=True)
    isin: Mapped[str | None] = mapped_column(sa.String(12), unique=True)
    #: ISO 17442 Legal Entity Identifier (20 characters, validated with python-stdnum).
    lei: Mapped[str | None] = mapped_column(sa.String(20), unique=True)
    #: The company that controls this one; a list entry on the parent "and its subsidiaries"
    #: flags it as linked.
    parent_id: Mapped[int | None] = mapped_column(sa.ForeignKey("companies.id", ondelete="SET NULL"), index=True)
    ticker: Mapped[str | None] = mapped_column(sa.String(20))
    #: Market identifier code or exchange name, e.g. XSHE (Shenzhen).
    exchange: Mapped[str | None] = mapped_column(sa.String(40))
    #: ISO 3166-1 alpha-2 country of domicile.
    country: Mapped[str | None] = mapped_column(sa.String(2), index=True)
    sector: Mapped[str | None] = mapped_column(sa.String(80), index=True)
    website: Mapped[str | None] = mapped_column(sa.String(500))
    #: Postal address for letters (several lines).
    address: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    description: Mapped[str] = mapped_column(sa.Text, default="")
    #: Set when a holdings import created the company, until an analyst reviews it.
    origin: Mapped[str | None] = mapped_column(sa.String(200), index=True)
    #: The name as the list matching reads it (engage.names.stored_forms), kept fresh on every write.
    name_forms: Mapped[str | None] = mapped_column(sa.Text)
    #: Stored by database triggers, never by the application (engage.companies.stored): the total
    #: of the company's latest primary score over all its engagements (NULL when it has none), and
    #: that total minus the one before it (NULL when there is no earlier one). Read them with a
    #: query, not from an object loaded before the write that changed them.
    latest_score: Mapped[Decimal | None] = mapped_column(sa.Numeric(5, 2))
    score_change: Mapped[Decimal | None] = mapped_column(sa.Numeric(5, 2))

    parent: Mapped[Company | None] = relationship(remote_side=[id], back_populates="subsidiaries")
    subsidiaries: Mapped[list[Company]] = relationship(back_populates="parent", order_by="Company.name")
    aliases: Mapped[list[CompanyAlias]] = relationship(
        back_populates="company", cascade="all, delete-orphan", order_by="CompanyAlias.alias"
    )
    risk_flags: Mapped[list[RiskFlag]] = relationship(
        back_populates="company", foreign_keys="RiskFlag.company_id", cascade="all, delete-orphan", order_by="RiskFlag.effective_date"
    )
    engagements: Mapped[list["Engagement"]] = relationship(
        back_populates="company", order_by="Engagement.opened_on", viewonly=True
    )

    def __repr__(self) -> str:
        return f"<Company {self.name}>"

    @property
    def alias_names(self) -> list[str]:
        return [a.alias for a in self.aliases]


@sa.event.listens_for(Company.name, "set", propagate=True)
def _keep_normalized_name(target: Company, value: str, _old, _initiator) -> None:
    target.normalized_name = normalize_name(value or "")


class CompanyAlias(TimestampMixin, db.Model):
    """Another name the company trades or is reported under (former names, English/Chinese)."""

    __tablename__ = "company_aliases"
    __table_args__ = (sa.UniqueConstraint("company_id", "alias"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(sa.ForeignKey("companies.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(sa.String(200))
    normalized_alias: Mapped[str] = mapped_column(sa.String(200), index=True)
    #: The alias as the list matching reads it (engage.names.stored_forms, as an alias), kept fresh on every write.
    name_forms: Mapped[str | None] = mapped_column(sa.Text)

    company: Mapped[Company] = relationship(back_populates="aliases")


@sa.event.listens_for(CompanyAlias.alias, "set", propagate=True)
def _keep_normalized_alias(target: CompanyAlias, value: str, _old, _initiator) -> None:
    target.normalized_alias = normalize_name(value or "")


@sa.event.listens_for(Company, "before_insert", propagate=True)
@sa.event.listens_for(Company, "before_update", propagate=True)
def _keep_company_name_forms(_mapper, _connection, target: Company) -> None:
    """Read the name again when it changed (or the reading did): what the matching will load."""
    stored = names.refreshed(target.name_forms, [target.name or ""])
    if stored != target.name_forms:
        target.name_forms = stored


@sa.event.listens_for(CompanyAlias, "before_insert", propagate=True)
@sa.event.listens_for(CompanyAlias, "before_update", propagate=True)
def _keep_alias_name_forms(_mapper, _connection, target: CompanyAlias) -> None:
    stored = names.refreshed(target.name_forms, [target.alias or ""], first=False)
    if stored != target.name_forms:
        target.name_forms = stored


class RiskFlag(TimestampMixin, db.Model):
    """A company's appearance on one source list; a company may carry several per list.

    A flag from screening records the list entry and version it came from, how it matched
    (`match_reason`, `match_score`) and whether the entry names the company or its parent
    (`link`). When the entry is revoked or leaves the list the flag ends (`ended_on`,
    `ended_version_id`); it is kept as history, never deleted.
    """

    __tablename__ = "risk_flags"
    __table_args__ = (
        enum_check("source", RiskSource),
        enum_check("link", FlagLink),
        sa.Index("ix_risk_flags_source_company", "source", "company_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(
        sa.ForeignKey("companies.id", ondelete="CASCADE"), index=True
    )
    source: Mapped[str] = mapped_column(sa.String(32))
    #: Statutory section for UFLPA Entity List entries, e.g. "2(d)(2)(B)(ii)".
    section: Mapped[str | None] = mapped_column(sa.String(40))
    effective_date: Mapped[dt.date | None]
    #: Federal Register notice, decision or article the flag rests on.
    citation: Mapped[str] = mapped_column(sa.String(500))
    citation_url: Mapped[str | None] = mapped_column(sa.String(500))
    note: Mapped[str] = mapped_column(sa.Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    #: The list entry (in the version it was first matched in) and that version.
    entity_id: Mapped[int | None] = mapped_column(sa.ForeignKey("listed_entities.id", ondelete="SET NULL"), index=True)
    version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("list_versions.id", ondelete="SET NULL"))
    link: Mapped[str] = mapped_column(sa.String(8), default=FlagLink.DIRECT.value, server_default="direct")
    #: For a linked flag: the parent company the entry names.
    linked_via_id: Mapped[int | None] = mapped_column(sa.ForeignKey("companies.id", ondelete="SET NULL"))
    match_score: Mapped[int | None]
    match_reason: Mapped[str] = mapped_column(sa.String(500), default="", server_default="")
    #: The day the entry was revoked or left the list, and the version that showed it.
    ended_on: Mapped[dt.date | None] = mapped_column(index=True)
    ended_version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("list_versions.id", ondelete="SET NULL"))

    company: Mapped[Company] = relationship(back_populates="risk_flags", foreign_keys=[company_id])
    linked_via: Mapped[Company | None] = relationship(foreign_keys=[linked_via_id])
    entity = relationship("ListedEntity", foreign_keys=[entity_id])
    version = relationship("ListVersion", foreign_keys=[version_id])
    ended_version = relationship("ListVersion", foreign_keys=[ended_version_id])

    @property
    def is_linked(self) -> bool:
        return self.link == FlagLink.LINKED.value

    @property
    def from_screening(self) -> bool:
        """Made by screening (or a match review) from a list entry; analysts' own flags have no entry."""
        return self.entity_id is not None

    @property
    def is_current(self) -> bool:
        return self.ended_on is None

    @property
    def source_label(self) -> str:
        return RiskSource(self.source).label
