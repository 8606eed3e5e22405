"""Letters: generate from a template, edit drafts, mark sent, templates and their versions.

Functions mutate; the request commits. Sending a letter logs the interaction, moves the cycle
where the letter's kind implies it, and starts the follow-up clock, all in that one commit.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from flask import current_app

from engage.errors import FieldError
from engage import clock
from engage.engagements import cycle
from engage.engagements.cycle import MoveError
from engage.extensions import db
from engage.formatting import format_date, one_line
from engage.letters import documents
from engage.core import outbox
from engage.companies.contacts import primary_contacts
from engage.letters.rendering import (
    DEFAULT_COVER_NOTE,
    SAMPLE_CONTEXT,
    SAMPLE_COVER_CONTEXT,
    sample_context,
    LetterTemplateError,
    Record,
    check_templates,
    letter_context,
    render_many,
)
from engage.models import (
    LANGUAGES,
    CompanyContact,
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
    LetterTemplateLanguage,
    LetterTemplateVersion,
    OutboxEmail,
    Reminder,
    ReminderKind,
    ReminderStatus,
    Stage,
    User,
)

CHANNELS = ["post", "email", "courier", "investor platform", "hand delivery"]
#: Channels that need the addressee's postal address.
POSTAL_CHANNELS = {"post", "courier", "hand delivery"}
MAX_BULK = 1000
LANGUAGE_TAGS = [tag for tag, _ in LANGUAGES]


class LetterError(FieldError):
    """A refused letter action; `field` names the form field it concerns."""


class AlreadySent(LetterError):
    """The letter was marked sent by someone else first (a double click, a second tab)."""


def last_letter_date(engagement: Engagement) -> dt.date | None:
    return db.session.scalar(
        sa.select(sa.func.max(Letter.sent_on)).where(Letter.engagement_id == engagement.id,
                                                     Letter.status == LetterStatus.SENT.value)
    )


def addressee_block(contact: CompanyContact) -> dict:
    """The addressee as printed on the letter, frozen with it: the contact's address, else the company's."""
    company = contact.company
    own = (contact.address or "").strip()
    address = own or (company.address or "").strip()
    return {"name": contact.name, "title": contact.title or contact.role_label, "company": company.name,
            "address": address, "address_from": "contact" if own else ("company" if address else ""),
            "language": contact.language, "email": contact.email or ""}


def no_contact_message(company_name: str) -> str:
    return (f"{company_name} has no active contact to address the letter to; add one under Contacts on the "
            "company's page.")


def choose_contact(engagement: Engagement, contact_id: int | None) -> CompanyContact:
    """The chosen contact (an active contact of the engagement's company), or its primary one."""
    company = engagement.company
    if contact_id is None:
        contact = primary_contacts([company.id]).get(company.id)
        if contact is None:
            raise LetterError("contact_id", no_contact_message(company.name))
        return contact
    contact = db.session.get(CompanyContact, contact_id)
    if contact is None or contact.company_id != company.id or not contact.active or contact.is_erased:
        raise LetterError("contact_id", f"Choose an active contact of {company.name} to address the letter to.")
    return contact


def language_version(template: LetterTemplate, language: str) -> tuple[str, str, str]:
    """(subject source, body source, language) for a reader of `language`: its version, else the template's."""
    for version in template.languages:
        if version.language == language:
            return version.subject, version.body, language
    return template.subject, template.body, "en"


def language_note(template: LetterTemplate, contact: CompanyContact) -> str | None:
    """Said when the contact reads a language the template has no version in."""
    if contact.language == "en" or language_version(template, contact.language)[2] == contact.language:
        return None
    return (f"{template.name} has no {contact.language_label} version, so the letter was written from the "
            "default text; an admin can add one in the template editor.")


def _context(engagement: Engagement, sender: User | None, last_sent: dt.date | None,
             addressee: dict | None = None) -> dict:
    if not engagement.is_open:
        raise LetterError("template_id", f"The engagement with {engagement.company.name} is closed.")
    try:
        return letter_context(engagement, sender, last_sent, addressee)
    except LetterTemplateError as exc:
        raise LetterError("template_id", f"{engagement.company.name}: {exc}") from exc


def _render_letters(template: LetterTemplate, engagements: list[Engagement], contexts: list[dict],
                    languages: list[str] | None = None) -> list[tuple[str, str, str]]:
    """(subject, body, language) for each engagement, each in its reader's language version when there is one.

    The letters of one language version render in one worker process within the budget.
    """
    if not template.active:
        raise LetterError("template_id", f"The template {template.name} is retired.")
    wanted = languages or ["en"] * len(engagements)
    groups: dict[tuple[str, str, str], list[int]] = {}
    for index, language in enumerate(wanted):
        groups.setdefault(language_version(template, language), []).append(index)
    texts: list[tuple[str, str, str] | None] = [None] * len(engagements)
    for (subject_source, body_source, language), indexes in groups.items():
        try:
            rendered = render_many([subject_source, body_source], [contexts[i] for i in indexes])
        except LetterTemplateError as exc:
            where = engagements[indexes[exc.item]].company.name if exc.item is not None else template.name
            raise LetterError("template_id", f"{where}: {exc}") from exc
        for index, (subject, body) in zip(indexes, rendered):
            texts[index] = (subject, body, language)
    for engagement, (_, body, _) in zip(engagements, texts):
        problem = documents.too_long(body, engagement.campaign.letterhead or "", engagement.campaign.signatories)
        if problem:
            raise LetterError("template_id", f"{engagement.company.name}: {problem} Shorten the template.")
    return texts


def _new_letter(engagement: Engagement, template: LetterTemplate, sender: User | None, subject: str, body: str,
                batch: LetterBatch | None = None, contact: CompanyContact | None = None,
                language: str = "en") -> Letter:
    letter = Letter(
        engagement=engagement, template=template, template_version=template.version, kind=template.kind,
        subject=one_line(subject, 300), body=body, status=LetterStatus.DRAFT.value, batch=batch,
        created_by_id=sender.id if sender else None,
        signatories=[{"name": s.name, "aum_usd": str(s.aum_usd) if s.aum_usd is not None else None}
                     for s in engagement.campaign.signatories],
        letterhead=engagement.campaign.letterhead or "",
        contact=contact, addressee=addressee_block(contact) if contact else {}, language=language,
    )
    db.session.add(letter)
    return letter


def generate(engagement: Engagement, template: LetterTemplate, sender: User | None,
             contact: CompanyContact | None = None) -> Letter:
    """Render the template for the engagement, addressed to `contact` (or the company's primary
    contact), in the contact's language when the template has that version; freeze it as a draft."""
    if contact is None:
        contact = choose_contact(engagement, None)
    block = addressee_block(contact)
    context = _context(engagement, sender, last_letter_date(engagement), block)
    [(subject, body, language)] = _render_letters(template, [engagement], [context], [contact.language])
    return _new_letter(engagement, template, sender, subject, body, contact=contact, language=language)


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
    contacts = primary_contacts(list({e.company_id for e in engagements}))
    missing = sorted({e.company.name for e in engagements if e.company_id not in contacts})
    if missing:
        names = "; ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise LetterError("engagement_ids", f"No letters generated: {len(missing)} compan"
                          f"{'y has' if len(missing) == 1 else 'ies have'} no active contact to address the letter "
                          f"to ({names}); add one under Contacts on the company's page.")
    contexts = [_context(engagement, sender, last_sent.get(engagement.id), addressee_block(contacts[engagement.company_id]))
                for engagement in engagements]
    texts = _render_letters(template, engagements, contexts,
                            [contacts[e.company_id].language for e in engagements])
    batch = LetterBatch(template=template, created_by_id=sender.id if sender else None, submit_token=token)
    db.session.add(batch)
    for engagement, (subject, body, language) in zip(engagements, texts):
        _new_letter(engagement, template, sender, subject, body, batch=batch, contact=contacts[engagement.company_id],
                    language=language)
    return batch


