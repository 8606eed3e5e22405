"""Exposure to the public lists per fund, and divested companies held again.

Screening (matching companies to list entries, flags, the match review) lives in engage.lists.screening.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa
from flask import current_app, render_template
from sqlalchemy.orm import aliased, selectinload

from engage import clock
from engage.dbutil import insert_ignoring_conflicts
from engage.engagements import cycle
from engage.engagements.service import EngagementError, open_engagement
from engage.extensions import db
from engage.formatting import round_half_up
from engage.models import (
    Company,
    DivestmentAlert,
    Engagement,
    EngagementEvent,
    FlagLink,
    Fund,
    Holding,
    ListedEntity,
    RiskFlag,
    RiskSource,
    User,
)
from engage.core import outbox
from engage.models.engagements import event_divesting
from engage.models.holdings import in_snapshot, latest_snapshot_date, latest_snapshots
from engage.models.lists import latest_version_ids


def current_entries():
    """SQL: the entries of each list's latest version."""
    return sa.select(ListedEntity).where(ListedEntity.version_id.in_(latest_version_ids()))


# Exposure ---------------------------------------------------------------------------------
# "Official list" and "exposure" are defined here once; the dashboard, the funds pages, the
# screening page, the CLI and the monthly export all read them from `exposures()`.

#: The lists exposure is measured against; the other sources (sector risk, analyst notes) are
#: signals, shown apart and never summed in.
OFFICIAL_LISTS: tuple[str, ...] = tuple(source.value for source in RiskSource.official())
SIGNALS: tuple[str, ...] = tuple(source.value for source in RiskSource if not source.is_official)
#: The `source` of the part "on any official list".
ANY_OFFICIAL = "official"


def current_flags():
    """SQL condition: a flag still standing (not ended by a newer list version)."""
    return RiskFlag.ended_on.is_(None)


def on_official_list():
    """SQL: ids of the companies named by at least one official list (a current, direct flag).

    A `linked` flag (the list names the company's parent) does not put a company on the list: it
    is counted apart (`linked_to_official_list`) and never summed into exposure.
    """
    return sa.select(RiskFlag.company_id).where(RiskFlag.source.in_(OFFICIAL_LISTS), current_flags(),
                                                RiskFlag.link == FlagLink.DIRECT.value)


def linked_to_official_list():
    """SQL: ids of the companies on no official list whose parent is (a current, linked flag)."""
    return sa.select(RiskFlag.company_id).where(RiskFlag.source.in_(OFFICIAL_LISTS), current_flags(),
                                                RiskFlag.link == FlagLink.LINKED.value,
                                                RiskFlag.company_id.not_in(on_official_list()))


def snapshots(fund_ids: list[int] | None = None, *, on: dt.date | None = None, as_of: dt.date | None = None):
    """Subquery (fund_id, as_of): each fund's latest holdings date (on or before `on`), or its `as_of` snapshot."""
    if as_of is None:
        return latest_snapshots(fund_ids, on=on)
    query = sa.select(Holding.fund_id, Holding.as_of).where(Holding.as_of == as_of).distinct()
    if fund_ids is not None:
        query = query.where(Holding.fund_id.in_(fund_ids))
    return query.subquery("snapshots")



@dataclass
class Part:
    """The holdings of a snapshot on one list (or on any official list): how many, their value, their share.

    `value` adds up the known market values only; `unknown` counts the holdings the file gave no
    value for, which are shown as "value unknown for N", never as a silent 0.
    """

    source: str
    positions: int
    value: Decimal
    total: Decimal
    #: Holdings of the part without a market value.
    unknown: int = 0
    #: For a signal (analyst note, sector risk): how many of its holdings are also on an official list.
    also_official: int = 0
    #: "direct": the list names the companies; "linked": it names their parent (shown apart, not exposure).
    link: str = "direct"

    @property
    def label(self) -> str:
        if self.source == ANY_OFFICIAL:
            return "On any official list" if self.link == "direct" else "Linked to an official list through a parent"
        return RiskSource(self.source).label

    @property
    def value_known(self) -> bool:
        """False when every holding of the part lacks a market value (the value is unknown, not 0)."""
        return self.positions == 0 or self.unknown < self.positions

    @property
    def share(self) -> Decimal | None:
        """Percent of the fund's known market value, one decimal, half up; None when either is unknown."""
        if not self.total or not self.value_known:
            return None
        return round_half_up(self.value * 100 / self.total, 1)


@dataclass
class HeldAgain:
    """A divested company found in a fund's snapshot dated after its divestment."""

    fund_id: int
    fund: str
    currency: str
    as_of: dt.date
    company_id: int
    company: str
    market_value: Decimal | None
    engagement_id: int
    owner_id: int | None
    divested_on: dt.date


@dataclass
class ExposureRow:
    """One flagged holding of a snapshot, with its flags and where its engagement stands."""

    holding: Holding
    company: Company
    flags: list[RiskFlag]
    #: An open engagement of the company (any campaign), if any.
    open: Engagement | None = None
    #: The company's divested engagement still in force (the latest), and its date.
    divestment: Engagement | None = None
    divested_on: dt.date | None = None

    @property
    def official_flags(self) -> list[RiskFlag]:
        """The official lists naming the company itself (direct flags)."""
        return [f for f in self.flags if f.source in OFFICIAL_LISTS and not f.is_linked]

    @property
    def linked_flags(self) -> list[RiskFlag]:
        """Official lists naming the company's parent (and its subsidiaries): shown apart."""
        return [f for f in self.flags if f.source in OFFICIAL_LISTS and f.is_linked]

    @property
    def signal_flags(self) -> list[RiskFlag]:
        return [f for f in self.flags if f.source not in OFFICIAL_LISTS]

    @property
    def held_again(self) -> bool:
        return self.divestment is not None and self.holding.as_of > self.divested_on

    @property
    def can_open(self) -> bool:
        """The bulk action may open an engagement: none open, and not divested (readmission is a reopening)."""
        return self.open is None and self.divestment is None


