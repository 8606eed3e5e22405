"""Engagements (a company in a campaign), the contacts logged on them, and reminders."""

from __future__ import annotations

import datetime as dt

from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column, relationship

from engage.extensions import db
from engage.models.base import (
    Direction,
    Escalation,
    InteractionKind,
    Outcome,
    ReminderKind,
    ReminderStatus,
    Stage,
    TimestampMixin,
    enum_check,
)
from engage.models.campaigns import Campaign
from engage.models.companies import Company
from engage.models.users import User

if TYPE_CHECKING:  # type hints only: models.letters imports this module
    from engage.models.letters import Letter
    from engage.models.valuechain import Relationship


#: SQL: a reminder still waiting (not done), and an event that divested its engagement (an escalation
#: to divested, or a close with outcome divested). Written as literals, the same text in the partial
#: indexes (migration 0032) and in the queries: a bound parameter would keep a planner from using them.
PENDING_REMINDER = "status != 'done'"
OPEN_ENGAGEMENT = "stage != 'closed'"
#: Open and never contacted (no interaction other than a note): ix_engagements_open_uncontacted's condition.
OPEN_UNCONTACTED = "stage != 'closed' AND last_contact_on IS NULL"
DIVESTING_EVENT = "(kind = 'escalation' AND to_value = 'divested') OR (kind = 'close' AND outcome = 'divested')"