def batch_for_token(token: str | None) -> LetterBatch | None:
    """The batch an earlier submission of the same bulk form created, if any."""
    if not token:
        return None
    return db.session.scalar(sa.select(LetterBatch).where(LetterBatch.submit_token == token))


def update_draft(letter: Letter, subject: str, body: str) -> None:
    if letter.is_sent:
        raise LetterError("body", "This letter was sent; a sent letter cannot be edited.")
    subject = one_line(subject, 300)
    if not subject:
        raise LetterError("subject", "A letter needs a subject.")
    if not body.strip():
        raise LetterError("body", "A letter needs a body.")
    problem = documents.too_long(body, letter.letterhead, letter.signatories or [])
    if problem:
        raise LetterError("body", f"{problem} Shorten the text.")
    letter.subject = subject
    letter.body = body


def addressee_problem(letter: Letter, channel: str) -> str | None:
    """Why the letter cannot go out by `channel` for lack of an addressee, naming what to add."""
    company = letter.engagement.company.name
    if not letter.addressee:
        return (f"This letter has no addressee. Add a contact for {company} on the company's page, then generate "
                "the letter again addressed to them.")
    if channel in POSTAL_CHANNELS and not (letter.addressee.get("address") or "").strip():
        return (f"No postal address for {letter.addressee.get('name') or 'the addressee'}: add one to the contact "
                f"or to {company} (company page), then generate the letter again, or send it by email.")
    return None


