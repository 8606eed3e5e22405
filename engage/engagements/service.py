"""Engagement work: opening, editing, logging contact, the timeline. Functions mutate; callers commit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from engage import clock
from engage.errors import FieldError
from engage.formatting import format_date, one_line
from engage.engagements import attachments, cycle
from engage.engagements.cycle import MoveError
from engage.extensions import db
from engage.models import (
    Attachment,
    AuditEvent,
    Campaign,
    Company,
    Direction,
    Engagement,
    EngagementEvent,
    Interaction,
    InteractionKind,
    Letter,
    LetterStatus,
    Reminder,
    ReminderKind,
    ReminderStatus,
    Score,
    Stage,
    User,
    reminder_pending,
)
from engage.models.scoring import latest_score_of_engagement
from engage.validators import date_problem


class EngagementError(FieldError):
    """Refused input; `field` names the form field the message belongs to."""


class StaleEdit(ValueError):
    """Someone else saved the engagement after this form was opened; `changes` says what."""

    def __init__(self, engagement: Engagement, changes: list[AuditEvent]):
        super().__init__("This engagement was changed by someone else after you opened it.")
        self.engagement = engagement
        self.changes = changes


def changes_since(engagement: Engagement, seen_version: int) -> list[AuditEvent]:
    """The audited updates of the engagement made after the version the user saw (latest first)."""
    missed = max(1, min(engagement.version - seen_version, 20))
    return list(db.session.scalars(
        sa.select(AuditEvent)
        .where(AuditEvent.object_type == "Engagement", AuditEvent.object_id == engagement.id,
               AuditEvent.action == "update")
        .order_by(AuditEvent.id.desc())
        .limit(missed)
    ))


def check_version(engagement: Engagement, seen_version: int | None) -> None:
    """Refuse a save made from a stale page (optimistic lock, checked before any change)."""
    if seen_version is None or int(seen_version) != engagement.version:
        raise StaleEdit(engagement, changes_since(engagement, int(seen_version or 0)))


def open_engagement(company: Company, campaign: Campaign, *, owner: User | None, objectives: str,
                    opened_on: dt.date, today: dt.date, actor_id: int | None) -> Engagement:
    if opened_on > today:
        raise EngagementError("opened_on", f"{format_date(opened_on)} is in the future.")
    existing = db.session.scalar(
        sa.select(Engagement.id).where(Engagement.company_id == company.id, Engagement.campaign_id == campaign.id,
                                       Engagement.is_open)
    )
    if existing:
        raise EngagementError("campaign_id", f"{company.name} already has an open engagement in "
                                             f"{campaign.name} (#{existing}).")
    divested = db.session.scalar(sa.select(Engagement.id).where(Engagement.company_id == company.id,
                                                                Engagement.is_divested).order_by(Engagement.id.desc()))
    if divested:
        raise EngagementError("campaign_id", f"{company.name} was divested (engagement #{divested}): it is readmitted "
                                             "only by reopening that engagement on recorded evidence of change in "
                                             "practice, not by a new engagement.")
    if owner is not None and (not owner.active or not owner.can_edit):
        raise EngagementError("owner_id", "The owner must be an active analyst or admin.")
    engagement = Engagement(company=company, campaign=campaign, owner=owner, objectives=objectives.strip(),
                            opened_on=opened_on, stage=Stage.IDENTIFIED.value)
    db.session.add(engagement)
    return engagement


#: The longest next step ("Call IR about the supplier list"): one line that fits a list's column.
NEXT_STEP_MAX = 200
#: How far ahead a next step may be dated: further is a typo (2062 for 2026), not a plan.
NEXT_STEP_HORIZON = dt.timedelta(days=3 * 366)


def next_step_problem(engagement: Engagement, text: str, on: dt.date | None, today: dt.date) -> tuple[str, str] | None:
    """(field, message) for a next step that cannot be saved, else None.

    Both empty is fine (no next step), and so is a text without a date; a date needs a text.
    The date lies between the engagement's opening and NEXT_STEP_HORIZON after today.
    """
    if len(text) > NEXT_STEP_MAX:
        return "next_step", f"The next step is {len(text)} characters long; keep it to {NEXT_STEP_MAX}."
    if on is None:
        return None
    if not text:
        return "next_step", "Say what the next step is, or clear its date."
    if (problem := date_problem(on)) is not None:
        return "next_step_on", problem
    if on < engagement.opened_on:
        return "next_step_on", (f"{format_date(on)} is before the engagement was opened "
                                f"({format_date(engagement.opened_on)}).")
    if on > today + NEXT_STEP_HORIZON:
        return "next_step_on", (f"{format_date(on)} is more than three years ahead; "
                                "give the date of the next step, not a distant one.")
    return None


def update_engagement(engagement: Engagement, *, seen_version: int | None, owner: User | None,
                      objectives: str, next_step: str | None = None, next_step_on: dt.date | None = None,
                      today: dt.date | None = None) -> None:
    """Owner, objectives and next step, from a form opened at `seen_version` (else StaleEdit).

    `next_step=None` leaves the next step as it is (a caller that does not edit it); a text,
    even empty, sets it and its date. Nothing changes unless everything is valid.
    """
    check_version(engagement, seen_version)
    if owner is not None and owner.id != engagement.owner_id and (not owner.active or not owner.can_edit):
        raise EngagementError("owner_id", "The owner must be an active analyst or admin.")
    if next_step is not None:
        text = one_line(next_step, len(next_step) + 1)
        if (problem := next_step_problem(engagement, text, next_step_on, today or clock.today())) is not None:
            raise EngagementError(*problem)
    engagement.owner = owner
    engagement.objectives = objectives.strip()
    if next_step is not None:
        engagement.next_step = text
        engagement.next_step_on = next_step_on


def log_interaction(engagement: Engagement, *, kind: str, direction: str, occurred_on: dt.date, subject: str,
                    summary: str, participants: str, uploads: list, today: dt.date, actor_id: int | None,
                    move_to: str | None = None, seen_version: int | None = None) -> tuple[Interaction, list]:
    """Log one contact. Returns the interaction and the files written (to delete if the commit fails)."""
    if not engagement.is_open:
        since = f" on {format_date(engagement.closed_on)}" if engagement.closed_on else ""
        raise EngagementError("kind", f"The engagement was closed{since}; reopen it to log new contact.")
    if kind not in InteractionKind.values():
        raise EngagementError("kind", f"Unknown kind of interaction {kind!r}.")
    if direction not in Direction.values():
        raise EngagementError("direction", f"Unknown direction {direction!r}.")
    if occurred_on is None:
        raise EngagementError("occurred_on", "Give the date of the contact.")
    if occurred_on > today and kind != InteractionKind.MEETING.value:
        raise EngagementError("occurred_on", f"{format_date(occurred_on)} is in the future; only meetings can be "
                                             "planned ahead.")
    if occurred_on < engagement.opened_on - dt.timedelta(days=366):
        raise EngagementError("occurred_on", f"{format_date(occurred_on)} is more than a year before the engagement "
                                             "was opened.")
    vetted = []
    for upload in uploads:
        try:
            vetted.append(attachments.check_upload(upload))
        except attachments.AttachmentError as exc:
            raise EngagementError("attachments", str(exc)) from exc
    interaction = Interaction(engagement=engagement, kind=kind, direction=direction, occurred_on=occurred_on,
                              subject=subject.strip(), summary=summary.strip(), participants=participants.strip(),
                              created_by_id=actor_id)
    db.session.add(interaction)
    if move_to:
        check_version(engagement, seen_version)
        try:
            event = cycle.move_stage(engagement, move_to, on=occurred_on, today=today, actor_id=actor_id,
                                     note=f"Company response of {format_date(occurred_on)}: {subject.strip()}"
                                     .strip(": "))
            event.interaction = interaction  # one timeline entry: the response and the move it made
        except MoveError as exc:
            raise EngagementError("move_to", exc.message) from exc
    if kind == InteractionKind.RESPONSE.value:  # the company replied: stop waiting and chasing
        for reminder in engagement.reminders:
            if reminder.status != ReminderStatus.DONE.value and reminder.kind in (
                    ReminderKind.REPLY.value, ReminderKind.ESCALATION.value):
                reminder.status = ReminderStatus.DONE.value
    written = []
    try:
        for filename, data in vetted:
            stored = attachments.store(filename, data)
            written.append(stored.path)
            interaction.attachments.append(Attachment(
                filename=stored.filename, stored_name=stored.stored_name, content_type=stored.content_type,
                size_bytes=stored.size_bytes, sha256=stored.sha256))
    except OSError:
        discard_files(written)
        raise
    return interaction, written


def discard_files(paths) -> None:
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


@dataclass
class TimelineEntry:
    on: dt.date
    kind: str  # interaction, event, letter, score, relationship (status change), map (value chain)
    obj: object
    order: int = 0
    extra: dict = field(default_factory=dict)
    #: When it was recorded: orders the entries of one day (the latest first).
    at: dt.datetime | None = None


#: Entries of one day recorded at the same moment (imported or demo history): a later step of the
#: usual chain (a contact, then its score, then the move it led to) goes above an earlier one.
KIND_RANK = {"interaction": 0, "letter": 1, "map": 2, "relationship": 3, "score": 4, "event": 5}


def timeline(engagement: Engagement, more: Iterable[TimelineEntry] = ()) -> list[TimelineEntry]:
    """One entry per event, newest first: by date, then by when it was recorded (four queries).

    What one action recorded in several rows is one entry: a sent letter with the interaction
    that records its sending and the cycle move it made (`extra["interaction"]`, `extra["move"]`),
    a logged response with the stage move chosen with it (`extra["move"]`). The `more` entries
    are other features' (the value chain's status changes and maps).
    """
    interactions = {item.id: item for item in db.session.scalars(
        sa.select(Interaction).where(Interaction.engagement_id == engagement.id)
        .options(selectinload(Interaction.attachments), selectinload(Interaction.created_by))
    )}
    events = {item.id: item for item in db.session.scalars(
        sa.select(EngagementEvent).where(EngagementEvent.engagement_id == engagement.id)
        .options(selectinload(EngagementEvent.actor))
    )}
    letters = list(db.session.scalars(sa.select(Letter).where(Letter.engagement_id == engagement.id)))
    folded_interactions = {letter.interaction_id for letter in letters if letter.is_sent and letter.interaction_id}
    folded_events = {letter.event_id for letter in letters if letter.is_sent and letter.event_id}
    moves_of = {}
    for event in events.values():
        if event.interaction_id in interactions and event.id not in folded_events:
            moves_of[event.interaction_id] = event
            folded_events.add(event.id)
    entries: list[TimelineEntry] = []
    for item in interactions.values():
        if item.id not in folded_interactions:
            entries.append(TimelineEntry(item.occurred_on, "interaction", item, item.id,
                                         extra={"move": moves_of.get(item.id)}, at=item.created_at))
    for item in events.values():
        if item.id not in folded_events:
            entries.append(TimelineEntry(item.occurred_on, "event", item, item.id, at=item.created_at))
    for item in letters:
        if item.is_sent:
            sending = interactions.get(item.interaction_id)
            entries.append(TimelineEntry(item.sent_on, "letter", item, item.id,
                                         extra={"interaction": sending, "move": events.get(item.event_id)},
                                         at=sending.created_at if sending else item.updated_at))
        else:
            entries.append(TimelineEntry(item.created_at.date(), "letter", item, item.id, at=item.created_at))
    for item in db.session.scalars(
        sa.select(Score).where(Score.engagement_id == engagement.id).options(selectinload(Score.scorer))
    ):
        entries.append(TimelineEntry(item.scored_on, "score", item, item.id, at=item.created_at))
    # Entries of other features (engage.valuechain.feeds, which the page's route passes: this
    # package cannot import it without a cycle).
    entries.extend(more)
    entries.sort(key=lambda e: (e.on, e.at or dt.datetime.min, KIND_RANK[e.kind], e.order), reverse=True)
    return entries


def next_follow_up_query():
    """Each engagement's next follow-up: the stored due date of its earliest waiting reminder
    (engagements.next_follow_up_on, kept by triggers: engage.engagements.stored)."""
    return Engagement.next_follow_up_on


def computed_next_follow_up():
    """Correlated subquery: the earliest waiting reminder of each engagement, from its reminders
    (the definition the stored column follows; the tests compare the two)."""
    return (
        sa.select(sa.func.min(Reminder.due_on))
        .where(Reminder.engagement_id == Engagement.id, reminder_pending())
        .correlate(Engagement)
        .scalar_subquery()
    )


def latest_score_query():
    """Correlated subquery: the total of each engagement's latest score."""
    return latest_score_of_engagement()