@dataclass
class FundExposure:
    fund: Fund
    as_of: dt.date | None
    #: The snapshot's known market value (holdings without a value are counted in `unknown`).
    total: Decimal
    positions: int
    #: On any official list, each holding counted once.
    official: Part
    #: One part per official list, in the order of RiskSource.official().
    lists: list[Part]
    #: Sector risk and analyst notes: shown apart, never summed into exposure.
    signals: list[Part]
    #: Holdings linked to an official list through a listed parent, per list and on any (each once,
    #: and only those the lists do not name themselves): shown apart, not counted as exposure.
    linked: list[Part] = field(default_factory=list)
    linked_any: Part | None = None
    #: With detail: the holdings on an official list, those with only signals, divested ones held again.
    rows: list[ExposureRow] = field(default_factory=list)
    #: With detail: holdings on no official list themselves but linked to one through their parent.
    linked_rows: list[ExposureRow] = field(default_factory=list)
    noted: list[ExposureRow] = field(default_factory=list)
    held_again: list[HeldAgain] = field(default_factory=list)
    #: Holdings of the snapshot without a market value.
    unknown: int = 0

    @property
    def value_known(self) -> bool:
        """False when no holding of the snapshot has a market value: "value unknown", not 0."""
        return self.positions == 0 or self.unknown < self.positions

    @property
    def share(self) -> Decimal | None:
        return self.official.share

    @property
    def to_open(self) -> list[ExposureRow]:
        return [row for row in self.rows if row.can_open]


@dataclass(frozen=True)
class SnapshotTotals:
    """A fund's snapshot counted over all its holdings (stored by engage.main.figures, counted off the
    request): its date, positions, known market value, holdings without a value, held again after
    divestment."""

    as_of: dt.date
    positions: int
    total: Decimal
    unknown: int
    held_again: int


def exposures(fund_ids: list[int] | None = None, *, on: dt.date | None = None, as_of: dt.date | None = None,
              detail: bool = False, totals: dict[int, SnapshotTotals] | None = None,
              groups: list[FlaggedGroup] | None = None) -> list[FundExposure]:
    """Each fund's exposure (all funds, by name, unless `fund_ids`) at its latest snapshot (on or before `on`).

    Exposure is the market value of the holdings on an official list, per list and on any
    official list (a company on two lists counts once), as a share of the snapshot's market
    value. Only current flags count (an ended flag is history), and only direct ones: a holding
    linked to a list through its parent is counted apart, in `linked`. Two queries for all
    funds; `detail` adds the rows for the screening page in a few more.

    `totals` (the stored counts over every holding, by fund): each fund's positions, market value
    and holdings without a value are taken from it when it was counted for the fund's latest
    snapshot, so only the flagged holdings are read; when it misses a fund or was counted for
    another date, every fund is counted here (one query more). `groups`: `flagged_figures` of the
    same snapshots, when the caller has them (the screening pages count their sections from them too).
    """
    snap = snapshots(fund_ids, on=on, as_of=as_of)
    value = sa.func.coalesce(Holding.market_value, 0)
    missing = Holding.market_value.is_(None)
    counted = None
    if totals is not None:
        dated = sa.select(Fund, snap.c.as_of).outerjoin(snap, snap.c.fund_id == Fund.id).order_by(Fund.name)
        if fund_ids is not None:
            dated = dated.where(Fund.id.in_(fund_ids))
        funds = db.session.execute(dated).all()
        if all(snapshot is None or (fund.id in totals and totals[fund.id].as_of == snapshot) for fund, snapshot in funds):
            counted = [(fund, snapshot, *((totals[fund.id].positions, totals[fund.id].total, totals[fund.id].unknown)
                                          if snapshot is not None else (0, 0, 0))) for fund, snapshot in funds]
    query = (
        sa.select(Fund, snap.c.as_of, sa.func.count(Holding.id), sa.func.coalesce(sa.func.sum(Holding.market_value), 0),
                  sa.func.count(sa.case((missing, Holding.id))))
        .outerjoin(snap, snap.c.fund_id == Fund.id)
        .outerjoin(Holding, sa.and_(Holding.fund_id == Fund.id, Holding.as_of == snap.c.as_of))
        .group_by(Fund.id, snap.c.as_of)
        .order_by(Fund.name)
    )
    if fund_ids is not None:
        query = query.where(Fund.id.in_(fund_ids))
    # The parts read the flagged holdings only, led by the flagged companies (`flagged_companies`:
    # one grouped pass over the current flags, then each company's holdings by ix_holdings_company_id),
    # not by testing every holding of the snapshot against the lists.
    groups = groups if groups is not None else flagged_figures(snap)
    per_source: dict[tuple, list] = {}
    any_parts: dict[tuple, list] = {}
    for g in groups:
        figures = per_source.setdefault((g.fund_id, g.source, g.link), [0, Decimal(0), 0, 0])
        figures[0] += g.count
        figures[1] += g.amount
        figures[2] += g.unknown
        figures[3] += g.count if g.section == "official" else 0
        if g.first and g.section in ("official", "linked"):  # on any official list, or linked only: each holding once
            link = FlagLink.DIRECT.value if g.section == "official" else FlagLink.LINKED.value
            figures = any_parts.setdefault((g.fund_id, link), [0, Decimal(0), 0])
            figures[0] += g.count
            figures[1] += g.amount
            figures[2] += g.unknown
    result = []
    for fund, snapshot, positions, total, unknown in (counted if counted is not None else db.session.execute(query)):
        total = Decimal(total or 0)
        listed_positions, listed_value, listed_unknown = any_parts.get((fund.id, FlagLink.DIRECT.value), (0, 0, 0))
        linked_positions, linked_value, linked_unknown = any_parts.get((fund.id, FlagLink.LINKED.value), (0, 0, 0))


        def part(source, signal=False, link=FlagLink.DIRECT.value):
            count, amount, missing_values, also_listed = per_source.get((fund.id, source, link), (0, Decimal(0), 0, 0))
            return Part(source, count, amount, total, unknown=missing_values, also_official=also_listed if signal else 0,
                        link=link)

        result.append(FundExposure(
            fund=fund, as_of=snapshot, total=total, positions=positions, unknown=unknown,
            official=Part(ANY_OFFICIAL, listed_positions, Decimal(listed_value or 0), total, unknown=listed_unknown),
            lists=[part(source) for source in OFFICIAL_LISTS],
            signals=[part(source, signal=True) for source in SIGNALS],
            linked=[part(source, link=FlagLink.LINKED.value) for source in OFFICIAL_LISTS],
            linked_any=Part(ANY_OFFICIAL, linked_positions, Decimal(linked_value or 0), total, unknown=linked_unknown,
                            link=FlagLink.LINKED.value)))
    if detail and result:
        _add_detail(result, snap)
    return result