def check_sendable(letter: Letter, *, sent_on: dt.date | None, channel: str, today: dt.date) -> None:
    """The rules for recording a letter as sent (one letter or a batch); raises LetterError, writes nothing."""
    engagement = letter.engagement
    if letter.is_sent:
        raise LetterError("sent_on", f"This letter was already sent on {format_date(letter.sent_on)}.")
    if not engagement.is_open:
        raise LetterError("sent_on", "The engagement is closed; reopen it before sending letters.")
    if channel not in CHANNELS:
        raise LetterError("channel", f"Unknown channel {channel!r}.")
    problem = addressee_problem(letter, channel)
    if problem:
        raise LetterError("channel", problem)
    if sent_on is None or sent_on > today:
        raise LetterError("sent_on", "The sent date must be given and cannot be in the future.")
    if sent_on < engagement.opened_on:
        raise LetterError("sent_on", f"The engagement was opened on {format_date(engagement.opened_on)}, "
                                     "after that date.")


def mark_sent(letter: Letter, *, sent_on: dt.date, channel: str, actor_id: int | None, today: dt.date,
              participants: str = "") -> Reminder:
    """Record the letter as sent: timeline entry, cycle move for its kind, follow-up reminder."""
    engagement = letter.engagement
    check_sendable(letter, sent_on=sent_on, channel=channel, today=today)
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
    letter.interaction = Interaction(
        engagement=engagement, kind=InteractionKind.LETTER.value, direction=Direction.OUTBOUND.value,
        occurred_on=sent_on, subject=letter.subject, summary=f"Letter sent by {channel}.", created_by_id=actor_id,
        participants=participants or ", ".join(letter.addressee_lines[:1]),
    )
    db.session.add(letter.interaction)
    try:  # the move is linked to the letter: the timeline shows the sending and its move as one entry
        if letter.kind == LetterKind.INITIAL.value and engagement.stage == Stage.IDENTIFIED.value:
            letter.event = cycle.move_stage(engagement, Stage.MAPPING_REQUESTED.value, on=sent_on, today=today,
                                            actor_id=actor_id, note=f"Initial letter sent: {letter.subject}")
        elif letter.kind == LetterKind.FOLLOW_UP.value and engagement.escalation == Escalation.NONE.value:
            letter.event = cycle.move_escalation(engagement, Escalation.FOLLOW_UP.value, on=sent_on, today=today,
                                                 actor_id=actor_id, note=f"Follow-up letter sent: {letter.subject}")
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


def mark_batch_sent(letters: list[Letter], *, sent_on: dt.date | None, channel: str, actor_id: int | None,
                    today: dt.date) -> tuple[list[Letter], int]:
    """Record every unsent letter of a batch as sent on one date by one channel: all of them or none.

    The rules are those of one letter (`check_sendable`, then `mark_sent` for each): every draft is
    checked first and the refusal names each letter that cannot go, so nothing is half recorded.
    Letters already sent are left as they were and counted. Returns (letters marked, already sent).
    A letter marked sent meanwhile by another request raises AlreadySent (the caller rolls back).
    Callers commit.
    """
    drafts = [letter for letter in letters if not letter.is_sent]
    already = len(letters) - len(drafts)
    if channel not in CHANNELS:
        raise LetterError("channel", f"Unknown channel {channel!r}.")
    if sent_on is None or sent_on > today:
        raise LetterError("sent_on", "The sent date must be given and cannot be in the future.")
    problems: list[tuple[str, str]] = []
    for letter in drafts:
        try:
            check_sendable(letter, sent_on=sent_on, channel=channel, today=today)
        except LetterError as error:
            problems.append((error.field, f"{letter.engagement.company.name} (letter #{letter.id}): {error.message}"))
    if problems:
        shown = " ".join(message for _, message in problems[:10])
        more = f" And {len(problems) - 10} more." if len(problems) > 10 else ""
        raise LetterError(problems[0][0], f"No letter was marked as sent. {shown}{more}")
    for letter in drafts:
        try:
            mark_sent(letter, sent_on=sent_on, channel=channel, actor_id=actor_id, today=today)
        except LetterError as error:
            message = (f"No letter was marked as sent. {letter.engagement.company.name} (letter #{letter.id}): "
                       f"{error.message}")
            raise type(error)(error.field, message) from error
    return drafts, already


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
        context = letter_context(engagement, sender, last_letter_date(engagement)) if engagement \
            else sample_context(clock.today())
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


