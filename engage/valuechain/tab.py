"""What the engagement's value-chain tab reads: the latest map's relationships, flagged ones first,
with why each is flagged, and the nodes of the network drawing.

"Flagged" is figures.py's definition, written as SQL so the page can sort and page on it: the
counterparty has a current risk flag (direct or linked through a parent) or the relationship is
in the Uyghur Region, and the analyst has not recorded it as `not_linked`. The page costs the same
number of queries whatever the number of relationships (a count, one page of rows, their flags,
two capped queries for the drawing).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import contains_eager

from engage.extensions import db
from engage.models import Company, Relationship, RelationshipStatus, RiskFlag
from engage.valuechain import drawing
from engage.valuechain.figures import Figures
from engage.valuechain.regions import in_uyghur_region
from engage.valuechain.service import FlagNote, _current_flags

NOT_LINKED = RelationshipStatus.NOT_LINKED.value
#: Relationships per page of the tab (flagged ones first).
PER_PAGE = 50


def listed_clause():
    """The counterparty has a current risk flag, direct or linked (a correlated EXISTS)."""
    return sa.exists().where(RiskFlag.company_id == Relationship.counterparty_id, RiskFlag.ended_on.is_(None))


def flagged_clause():
    return sa.and_(Relationship.status != NOT_LINKED, sa.or_(Relationship.in_uyghur_region, listed_clause()))


def relationships_query(map_id: int):
    """The map's relationships with their counterparty: flagged first (the nearest target date first),
    then those recorded as not linked, then the others; by name within each."""
    group = sa.case((flagged_clause(), 0), (Relationship.status == NOT_LINKED, 1), else_=2)
    return (sa.select(Relationship).join(Company, Company.id == Relationship.counterparty_id)
            .options(contains_eager(Relationship.counterparty))
            .where(Relationship.map_id == map_id)
            .order_by(group, Relationship.target_date.is_(None), Relationship.target_date, Company.name,
                      Relationship.id))


@dataclass
class Row:
    """One relationship as the tab shows it."""

    relationship: Relationship
    flags: list[FlagNote] = field(default_factory=list)
    #: "Hotan" when the relationship is in the Uyghur Region ("the name starts with Xinjiang"...).
    region: str | None = None

    @property
    def listed(self) -> bool:
        return bool(self.flags)

    @property
    def flagged(self) -> bool:
        """As figures.is_flagged: listed or in the region, unless recorded as not linked."""
        return self.relationship.status != NOT_LINKED and (self.listed or self.relationship.in_uyghur_region)

    @property
    def was_flagged(self) -> bool:
        """Recorded as not linked, though listed or in the region."""
        return self.relationship.status == NOT_LINKED

    @property
    def reasons(self) -> list[str]:
        """Why it is flagged, in words: each list (direct, or linked via the parent) and the region."""
        lines = []
        for note in self.flags:
            link = f"linked via {note.via}" if note.via else note.link
            lines.append(f"{note.list_label} ({link}{': ' + note.reason if note.reason else ''})")
        if self.relationship.in_uyghur_region:
            lines.append(f"in the Uyghur Region: {self.region or self.relationship.region or 'the region'}")
        return lines

    @property
    def short_reason(self) -> str:
        lists = [f"{n.list_label} ({'via ' + n.via if n.via else n.link})" for n in self.flags]
        if self.relationship.in_uyghur_region:
            lists.append(f"Uyghur Region ({self.region or self.relationship.region})")
        return "; ".join(lists)


def _region(relationship: Relationship) -> str | None:
    if not relationship.in_uyghur_region:
        return None
    why = in_uyghur_region(relationship.region, relationship.counterparty.name)
    if why is None:  # flagged when imported; the place list has changed since
        return relationship.region or None
    return why.removeprefix("region names ").replace("name starts with Xinjiang", "the name starts with Xinjiang")


def rows(relationships: list[Relationship]) -> list[Row]:
    """The tab's rows for these relationships (one query for their counterparties' flags)."""
    notes = _current_flags(sorted({r.counterparty_id for r in relationships}))
    return [Row(relationship=r, flags=notes.get(r.counterparty_id, []), region=_region(r)) for r in relationships]


def network(company: Company, map_id: int, figures: Figures) -> drawing.Drawing:
    """The drawing of the map: its flagged counterparties first, then others, each capped (three queries)."""

    def nodes(where, limit: int) -> list[Relationship]:
        return list(db.session.scalars(
            sa.select(Relationship).join(Company, Company.id == Relationship.counterparty_id)
            .options(contains_eager(Relationship.counterparty))
            .where(Relationship.map_id == map_id, where)
            .order_by(Relationship.tier, Company.name, Relationship.id).limit(limit)))

    flagged = rows(nodes(flagged_clause(), drawing.MAX_FLAGGED))
    others = nodes(sa.not_(flagged_clause()), drawing.MAX_OTHERS)
    chosen = drawing.choose(
        [drawing.Node(key=r.relationship.id, name=r.relationship.counterparty.name, tier=r.relationship.tier,
                      kind=r.relationship.kind, flagged=True,
                      exited=r.relationship.status == RelationshipStatus.EXITED.value, reason=r.short_reason)
         for r in flagged],
        [drawing.Node(key=r.id, name=r.counterparty.name, tier=r.tier, kind=r.kind) for r in others])
    return drawing.layout(company.name, chosen, total=figures.disclosed, total_flagged=figures.flagged)
