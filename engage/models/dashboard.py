"""The dashboard's stored figures (issue 20): counts over whole tables, computed off the request."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from engage.extensions import db


class DashboardFigures(db.Model):
    """One stored set of figures per `kind` ("dashboard"), shared by every web worker.

    `data` is plain JSON (counts per stage, per owner..., see engage.main.figures); `day` is the
    day the figures were counted for (overdue, this month...), `computed_at` when, and
    `seconds`/`cpu_seconds` what the computation cost (the scheduler's cost per refresh).
    The key is the kind: two workers storing at once update one row (an upsert), never add two.
    """

    __tablename__ = "dashboard_figures"

    kind: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    day: Mapped[dt.date]
    data: Mapped[dict] = mapped_column(sa.JSON)
    computed_at: Mapped[dt.datetime]
    seconds: Mapped[float] = mapped_column(sa.Float, default=0.0)
    cpu_seconds: Mapped[float] = mapped_column(sa.Float, default=0.0)


class WriteCounter(db.Model):
    """A counter of writes to some tables, kept by database triggers: stored figures counted from
    those tables remember the value they were counted at and are used only while it is unchanged
    (engage.holdings.stored: "exposure", writes to holdings, risk flags and funds)."""

    __tablename__ = "write_counters"

    name: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    writes: Mapped[int] = mapped_column(sa.BigInteger, default=0)


class WriteLog(db.Model):
    """PostgreSQL's form of a write counter (engage.holdings.stored): one row per transaction that
    wrote the counted tables, (name, the transaction's id), so concurrent writers never wait on
    one another the way they would updating one counter row; `write_counters` then only counts
    the log's clearings (housekeeping). SQLite, one writer at a time, keeps the counter row."""

    __tablename__ = "write_log"
    __table_args__ = (sa.UniqueConstraint("name", "txid"),)

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(40))
    txid: Mapped[int] = mapped_column(sa.BigInteger)
