"""Funds and the positions they hold on a given date."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from engage.extensions import db
from engage.models.base import TimestampMixin
from engage.models.companies import Company


class Fund(TimestampMixin, db.Model):
    __tablename__ = "funds"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    provider: Mapped[str | None] = mapped_column(sa.String(120))
    #: ISO 4217 currency the fund reports in.
    base_currency: Mapped[str] = mapped_column(sa.String(3), default="USD")
    benchmark: Mapped[str | None] = mapped_column(sa.String(200))

    holdings: Mapped[list[Holding]] = relationship(back_populates="fund", cascade="all, delete-orphan")


class Holding(TimestampMixin, db.Model):
    """One position in a fund's snapshot; a snapshot is all rows of one fund and as-of date."""

    __tablename__ = "holdings"
    __table_args__ = (
        sa.UniqueConstraint("fund_id", "company_id", "as_of"),
        sa.Index("ix_holdings_fund_as_of", "fund_id", "as_of"),
        sa.CheckConstraint("weight IS NULL OR (weight >= 0 AND weight <= 100)", name="weight_range"),
        # Short positions are not imported (the parser refuses them): exposure is never negative.
        sa.CheckConstraint("market_value IS NULL OR market_value >= 0", name="market_value_not_negative"),
        sa.CheckConstraint("shares IS NULL OR shares >= 0", name="shares_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    fund_id: Mapped[int] = mapped_column(sa.ForeignKey("funds.id", ondelete="CASCADE"))
    company_id: Mapped[int] = mapped_column(
        sa.ForeignKey("companies.id", ondelete="CASCADE"), index=True
    )
    as_of: Mapped[dt.date]
    shares: Mapped[Decimal | None] = mapped_column(sa.Numeric(20, 4))
    #: Market value in the fund's base currency, never negative; None when the file gave none ("value unknown").
    market_value: Mapped[Decimal | None] = mapped_column(sa.Numeric(20, 2))
    #: Percent of the fund's net assets (0-100).
    weight: Mapped[Decimal | None] = mapped_column(sa.Numeric(9, 6))

    fund: Mapped[Fund] = relationship(back_populates="holdings")
    company: Mapped[Company] = relationship()


class DivestmentAlert(TimestampMixin, db.Model):
    """A divested company found held again in a fund's latest snapshot (dated after the divestment).

    One open alert per company and fund: inserting it is what decides that the owner of the
    divested engagement is emailed, so daily snapshots, a re-import, a back-filled older file or a
    concurrent import never email twice. It is resolved by the first latest snapshot in which the
    company is no longer held again (sold, or readmitted); holding it again after that is a new alert.
    """

    __tablename__ = "divestment_alerts"
    __table_args__ = (
        sa.Index("ux_divestment_alerts_open", "company_id", "fund_id", unique=True,
                 sqlite_where=sa.text("resolved_on IS NULL"), postgresql_where=sa.text("resolved_on IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(sa.ForeignKey("companies.id", ondelete="CASCADE"))
    fund_id: Mapped[int] = mapped_column(sa.ForeignKey("funds.id", ondelete="CASCADE"), index=True)
    #: The first snapshot (holdings date) the company was found in again.
    as_of: Mapped[dt.date]
    #: The divested engagement, where the readmission (reopening on recorded evidence) is done.
    engagement_id: Mapped[int] = mapped_column(sa.ForeignKey("engagements.id", ondelete="CASCADE"), index=True)
    market_value: Mapped[Decimal | None] = mapped_column(sa.Numeric(20, 2))
    #: The owner emailed when the alert was raised (none without an active owner).
    notified_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    #: The fund's latest snapshot that no longer held the company again (sold or readmitted); None while open.
    resolved_on: Mapped[dt.date | None]


class HoldingImport(TimestampMixin, db.Model):
    """One confirmed holdings file: the snapshot it wrote, the file it came from, who imported it."""

    __tablename__ = "holding_imports"
    __table_args__ = (sa.Index("ix_holding_imports_fund_as_of", "fund_id", "as_of"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    fund_id: Mapped[int] = mapped_column(sa.ForeignKey("funds.id", ondelete="CASCADE"))
    as_of: Mapped[dt.date]
    #: The file's name as uploaded or given to the CLI.
    filename: Mapped[str] = mapped_column(sa.String(255))
    #: SHA-256 of the file's bytes, to recognise the same file imported twice.
    sha256: Mapped[str] = mapped_column(sa.String(64))
    #: ishares-csv, spdr-xlsx, plain-csv or plain-xlsx.
    layout: Mapped[str] = mapped_column(sa.String(20))
    #: Holdings rows read, positions written, positions of the earlier snapshot replaced.
    rows: Mapped[int]
    positions: Mapped[int]
    replaced: Mapped[int] = mapped_column(default=0)
    #: The user said the file lists only part of the fund.
    partial: Mapped[bool] = mapped_column(default=False)
    #: "point" or "comma" when the user chose the decimal separator; None when it was read from the values.
    decimal: Mapped[str | None] = mapped_column(sa.String(5))
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    #: Who imported it: the user's email, or "cli".
    actor_label: Mapped[str] = mapped_column(sa.String(200))

    fund: Mapped[Fund] = relationship()


def latest_snapshots(fund_ids=None, *, on: dt.date | None = None):
    """Subquery (fund_id, as_of): each fund's latest holdings snapshot (on or before `on`).

    The one definition of "the latest snapshot"; join a holding to it with `in_snapshot`.
    One index lookup per fund (the latest date of each fund read from ix_holdings_fund_as_of, a
    correlated max per fund), not a grouped pass over every holding: 125,156 index entries at
    100,000 companies for two rows. Funds without holdings (on or before `on`) have no row.
    """
    latest = sa.select(sa.func.max(Holding.as_of)).where(Holding.fund_id == Fund.id)
    if on is not None:
        latest = latest.where(Holding.as_of <= on)
    latest = latest.correlate(Fund).scalar_subquery()
    query = sa.select(Fund.id.label("fund_id"), latest.label("as_of")).where(latest.is_not(None))
    if fund_ids is not None:
        query = query.where(Fund.id.in_(fund_ids))
    return query.subquery("snapshots")


#: Indexes that migrations make in words of each database, which no model describes (so Alembic's
#: comparison leaves them out): a snapshot by market value, largest first, for the held-again slice
#: (migration 0036: `market_value DESC NULLS LAST` on PostgreSQL, `market_value DESC` on SQLite).
DATABASE_ONLY_INDEXES = frozenset({"ix_holdings_fund_as_of_value"})


def in_snapshot(snapshots):
    """SQL: the holding belongs to one of `snapshots` (a subquery of fund_id, as_of)."""
    return sa.and_(snapshots.c.fund_id == Holding.fund_id, snapshots.c.as_of == Holding.as_of)


def latest_snapshot_date(fund_id: int, *, on: dt.date | None = None) -> dt.date | None:
    """The date of one fund's latest snapshot (on or before `on`), None without holdings."""
    snap = latest_snapshots([fund_id], on=on)
    return db.session.scalar(sa.select(snap.c.as_of))
