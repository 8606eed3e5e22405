"""Letters: generate from a template, edit drafts, mark sent, templates and their versions.

Functions mutate; the request commits. Sending a letter logs the interaction, moves the cycle
where the letter's kind implies it, and starts the follow-up clock, all in that one commit.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from engage.errors import FieldError
from engage import clock
from engage.engagements import cycle
from engage.engagements.cycle import MoveError
from engage.extensions import db
from engage.letters import documents
from engage.letters.rendering import (
    SAMPLE_CONTEXT,
    LetterTemplateError,
    check_templates,
    letter_context,
    render_many,
)
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


class AlreadySent(LetterError):
    """The letter was marked sent by someone else first (a double click, a second tab)."""


def last_letter_date(engagement: Engagement) -> dt.date | None:
    return db.session.scalar(
        sa.select(sa.func.max(Letter.sent_on)).where(Letter.engagement_id == engagement.id,
                                                     Letter.status == LetterStatus.SENT.value)
    )


def _context(engagement: Engagement, sender: User | None, last_sent: dt.date | None) -> dict:
    if not engagement.is_open:
        raise LetterError("template_id", f"The engagement with {engagement.company.name} is closed.")
    try:
        return letter_context(engagement, sender, last_sent)
    except LetterTemplateError as exc:
        raise LetterError("template_id", f"{engagement.company.name}: {exc}") from exc


def _render_letters(template: LetterTemplate, engagements: list[Engagement], contexts: list[dict]) -> list[list[str]]:
    """Subject and body for each engagement, rendered in one worker process within the budget."""
    if not template.active:
        raise LetterError("template_id", f"The template {template.name} is retired.")
    try:
        texts = render_many([template.subject, template.body], contexts)
    except LetterTemplateError as exc:
        where = engagements[exc.item].company.name if exc.item is not None else template.name
        raise LetterError("template_id", f"{where}: {exc}") from exc
    for engagement, (_, body) in zip(engagements, texts):
        problem = documents.too_long(body, engagement.campaign.letterhead or "", engagement.campaign.signatories)
        if problem:
            raise LetterError("template_id", f"{engagement.company.name}: {problem} Shorten the template.")
    return texts


def _new_letter(engagement: Engagement, template: LetterTemplate, sender: User | None, subject: str, body: str,
                batch: LetterBatch | None = None) -> Letter:
    letter = Letter(
        engagement=engagement, template=template, template_version=template.version, kind=template.kind,
        subject=subject.strip()[:300], body=body, status=LetterStatus.DRAFT.value, batch=batch,
        created_by_id=sender.id if sender else None,
        signatories=[{"name": s.name, "aum_usd": str(s.aum_usd) if s.aum_usd is not None else None}
                     for s in engagement.campaign.signatories],
        letterhead=engagement.campaign.letterhead or "",
    )
    db.session.add(letter)
    return letter


def generate(engagement: Engagement, template: LetterTemplate, sender: User | None) -> Letter:
    """Render the template for the engagement and freeze the result as a draft letter."""
    context = _context(engagement, sender, last_letter_date(engagement))
    [(subject, body)] = _render_letters(template, [engagement], [context])
    return _new_letter(engagement, template, sender, subject, body)


def generate_many(engagements: list[Engagement], template: LetterTemplate, sender: User | None,
                  token: str | None = None) -> LetterBatch:
    """One draft per engagement, all or nothing: the first refusal stops the whole batch.

    Every letter is rendered in one worker process (not one per letter). `token` is the form's
    idempotency key: a second submission of the same form finds the batch the first one made.
    """
    if not engagements:
        raise LetterError("engagement_ids", "Select at least one engagement.")
    if len(engagements) > MAX_BULK:
        raise LetterError("engagement_ids", f"At most {MAX_BULK} letters at a time; narrow the filters.")
    last_sent = dict(db.session.execute(
        sa.select(Letter.engagement_id, sa.func.max(Letter.sent_on))
        .where(Letter.engagement_id.in_([e.id for e in engagements]), Letter.status == LetterStatus.SENT.value)
        .group_by(Letter.engagement_id)
    ).all())
    contexts = [_context(engagement, sender, last_sent.get(engagement.id)) for engagement in engagements]
    texts = _render_letters(template, engagements, contexts)
    batch = LetterBatch(template=template, created_by_id=sender.id if sender else None, submit_token=token)
    db.session.add(batch)
    for engagement, (subject, body) in zip(engagements, texts):
        _new_letter(engagement, template, sender, subject, body, batch=batch)
    return batch


def batch_for_token(token: str | None) -> LetterBatch | None:
    """The batch an earlier submission of the same bulk form created, if any."""
    if not token:
        return None
    return db.session.scalar(sa.select(LetterBatch).where(LetterBatch.submit_token == token))


def update_draft(letter: Letter, subject: str, body: str) -> None:
    if letter.is_sent:
        raise LetterError("body", "This letter was sent; a sent letter cannot be edited.")
    if not subject.strip():
        raise LetterError("subject", "A letter needs a subject.")
    if not body.strip():
        raise LetterError("body", "A letter needs a body.")
    problem = documents.too_long(body, letter.letterhead, letter.signatories or [])
    if problem:
        raise LetterError("body", f"{problem} Shorten the text.")
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
    # Claim the letter in the database: of two simultaneous requests only one changes a row, the
    # other waits for its commit, finds the letter sent and stops before writing anything.
    claimed = db.session.execute(
        sa.update(Letter).where(Letter.id == letter.id, Letter.status == LetterStatus.DRAFT.value)
        .values(status=LetterStatus.SENT.value, sent_on=sent_on, channel=channel)
        .execution_options(synchronize_session=False))
    if claimed.rowcount != 1:
        raise AlreadySent("sent_on", "This letter was already marked as sent meanwhile (another click or tab); "
                                     "nothing was recorded twice.")
    letter.status = LetterStatus.SENT.value  # the same values again, through the ORM, for the audit trail
    letter.sent_on = sent_on
    letter.channel = channel
    db.session.add(Interaction(
        engagement=engagement, kind=InteractionKind.LETTER.value, direction=Direction.OUTBOUND.value,
        occurred_on=sent_on, subject=letter.subject, summary=f"Letter sent by {channel}.", created_by_id=actor_id,
    ))
    try:
        if letter.kind == LetterKind.INITIAL.value and engagement.stage == Stage.IDENTIFIED.value:
            cycle.move_stage(engagement, Stage.MAPPING_REQUESTED.value, on=sent_on, today=today, actor_id=actor_id,
                             note=f"Initial letter sent: {letter.subject}")
        elif letter.kind == LetterKind.FOLLOW_UP.value and engagement.escalation == Escalation.NONE.value:
            cycle.move_escalation(engagement, Escalation.FOLLOW_UP.value, on=sent_on, today=today, actor_id=actor_id,
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
    try:
        _, sample = check_templates(subject, body)
    except LetterTemplateError as exc:
        raise LetterError("subject" if exc.part == 0 else "body", str(exc)) from exc
    problem = documents.too_long(sample, SAMPLE_CONTEXT["campaign"].get("letterhead", ""), SAMPLE_CONTEXT["signatories"])
    if problem:
        raise LetterError("body", f"With the sample data: {problem} Shorten the template.")


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
    fields = ("subject", "body")
    try:
        context = letter_context(engagement, sender, last_letter_date(engagement)) if engagement else SAMPLE_CONTEXT
        [texts] = render_many([subject, body], [context])
    except LetterTemplateError as exc:
        return {"error": exc.message, "line": exc.line, "field": fields[exc.part] if exc.part is not None else "body"}
    return dict(zip(fields, texts))


def active_templates() -> list[LetterTemplate]:
    """Active templates in the order an engagement uses them: initial letter first."""
    templates = db.session.scalars(sa.select(LetterTemplate).where(LetterTemplate.active.is_(True))).all()
    return sorted(templates, key=lambda t: (list(LetterKind).index(LetterKind(t.kind)), t.name))


def template_choices():
    return [(t.id, f"{t.name} (v{t.version})") for t in active_templates()]


def suggested_template(engagement: Engagement, templates: list[LetterTemplate]) -> int | None:
    """The template the engagement's state calls for: the initial letter first, then a follow-up."""
    wanted = "initial" if engagement.stage == Stage.IDENTIFIED.value else (
        "follow_up" if engagement.stage == Stage.MAPPING_REQUESTED.value and engagement.escalation == "none"
        else None)
    return next((t.id for t in templates if t.kind == wanted), None)