@dataclass
class OverallLine:
    """All funds together for one list and currency: holdings the list names, and those linked through a parent."""

    currency: str
    source: str
    direct: int = 0
    direct_value: Decimal = Decimal(0)
    direct_unknown: int = 0
    linked: int = 0
    linked_value: Decimal = Decimal(0)
    linked_unknown: int = 0

    @property
    def label(self) -> str:
        return "On any official list" if self.source == ANY_OFFICIAL else RiskSource(self.source).label


def overall(result: list[FundExposure]) -> list[OverallLine]:
    """The funds' exposures added up per currency and list (no query: from `exposures()`).

    Positions are holdings (a company held by two funds counts twice); values of funds in
    different currencies are never added together.
    """
    lines: dict[tuple[str, str], OverallLine] = {}
    for e in result:
        if e.as_of is None:
            continue
        currency = e.fund.base_currency
        for direct, linked in [*zip(e.lists, e.linked), (e.official, e.linked_any)]:
            line = lines.setdefault((currency, direct.source), OverallLine(currency, direct.source))
            line.direct += direct.positions
            line.direct_value += direct.value
            line.direct_unknown += direct.unknown
            if linked is not None:
                line.linked += linked.positions
                line.linked_value += linked.value
                line.linked_unknown += linked.unknown
    order = {source: i for i, source in enumerate((*OFFICIAL_LISTS, ANY_OFFICIAL))}
    return sorted((line for line in lines.values() if line.direct or line.linked or line.source == ANY_OFFICIAL),
                  key=lambda line: (line.currency, order[line.source]))


def exposure(fund: Fund, as_of: dt.date | None = None, detail: bool = True) -> FundExposure:
    """One fund's exposure at `as_of` (default: its latest snapshot)."""
    return exposures([fund.id], as_of=as_of, detail=detail)[0]


def _add_detail(result: list[FundExposure], snap) -> None:
    """The flagged holdings of each snapshot with their flags and engagements, and divested ones held again."""
    flagged = Holding.company_id.in_(sa.select(RiskFlag.company_id).where(current_flags()))
    held = sa.select(Holding.company_id).join(snap, in_snapshot(snap)).where(flagged)
    holdings = db.session.execute(
        sa.select(Holding, Company).join(snap, in_snapshot(snap)).join(Company, Company.id == Holding.company_id)
        .where(flagged)
        .order_by(Holding.market_value.desc().nulls_last(), Company.normalized_name)
    ).all()
    flags = _current_flags_of(held)
    open_by_company, divested_by_company = _engagements_of(held)
    by_fund = {item.fund.id: item for item in result}
    for holding, company in holdings:
        divestment, divested_on = divested_by_company.get(company.id, (None, None))
        row = ExposureRow(holding=holding, company=company, flags=flags[company.id],
                          open=open_by_company.get(company.id), divestment=divestment, divested_on=divested_on)
        target = by_fund[holding.fund_id]
        (target.rows if row.official_flags else target.linked_rows if row.linked_flags else target.noted).append(row)
    for item in held_after_divestment(snap):
        by_fund[item.fund_id].held_again.append(item)


# The screening page's lists, in slices --------------------------------------------------------
# The page shows each fund's aggregates (from `exposures()`) and the first SHOWN rows of each long
# list, fetched with a bound in SQL, with "N of M shown" and a link to the paged full list.

#: Rows of each long list (per fund and section, and held again per fund) the screening page shows.
SHOWN = 20

#: The flagged holdings of a snapshot fall in one of these, as `_add_detail` sorts them.
SECTIONS: dict[str, str] = {
    "official": "Holdings on an official list",
    "linked": "Holdings linked to an official list through a listed parent (not counted as exposure)",
    "noted": "Holdings with analyst notes or sector risk only, on no official list (not exposure)",
}


def flagged_companies(new_after: int | None = None):
    """Subquery (company_id, official, linked, new, first_source): each company with a current flag (any source),
    once, with 1 or 0 for: a direct flag of an official list stands (`on_official_list`), a linked
    one does (`linked_to_official_list` when `official` is 0), an official list's flag made by the
    screening since the one before the latest stands (see engage.lists.screening.new_since_threshold;
    0 when none ran), and the first of its flags' sources (to count a holding once). One grouped pass over the current flags (6,000 at
    100,000 companies): the screening queries start from it and reach the flagged holdings by
    company, rather than testing every holding of the snapshot against the lists."""
    official = sa.and_(RiskFlag.source.in_(OFFICIAL_LISTS), RiskFlag.link == FlagLink.DIRECT.value)
    linked = sa.and_(RiskFlag.source.in_(OFFICIAL_LISTS), RiskFlag.link == FlagLink.LINKED.value)
    new = (sa.false() if new_after is None else
           sa.and_(RiskFlag.source.in_(OFFICIAL_LISTS), RiskFlag.entity_id.is_not(None), RiskFlag.id > new_after))
    return (sa.select(RiskFlag.company_id,
                      sa.func.max(sa.case((official, 1), else_=0)).label("official"),
                      sa.func.max(sa.case((linked, 1), else_=0)).label("linked"),
                      sa.func.max(sa.case((new, 1), else_=0)).label("new"),
                      sa.func.min(RiskFlag.source).label("first_source"))
            .where(current_flags()).group_by(RiskFlag.company_id).subquery("flagged"))


def _section(flagged):
    """SQL: the section of a flagged holding (its company on an official list, linked to one, or only
    noted), from `flagged_companies`."""
    return sa.case((flagged.c.official == 1, "official"), (flagged.c.linked == 1, "linked"), else_="noted")


def _flagged_holdings(query, snap, flagged):
    """`query` over the holdings of the snapshots `snap` whose company is flagged, led by `flagged`."""
    return (query.join(Holding, Holding.company_id == flagged.c.company_id).join(snap, in_snapshot(snap)))


def _can_open():
    """SQL condition: no engagement of the company is open or divested (ExposureRow.can_open)."""
    return ~sa.exists().where(Engagement.company_id == Holding.company_id,
                              sa.or_(Engagement.is_open, Engagement.is_divested))


def _row_order():
    """Largest holdings first, then by name; ties broken by the holding's id (a stable order for paging)."""
    return (Holding.market_value.desc().nulls_last(), Company.normalized_name, Holding.id)


