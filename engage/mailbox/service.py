"""Reading the engagement mailbox and filing each message exactly once.

`fetch()` is what `flask mail fetch` and the scheduler's `mail-fetch` job run. For each message
not yet flagged `$EngageFiled` on the server, in UID order:

1. a row for its server position already committed (a run that died between its commit and
   the flag) → only flag it;
2. read it (header only above MAIL_MAX_BYTES), parse it as hostile input, match it;
3. write its .eml (and attachments) under the attachments folder, then in ONE transaction
   insert its `InboundMessage` row with INSERT ... ON CONFLICT DO NOTHING — a conflict means
   another fetcher committed it (the database waited for that transaction), so this one backs
   out — and file it: an interaction, the reply reminder closed, the owner's email queued;
4. commit, then flag it on the server (\\Seen and $EngageFiled).

A message that cannot be filed by itself becomes a triage row with the reason. An unexpected
error on one message is logged and recorded as a triage row, and the run goes on with the
next message; only a failing IMAP server stops the run (MailboxUnavailable), and nothing that
was not committed is flagged, so the next run catches up.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
from dataclasses import dataclass, field

import sqlalchemy as sa
from flask import current_app
from werkzeug.datastructures import FileStorage

from engage import audit, clock
from engage.dbutil import insert_ignoring_conflicts
from engage.engagements import attachments
from engage.engagements.service import EngagementError, discard_files, log_interaction
from engage.extensions import db
from engage.formatting import format_date
from engage.mailbox import imap, parsing
from engage.mailbox.imap import MailboxUnavailable
from engage.mailbox.matching import SUBJECT_REFERENCE, match
from engage.mailbox.settings import enabled
from engage.models import (
    Attachment,
    Company,
    CompanyContact,
    ContactRole,
    Direction,
    Engagement,
    InboundMessage,
    InboundStatus,
    InteractionKind,
    User,
)
from engage.core.outbox import enqueue

log = logging.getLogger("engage.mailbox")

#: A Date header this far in the future is not believed (the time the message arrived is used).
CLOCK_SKEW = dt.timedelta(days=1)
EARLIEST = dt.datetime(1990, 1, 1)


class MailboxNotConfigured(Exception):
    pass


class FilingRefused(Exception):
    """The message cannot be filed on that engagement; the message says why."""


@dataclass
class FetchResult:
    filed: list[int] = field(default_factory=list)
    triaged: list[int] = field(default_factory=list)
    duplicates: int = 0
    errors: list[str] = field(default_factory=list)
    waiting: int = 0

    def lines(self) -> list[str]:
        lines = [f"{len(self.filed)} filed, {len(self.triaged)} to triage, {self.duplicates} already in Engage"]
        lines += [f"not processed: {error}" for error in self.errors]
        return lines


def message_key(message_id: str | None, folder: str, uidvalidity: int, uid: int) -> str:
    basis = f"mid:{message_id}" if message_id else f"uid:{folder}:{uidvalidity}:{uid}"
    return hashlib.sha256(basis.encode("utf-8", "surrogatepass")).hexdigest()


def fetch(now: dt.datetime | None = None) -> FetchResult:
    """Read the mailbox once. Raises MailboxNotConfigured or MailboxUnavailable (nothing is lost)."""
    config = current_app.config
    if not enabled(config):
        raise MailboxNotConfigured("IMAP_HOST is not set: the engagement mailbox is not configured")
    result = FetchResult()
    with imap.connect(config) as mailbox:
        uids = mailbox.unfiled()
        sizes = mailbox.sizes(uids) if uids else {}
        for uid in uids:
            try:
                outcome = receive(mailbox, uid, sizes.get(uid, 0), now or clock.utcnow())
            except MailboxUnavailable:
                db.session.rollback()
                raise
            except Exception as exc:  # one bad message must never stop the run or block the next ones
                db.session.rollback()
                log.exception("message %s in %s could not be processed", uid, mailbox.folder.name)
                outcome = record_failure(mailbox, uid, sizes.get(uid, 0), exc, now or clock.utcnow())
                if outcome is None:
                    result.errors.append(f"message UID {uid}: {type(exc).__name__}: {exc}"[:300])
                    continue
            status, inbound_id = outcome
            if status == "gone":
                continue
            mailbox.mark_filed([uid])  # only now: its row is committed
            if status == InboundStatus.FILED.value:
                result.filed.append(inbound_id)
            elif status == InboundStatus.TRIAGE.value:
                result.triaged.append(inbound_id)
            else:
                result.duplicates += 1
    return result


def receive(mailbox: imap.Mailbox, uid: int, size: int, now: dt.datetime) -> tuple[str, int | None]:
    """Process one message; returns (filed | triage | duplicate | gone, row id). Commits its own work."""
    folder = mailbox.folder
    config = current_app.config
    done = db.session.scalar(sa.select(InboundMessage.id).where(
        InboundMessage.folder == folder.name, InboundMessage.uidvalidity == folder.uidvalidity,
        InboundMessage.uid == uid))
    if done is not None:
        db.session.rollback()
        return "duplicate", done
    too_large = size > config["MAIL_MAX_BYTES"]
    raw = mailbox.read(uid, header_only=too_large)
    if raw is None:
        return "gone", None
    parsed = parsing.parse(raw, header_only=too_large)
    if too_large:
        parsed.problems.insert(0, f"the message is {size / 1048576:.1f} MB, larger than MAIL_MAX_BYTES "
                                  f"({config['MAIL_MAX_BYTES'] / 1048576:.1f} MB): only its header was read "
                                  "and its attachments were not saved")
    key = message_key(parsed.message_id, folder.name, folder.uidvalidity, uid)
    if db.session.scalar(sa.select(InboundMessage.id).where(InboundMessage.message_key == key)) is not None:
        db.session.rollback()
        return "duplicate", None
    mailbox_address = (config.get("ENGAGE_MAILBOX_ADDRESS") or "").strip().lower()
    found = match(from_address=parsed.from_address, to=parsed.to, cc=parsed.cc, subject=parsed.subject,
                  replied_to=parsed.replied_to, mailbox_address=mailbox_address)
    engagement_id = found.engagement.id if found.engagement is not None and not parsed.problems else None
    reason = "; ".join(parsed.problems) if parsed.problems else found.reason
    if parsed.problems and found.engagement is not None:
        reason += f" (it would match engagement #{found.engagement.id}: {found.reason})"
    db.session.rollback()  # end the reads: the write transaction starts with the INSERT below

    written = []
    try:
        stored = attachments.store("message.eml", raw)
        written.append(stored.path)
        row = {
            "message_key": key, "message_id": parsed.message_id[:998] if parsed.message_id else None,
            "folder": folder.name, "uidvalidity": folder.uidvalidity, "uid": uid,
            "from_address": parsed.from_address, "from_name": parsed.from_name,
            "to_addresses": ", ".join(parsed.to), "cc_addresses": ", ".join(parsed.cc),
            "subject": parsed.subject, "sent_at": sane_date(parsed.sent_at, now), "received_at": now,
            "size_bytes": size or len(raw), "status": InboundStatus.TRIAGE.value, "direction": found.direction,
            "reason": reason, "snippet": parsed.snippet, "raw_name": stored.stored_name,
            "created_at": now, "updated_at": now,
        }
        inserted = insert_ignoring_conflicts(InboundMessage, [row])
        if not inserted:  # another fetcher committed this message meanwhile
            db.session.rollback()
            discard_files(written)
            return "duplicate", None
        inbound = db.session.get(InboundMessage, inserted[0])
        audit.record("mail_received", f"{inbound.sender}: {inbound.subject}"[:500], obj=inbound,
                     changes={"status": ["", "triage"], "reason": ["", reason]})
        if engagement_id is not None:
            try:
                written += file_message(inbound, db.session.get(Engagement, engagement_id), parsed, stored,
                                        now=now, actor_id=None, how=found.reason,
                                        replied_to_subject=found.replied_to_subject)
            except FilingRefused as exc:
                inbound.reason = str(exc)
        db.session.commit()
    except Exception:
        db.session.rollback()
        discard_files(written)
        raise
    return inbound.status, inbound.id


def record_failure(mailbox: imap.Mailbox, uid: int, size: int, exc: Exception,
                   now: dt.datetime) -> tuple[str, int | None] | None:
    """After an unexpected error: a triage row with the reason, so the message is not retried forever."""
    folder = mailbox.folder
    try:
        row = {"message_key": message_key(None, folder.name, folder.uidvalidity, uid), "message_id": None,
               "folder": folder.name, "uidvalidity": folder.uidvalidity, "uid": uid, "from_address": "",
               "from_name": "", "to_addresses": "", "cc_addresses": "", "subject": f"(message UID {uid})",
               "sent_at": None, "received_at": now, "size_bytes": size, "status": InboundStatus.TRIAGE.value,
               "direction": Direction.INBOUND.value,
               "reason": f"could not be processed ({type(exc).__name__}: {exc})"[:2000], "snippet": "",
               "raw_name": None, "created_at": now, "updated_at": now}
        inserted = insert_ignoring_conflicts(InboundMessage, [row])
        db.session.commit()
    except MailboxUnavailable:
        raise
    except Exception:
        db.session.rollback()
        log.exception("message %s could not be recorded for triage either", uid)
        return None
    return InboundStatus.TRIAGE.value, (inserted[0] if inserted else None)


def sane_date(sent_at: dt.datetime | None, now: dt.datetime) -> dt.datetime | None:
    """The Date header if it is believable (not before 1990, not more than a day ahead)."""
    if sent_at is None or sent_at < EARLIEST or sent_at > now + CLOCK_SKEW:
        return None
    return min(sent_at, now)


def file_message(inbound: InboundMessage, engagement: Engagement, parsed: parsing.ParsedMessage,
                 stored: attachments.StoredFile, *, now: dt.datetime, actor_id: int | None, how: str,
                 replied_to_subject: str | None = None) -> list:
    """Log the message on the engagement in the caller's transaction; returns the files written.

    Raises FilingRefused (with nothing changed) when the engagement cannot take it.
    """
    if engagement is None:
        raise FilingRefused("the engagement no longer exists")
    inbound_dir = inbound.direction == Direction.INBOUND.value
    occurred = (inbound.sent_at or inbound.received_at).date()
    uploads, refused = [], []
    for item in parsed.attachments:
        upload = FileStorage(stream=io.BytesIO(item.data), filename=item.filename)
        try:
            filename, data = attachments.check_upload(upload)
        except attachments.AttachmentError as exc:
            refused.append(str(exc))
            continue
        uploads.append(FileStorage(stream=io.BytesIO(data), filename=filename))
    summary = parsed.new_text or "(no text)"
    if refused:
        summary += "\n\nAttachments not saved (the whole message is attached as .eml):\n" + "\n".join(
            f"- {reason}" for reason in refused)
    participants = inbound.sender if inbound_dir else ", ".join(filter(None, [inbound.to_addresses,
                                                                              inbound.cc_addresses]))
    try:
        interaction, written = log_interaction(
            engagement, kind=(InteractionKind.RESPONSE if inbound_dir else InteractionKind.EMAIL).value,
            direction=inbound.direction, occurred_on=occurred, subject=inbound.subject or "(no subject)",
            summary=summary, participants=participants, uploads=uploads, today=now.date(), actor_id=actor_id)
    except EngagementError as exc:
        raise FilingRefused(f"not filed on engagement #{engagement.id}: {exc.message}") from exc
    interaction.attachments.append(Attachment(
        filename=attachments.display_name((inbound.subject or "message")[:200].replace("/", "-").replace("\\", "-")
                                          + ".eml"),
        stored_name=stored.stored_name, content_type="message/rfc822", size_bytes=stored.size_bytes,
        sha256=stored.sha256))
    db.session.flush()
    inbound.status = InboundStatus.FILED.value
    inbound.engagement_id = engagement.id
    inbound.interaction_id = interaction.id
    inbound.reason = how
    if inbound_dir:
        notify_owner(engagement, inbound, replied_to_subject, summary)
    return written


def notify_owner(engagement: Engagement, inbound: InboundMessage, replied_to_subject: str | None,
                 summary: str) -> None:
    owner = engagement.owner
    if owner is None or not owner.active:
        return
    company = engagement.company.name
    about = parsing.clean_line(_without_reply_prefix(replied_to_subject or inbound.subject), 200) or "your letter"
    base = current_app.config["ENGAGE_BASE_URL"].rstrip("/")
    text = summary if len(summary) <= 2000 else summary[:2000] + " …"
    body = (f"{company} replied to \"{about}\".\n\n"
            f"From: {inbound.sender}\nSubject: {inbound.subject}\n"
            f"Filed on engagement #{engagement.id} as a company response; its reply reminder is closed.\n\n"
            f"{text}\n\nOpen the engagement: {base}/engagements/{engagement.id}\n")
    enqueue(owner.email, f"{company} replied to {about}"[:300], body)


def _without_reply_prefix(subject: str) -> str:
    text = subject or ""
    while True:
        stripped = text.lstrip()
        lowered = stripped.lower()
        for prefix in ("re:", "aw:", "sv:", "fw:", "fwd:", "回复：", "回复:", "答复：", "答复:", "回覆：", "回覆:"):
            if lowered.startswith(prefix):
                text = stripped[len(prefix):]
                break
        else:
            return SUBJECT_REFERENCE.sub("", stripped).strip()


# --- triage ---------------------------------------------------------------------------------


class AlreadyHandled(Exception):
    """The message left triage meanwhile (another click, another analyst)."""


def _claim(inbound_id: int, status: str, user: User, now: dt.datetime) -> InboundMessage:
    """Move a triage message to `status` with one conditional UPDATE: the first request wins."""
    claimed = db.session.execute(
        sa.update(InboundMessage)
        .where(InboundMessage.id == inbound_id, InboundMessage.status == InboundStatus.TRIAGE.value)
        .values(status=status, handled_by_id=user.id, handled_at=now, updated_at=now))
    inbound = db.session.get(InboundMessage, inbound_id, populate_existing=True)
    if claimed.rowcount != 1:
        who = f" by {inbound.handled_by.email}" if inbound is not None and inbound.handled_by else ""
        state = inbound.status if inbound is not None else "gone"
        raise AlreadyHandled(f"This message was already {state}{who}; nothing was changed.")
    return inbound


def stored_raw(inbound: InboundMessage) -> tuple[bytes, attachments.StoredFile | None]:
    if not inbound.raw_name:
        return b"", None
    path = attachments.path_of(inbound.raw_name)
    raw = path.read_bytes()
    return raw, attachments.StoredFile(filename="message.eml", stored_name=inbound.raw_name,
                                       content_type="message/rfc822", size_bytes=len(raw),
                                       sha256=hashlib.sha256(raw).hexdigest(), path=path)


def file_from_triage(inbound_id: int, engagement: Engagement, user: User, now: dt.datetime) -> tuple[InboundMessage, list]:
    """File a triage message on the engagement an analyst chose (caller commits; FilingRefused, AlreadyHandled)."""
    inbound = _claim(inbound_id, InboundStatus.FILED.value, user, now)
    raw, stored = stored_raw(inbound)
    too_large = inbound.size_bytes > current_app.config["MAIL_MAX_BYTES"]
    parsed = parsing.parse(raw, header_only=too_large) if raw else parsing.ParsedMessage()
    how = f"filed from triage on engagement #{engagement.id} by {user.email} (was: {inbound.reason})"[:2000]
    written = file_message(inbound, engagement, parsed, stored, now=now, actor_id=user.id, how=how) \
        if stored is not None else _file_without_raw(inbound, engagement, now, user, how)
    audit.record("mail_filed", f"{inbound.sender}: {inbound.subject} → engagement #{engagement.id}"[:500],
                 obj=inbound, changes={"status": ["triage", "filed"], "engagement_id": [None, engagement.id]})
    return inbound, written


def _file_without_raw(inbound, engagement, now, user, how) -> list:
    parsed = parsing.ParsedMessage(text=inbound.snippet)
    interaction, written = log_interaction(
        engagement, kind=InteractionKind.RESPONSE.value if inbound.direction == Direction.INBOUND.value
        else InteractionKind.EMAIL.value, direction=inbound.direction,
        occurred_on=(inbound.sent_at or inbound.received_at).date(), subject=inbound.subject or "(no subject)",
        summary=parsed.text or "(no text)", participants=inbound.sender, uploads=[], today=now.date(),
        actor_id=user.id)
    db.session.flush()
    inbound.engagement_id, inbound.interaction_id, inbound.reason = engagement.id, interaction.id, how
    return written


def discard(inbound_id: int, user: User, now: dt.datetime) -> InboundMessage:
    inbound = _claim(inbound_id, InboundStatus.DISCARDED.value, user, now)
    audit.record("mail_discarded", f"{inbound.sender}: {inbound.subject}"[:500], obj=inbound,
                 changes={"status": ["triage", "discarded"]})
    return inbound


class ContactRefused(Exception):
    pass


def candidate_addresses(inbound: InboundMessage) -> list[str]:
    """Addresses of the message an analyst may add as a contact (never the mailbox or a user)."""
    mailbox_address = (current_app.config.get("ENGAGE_MAILBOX_ADDRESS") or "").strip().lower()
    users = {e.lower() for e in db.session.scalars(sa.select(User.email))}
    found = [inbound.from_address] + [a.strip() for a in f"{inbound.to_addresses},{inbound.cc_addresses}".split(",")]
    return [a for a in dict.fromkeys(found) if a and "@" in a and a != mailbox_address and a not in users]


def add_contact(inbound: InboundMessage, company: Company, *, email: str, name: str, role: str) -> CompanyContact:
    """Add an address of a triage message as a contact of a company (audited by the model hooks)."""
    email = email.strip().lower()
    if email not in candidate_addresses(inbound):
        raise ContactRefused(f"{email or 'The address'} is not an address of this message.")
    if role not in ContactRole.values():
        raise ContactRefused(f"Unknown role {role!r}.")
    name = parsing.clean_line(name, 200) or (inbound.from_name if email == inbound.from_address else "") or email
    existing = db.session.scalar(sa.select(CompanyContact).where(
        CompanyContact.company_id == company.id, sa.func.lower(CompanyContact.email) == email,
        CompanyContact.erased_at.is_(None)))
    if existing is not None:
        if existing.active:
            raise ContactRefused(f"{email} is already a contact of {company.name}.")
        existing.active = True
        return existing
    date = format_date(inbound.sent_at or inbound.received_at)
    contact = CompanyContact(company_id=company.id, name=name, role=role, email=email,
                             source=f"email of {date} in the engagement mailbox: {inbound.subject}"[:500])
    db.session.add(contact)
    return contact
