"""Letters: generate from a template, edit drafts, mark sent, templates and their versions.

Functions mutate; the request commits. Sending a letter logs the interaction, moves the cycle
where the letter's kind implies it, and starts the follow-up clock, all in that one commit.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from engage.errors import FieldError
from engage import clock
from engage.engagements.cycle import MoveError
from engage.extensions import db
from engage.letters.rendering import LetterTemplateError, check_template, letter_context, render
from engage.models import (
    Direction,
    Engagement,
    Escalation,
    Interaction,
    InteractionKind,
    Letter,
    LetterBatch,
    LetterKind,
    LetterStatus,
    LetterTemplate,
    LetterTemplateVersion,
    Reminder,
    ReminderKind,
    ReminderStatus,
    Stage,
    User,
)

CHANNELS = ["post", "email", "courier", "investor platform", "hand delivery"]
MAX_BULK = 1000


class LetterError(FieldError):
    """A refused letter action; `field` names the form field it concerns."""


def last_letter_date(engagement: Engagement) -> dt.date | None:
    return db.session.scalar(
        sa.select(sa.func.max(Letter.sent_on)).where(Letter.engagement_id == engagement.id,
                                                     Letter.status == LetterStatus.SENT.value)
    )


def generate(engagement: Engagement, template: LetterTemplate, sender: User | None,
             batch: LetterBatch | None = None, last_sent: dt.date | None = None) -> Letter:
    """Render the template for the engagement and freeze the result as a draft letter."""
    if not engagement.is_open:
        raise LetterError("template_id", f"The engagement with {engagement.company.name} is closed.")
    if not template.active:
        raise LetterError("template_id", f"The template {template.name} is retired.")
    context = letter_context(engagement, sender, last_sent if batch is not None else last_letter_date(engagement))
    try:
        subject = render(template.subject, context).strip()
        body = render(template.body, context)
    except LetterTemplateError as exc:
        raise LetterError("template_id", f"{engagement.company.name}: {exc}") from exc
    letter = Letter(
        engagement=engagement, template=template, template_version=template.version, kind=template.kind,
        subject=subject[:300], body=body, status=LetterStatus.DRAFT.value, batch=batch,
        created_by_id=sender.id if sender else None,
        signatories=[{"name": s.name, "aum_usd": str(s.aum_usd) if s.aum_usd is not None else None}
                     for s in engagement.campaign.signatories],
        letterhead=engagement.campaign.letterhead or "",
    )
    db.session.add(letter)
    return letter


def generate_many(engagements: list[Engagement], template: LetterTemplate, sender: User | None) -> LetterBatch:
    """One draft per engagement, all or nothing: the first refusal stops the whole batch."""
    if not engagements:
        raise LetterError("engagement_ids", "Select at least one engagement.")
    if len(engagements) > MAX_BULK:
        raise LetterError("engagement_ids", f"At most {MAX_BULK} letters at a time; narrow the filters.")
    last_sent = dict(db.session.execute(
        sa.select(Letter.engagement_id, sa.func.max(Letter.sent_on))
        .where(Letter.engagement_id.in_([e.id for e in engagements]), Letter.status == LetterStatus.SENT.value)
        .group_by(Letter.engagement_id)
    ).all())
    batch = LetterBatch(template=template, created_by_id=sender.id if sender else None)
    db.session.add(batch)
    for engagement in engagements:
        generate(engagement, template, sender, batch=batch, last_sent=last_sent.get(engagement.id))
    return batch


def update_draft(letter: Letter, subject: str, body: str) -> None:
    if letter.is_sent:
        raise LetterError("body", "This letter was sent; a sent letter cannot be edited.")
    if not subject.strip():
        raise LetterError("subject", "A letter needs a subject.")
    if not body.strip():
        raise LetterError("body", "A letter needs a body.")
    letter.subject = subject.strip()[:300]
    letter.body = body


def mark_sent(letter: Letter, *, sent_on: dt.date, channel: str, actor_id: int | None, today: dt.date) -> Reminder:
    """Record the letter as sent: timeline entry, cycle move for its kind, follow-up reminder."""
    engagement = letter.engagement
    if letter.is_sent:
        raise LetterError("sent_on", f"This letter was already sent on {letter.sent_on.isoformat()}.")
    if not engagement.is_open:
        raise LetterError("sent_on", "The engagement is closed; reopen it before sending letters.")
    if channel not in CHANNELS:
        raise LetterError("channel", f"Unknown channel {channel!r}.")
    if sent_on is None or sent_on > today:
        raise LetterError("sent_on", "The sent date must be given and cannot be in the future.")
    if sent_on < engagement.opened_on:
        raise LetterError("sent_on", f"The engagement was opened on {engagement.opened_on.isoformat()}, "
                                     "after that date.")
    letter.status = LetterStatus.SENT.value
    letter.sent_on = sent_on
    letter.channel = channel
    db.session.add(Interaction(
        engagement=engagement, kind=InteractionKind.LETTER.value, direction=Direction.OUTBOUND.value,
        occurred_on=sent_on, subject=letter.subject, summary=f"Letter sent by {channel}.", created_by_id=actor_id,
    ))
    try:
        if letter.kind == LetterKind.INITIAL.value and engagement.stage == Stage.IDENTIFIED.value:
            engagement.move_to(Stage.MAPPING_REQUESTED.value, on=sent_on, today=today, actor_id=actor_id,
                               note=f"Initial letter sent: {letter.subject}")
        elif letter.kind == LetterKind.FOLLOW_UP.value and engagement.escalation == Escalation.NONE.value:
            engagement.escalate_to(Escalation.FOLLOW_UP.value, on=sent_on, today=today, actor_id=actor_id,
                                   note=f"Follow-up letter sent: {letter.subject}")
    except MoveError as exc:
        raise LetterError("sent_on", exc.message) from exc
    campaign = engagement.campaign
    # A first letter gets the full reply window; a follow-up is chased again sooner.
    window = campaign.follow_up_interval_days if letter.kind == LetterKind.FOLLOW_UP.value \
        else campaign.response_window_days
    for earlier in engagement.reminders:  # the new letter supersedes the wait for an earlier one
        if earlier.kind == ReminderKind.REPLY.value and earlier.status != ReminderStatus.DONE.value:
            earlier.status = ReminderStatus.DONE.value
    reminder = Reminder(engagement=engagement, due_on=sent_on + dt.timedelta(days=window),
                        reason=f"Reply due to the letter “{letter.subject[:200]}”", status=ReminderStatus.OPEN.value,
                        kind=ReminderKind.REPLY.value, letter=letter, created_by_id=actor_id)
    db.session.add(reminder)
    return reminder


def check_template_source(subject: str, body: str) -> None:
    """Raise LetterError on the field whose template does not render against sample data."""
    for field, source in (("subject", subject), ("body", body)):
        try:
            check_template(source)
        except LetterTemplateError as exc:
            raise LetterError(field, str(exc)) from exc


def save_template(template: LetterTemplate, *, name: str, kind: str, subject: str, body: str, active: bool,
                  actor_id: int | None) -> bool:
    """Save the template; a changed subject or body becomes a new version. True if it did."""
    if kind not in LetterKind.values():
        raise LetterError("kind", f"Unknown kind {kind!r}.")
    check_template_source(subject, body)
    template.name = name.strip()
    template.kind = kind
    template.active = active
    changed = template.id is None or subject != template.subject or body != template.body
    if changed:
        template.version = (template.version or 0) + 1 if template.id is not None else 1
        template.subject = subject
        template.body = body
        template.versions.append(LetterTemplateVersion(version=template.version, subject=subject, body=body,
                                                       created_at=clock.utcnow(), created_by_id=actor_id))
    return changed


def preview(subject: str, body: str, engagement: Engagement | None, sender: User | None) -> dict:
    """Render against a real engagement (or the sample data) for the editor's live preview."""
    context = letter_context(engagement, sender, last_letter_date(engagement)) if engagement else None
    from engage.letters.rendering import SAMPLE_CONTEXT

    result = {}
    for field, source in (("subject", subject), ("body", body)):
        try:
            result[field] = render(source, context or SAMPLE_CONTEXT)
        except LetterTemplateError as exc:
            return {"error": exc.message, "line": exc.line, "field": field}
    return result