def _in_source(source: str):
    """SQL condition: a current flag of list or signal `source` stands on the holding's company."""
    return Holding.company_id.in_(sa.select(RiskFlag.company_id).where(current_flags(), RiskFlag.source == source))


@dataclass
class SectionCounts:
    """How many flagged holdings a fund's snapshot has per section, how many the bulk action would
    open an engagement for, and how many are new since the last screening."""

    counts: dict[str, int] = field(default_factory=dict)
    to_open: int = 0
    new: int = 0

    def __getitem__(self, section: str) -> int:
        return self.counts.get(section, 0)


def section_counts(snap, new_after: int | None = None, fund_id: int | None = None,
                   source: str | None = None) -> dict[int, SectionCounts]:
    """Per fund (of `snap`): its flagged holdings counted per section, those the bulk action may open, new ones. One query."""
    flagged = flagged_companies(new_after)
    section = _section(flagged).label("section")
    query = _flagged_holdings(
        sa.select(Holding.fund_id, section, sa.func.count(), sa.func.count(sa.case((_can_open(), Holding.id))),
                  sa.func.count(sa.case((flagged.c.new == 1, Holding.id)))).select_from(flagged),
        snap, flagged).group_by(Holding.fund_id, section)
    if fund_id is not None:
        query = query.where(Holding.fund_id == fund_id)
    if source is not None:
        query = query.where(_in_source(source))
    result: dict[int, SectionCounts] = defaultdict(SectionCounts)
    for fund, name, count, can_open, new in db.session.execute(query):
        counts = result[fund]
        counts.counts[name] = count
        counts.new += new
        if name == "official":
            counts.to_open = can_open
    return result


@dataclass(frozen=True)
class FlaggedGroup:
    """Flagged holdings of a fund's snapshot counted together (`flagged_figures`): those of one
    list or signal and link, section, new or not; `first` when `source` is the first of the
    company's sources (summing the groups with `first` counts each holding once)."""

    fund_id: int
    source: str
    link: str
    section: str
    first: bool
    new: bool
    count: int
    amount: Decimal
    unknown: int
    can_open: int


def flagged_figures(snap, new_after: int | None = None) -> list[FlaggedGroup]:
    """Every figure over the flagged holdings of the snapshots `snap` in one query, led by the
    flagged companies: per fund, list or signal, link, section and "new", how many holdings, their
    known market value, how many without a value, how many the bulk action may open. `exposures`
    takes its parts from it and `section_counts_of` the sections (a holding on two lists is in two
    groups, once with `first`)."""
    flagged = flagged_companies(new_after)
    pairs = (sa.select(RiskFlag.company_id, RiskFlag.source, sa.func.min(RiskFlag.link).label("link"))
             .where(current_flags()).group_by(RiskFlag.company_id, RiskFlag.source).subquery("listed_pairs"))
    section = _section(flagged).label("section")
    first = sa.case((pairs.c.source == flagged.c.first_source, 1), else_=0).label("first")
    if db.session.get_bind().dialect.name == "postgresql":
        # an index lookup per holding (LATERAL ... LIMIT 1): as a NOT EXISTS, PostgreSQL hashed every
        # open or divested engagement (a sequential scan of 183,592 at 100,000 companies) for 5,333 holdings
        blocking = (sa.select(sa.literal(1).label("found")).select_from(Engagement)
                    .where(Engagement.company_id == Holding.company_id, sa.or_(Engagement.is_open, Engagement.is_divested))
                    .limit(1).lateral("blocking"))
        can_open = blocking.c.found.is_(None)
    else:
        blocking, can_open = None, _can_open()
    query = (sa.select(Holding.fund_id, pairs.c.source, pairs.c.link, section, first, flagged.c.new,
                       sa.func.count(Holding.id), sa.func.sum(sa.func.coalesce(Holding.market_value, 0)),
                       sa.func.count(sa.case((Holding.market_value.is_(None), Holding.id))),
                       sa.func.count(sa.case((can_open, Holding.id))))
             .select_from(pairs)
             .join(flagged, flagged.c.company_id == pairs.c.company_id)
             .join(Holding, Holding.company_id == pairs.c.company_id)
             .join(snap, in_snapshot(snap)))
    if blocking is not None:
        query = query.outerjoin(blocking, sa.true())
    rows = db.session.execute(
        query.group_by(Holding.fund_id, pairs.c.source, pairs.c.link, section, first, flagged.c.new)).all()
    return [FlaggedGroup(fund, source, link, name, bool(is_first), bool(new), count, Decimal(amount or 0), unknown,
                         can_open)
            for fund, source, link, name, is_first, new, count, amount, unknown, can_open in rows]


def section_counts_of(groups: list[FlaggedGroup]) -> dict[int, SectionCounts]:
    """`section_counts` (without a list filter) from `flagged_figures`: no query."""
    result: dict[int, SectionCounts] = defaultdict(SectionCounts)
    for g in groups:
        if not g.first:
            continue
        counts = result[g.fund_id]
        counts.counts[g.section] = counts.counts.get(g.section, 0) + g.count
        counts.new += g.count if g.new else 0
        if g.section == "official":
            counts.to_open += g.can_open
    return result


