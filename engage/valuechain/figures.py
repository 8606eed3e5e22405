"""A company's value-chain figures, from its latest disclosed map: what the tab, the export, the score
evidence and the public report show.

A relationship is *flagged* when its counterparty has a current risk flag (direct, or linked
through a parent; not ended) or it lies in the Uyghur Region — unless the analyst recorded it as
`not_linked` (the flag was wrong). An exit is *overdue* when its status is `exit_planned` and the
target date has passed. The figures of many companies cost three queries, whatever their number (four
when replayed to a past day).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

import sqlalchemy as sa

from engage import clock
from engage.extensions import db
from engage.models import Relationship, RelationshipStatus, RelationshipStatusChange, RiskFlag, ValueChainMap

UNDER_WAY = (RelationshipStatus.UNDER_REVIEW.value, RelationshipStatus.REMEDIATION_PLAN.value,
             RelationshipStatus.EXIT_PLANNED.value)


@dataclass
class Figures:
    """The figures of one company's latest map (all zero when it disclosed none)."""

    map_id: int | None = None
    map_number: int | None = None
    disclosed_on: dt.date | None = None
    #: Relationships in the latest map.
    disclosed: int = 0
    #: Relationships per tier (1, 2, 3 meaning 3 or further).
    by_tier: dict[int, int] = field(default_factory=dict)
    #: Flagged relationships (listed counterparty or in the region), not recorded as not linked.
    flagged: int = 0
    #: Of the flagged, those whose counterparty is on a list (current flag).
    listed: int = 0
    #: Of the flagged, those in the Uyghur Region.
    in_region: int = 0
    #: Of the flagged, those under review, with a remediation plan or an exit plan.
    under_way: int = 0
    exit_planned: int = 0
    exited: int = 0
    #: Exit planned and the target date has passed.
    overdue: int = 0
    not_linked: int = 0

    @property
    def mapped(self) -> bool:
        return self.map_id is not None

    @property
    def open_flags(self) -> int:
        """Flagged relationships not yet exited."""
        return self.flagged - self.exited

    def as_row(self) -> dict[str, int]:
        """The export's columns."""
        return {"disclosed": self.disclosed, "flagged": self.flagged, "exited": self.exited,
                "overdue": self.overdue}


def latest_maps(company_ids: list[int] | None = None, as_of: dt.date | None = None) -> dict[int, ValueChainMap]:
    """company id -> its latest map (one query); every company's when `company_ids` is None.

    `as_of`: the latest map imported by the end of that day (the one the team had then)."""
    newest = (sa.select(ValueChainMap.company_id, sa.func.max(ValueChainMap.number).label("number"))
              .group_by(ValueChainMap.company_id))
    if as_of is not None:
        newest = newest.where(ValueChainMap.created_at < dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time()))
    if company_ids is not None:
        newest = newest.where(ValueChainMap.company_id.in_(company_ids or [-1]))
    newest = newest.subquery()
    return {m.company_id: m for m in db.session.scalars(
        sa.select(ValueChainMap).join(newest, sa.and_(ValueChainMap.company_id == newest.c.company_id,
                                                      ValueChainMap.number == newest.c.number)))}


def listed_counterparties(counterparty_ids, as_of: dt.date | None = None) -> set[int]:
    """Those of these companies with a current risk flag, direct or linked (one query).

    `as_of`: with a flag recorded by the end of that day and not ended by then."""
    ids = list(set(counterparty_ids))
    if not ids:
        return set()
    if as_of is None:
        current = RiskFlag.ended_on.is_(None)
    else:
        current = sa.and_(RiskFlag.created_at < dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time()),
                          sa.or_(RiskFlag.ended_on.is_(None), RiskFlag.ended_on > as_of))
    return set(db.session.scalars(sa.select(RiskFlag.company_id).distinct().where(
        RiskFlag.company_id.in_(ids), current)))


