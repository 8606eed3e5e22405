"""What the value chain feeds into the rest of Engage (issue 16): the engagement's timeline, exit
reminders, stage hints and the score evidence. The monthly export and the public report read
`figures.for_companies` directly (engage.exports).

- Timeline: each `RelationshipStatusChange` shows on the timeline of the engagement it was
  recorded under (`engagement_id`, the engagement open at the time), and each map of the
  company recorded while the engagement was open shows as "value chain map 2 recorded: 12
  relationships, 5 flagged" (flagged as screened now, as the figures count it). A fixed number
  of queries, whatever the number of entries.
- Exit reminders: `follow_status_change` (called by `service.change_status`) keeps one open
  reminder of kind `exit` per relationship (across map versions: same company, counterparty and
  kind) due on its target date: created when the relationship moves to exit_planned, moved when a
  new target date is planned, done when it moves on to any other status. The reminder belongs to
  the engagement the change was recorded under, so its owner is notified by the reminders tick.
  With no open engagement there is no reminder (nobody to remind).
- Stage hints: a recorded map suggests `value_chain_mapped`; the first planned exit (or exit)
  suggests `disengaging`, each only while the engagement is open and the stage is still ahead.
  A suggestion, never an automatic move.
- Score evidence: the figures of the latest map, as one line, beside the rubric's criteria
  about mapping and disengagement (those whose stage_hint is value_chain_mapped or disengaging).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from engage.engagements.service import TimelineEntry
from engage.extensions import db
from engage.formatting import format_date
from engage.models import (
    Company,
    Engagement,
    Relationship,
    RelationshipStatus,
    RelationshipStatusChange,
    Reminder,
    ReminderKind,
    ReminderStatus,
    Stage,
    User,
    ValueChainMap,
)
from engage.valuechain import figures

STAGE_ORDER = [s.value for s in Stage]
#: The rubric criteria beside which the score form shows the value-chain figures.
EVIDENCE_STAGES = (Stage.VALUE_CHAIN_MAPPED.value, Stage.DISENGAGING.value)
EXIT_STATUSES = (RelationshipStatus.EXIT_PLANNED.value, RelationshipStatus.EXITED.value)


# --- timeline ------------------------------------------------------------------------------

@dataclass
class StatusEntry:
    """One status change of a relationship, as the timeline shows it."""

    id: int
    occurred_on: dt.date
    counterparty: str
    kind: str
    from_status: str
    to_status: str
    target_date: dt.date | None
    evidence: str
    reason: str
    actor: str | None
    #: When it was recorded (orders the timeline's entries of one day).
    recorded_at: dt.datetime | None = None


@dataclass
class MapEntry:
    """One map of the company recorded while the engagement was open."""

    id: int
    number: int
    recorded_on: dt.date
    disclosed_on: dt.date | None
    file_name: str
    source_ref: str
    by: str | None
    relationships: int = 0
    flagged: int = 0
    #: When it was recorded (orders the timeline's entries of one day).
    recorded_at: dt.datetime | None = None

    @property
    def headline(self) -> str:
        return f"value chain map {self.number} recorded: {self.relationships} relationships, {self.flagged} flagged"


def status_entries(engagement: Engagement) -> list[StatusEntry]:
    """The status changes recorded under this engagement (one query)."""
    counterparty = sa.orm.aliased(Company)
    rows = db.session.execute(
        sa.select(RelationshipStatusChange, counterparty.name, Relationship.kind, User.name)
        .join(Relationship, Relationship.id == RelationshipStatusChange.relationship_id)
        .join(counterparty, counterparty.id == Relationship.counterparty_id)
        .outerjoin(User, User.id == RelationshipStatusChange.actor_id)
        .where(RelationshipStatusChange.engagement_id == engagement.id)
        .order_by(RelationshipStatusChange.id)).all()
    return [StatusEntry(id=c.id, occurred_on=c.occurred_on, counterparty=name, kind=kind, from_status=c.from_status,
                        to_status=c.to_status, target_date=c.target_date, evidence=c.evidence, reason=c.reason,
                        actor=actor, recorded_at=c.created_at) for c, name, kind, actor in rows]


def map_entries(engagement: Engagement) -> list[MapEntry]:
    """The company's maps recorded while the engagement was open, with their counts (three queries)."""
    start = dt.datetime.combine(engagement.opened_on, dt.time())
    query = (sa.select(ValueChainMap, User.name).outerjoin(User, User.id == ValueChainMap.imported_by_id)
             .where(ValueChainMap.company_id == engagement.company_id, ValueChainMap.created_at >= start)
             .order_by(ValueChainMap.number))
    if engagement.closed_on is not None:
        query = query.where(ValueChainMap.created_at < dt.datetime.combine(
            engagement.closed_on + dt.timedelta(days=1), dt.time()))
    entries = {m.id: MapEntry(id=m.id, number=m.number, recorded_on=m.created_at.date(), disclosed_on=m.disclosed_on,
                              file_name=m.file_name, source_ref=m.source_ref, by=by, recorded_at=m.created_at)
               for m, by in db.session.execute(query)}
    if not entries:
        return []
    rows = db.session.execute(sa.select(Relationship.map_id, Relationship.counterparty_id, Relationship.status,
                                        Relationship.in_uyghur_region)
                              .where(Relationship.map_id.in_(list(entries)))).all()
    listed = figures.listed_counterparties(r.counterparty_id for r in rows)
    for row in rows:
        entry = entries[row.map_id]
        entry.relationships += 1
        entry.flagged += figures.is_flagged(row, listed)
    return list(entries.values())