def flagged_slice_ids(snap, per_fund: int = SHOWN, new_after: int | None = None) -> dict[tuple[int, str], list[int]]:
    """`flagged_slices` as holding ids: the first `per_fund` of each fund's sections (and of its
    holdings new since the last screening, under "new"), in `_row_order`. One query."""
    flagged = flagged_companies(new_after)
    section = _section(flagged)
    # First the candidates, by value alone (no company read, no name compared): a holding among the
    # first `per_fund` of its list has fewer than `per_fund` holdings of higher value ahead of it,
    # so its rank() by value is at most `per_fund`; every holding ahead of a candidate in the page's
    # order is a candidate too, so numbering the candidates in that order numbers them as all the
    # holdings would. One pass ranks each in its section and, when new, among the fund's new ones.
    by_value = Holding.market_value.desc().nulls_last()
    value_rank_new = (sa.func.rank().over(partition_by=(Holding.fund_id, flagged.c.new), order_by=by_value)
                      if new_after is not None else sa.literal(None, sa.Integer))
    candidates = (_flagged_holdings(
        sa.select(Holding.id.label("holding_id"), Holding.fund_id.label("fund_id"), Holding.company_id.label("company_id"),
                  Holding.market_value.label("market_value"), section.label("section"), flagged.c.new.label("new"),
                  sa.func.rank().over(partition_by=(Holding.fund_id, section), order_by=by_value).label("value_rank"),
                  value_rank_new.label("value_rank_new"))
        .select_from(flagged), snap, flagged)).subquery("candidates")
    order = (candidates.c.market_value.desc().nulls_last(), Company.normalized_name, candidates.c.holding_id)
    nth_new = (sa.func.row_number().over(partition_by=(candidates.c.fund_id, candidates.c.new), order_by=order)
               if new_after is not None else sa.literal(None, sa.Integer))
    ranked = (sa.select(candidates.c.holding_id, candidates.c.section, candidates.c.new,
                        sa.func.row_number().over(partition_by=(candidates.c.fund_id, candidates.c.section),
                                                  order_by=order).label("nth"),
                        nth_new.label("nth_new"))
              .join(Company, Company.id == candidates.c.company_id)
              .where(sa.or_(candidates.c.value_rank <= per_fund,
                            sa.and_(candidates.c.new == 1, candidates.c.value_rank_new <= per_fund)))
              .subquery("picked"))
    rows = db.session.execute(
        sa.select(Holding.id, Holding.fund_id, ranked.c.section, ranked.c.nth, ranked.c.new, ranked.c.nth_new)
        .join(ranked, ranked.c.holding_id == Holding.id)
        .where(sa.or_(ranked.c.nth <= per_fund, sa.and_(ranked.c.new == 1, ranked.c.nth_new <= per_fund)))
        .order_by(Holding.fund_id, ranked.c.section, ranked.c.nth)).all()
    result: dict[tuple[int, str], list[int]] = defaultdict(list)
    fresh: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for holding_id, fund_id, name, nth, new, nth_new in rows:
        if nth <= per_fund:
            result[fund_id, name].append(holding_id)
        if new == 1 and nth_new <= per_fund:
            fresh[fund_id].append((nth_new, holding_id))
    for fund_id, items in fresh.items():
        result[fund_id, "new"] = [holding_id for _, holding_id in sorted(items)]
    return dict(result)


def flagged_slices(snap, per_fund: int = SHOWN, new_after: int | None = None) -> dict[tuple[int, str], list[ExposureRow]]:
    """The first `per_fund` rows of each fund's sections (and of its holdings new since the last
    screening, under "new"), in `_row_order`, with their flags and engagements: a fixed number of
    queries, and at most `per_fund` rows per list leave the database."""
    return rows_by_ids(flagged_slice_ids(snap, per_fund, new_after))


def rows_by_ids(lists: dict) -> dict:
    """`flagged_rows` for several lists of holding ids at once (the same queries for all): key -> rows."""
    rows = {row.holding.id: row for row in flagged_rows([i for ids in lists.values() for i in ids])}
    result: dict = defaultdict(list)
    result.update({key: [rows[i] for i in ids if i in rows] for key, ids in lists.items()})
    return result


def flagged_rows(ids: list[int]) -> list[ExposureRow]:
    """The holdings `ids` (in that order) with their companies, flags and engagements: a fixed number of queries."""
    if not ids:
        return []
    found = {holding.id: (holding, company) for holding, company in db.session.execute(
        sa.select(Holding, Company).join(Company, Company.id == Holding.company_id).where(Holding.id.in_(set(ids))))}
    return _with_detail([found[i] for i in ids if i in found])


def flagged_list_ids(snap) -> dict[tuple[int, str], list[int]]:
    """Every fund's flagged holdings of `snap` per section, as ids in `_row_order` (`flagged_page`'s
    order without a filter): one query."""
    flagged = flagged_companies()
    section = _section(flagged).label("section")
    rows = db.session.execute(
        _flagged_holdings(sa.select(Holding.fund_id, section, Holding.id).select_from(flagged), snap, flagged)
        .join(Company, Company.id == Holding.company_id)
        .order_by(Holding.fund_id, section, *_row_order())).all()
    result: dict[tuple[int, str], list[int]] = defaultdict(list)
    for fund_id, name, holding_id in rows:
        result[fund_id, name].append(holding_id)
    return dict(result)


def _section_where(columns, snap, fund_id: int, section: str, source: str | None, new_after: int | None,
                   new_only: bool):
    """A select of `columns` over the fund's flagged holdings of `section`, led by the flagged companies."""
    flagged = flagged_companies(new_after)
    query = (_flagged_holdings(sa.select(*columns).select_from(flagged), snap, flagged)
             .where(Holding.fund_id == fund_id, _section(flagged) == section))
    if source is not None:
        query = query.where(_in_source(source))
    if new_only:
        query = query.where(flagged.c.new == 1)
    return query


def flagged_count(snap, fund_id: int, section: str, *, source: str | None = None, new_after: int | None = None,
                  new_only: bool = False) -> int:
    """How many rows `flagged_page` pages through with these filters."""
    query = _section_where([sa.func.count(Holding.id)], snap, fund_id, section, source, new_after, new_only)
    return db.session.scalar(query) or 0


def flagged_page(snap, fund_id: int, section: str, *, limit: int, offset: int = 0, source: str | None = None,
                 new_after: int | None = None, new_only: bool = False) -> list[ExposureRow]:
    """One page of a fund's section (LIMIT and OFFSET in SQL, `_row_order`), filtered to a list or
    signal `source` and to holdings new since the last screening, with flags and engagements."""
    query = (_section_where([Holding, Company], snap, fund_id, section, source, new_after, new_only)
             .join(Company, Company.id == Holding.company_id))
    return _with_detail(db.session.execute(query.order_by(*_row_order()).limit(limit).offset(offset)).all())


def _current_flags_of(company_ids) -> dict[int, list[RiskFlag]]:
    """The current flags of the companies (ids, or a select of them), oldest first, by company: one
    query, and two more for the flags' list versions and parents."""
    flags: dict[int, list[RiskFlag]] = defaultdict(list)
    for flag in db.session.scalars(sa.select(RiskFlag).where(RiskFlag.company_id.in_(company_ids), current_flags())
                                   .options(selectinload(RiskFlag.version), selectinload(RiskFlag.linked_via))
                                   .order_by(RiskFlag.effective_date, RiskFlag.id)):
        flags[flag.company_id].append(flag)
    return flags