def _statuses_as_of(relationship_ids: list[int], as_of: dt.date) -> dict[int, tuple[str, dt.date | None]]:
    """relationship id -> (status, target date) at the end of `as_of`, for those whose status changed after it
    (one query): the last change on or before that day, else the state the first later change started from."""
    if not relationship_ids:
        return {}
    changes = db.session.execute(
        sa.select(RelationshipStatusChange.relationship_id, RelationshipStatusChange.from_status,
                  RelationshipStatusChange.to_status, RelationshipStatusChange.occurred_on,
                  RelationshipStatusChange.target_date)
        .where(RelationshipStatusChange.relationship_id.in_(relationship_ids))
        .order_by(RelationshipStatusChange.relationship_id, RelationshipStatusChange.occurred_on,
                  RelationshipStatusChange.id)).all()
    by_relationship: dict[int, list] = {}
    for change in changes:
        by_relationship.setdefault(change.relationship_id, []).append(change)
    states = {}
    for relationship_id, history in by_relationship.items():
        if history[-1].occurred_on <= as_of:
            continue  # nothing changed since: the relationship's own status holds
        before = [c for c in history if c.occurred_on <= as_of]
        if before:
            states[relationship_id] = (before[-1].to_status, before[-1].target_date)
        else:
            states[relationship_id] = (history[0].from_status, None)
    return states


def is_flagged(relationship: Relationship, listed: set[int]) -> bool:
    return relationship.status != RelationshipStatus.NOT_LINKED.value and (
        relationship.in_uyghur_region or relationship.counterparty_id in listed)


def for_companies(company_ids: list[int] | None = None, today: dt.date | None = None) -> dict[int, Figures]:
    """company id -> Figures of its latest map; companies without a map are left out (three queries).

    A `today` before the real one (a past month's export) replays the figures to the end of that day: the
    latest map imported by then, each relationship's status then (from its status changes: a fourth query)
    and the risk flags recorded and not ended by then."""
    real_today = clock.today()
    today = today or real_today
    as_of = today if today < real_today else None
    latest = latest_maps(company_ids, as_of)
    by_map = {m.id: m for m in latest.values()}
    figures = {m.company_id: Figures(map_id=m.id, map_number=m.number, disclosed_on=m.disclosed_on)
               for m in latest.values()}
    if not by_map:
        return figures
    rows = db.session.execute(sa.select(
        Relationship.id, Relationship.map_id, Relationship.counterparty_id, Relationship.tier, Relationship.status,
        Relationship.target_date, Relationship.in_uyghur_region).where(Relationship.map_id.in_(list(by_map)))).all()
    listed = listed_counterparties((r.counterparty_id for r in rows), as_of)
    then = _statuses_as_of([r.id for r in rows], as_of) if as_of is not None else {}
    tiers: dict[int, Counter] = {m: Counter() for m in by_map}
    for row in rows:
        status, target_date = then.get(row.id, (row.status, row.target_date))
        item = figures[by_map[row.map_id].company_id]
        item.disclosed += 1
        tiers[row.map_id][min(row.tier, 3)] += 1
        if status == RelationshipStatus.NOT_LINKED.value:
            item.not_linked += 1
            continue
        on_list = row.counterparty_id in listed
        if not (on_list or row.in_uyghur_region):
            continue
        item.flagged += 1
        item.listed += on_list
        item.in_region += bool(row.in_uyghur_region)
        if status in UNDER_WAY:
            item.under_way += 1
        if status == RelationshipStatus.EXIT_PLANNED.value:
            item.exit_planned += 1
            if target_date is not None and target_date < today:
                item.overdue += 1
        elif status == RelationshipStatus.EXITED.value:
            item.exited += 1
    for map_id, counter in tiers.items():
        figures[by_map[map_id].company_id].by_tier = dict(sorted(counter.items()))
    return figures


def for_company(company_id: int, today: dt.date | None = None) -> Figures:
    return for_companies([company_id], today).get(company_id, Figures())