class Engagement(TimestampMixin, db.Model):
    __tablename__ = "engagements"
    __table_args__ = (
        enum_check("stage", Stage),
        enum_check("escalation", Escalation),
        sa.CheckConstraint(
            "outcome IS NULL OR outcome IN ('resolved', 'divested', 'dropped')", name="outcome_valid"
        ),
        sa.CheckConstraint(
            "(stage = 'closed') = (closed_on IS NOT NULL AND outcome IS NOT NULL)",
            name="closed_has_date_and_outcome",
        ),
        # One open engagement per company and campaign; closed ones stay as history.
        sa.Index(
            "uq_engagements_open_company_campaign",
            "company_id",
            "campaign_id",
            unique=True,
            sqlite_where=sa.text("stage != 'closed'"),
            postgresql_where=sa.text("stage != 'closed'"),
        ),
        sa.Index("ix_engagements_stage_escalation", "stage", "escalation", "company_id"),
        sa.Index("ix_engagements_owner_stage", "owner_id", "stage"),
        # (next_step_on, id): the dashboard's next steps, first ten in order with no sort (migration 0034).
        sa.Index("ix_engagements_next_step_on", "next_step_on", "id"),
        # The stored dates (migration 0033): the next-follow-up sort and the overdue filter; the
        # last-contact sort; the quiet engagements (open, last contact or opening before a cutoff).
        sa.Index("ix_engagements_next_follow_up", "next_follow_up_on", "id"),
        sa.Index("ix_engagements_last_contact", "last_contact_on", "id"),
        sa.Index("ix_engagements_open_last_contact", "last_contact_on", "opened_on",
                 sqlite_where=sa.text(OPEN_ENGAGEMENT), postgresql_where=sa.text(OPEN_ENGAGEMENT)),
        # The dashboard's first quiet engagements read in order (migration 0034): those contacted
        # by last contact, those never contacted by opening.
        sa.Index("ix_engagements_open_contacted", "last_contact_on", "id",
                 sqlite_where=sa.text(OPEN_ENGAGEMENT), postgresql_where=sa.text(OPEN_ENGAGEMENT)),
        sa.Index("ix_engagements_open_uncontacted", "opened_on", "id",
                 sqlite_where=sa.text(OPEN_UNCONTACTED), postgresql_where=sa.text(OPEN_UNCONTACTED)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(sa.ForeignKey("companies.id", ondelete="RESTRICT"), index=True)
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaigns.id", ondelete="RESTRICT"), index=True)
    owner_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    stage: Mapped[str] = mapped_column(sa.String(24), default=Stage.IDENTIFIED.value)
    escalation: Mapped[str] = mapped_column(sa.String(24), default=Escalation.NONE.value)
    objectives: Mapped[str] = mapped_column(sa.Text, default="")
    opened_on: Mapped[dt.date]
    closed_on: Mapped[dt.date | None]
    outcome: Mapped[str | None] = mapped_column(sa.String(16))
    #: What the owner will do next ("Call IR about the supplier list"), up to NEXT_STEP_MAX characters,
    #: and by when; a date needs a text (engage.engagements.service.update_engagement checks both).
    next_step: Mapped[str] = mapped_column(sa.String(200), default="", server_default="")
    next_step_on: Mapped[dt.date | None]
    #: Optimistic lock: an update from a stale form fails instead of overwriting.
    version: Mapped[int] = mapped_column(default=1)
    #: Stored by database triggers, never by the application (engage.engagements.stored): the due
    #: date of the earliest waiting reminder (NULL when none waits), and the date of the latest
    #: interaction that is not a note (NULL when there is none). Read them with a query, not from
    #: an object loaded before the write that changed them.
    next_follow_up_on: Mapped[dt.date | None]
    last_contact_on: Mapped[dt.date | None]

    company: Mapped[Company] = relationship(back_populates="engagements")
    campaign: Mapped[Campaign] = relationship()
    owner: Mapped[User | None] = relationship()
    interactions: Mapped[list[Interaction]] = relationship(
        back_populates="engagement", order_by="Interaction.occurred_on", cascade="all, delete-orphan"
    )
    reminders: Mapped[list[Reminder]] = relationship(
        back_populates="engagement", order_by="Reminder.due_on", cascade="all, delete-orphan"
    )

    events: Mapped[list[EngagementEvent]] = relationship(
        back_populates="engagement", order_by="EngagementEvent.occurred_on", cascade="all, delete-orphan"
    )

    __mapper_args__ = {"version_id_col": version}

    def __repr__(self) -> str:
        return f"<Engagement {self.id} {self.stage}>"

    @hybrid_property
    def is_open(self) -> bool:
        """Not closed: the one definition of an open engagement, in Python and in SQL."""
        return self.stage != Stage.CLOSED.value

    @is_open.inplace.expression
    @classmethod
    def _is_open_expression(cls):
        return cls.stage != Stage.CLOSED.value

    @classmethod
    def open_during(cls, first: dt.date, last: dt.date):
        """SQL: the engagement was open on some day from `first` to `last` (opened by `last`, not closed before `first`)."""
        return sa.and_(cls.opened_on <= last, sa.or_(cls.closed_on.is_(None), cls.closed_on >= first))

    @hybrid_property
    def is_divested(self) -> bool:
        """Closed as divested, or escalated to divested: readmitted only on recorded evidence of change."""
        return self.escalation == Escalation.DIVESTED.value or self.outcome == Outcome.DIVESTED.value

    @is_divested.inplace.expression
    @classmethod
    def _is_divested_expression(cls):
        return sa.or_(cls.escalation == Escalation.DIVESTED.value, cls.outcome == Outcome.DIVESTED.value)

    @property
    def stage_label(self) -> str:
        return Stage(self.stage).label

    @property
    def escalation_label(self) -> str:
        return Escalation(self.escalation).label

    @property
    def outcome_label(self) -> str | None:
        return Outcome(self.outcome).label if self.outcome else None


class EngagementEvent(TimestampMixin, db.Model):
    """One move through the cycle: a stage change, an escalation, a close or a reopening.

    Kept as history (what the stage was at any date) and shown on the timeline.
    """

    __tablename__ = "engagement_events"
    __table_args__ = (
        sa.CheckConstraint(
            "kind IN ('stage', 'escalation', 'close', 'reopen')", name="kind_valid"
        ),
        sa.Index("ix_engagement_events_engagement_occurred", "engagement_id", "occurred_on"),
        sa.Index("ix_engagement_events_occurred_kind", "occurred_on", "kind"),
        # The events that divested an engagement (engage.engagements.cycle.divested_on).
        sa.Index("ix_engagement_events_divesting", "engagement_id", "occurred_on",
                 sqlite_where=sa.text(DIVESTING_EVENT), postgresql_where=sa.text(DIVESTING_EVENT)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    engagement_id: Mapped[int] = mapped_column(sa.ForeignKey("engagements.id", ondelete="CASCADE"))
    #: stage, escalation, close or reopen.
    kind: Mapped[str] = mapped_column(sa.String(16))
    from_value: Mapped[str] = mapped_column(sa.String(32))
    to_value: Mapped[str] = mapped_column(sa.String(32))
    #: When it happened (the dated event behind a forward move), not when it was recorded.
    occurred_on: Mapped[dt.date]
    note: Mapped[str] = mapped_column(sa.Text, default="")
    #: Why, for backward moves, de-escalations and reopenings.
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    #: Recorded evidence of change in practice (required to readmit a divested company).
    evidence: Mapped[str] = mapped_column(sa.Text, default="")
    evidence_url: Mapped[str | None] = mapped_column(sa.String(500))
    outcome: Mapped[str | None] = mapped_column(sa.String(16))
    actor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    #: The logged company response that made this move ("also move the stage to"): one timeline entry.
    interaction_id: Mapped[int | None] = mapped_column(sa.ForeignKey("interactions.id", ondelete="SET NULL"),
                                                       index=True)

    engagement: Mapped[Engagement] = relationship(back_populates="events")
    actor: Mapped[User | None] = relationship()
    interaction: Mapped[Interaction | None] = relationship()


class Interaction(TimestampMixin, db.Model):
    __tablename__ = "interactions"
    __table_args__ = (
        enum_check("kind", InteractionKind),
        enum_check("direction", Direction),
        # Covers "last contact" (max date per engagement, notes excluded) without reading rows.
        sa.Index("ix_interactions_engagement_occurred_kind", "engagement_id", "occurred_on", "kind"),
        sa.Index("ix_interactions_occurred_kind", "occurred_on", "kind"),
        # The dashboard's recent activity (latest first, ties by id) read in order, no sort (migration 0034).
        sa.Index("ix_interactions_occurred_id", "occurred_on", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    engagement_id: Mapped[int] = mapped_column(sa.ForeignKey("engagements.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(16))
    direction: Mapped[str] = mapped_column(sa.String(16), default=Direction.OUTBOUND.value)
    occurred_on: Mapped[dt.date]
    subject: Mapped[str] = mapped_column(sa.String(300), default="")
    #: Plain text or Markdown; rendered safely.
    summary: Mapped[str] = mapped_column(sa.Text, default="")
    participants: Mapped[str] = mapped_column(sa.Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))

    engagement: Mapped[Engagement] = relationship(back_populates="interactions")
    created_by: Mapped[User | None] = relationship()
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="interaction", cascade="all, delete-orphan"
    )

    @property
    def kind_label(self) -> str:
        return InteractionKind(self.kind).label


class Attachment(TimestampMixin, db.Model):
    """A file stored under instance/ and attached to an interaction."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    interaction_id: Mapped[int] = mapped_column(
        sa.ForeignKey("interactions.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(sa.String(255))
    #: Path relative to the attachments folder; never derived from user input.
    stored_name: Mapped[str] = mapped_column(sa.String(255), unique=True)
    content_type: Mapped[str] = mapped_column(sa.String(120))
    size_bytes: Mapped[int]
    sha256: Mapped[str] = mapped_column(sa.String(64))

    interaction: Mapped[Interaction] = relationship(back_populates="attachments")


class Reminder(TimestampMixin, db.Model):
    __tablename__ = "reminders"
    __table_args__ = (
        enum_check("status", ReminderStatus),
        enum_check("kind", ReminderKind),
        # At most one open "consider escalation" reminder per engagement, whatever runs the rules.
        sa.Index(
            "uq_reminders_open_escalation",
            "engagement_id",
            unique=True,
            sqlite_where=sa.text("kind = 'escalation' AND status != 'done'"),
            postgresql_where=sa.text("kind = 'escalation' AND status != 'done'"),
        ),
        sa.Index("ix_reminders_notified_due", "notified_at", "due_on"),
        sa.Index("ix_reminders_status_due", "status", "due_on"),
        sa.Index("ix_reminders_engagement_status", "engagement_id", "status"),
        # Waiting reminders: by due date (the reminders page, the dashboard) and per engagement
        # (its next follow-up). Queries spell PENDING_REMINDER with a literal so the planners use them;
        # the trailing columns let SQLite count from the index alone.
        sa.Index("ix_reminders_pending_due", "due_on", "id", "engagement_id", "status",
                 sqlite_where=sa.text(PENDING_REMINDER), postgresql_where=sa.text(PENDING_REMINDER)),
        sa.Index("ix_reminders_pending_engagement_due", "engagement_id", "due_on", "status",
                 sqlite_where=sa.text(PENDING_REMINDER), postgresql_where=sa.text(PENDING_REMINDER)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    engagement_id: Mapped[int] = mapped_column(sa.ForeignKey("engagements.id", ondelete="CASCADE"))
    due_on: Mapped[dt.date]
    reason: Mapped[str] = mapped_column(sa.String(300))
    #: reply (to a letter), escalation (consider escalating), manual, or exit (a planned exit is due).
    kind: Mapped[str] = mapped_column(sa.String(16), default=ReminderKind.MANUAL.value,
                                      server_default=ReminderKind.MANUAL.value)
    status: Mapped[str] = mapped_column(sa.String(16), default=ReminderStatus.OPEN.value)
    #: Set once, by the tick that claimed the reminder for notification.
    notified_at: Mapped[dt.datetime | None]
    letter_id: Mapped[int | None] = mapped_column(sa.ForeignKey("letters.id", ondelete="SET NULL"))
    #: For an exit reminder: the value-chain relationship whose planned exit is due.
    relationship_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("value_chain_relationships.id", ondelete="CASCADE"), index=True)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))

    engagement: Mapped[Engagement] = relationship(back_populates="reminders")
    letter: Mapped["Letter | None"] = relationship()
    relationship_: Mapped["Relationship | None"] = relationship("Relationship")

    @property
    def status_label(self) -> str:
        return ReminderStatus(self.status).label


class ReminderCount(db.Model):
    """How many reminders wait (status not 'done', on an open engagement) per owner and due date,
    kept by database triggers (engage.reminders.stored): the reminders page's counts read these
    few rows instead of counting every waiting reminder. `owner_key` is the engagement owner's id,
    0 for engagements nobody owns; a cell whose count falls to 0 is deleted."""

    __tablename__ = "reminder_counts"

    owner_key: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    due_on: Mapped[dt.date] = mapped_column(primary_key=True)
    waiting: Mapped[int] = mapped_column(sa.Integer)


def _literal(value: str):
    return sa.literal_column(f"'{value}'")


def engagement_open():
    """SQL: the engagement is open (`OPEN_ENGAGEMENT`, the partial index's condition, as a literal)."""
    return Engagement.stage != _literal("closed")


def reminder_pending():
    """SQL: the reminder is still waiting (`PENDING_REMINDER`, the partial indexes' condition, as a literal)."""
    return Reminder.status != _literal("done")


def event_divesting():
    """SQL: the event divested its engagement (`DIVESTING_EVENT`, the partial index's condition, as literals)."""
    return sa.or_(sa.and_(EngagementEvent.kind == _literal("escalation"), EngagementEvent.to_value == _literal("divested")),
                  sa.and_(EngagementEvent.kind == _literal("close"), EngagementEvent.outcome == _literal("divested")))