def _with_detail(holdings: list) -> list[ExposureRow]:
    """`ExposureRow`s for (holding, company) pairs: their current flags and engagements, in three
    queries (two more load the flags' list versions and parents) whatever the number of rows."""
    company_ids = {company.id for _, company in holdings}
    if not company_ids:
        return []
    flags = _current_flags_of(company_ids)
    open_by_company, divested_by_company = _engagements_of(company_ids)
    rows = []
    for holding, company in holdings:
        divestment, divested_on = divested_by_company.get(company.id, (None, None))
        rows.append(ExposureRow(holding=holding, company=company, flags=flags[company.id],
                                open=open_by_company.get(company.id), divestment=divestment, divested_on=divested_on))
    return rows


def _engagements_of(companies) -> tuple[dict[int, Engagement], dict[int, tuple[Engagement, dt.date]]]:
    """Each company's first open engagement, and its latest divested one with its date (`companies`:
    ids, or a subquery of them)."""
    open_by_company: dict[int, Engagement] = {}
    divested_by_company: dict[int, tuple[Engagement, dt.date]] = {}
    for engagement, divested_on in db.session.execute(
        sa.select(Engagement, cycle.divested_on())
        .where(Engagement.company_id.in_(companies), sa.or_(Engagement.is_open, Engagement.is_divested))
        .order_by(Engagement.opened_on, Engagement.id)
    ):
        if engagement.is_divested:
            current = divested_by_company.get(engagement.company_id)
            if current is None or divested_on >= current[1]:
                divested_by_company[engagement.company_id] = (engagement, divested_on)
        elif engagement.company_id not in open_by_company:
            open_by_company[engagement.company_id] = engagement
    return open_by_company, divested_by_company


def held_again_slices(snap, per_fund: int = SHOWN, counts: dict[int, int] | None = None
                      ) -> dict[int, tuple[list[HeldAgain], int]]:
    """Per fund: the first `per_fund` companies held again after divestment (`held_again`'s order) and how many in all.

    `counts` (stored, by fund): how many in all, instead of counting them (a count over every
    holding of the snapshot); a fund with fewer than `per_fund` rows shows its rows' number, exact."""
    result: dict[int, tuple[list[HeldAgain], int]] = {}
    if counts is not None:
        rows, _ = _held_again_per_fund(snap, per_fund, counts=counts)
    else:
        rows, _ = held_again(snap, per_fund=per_fund)
    for item, total in rows:
        result.setdefault(item.fund_id, ([], total))[0].append(item)
    return result


def held_after_divestment(snap, engagement_id: int | None = None) -> list[HeldAgain]:
    """Divested companies in the snapshots `snap` dated after the divestment, one per fund and company.

    A company is divested while one of its engagements is (cycle.is_divested): closed as divested,
    or escalated to divested; readmitting it (reopening on recorded evidence) ends that.
    """
    return held_again(snap, engagement_id)[0]


def _held_again_select(engagement, divested_on):
    """A held-again row's columns, and `nth`: 1 for each fund and company's latest divested
    engagement (a company is held once per snapshot: the unique fund, company and date)."""
    return sa.select(
        Holding.fund_id, Fund.name.label("fund"), Fund.base_currency, Holding.as_of, Company.id.label("company_id"),
        Company.name.label("company"), Holding.market_value, engagement.id.label("engagement_id"),
        engagement.owner_id, divested_on.label("divested_on"), Company.normalized_name, Holding.id.label("holding_id"),
        sa.func.row_number().over(partition_by=(Holding.fund_id, Company.id),
                                  order_by=(divested_on.desc(), engagement.id.desc())).label("nth"))


def _of_snapshots(query: sa.Select, snap) -> sa.Select:
    """`query` (FROM holdings) kept to the holdings of `snap`'s snapshots. On SQLite by the few
    (fund, date) pairs read first: joined as a subquery, SQLite inlines the latest-snapshot lookup
    and evaluates it per holding (the held-again list at 100,000 companies); PostgreSQL joins it."""
    if db.session.get_bind().dialect.name != "sqlite":
        return query.join(snap, in_snapshot(snap))
    pairs = [tuple(row) for row in db.session.execute(sa.select(snap.c.fund_id, snap.c.as_of))]
    return query.where(sa.tuple_(Holding.fund_id, Holding.as_of).in_(pairs))


def _held_again_candidates(snap) -> sa.Select:
    """Holdings of `snap`'s snapshots dated after their company's divestment (the latest divesting
    event, else the engagement's close or opening), with fund, company and engagement joined."""
    events = cycle.divesting_events()
    divested_on = sa.func.coalesce(events.c.occurred_on, Engagement.closed_on, Engagement.opened_on, type_=sa.Date)
    return (
        _of_snapshots(_held_again_select(Engagement, divested_on), snap)
        .join(Fund, Fund.id == Holding.fund_id)
        .join(Company, Company.id == Holding.company_id)
        .join(Engagement, Engagement.company_id == Holding.company_id)
        .outerjoin(events, events.c.engagement_id == Engagement.id)
        .where(Engagement.is_divested, Holding.as_of > divested_on)
    )