def timeline_entries(engagement: Engagement) -> list[TimelineEntry]:
    """The engagement timeline's value-chain entries: status changes and maps (four queries)."""
    return ([TimelineEntry(item.occurred_on, "relationship", item, item.id, at=item.recorded_at)
             for item in status_entries(engagement)]
            + [TimelineEntry(item.recorded_on, "map", item, item.id, at=item.recorded_at)
               for item in map_entries(engagement)])


# --- exit reminders ------------------------------------------------------------------------

def exit_reminder_reason(counterparty_name: str) -> str:
    return f"Exit of {counterparty_name} due"[:300]


def _open_exit_reminders(relationship: Relationship) -> list[Reminder]:
    """Open exit reminders of this relationship, in any version of the company's map."""
    same = sa.select(Relationship.id).where(Relationship.company_id == relationship.company_id,
                                            Relationship.counterparty_id == relationship.counterparty_id,
                                            Relationship.kind == relationship.kind)
    return list(db.session.scalars(sa.select(Reminder).where(
        Reminder.kind == ReminderKind.EXIT.value, Reminder.status != ReminderStatus.DONE.value,
        Reminder.relationship_id.in_(same)).order_by(Reminder.id)))


def follow_status_change(relationship: Relationship, change: RelationshipStatusChange) -> Reminder | None:
    """Keep the relationship's exit reminder in step with its status; returns the open one, if any.

    exit_planned: one open reminder due on the target date (created, or the existing one moved
    and notified again); any other status: the open ones are done.
    """
    reminders = _open_exit_reminders(relationship)
    if change.to_status != RelationshipStatus.EXIT_PLANNED.value:
        for reminder in reminders:
            reminder.status = ReminderStatus.DONE.value
        return None
    keep, *extra = reminders or [None]
    for reminder in extra:
        reminder.status = ReminderStatus.DONE.value
    if keep is None:
        if change.engagement_id is None:
            return None
        name = db.session.scalar(sa.select(Company.name).where(Company.id == relationship.counterparty_id))
        keep = Reminder(engagement_id=change.engagement_id, relationship_id=relationship.id,
                        kind=ReminderKind.EXIT.value, status=ReminderStatus.OPEN.value, due_on=change.target_date,
                        reason=exit_reminder_reason(name), created_by_id=change.actor_id)
        db.session.add(keep)
    else:  # a new target date (or the plan carried to a later map, or under a newer engagement)
        keep.due_on, keep.relationship_id = change.target_date, relationship.id
        keep.engagement_id = change.engagement_id or keep.engagement_id
        keep.status, keep.notified_at = ReminderStatus.OPEN.value, None
    return keep


# --- stage hints ---------------------------------------------------------------------------

def stage_hints(engagement: Engagement) -> list[dict]:
    """Stage moves the value chain suggests: a recorded map, the first planned exit (two queries)."""
    if not engagement.is_open:
        return []
    here = STAGE_ORDER.index(engagement.stage)
    hints = []
    if STAGE_ORDER.index(Stage.VALUE_CHAIN_MAPPED.value) > here:
        latest = db.session.execute(
            sa.select(ValueChainMap.number, ValueChainMap.created_at, ValueChainMap.disclosed_on,
                      sa.select(sa.func.count(Relationship.id)).where(Relationship.map_id == ValueChainMap.id)
                      .scalar_subquery())
            .where(ValueChainMap.company_id == engagement.company_id)
            .order_by(ValueChainMap.number.desc()).limit(1)).first()
        if latest is not None:
            number, created_at, disclosed_on, count = latest
            disclosed = f", disclosed {format_date(disclosed_on)}" if disclosed_on else ""
            hints.append(_hint(Stage.VALUE_CHAIN_MAPPED, f"map {number} recorded on {format_date(created_at)}"
                                                         f"{disclosed}: {count} relationships"))
    if STAGE_ORDER.index(Stage.DISENGAGING.value) > here:
        counterparty = sa.orm.aliased(Company)
        first = db.session.execute(
            sa.select(RelationshipStatusChange.occurred_on, RelationshipStatusChange.to_status,
                      RelationshipStatusChange.target_date, counterparty.name)
            .join(Relationship, Relationship.id == RelationshipStatusChange.relationship_id)
            .join(counterparty, counterparty.id == Relationship.counterparty_id)
            .where(Relationship.company_id == engagement.company_id,
                   RelationshipStatusChange.to_status.in_(EXIT_STATUSES))
            .order_by(RelationshipStatusChange.occurred_on, RelationshipStatusChange.id).limit(1)).first()
        if first is not None:
            on, status, target, name = first
            what = (f"exit of {name} planned on {format_date(on)} (target {format_date(target)})"
                    if status == RelationshipStatus.EXIT_PLANNED.value else f"exit from {name} on {format_date(on)}")
            hints.append(_hint(Stage.DISENGAGING, what))
    return hints


def _hint(stage: Stage, reason: str) -> dict:
    return {"stage": stage.value, "label": stage.label, "source": "value_chain", "reason": reason}


# --- score evidence ------------------------------------------------------------------------

def evidence_line(item: figures.Figures) -> str:
    """'Map 1, disclosed 02 May 2026: 12 relationships, 5 flagged, 1 exited, 1 overdue' (or 'No map...')."""
    if not item.mapped:
        return "No value-chain map recorded for this company yet."
    disclosed = f", disclosed {format_date(item.disclosed_on)}" if item.disclosed_on else ""
    return (f"Map {item.map_number}{disclosed}: {item.disclosed} relationships, {item.flagged} flagged, "
            f"{item.exit_planned} exit planned, {item.exited} exited, {item.overdue} overdue")


def score_evidence(company_id: int) -> str:
    """The value-chain evidence for scoring a response of this company (three queries)."""
    return evidence_line(figures.for_company(company_id))