# --- language versions of templates (admin) -------------------------------------------------

def save_language_version(template: LetterTemplate, language: str, *, subject: str, body: str,
                          actor_id: int | None) -> LetterTemplateLanguage:
    """Add or replace the template's text in `language`, checked against the sample data like the template."""
    if language not in LANGUAGE_TAGS or language == "en":
        raise LetterError("language", f"Choose a language other than English, not {language!r}.")
    check_template_source(subject, body)
    version = next((v for v in template.languages if v.language == language), None)
    if version is None:
        version = LetterTemplateLanguage(language=language, subject=subject, body=body, updated_by_id=actor_id)
        template.languages.append(version)
    else:
        version.subject, version.body, version.updated_by_id = subject, body, actor_id
    return version


# --- letters by email ----------------------------------------------------------------------

def engagement_reference(engagement_id: int) -> str:
    """The reference a reply's subject keeps, which files it on the engagement: ENG-42."""
    return f"ENG-{engagement_id}"


def email_subject(letter: Letter) -> str:
    return one_line(f"[{engagement_reference(letter.engagement_id)}] {letter.subject}", 300)


def emailable_contacts(company_id: int) -> list[CompanyContact]:
    """The company's active contacts with an email address, the only ones a letter can be emailed to."""
    return list(db.session.scalars(
        sa.select(CompanyContact).where(CompanyContact.company_id == company_id, CompanyContact.active.is_(True),
                                        CompanyContact.erased_at.is_(None), CompanyContact.email.is_not(None),
                                        CompanyContact.email != "")
        .order_by(CompanyContact.name, CompanyContact.id)))


def check_cover_note(source: str) -> None:
    """Raise LetterError on `cover_note` if the campaign's cover note does not render against sample data."""
    try:
        render_many([source], [SAMPLE_COVER_CONTEXT])
    except LetterTemplateError as exc:
        raise LetterError("cover_note", str(exc)) from exc


def _cover_contexts(letters: list[Letter], sender: User | None) -> list[dict]:
    contexts = []
    for letter in letters:
        context = _context(letter.engagement, sender, None, letter.addressee or None)
        context["letter"] = Record("letter", {"subject": letter.subject,
                                              "reference": engagement_reference(letter.engagement_id)})
        contexts.append(context)
    return contexts


def _cover_notes(letters: list[Letter], sender: User | None) -> list[str]:
    """Each letter's cover note from its campaign's template (or the default), rendered in the sandbox."""
    contexts = _cover_contexts(letters, sender)
    groups: dict[str, list[int]] = {}
    for index, letter in enumerate(letters):
        groups.setdefault(letter.engagement.campaign.cover_note or DEFAULT_COVER_NOTE, []).append(index)
    notes: list[str] = [""] * len(letters)
    for source, indexes in groups.items():
        try:
            rendered = render_many([source], [contexts[i] for i in indexes])
        except LetterTemplateError as exc:
            where = letters[indexes[exc.item]] if exc.item is not None else letters[indexes[0]]
            raise LetterError("to", f"The cover note of {where.engagement.campaign.name} cannot be written for "
                                    f"{where.engagement.company.name}: {exc}. Correct it in Admin → Campaigns.") from exc
        for index, (text,) in zip(indexes, rendered):
            notes[index] = text
    return notes


def _pdfs(letters: list[Letter]) -> dict[int, bytes]:
    """Each letter's PDF (cached or rendered within the document budget), or a LetterError naming the first refused.

    The PDFs are the final copies, without the DRAFT mark: they are what the email sends.
    """
    made, refused, pending = documents.render_missing(
        [(letter, "pdf") for letter in letters],
        float(current_app.config.get("DOCUMENT_BATCH_SECONDS", 60.0)) if len(letters) > 1 else None, final=True)
    if refused:
        first = refused[0]
        raise LetterError("to", f"No PDF of the letter to {first.letter.engagement.company.name}: {first.message}")
    if pending:
        raise LetterError("to", f"{len(pending)} letter PDFs could not be made in time; email fewer at once.")
    pdfs = {}
    for letter in letters:
        data = made.get((letter.id, "pdf"))
        if data is None:
            try:
                data = documents.cache_path(letter, "pdf", final=True).read_bytes()
            except FileNotFoundError:
                data = documents.document(letter, "pdf", final=True)
        pdfs[letter.id] = data
    return pdfs