def held_again(snap, engagement_id: int | None = None, limit: int | None = None, *, offset: int = 0,
               fund_id: int | None = None, per_fund: int | None = None):
    """`held_after_divestment`'s rows (the first `limit` of them after `offset`, when given; of fund
    `fund_id` only, when given) and how many there are in all.

    One query: each divested engagement's date comes from one grouped pass over the divesting
    events (not a subquery per row, evaluated again for the filter and the order), and the latest
    divestment per fund and company is picked by a window, so only the rows shown leave the database.
    The order (fund, largest holding first, company name, company id) is total, so pages are stable.
    With `per_fund`: the first `per_fund` rows of every fund, as (row, the fund's count) pairs
    (for all funds, `_held_again_per_fund`: led by an index, not by ranking every row).
    """
    candidates = _held_again_candidates(snap)
    if engagement_id is not None:
        candidates = candidates.where(Engagement.id == engagement_id)
    if fund_id is not None:
        candidates = candidates.where(Holding.fund_id == fund_id)
    rows = candidates.subquery("held_again")
    columns = (rows.c.fund_id, rows.c.fund, rows.c.base_currency, rows.c.as_of, rows.c.company_id, rows.c.company,
               rows.c.market_value, rows.c.engagement_id, rows.c.owner_id, rows.c.divested_on)
    within_fund = (rows.c.market_value.desc().nulls_last(), rows.c.normalized_name, rows.c.company_id)
    if per_fund is not None and engagement_id is None and fund_id is None:
        return _held_again_per_fund(snap, per_fund)
    if per_fund is not None:
        ranked = (sa.select(*columns, sa.func.count().over(partition_by=rows.c.fund_id).label("total"),
                            sa.func.row_number().over(partition_by=rows.c.fund_id, order_by=within_fund).label("rank"))
                  .where(rows.c.nth == 1).subquery("ranked"))
        found = db.session.execute(
            sa.select(*(ranked.c[column.name] for column in columns), ranked.c.total)
            .where(ranked.c.rank <= per_fund).order_by(ranked.c.fund, ranked.c.fund_id, ranked.c.rank)).all()
        return [(HeldAgain(*row[:-1]), row.total) for row in found], len(found)
    query = (
        sa.select(*columns, sa.func.count().over().label("total"))
        .where(rows.c.nth == 1)
        .order_by(rows.c.fund, rows.c.fund_id, *within_fund)
    )
    if limit is not None:
        query = query.limit(limit).offset(offset)
    found = db.session.execute(query).all()
    if not found and offset:  # past the last row: the count still says how many there are
        return [], db.session.scalar(sa.select(sa.func.count()).select_from(rows).where(rows.c.nth == 1)) or 0
    return [HeldAgain(*row[:-1]) for row in found], (found[0].total if found else 0)


def held_again_ids(snap) -> dict[int, list[int]]:
    """Per fund of `snap`: its held-again holdings as ids in `held_again`'s order (one query, ranking every row)."""
    rows = _held_again_candidates(snap).subquery("held_again")
    result: dict[int, list[int]] = defaultdict(list)
    for fund_id, holding_id in db.session.execute(
            sa.select(rows.c.fund_id, rows.c.holding_id).where(rows.c.nth == 1)
            .order_by(rows.c.fund_id, rows.c.market_value.desc().nulls_last(), rows.c.normalized_name, rows.c.company_id)):
        result[fund_id].append(holding_id)
    return dict(result)


def held_again_rows(holding_ids: list[int]) -> list[HeldAgain]:
    """The held-again rows of the holdings `holding_ids`, in that order (one query: each one's
    latest divested engagement dated before its snapshot, as `held_again` picks it)."""
    if not holding_ids:
        return []
    divesting = aliased(Engagement)
    divested_on = sa.func.coalesce(_latest_divesting_event(divesting), divesting.closed_on, divesting.opened_on,
                                   type_=sa.Date)
    details = (
        _held_again_select(divesting, divested_on)
        .join(Fund, Fund.id == Holding.fund_id)
        .join(Company, Company.id == Holding.company_id)
        .join(divesting, divesting.company_id == Holding.company_id)
        .where(Holding.id.in_(set(holding_ids)), divesting.is_divested, divested_on < Holding.as_of)
    ).subquery("held_again")
    found = {row.holding_id: HeldAgain(*row[:-1]) for row in db.session.execute(
        sa.select(details.c.fund_id, details.c.fund, details.c.base_currency, details.c.as_of, details.c.company_id,
                  details.c.company, details.c.market_value, details.c.engagement_id, details.c.owner_id,
                  details.c.divested_on, details.c.holding_id).where(details.c.nth == 1))}
    return [found[i] for i in holding_ids if i in found]


def held_again_counts(snap) -> dict[int, int]:
    """Per fund of `snap`: how many holdings are held again after divestment (`held_again`'s rows counted)."""
    return dict(db.session.execute(
        sa.select(Holding.fund_id, sa.func.count(Holding.id)).join(snap, in_snapshot(snap))
        .where(_divested_before()).group_by(Holding.fund_id)).all())


def _latest_divesting_event(divesting):
    return (sa.select(sa.func.max(EngagementEvent.occurred_on))
            .where(EngagementEvent.engagement_id == divesting.id, event_divesting())
            .correlate(divesting).scalar_subquery())


def _divested_before(divesting=None):
    """SQL condition: the holding's company has a divested engagement dated before the holding's snapshot."""
    divesting = divesting if divesting is not None else aliased(Engagement)
    latest_event = _latest_divesting_event(divesting)
    return (
        sa.select(divesting.id)
        .where(divesting.company_id == Holding.company_id, divesting.is_divested,
               sa.func.coalesce(latest_event, divesting.closed_on, divesting.opened_on, type_=sa.Date) < Holding.as_of)
        .exists())


def _held_again_per_fund(snap, per_fund: int, counts: dict[int, int] | None = None):
    """`held_again(snap, per_fund=...)` led by an index: each fund's first `per_fund` held-again
    holdings are found by walking the fund's snapshot in the order shown (ix_holdings_fund_as_of_value:
    largest holding first) and stopping after `per_fund` of them, not by ranking every held-again row
    (41,686 at 100,000 companies). PostgreSQL: a LATERAL subquery per fund; SQLite: a correlated
    subquery per fund. The same statement adds the shown rows' details (their latest divested
    engagement, each engagement's date by a correlated lookup rather than the grouped pass over
    every divesting event); a second counts each fund's held-again holdings (an EXISTS per holding,
    no ordering). The rows, their order and the counts are those of `held_again(snap)` cut per fund
    (tests/test_held_again_slices.py)."""
    divesting = aliased(Engagement)
    latest_event = _latest_divesting_event(divesting)
    divested_before = _divested_before(divesting)
    first = (sa.select(Holding.id)
             .join(Company, Company.id == Holding.company_id)
             .where(Holding.fund_id == snap.c.fund_id, Holding.as_of == snap.c.as_of, divested_before)
             .order_by(Holding.market_value.desc().nulls_last(), Company.normalized_name, Company.id)
             .limit(per_fund))
    if db.session.get_bind().dialect.name == "postgresql":
        first = first.correlate(snap).lateral("first_held_again")
        shown_ids = sa.select(first.c.id).select_from(snap).join(first, sa.true())
    else:
        shown_ids = sa.select(Holding.id).select_from(snap).join(Holding, Holding.id.in_(first.correlate(snap)))
    # the shown holdings' details: the latest divested engagement of each (a correlated date per
    # engagement, not the grouped pass over every divesting event that ranking all rows needs)
    divested_on = sa.func.coalesce(latest_event, divesting.closed_on, divesting.opened_on, type_=sa.Date)
    details = (
        _held_again_select(divesting, divested_on)
        .join(Fund, Fund.id == Holding.fund_id)
        .join(Company, Company.id == Holding.company_id)
        .join(divesting, divesting.company_id == Holding.company_id)
        .where(Holding.id.in_(shown_ids), divesting.is_divested, divested_on < Holding.as_of)
    ).subquery("held_again")
    columns = (details.c.fund_id, details.c.fund, details.c.base_currency, details.c.as_of, details.c.company_id,
               details.c.company, details.c.market_value, details.c.engagement_id, details.c.owner_id,
               details.c.divested_on)
    found = db.session.execute(
        sa.select(*columns).where(details.c.nth == 1)
        .order_by(details.c.fund, details.c.fund_id, details.c.market_value.desc().nulls_last(),
                  details.c.normalized_name, details.c.company_id)).all()
    if counts is None:
        totals = held_again_counts(snap)
    else:  # stored counts: never fewer than the rows found, and exact when a fund has fewer than per_fund
        shown = defaultdict(int)
        for row in found:
            shown[row.fund_id] += 1
        totals = {fund: n if n < per_fund else max(n, counts.get(fund, 0)) for fund, n in shown.items()}
    return [(HeldAgain(*row), totals.get(row.fund_id, 0)) for row in found], len(found)