def score_change_query():
    """Correlated subquery: latest total minus the one before it (NULL with fewer than two)."""
    return latest_score_of_engagement() - latest_score_of_engagement(offset=1)


def last_contact_query():
    """Each engagement's last contact: the stored date of its latest interaction that is not a
    note (engagements.last_contact_on, kept by triggers: engage.engagements.stored)."""
    return Engagement.last_contact_on


def computed_last_contact():
    """Correlated subquery: the latest interaction that is not a note, from the interactions
    (the definition the stored column follows; the tests compare the two)."""
    return (
        sa.select(sa.func.max(Interaction.occurred_on))
        .where(Interaction.engagement_id == Engagement.id, Interaction.kind != InteractionKind.NOTE.value)
        .correlate(Engagement)
        .scalar_subquery()
    )


def summary_of(engagement: Engagement) -> dict:
    """Next follow-up, latest score and its change, last contact, for the engagement page."""
    # Read from the database, not the loaded object: the triggers set it after the object was loaded.
    next_due = db.session.scalar(sa.select(Engagement.next_follow_up_on).where(Engagement.id == engagement.id))
    scores = db.session.execute(
        sa.select(Score.total, Score.scored_on).where(Score.engagement_id == engagement.id, Score.is_primary)
        .order_by(*Score.newest_first()).limit(2)
    ).all()
    latest = scores[0] if scores else None
    change = (scores[0].total - scores[1].total) if len(scores) == 2 else None
    letters_sent = db.session.scalar(
        sa.select(sa.func.count(Letter.id)).where(Letter.engagement_id == engagement.id,
                                                  Letter.status == LetterStatus.SENT.value)
    )
    return {"next_follow_up": next_due, "latest_score": latest, "score_change": change, "letters_sent": letters_sent}