def _participants(to: list[CompanyContact], cc: list[CompanyContact]) -> str:
    line = "To: " + ", ".join(f"{c.name} <{c.email}>" for c in to)
    if cc:
        line += "; Cc: " + ", ".join(f"{c.name} <{c.email}>" for c in cc)
    return line


def _queue_letter_email(letter: Letter, to: list[CompanyContact], cc: list[CompanyContact], note: str, pdf: bytes,
                        sender: User, today: dt.date) -> OutboxEmail:
    """Mark the letter sent (the claim that makes it once) and queue its email in the same transaction."""
    mark_sent(letter, sent_on=today, channel="email", actor_id=sender.id, today=today,
              participants=_participants(to, cc))
    path = outbox.store_attachment(pdf, ".pdf")
    campaign = letter.engagement.campaign
    config = current_app.config
    email = outbox.enqueue(", ".join(c.email for c in to), email_subject(letter), note,
                         cc=", ".join(c.email for c in cc),
                         sender=campaign.sender_email or config["MAIL_DEFAULT_SENDER"],
                         reply_to=config["ENGAGE_MAILBOX_ADDRESS"],
                         attachments=[{"path": path, "name": f"{documents.file_stem(letter)}.pdf",
                                       "type": "application/pdf"}],
                         engagement_id=letter.engagement_id, letter_id=letter.id)
    letter.message_id = email.message_id
    return email


def email_letter(letter: Letter, to_ids: list[int], cc_ids: list[int], sender: User, today: dt.date) -> OutboxEmail:
    """Email a draft (or not yet sent) letter to chosen contacts of its company, the PDF attached.

    The letter counts as sent once, when the email is queued: the same claim as "Mark as sent",
    so a double click queues one email.
    """
    if letter.is_sent:
        raise AlreadySent("to", f"This letter was already sent on {format_date(letter.sent_on)}.")
    company = letter.engagement.company
    allowed = {c.id: c for c in emailable_contacts(company.id)}
    if not to_ids:
        raise LetterError("to", f"Choose at least one contact of {company.name} to send the letter to.")
    unknown = [i for i in [*to_ids, *cc_ids] if i not in allowed]
    if unknown:
        raise LetterError("to", f"Only active contacts of {company.name} with an email address can receive it.")
    to = [allowed[i] for i in dict.fromkeys(to_ids)]
    cc = [allowed[i] for i in dict.fromkeys(cc_ids) if i not in to_ids]
    [note] = _cover_notes([letter], sender)
    pdf = _pdfs([letter])[letter.id]
    return _queue_letter_email(letter, to, cc, note, pdf, sender, today)


def email_recipient(letter: Letter, primary: dict[int, CompanyContact]) -> CompanyContact | None:
    """Who a bulk email goes to: the letter's addressee if reachable by email, else the company's primary contact."""
    contact = letter.contact
    if contact is not None and contact.active and not contact.is_erased and contact.email:
        return contact
    return primary.get(letter.engagement.company_id)


def email_many(letters: list[Letter], sender: User, today: dt.date) -> tuple[list[OutboxEmail], list[Letter], int]:
    """Email every draft of a batch to its company's contact, all queued in the caller's transaction.

    Returns (emails queued, letters skipped for lack of a contact with an email, letters already sent).
    """
    drafts = [letter for letter in letters if not letter.is_sent]
    already = len(letters) - len(drafts)
    primary = primary_contacts(list({letter.engagement.company_id for letter in drafts}), with_email=True)
    chosen = [(letter, email_recipient(letter, primary)) for letter in drafts]
    skipped = [letter for letter, contact in chosen if contact is None]
    sendable = [(letter, contact) for letter, contact in chosen if contact is not None]
    if not sendable:
        return [], skipped, already
    notes = _cover_notes([letter for letter, _ in sendable], sender)
    pdfs = _pdfs([letter for letter, _ in sendable])
    emails = []
    for (letter, contact), note in zip(sendable, notes):
        emails.append(_queue_letter_email(letter, [contact], [], note, pdfs[letter.id], sender, today))
    return emails, skipped, already