@dataclass
class AlertResult:
    #: The fund's latest snapshot, the one alerts follow (None without holdings).
    as_of: dt.date | None = None
    held_again: list[HeldAgain] = field(default_factory=list)
    raised: int = 0
    emails: int = 0
    resolved: int = 0


def alert_divested_held_again(fund: Fund, now: dt.datetime | None = None) -> AlertResult:
    """Bring the fund's held-again alerts in line with its latest snapshot, in the caller's transaction.

    Called by every holdings import (web and CLI) once its snapshot is written, whatever date it
    has: alerts follow the fund's latest snapshot, so a back-filled older file never alerts for a
    position sold since. One open alert per company and fund: a company held again in snapshot
    after snapshot (daily files) raises it and emails the owner of the divested engagement once;
    the first latest snapshot in which it is no longer held again (sold, or readmitted) resolves
    it, and holding it again after that is a new alert. Re-importing the latest snapshot undoes
    the resolution it made. The partial unique index decides under concurrency; emails go through
    the outbox, one per owner listing the alerts newly raised for them.
    """
    now = now or clock.utcnow()
    latest = latest_snapshot_date(fund.id)
    result = AlertResult(as_of=latest)
    if latest is None:
        return result
    result.held_again = held_after_divestment(snapshots([fund.id], as_of=latest))
    current = {item.company_id: item for item in result.held_again}
    alerts = db.session.scalars(sa.select(DivestmentAlert).where(
        DivestmentAlert.fund_id == fund.id,
        sa.or_(DivestmentAlert.resolved_on.is_(None), DivestmentAlert.resolved_on == latest))
        .order_by(DivestmentAlert.id)).all()

    def same(alert: DivestmentAlert) -> bool:
        item = current.get(alert.company_id)
        return item is not None and item.engagement_id == alert.engagement_id

    open_for: set[int] = set()
    for alert in alerts:
        if alert.resolved_on is None:
            if same(alert):
                open_for.add(alert.company_id)
            else:
                alert.resolved_on = latest
                result.resolved += 1
    for alert in alerts:
        if alert.resolved_on == latest and alert.company_id not in open_for and same(alert):
            alert.resolved_on = None  # the latest snapshot was imported again, holding it after all
            open_for.add(alert.company_id)
            result.resolved -= 1
    db.session.flush()
    to_raise = [item for item in result.held_again if item.company_id not in open_for]
    if not to_raise:
        return result
    owner_ids = {item.owner_id for item in to_raise if item.owner_id is not None}
    owners = {user.id: user for user in db.session.scalars(
        sa.select(User).where(User.id.in_(owner_ids or {-1}), User.active.is_(True)))}
    inserted = insert_ignoring_conflicts(DivestmentAlert, [
        {"company_id": item.company_id, "fund_id": item.fund_id, "as_of": item.as_of,
         "engagement_id": item.engagement_id, "market_value": item.market_value,
         "notified_id": item.owner_id if item.owner_id in owners else None, "created_at": now, "updated_at": now}
        for item in to_raise])
    result.raised = len(inserted)
    if not inserted:
        return result
    new = set(db.session.scalars(sa.select(DivestmentAlert.company_id).where(DivestmentAlert.id.in_(inserted))))
    by_owner: dict[int, list[HeldAgain]] = defaultdict(list)
    for item in to_raise:
        if item.company_id in new and item.owner_id in owners:
            by_owner[item.owner_id].append(item)
    base = current_app.config["ENGAGE_BASE_URL"].rstrip("/")
    for owner_id, items in by_owner.items():
        owner = owners[owner_id]
        subject = (f"Engage: divested company held again — {items[0].company} in {fund.name}" if len(items) == 1
                   else f"Engage: {len(items)} divested companies held again in {fund.name}")
        subject = " ".join(subject.split())  # names are data: never a line break in a header
        outbox.enqueue(owner.email, subject, render_template("holdings/held_again_email.txt", owner=owner, fund=fund,
                                                          as_of=latest, items=items, base=base), now=now)
        result.emails += 1
    return result


SCREENING_OBJECTIVES = "Opened from screening: the company is on a public list and held by our funds."


def open_engagements(companies: list[Company], campaign, owner, today: dt.date) -> list[Engagement]:
    """Open an `identified` engagement for each listed company that has none in the campaign.

    Each one goes through `open_engagement` and its checks. A company it refuses for the campaign
    (one already open, or divested: it comes back only by reopening its divested engagement on
    recorded evidence of change in practice) is skipped; any other refusal refuses the whole action.
    """
    opened = []
    for company in companies:
        try:
            opened.append(open_engagement(company, campaign, owner=owner, objectives=SCREENING_OBJECTIVES,
                                          opened_on=today, today=today, actor_id=owner.id if owner else None))
        except EngagementError as refused:
            if refused.field != "campaign_id":
                raise
    return opened
