"""Entries of public lists (Entity List, UFLPA, WROs...) that screening matches to companies."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from engage.extensions import db
from engage.models.base import RiskSource, TimestampMixin, enum_check
from engage.models.companies import normalize_name


class ListedEntity(TimestampMixin, db.Model):
    __tablename__ = "listed_entities"
    __table_args__ = (
        enum_check("source", RiskSource),
        sa.UniqueConstraint("source", "normalized_name", "effective_date"),
        sa.Index("ix_listed_entities_normalized_name", "normalized_name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Which list (a RiskSource value).
    source: Mapped[str] = mapped_column(sa.String(32))
    name: Mapped[str] = mapped_column(sa.String(300))
    normalized_name: Mapped[str] = mapped_column(sa.String(300))
    #: Other names the entity is listed under.
    aliases: Mapped[list] = mapped_column(sa.JSON, default=list)
    country: Mapped[str | None] = mapped_column(sa.String(2))
    #: Statutory section (UFLPA) or list subdivision.
    section: Mapped[str | None] = mapped_column(sa.String(40))
    effective_date: Mapped[dt.date | None]
    citation: Mapped[str] = mapped_column(sa.String(500))
    citation_url: Mapped[str | None] = mapped_column(sa.String(500))
    note: Mapped[str] = mapped_column(sa.Text, default="")

    def names(self) -> set[str]:
        """Every normalised name this entry can match."""
        return {normalize_name(n) for n in [self.name, *(self.aliases or [])] if normalize_name(n)}
