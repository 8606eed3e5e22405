"""The dashboard's team view: per owner, what is open and due, and how this month compares with the last.

Definitions (the dashboard prints them under the table; README, "Dashboard"):
- *Open engagements*: engagements not closed, by their owner now.
- *Overdue reminders*: reminders still waiting (open or snoozed) due before today, on the owner's
  engagements; the same count as the dashboard's "overdue follow-ups" tile, split by owner.
- *Next steps due*: open engagements whose next step is dated within NEXT_STEP_DAYS from today,
  overdue ones included.
- *Forward stage moves*: recorded moves to a later stage (closing and reopening excluded), dated
  from the 1st of this month to today, against the same days of last month (1st to the same day,
  or that month's last day) so the comparison is fair on the 5th as on the 30th. Moves count for
  the engagement's owner now, not whoever owned it at the time.
- *Contacts logged*: interactions other than internal notes, dated in the same two periods.

Each figure is one grouped query whatever the number of owners and engagements.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from engage.extensions import db
from engage.models import (
    Engagement,
    EngagementEvent,
    Interaction,
    InteractionKind,
    Reminder,
    Role,
    Stage,
    User,
    reminder_pending,
)

#: "Next steps due" looks this many days ahead (overdue ones included).
NEXT_STEP_DAYS = 7
#: The dashboard's list "Next steps due in 14 days" looks this many days ahead.
NEXT_STEPS_LISTED_DAYS = 14
STAGE_ORDER = {stage.value: index for index, stage in enumerate(Stage)}


@dataclass(frozen=True)
class Periods:
    """This month to today, and the same days of last month."""

    this_first: dt.date
    this_last: dt.date
    last_first: dt.date
    last_last: dt.date

    @classmethod
    def of(cls, today: dt.date) -> Periods:
        first = today.replace(day=1)
        last_first = (first - dt.timedelta(days=1)).replace(day=1)
        days_in_last = calendar.monthrange(last_first.year, last_first.month)[1]
        return cls(first, today, last_first, last_first.replace(day=min(today.day, days_in_last)))


@dataclass
class OwnerRow:
    owner_id: int | None
    name: str
    open: int = 0
    overdue_reminders: int = 0
    next_steps_due: int = 0
    moves_this: int = 0
    moves_last: int = 0
    contacts_this: int = 0
    contacts_last: int = 0

    @property
    def moves_change(self) -> int:
        return self.moves_this - self.moves_last

    @property
    def contacts_change(self) -> int:
        return self.contacts_this - self.contacts_last

    @property
    def empty(self) -> bool:
        return not any((self.open, self.overdue_reminders, self.next_steps_due, self.moves_this, self.moves_last,
                        self.contacts_this, self.contacts_last))


@dataclass
class TeamView:
    periods: Periods
    rows: list[OwnerRow] = field(default_factory=list)
    total: OwnerRow = field(default_factory=lambda: OwnerRow(None, "Team"))
    next_step_days: int = NEXT_STEP_DAYS


def team_view(today: dt.date) -> TeamView:
    """One row per active analyst or admin (zeros included) and per other owner with figures; then Unassigned."""
    return build_view(Periods.of(today), team_figures(today))


def team_figures(today: dt.date, overdue_reminders: Counter | None = None) -> dict[str, Counter]:
    """The team view's figures per owner id (None: unassigned), one grouped query each.

    `overdue_reminders` may come from elsewhere (the dashboard has them from the reminders' counts
    per owner, the same definition): then that query is not run again.
    """
    periods = Periods.of(today)
    figures: dict[str, Counter] = {
        "open": _per_owner(sa.select(Engagement.owner_id, sa.func.count()).where(Engagement.is_open)),
        "overdue_reminders": overdue_reminders if overdue_reminders is not None else _per_owner(
            sa.select(Engagement.owner_id, sa.func.count(Reminder.id))
            .join(Reminder, Reminder.engagement_id == Engagement.id)
            .where(reminder_pending(), Reminder.due_on < today, Engagement.is_open)),
        "next_steps_due": _per_owner(
            sa.select(Engagement.owner_id, sa.func.count())
            .where(Engagement.is_open, Engagement.next_step_on <= today + dt.timedelta(days=NEXT_STEP_DAYS))),
    }
    this = sa.between(EngagementEvent.occurred_on, periods.this_first, periods.this_last)
    moves_this, moves_last = Counter(), Counter()
    for owner_id, before, after, in_this, count in db.session.execute(
        sa.select(Engagement.owner_id, EngagementEvent.from_value, EngagementEvent.to_value, this, sa.func.count())
        .join(EngagementEvent, EngagementEvent.engagement_id == Engagement.id)
        .where(EngagementEvent.kind == "stage",
               sa.or_(sa.between(EngagementEvent.occurred_on, periods.this_first, periods.this_last),
                      sa.between(EngagementEvent.occurred_on, periods.last_first, periods.last_last)))
        .group_by(Engagement.owner_id, EngagementEvent.from_value, EngagementEvent.to_value, this)
    ):
        if STAGE_ORDER.get(after, -1) > STAGE_ORDER.get(before, len(STAGE_ORDER)):
            (moves_this if in_this else moves_last)[owner_id] += count
    contact_this = sa.between(Interaction.occurred_on, periods.this_first, periods.this_last)
    contacts_this, contacts_last = Counter(), Counter()
    for owner_id, in_this, count in db.session.execute(
        sa.select(Engagement.owner_id, contact_this, sa.func.count())
        .join(Interaction, Interaction.engagement_id == Engagement.id)
        .where(Interaction.kind != InteractionKind.NOTE.value,
               sa.or_(contact_this, sa.between(Interaction.occurred_on, periods.last_first, periods.last_last)))
        .group_by(Engagement.owner_id, contact_this)
    ):
        (contacts_this if in_this else contacts_last)[owner_id] += count
    figures.update(moves_this=moves_this, moves_last=moves_last, contacts_this=contacts_this,
                   contacts_last=contacts_last)
    return figures


def build_view(periods: Periods, figures: dict[str, Counter]) -> TeamView:
    """The rows from `team_figures` (computed now or stored): the owners' names are read now (one query)."""
    mentioned = {owner_id for counts in figures.values() for owner_id in counts if owner_id is not None}
    users = db.session.execute(
        sa.select(User.id, User.name).where(sa.or_(
            sa.and_(User.active.is_(True), User.role.in_([Role.ANALYST.value, Role.ADMIN.value])),
            User.id.in_(sorted(mentioned)) if mentioned else sa.false()))
        .order_by(User.name, User.id)
    ).all()
    view = TeamView(periods)
    for owner_id, name in [*users, (None, "Unassigned")]:
        row = OwnerRow(owner_id, name)
        for key, counts in figures.items():
            setattr(row, key, counts.get(owner_id, 0))
            setattr(view.total, key, getattr(view.total, key) + counts.get(owner_id, 0))
        if owner_id is not None or not row.empty:
            view.rows.append(row)
    return view


