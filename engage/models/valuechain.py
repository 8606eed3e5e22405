"""The value chain as data: the maps a company disclosed, their relationships, and each one's status.

A `ValueChainMap` is one disclosed map of one engaged company (a supplier list from a letter
reply, an annex of a report...), numbered 1, 2, ... per company: a later map is a new version,
with its diff against the one before. A `Relationship` links the engaged company to a
counterparty in one map; counterparties are companies (so list screening, the match review and
linked subsidiaries apply to them unchanged). A relationship is the same across versions when
(company, counterparty, kind) is; its disengagement status is carried forward to the next map.
Every status change is a `RelationshipStatusChange` (dated, with the engagement open at the time).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from engage.extensions import db
from engage.models.base import MapSourceKind, RelationshipKind, RelationshipStatus, TimestampMixin, enum_check
from engage.models.companies import Company


class ValueChainMap(TimestampMixin, db.Model):
    """One disclosed map of one company's value chain (a version)."""

    __tablename__ = "value_chain_maps"
    __table_args__ = (
        enum_check("source_kind", MapSourceKind),
        sa.UniqueConstraint("company_id", "number", name="uq_value_chain_maps_company_number"),
        sa.CheckConstraint("number >= 1", name="number_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The engaged company whose value chain this is.
    company_id: Mapped[int] = mapped_column(sa.ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    #: 1 for the company's first map, then 2, 3...
    number: Mapped[int]
    file_name: Mapped[str] = mapped_column(sa.String(255), default="")
    sha256: Mapped[str] = mapped_column(sa.String(64), default="")
    source_kind: Mapped[str] = mapped_column(sa.String(16), default=MapSourceKind.ATTACHMENT.value)
    #: Where it was disclosed: "Annual report 2024, p. 112", a URL, a letter reply.
    source_ref: Mapped[str] = mapped_column(sa.String(500), default="")
    disclosed_on: Mapped[dt.date | None]
    #: The column mapping used ({"name": "Supplier", ...}).
    mapping: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    imported_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    previous_id: Mapped[int | None] = mapped_column(sa.ForeignKey("value_chain_maps.id", ondelete="SET NULL"))
    #: Changes against `previous`: {"added": n, "removed": n, "changed": n, "lines": [...]}.
    diff: Mapped[dict] = mapped_column(sa.JSON, default=dict)

    company: Mapped[Company] = relationship(foreign_keys=[company_id])
    previous: Mapped[ValueChainMap | None] = relationship(remote_side=[id])
    relationships: Mapped[list[Relationship]] = relationship(back_populates="map", cascade="all, delete-orphan",
                                                            order_by="Relationship.id")

    @property
    def name(self) -> str:
        """The label the audit trail shows."""
        return f"value chain map {self.number}"


class Relationship(TimestampMixin, db.Model):
    """The engaged company's link with one counterparty, as one map disclosed it."""

    __tablename__ = "value_chain_relationships"
    __table_args__ = (
        enum_check("kind", RelationshipKind),
        enum_check("status", RelationshipStatus),
        sa.CheckConstraint("tier >= 1", name="tier_positive"),
        sa.UniqueConstraint("map_id", "counterparty_id", "kind", name="uq_value_chain_relationships_identity"),
        sa.Index("ix_value_chain_relationships_identity", "company_id", "counterparty_id", "kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    map_id: Mapped[int] = mapped_column(sa.ForeignKey("value_chain_maps.id", ondelete="CASCADE"), index=True)
    company_id: Mapped[int] = mapped_column(sa.ForeignKey("companies.id", ondelete="CASCADE"))
    counterparty_id: Mapped[int] = mapped_column(sa.ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16), default=RelationshipKind.SUPPLIER.value)
    #: 1 = direct, 2, 3 (3 means 3 or further).
    tier: Mapped[int] = mapped_column(default=1)
    #: Products or inputs ("polysilicon", "aluminium frames").
    products: Mapped[str] = mapped_column(sa.Text, default="")
    #: ISO 3166-1 alpha-2.
    country: Mapped[str | None] = mapped_column(sa.String(2))
    region: Mapped[str] = mapped_column(sa.String(200), default="")
    #: The counterparty is in the Uyghur Region (see engage.valuechain.regions).
    in_uyghur_region: Mapped[bool] = mapped_column(default=False)
    #: Where in the map: "row 12", "p. 113".
    source_ref: Mapped[str] = mapped_column(sa.String(200), default="")
    status: Mapped[str] = mapped_column(sa.String(20), default=RelationshipStatus.ACTIVE.value)
    status_date: Mapped[dt.date | None]
    target_date: Mapped[dt.date | None]
    evidence: Mapped[str] = mapped_column(sa.Text, default="")
    not_linked_reason: Mapped[str] = mapped_column(sa.Text, default="")

    map: Mapped[ValueChainMap] = relationship(back_populates="relationships")
    company: Mapped[Company] = relationship(foreign_keys=[company_id])
    counterparty: Mapped[Company] = relationship(foreign_keys=[counterparty_id])

    @property
    def identity(self) -> tuple[int, int, str]:
        return (self.company_id, self.counterparty_id, self.kind)

    @property
    def name(self) -> str:
        """The label the audit trail shows."""
        return f"{self.kind} {self.counterparty.name}" if self.counterparty else self.kind


class RelationshipStatusChange(TimestampMixin, db.Model):
    """One dated change of a relationship's status (kept as history; the audit trail records it too)."""

    __tablename__ = "value_chain_status_changes"
    __table_args__ = (
        enum_check("from_status", RelationshipStatus),
        enum_check("to_status", RelationshipStatus),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    relationship_id: Mapped[int] = mapped_column(sa.ForeignKey("value_chain_relationships.id", ondelete="CASCADE"),
                                                 index=True)
    #: The engagement with the company open at the time, for its timeline.
    engagement_id: Mapped[int | None] = mapped_column(sa.ForeignKey("engagements.id", ondelete="SET NULL"), index=True)
    from_status: Mapped[str] = mapped_column(sa.String(20))
    to_status: Mapped[str] = mapped_column(sa.String(20))
    occurred_on: Mapped[dt.date]
    target_date: Mapped[dt.date | None]
    evidence: Mapped[str] = mapped_column(sa.Text, default="")
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    actor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))

    relationship_: Mapped[Relationship] = relationship("Relationship", foreign_keys=[relationship_id])