def _per_owner(query: sa.Select) -> Counter:
    return Counter(dict(db.session.execute(query.group_by(Engagement.owner_id)).all()))


def next_steps_due(today: dt.date, days: int = NEXT_STEPS_LISTED_DAYS, limit: int = 10, *, total: bool = True):
    """Open engagements whose next step is dated within `days` (overdue first), and how many there are.

    `total=False`: the first rows only, from the index on (next_step_on, id), with no count over every
    matching row (the dashboard takes that total from its stored figures: `next_steps_total`).
    """
    query = (sa.select(Engagement, sa.func.count().over().label("total") if total else sa.null())
             .where(Engagement.is_open, Engagement.next_step_on <= today + dt.timedelta(days=days))
             .options(selectinload(Engagement.company), selectinload(Engagement.owner))
             .order_by(Engagement.next_step_on, Engagement.id)
             .limit(limit))
    rows = db.session.execute(query).all()
    return {"rows": [row[0] for row in rows], "total": (rows[0][1] if rows else 0) if total else None, "days": days}


def next_steps_total(today: dt.date, days: int = NEXT_STEPS_LISTED_DAYS) -> int:
    """How many open engagements have a next step dated within `days` (overdue ones included)."""
    return db.session.scalar(sa.select(sa.func.count()).select_from(Engagement).where(
        Engagement.is_open, Engagement.next_step_on <= today + dt.timedelta(days=days))) or 0
