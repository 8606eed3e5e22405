"""Which engagement a message belongs to, in a fixed order; no match means triage, with why.

1. In-Reply-To / References name a message Engage sent for an engagement (an emailed letter in
   the outbox) or a message already filed on one.
2. The subject carries `[ENG-<id>]` of an engagement that exists and is open — unless the
   sender is an active contact of other companies only (a forged or mistaken reference: triage).
3. The sender (a company's reply) or the recipients (an analyst's message with the mailbox in
   Bcc) are active contacts of exactly one company, which has exactly one open engagement.

A message from an active user of Engage is outbound (filed as an email sent by the analyst);
anything else is inbound (a company response). A rule that finds a closed engagement or an
ambiguous answer stops the matching: the message goes to triage with that reason rather than
to a guess by a later rule. The first rule that matches decides: a reply to engagement A's letter
whose subject names ENG-B is filed on A (the thread is harder to forge than a subject).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa

from engage.extensions import db
from engage.formatting import format_date
from engage.models import (
    Company,
    CompanyContact,
    Direction,
    Engagement,
    InboundMessage,
    InboundStatus,
    Letter,
    OutboxEmail,
    Stage,
    User,
)

SUBJECT_REFERENCE = re.compile(r"\[ENG-(\d{1,18})\]", re.IGNORECASE)


@dataclass
class Match:
    engagement: Engagement | None
    direction: str
    reason: str
    #: What the company replied to, for the owner's notification.
    replied_to_subject: str | None = None


def direction_of(from_address: str) -> str:
    user = db.session.scalar(sa.select(User.id).where(sa.func.lower(User.email) == from_address, User.active))
    return Direction.OUTBOUND.value if from_address and user else Direction.INBOUND.value


def _closed(engagement: Engagement) -> str:
    since = f" on {format_date(engagement.closed_on)}" if engagement.closed_on else ""
    return f"engagement #{engagement.id} ({engagement.company.name}) was closed{since}; reopen it to file this message"


def by_thread(replied_to: list[str], direction: str) -> Match | None:
    if not replied_to:
        return None
    sent = {row.message_id: row for row in db.session.execute(
        sa.select(OutboxEmail.message_id, OutboxEmail.engagement_id, OutboxEmail.subject, Letter.subject.label("letter"))
        .outerjoin(Letter, Letter.id == OutboxEmail.letter_id)
        .where(OutboxEmail.message_id.in_(replied_to), OutboxEmail.engagement_id.is_not(None)))}
    received = {row.message_id: row for row in db.session.execute(
        sa.select(InboundMessage.message_id, InboundMessage.engagement_id, InboundMessage.subject)
        .where(InboundMessage.message_id.in_(replied_to), InboundMessage.status == InboundStatus.FILED.value,
               InboundMessage.engagement_id.is_not(None)))}
    for message_id in replied_to:  # In-Reply-To first, then the most recent reference
        row = sent.get(message_id) or received.get(message_id)
        if row is None:
            continue
        engagement = db.session.get(Engagement, row.engagement_id)
        if engagement is None:
            continue
        what = "a letter emailed" if message_id in sent else "a message filed"
        if not engagement.is_open:
            return Match(None, direction, f"replies to {what} for {_closed(engagement)}")
        subject = getattr(row, "letter", None) or row.subject
        return Match(engagement, direction, f"replies to {what} for engagement #{engagement.id} ({message_id})",
                     subject)
    return None


def by_subject(subject: str, direction: str, from_address: str = "") -> Match | None:
    ids = sorted({int(n) for n in SUBJECT_REFERENCE.findall(subject or "")})
    if not ids:
        return None
    if len(ids) > 1:
        return Match(None, direction, "the subject names several engagements: " + ", ".join(f"ENG-{n}" for n in ids))
    engagement = db.session.get(Engagement, ids[0]) if ids[0] < 2 ** 31 else None
    if engagement is None:
        return Match(None, direction, f"the subject names ENG-{ids[0]}, which does not exist")
    if not engagement.is_open:
        return Match(None, direction, f"the subject names ENG-{ids[0]}, but {_closed(engagement)}")
    if direction == Direction.INBOUND.value and from_address:
        # A subject is easy to copy and a From header easy to forge: a known contact of other
        # companies naming this engagement is checked by a person, not filed.
        companies = db.session.scalars(
            sa.select(Company.name).join(CompanyContact, CompanyContact.company_id == Company.id)
            .where(sa.func.lower(CompanyContact.email) == from_address, CompanyContact.active,
                   CompanyContact.erased_at.is_(None)).distinct().order_by(Company.name)).all()
        owner = engagement.company.name
        if companies and owner not in companies:
            return Match(None, direction, f"the subject names ENG-{engagement.id} ({owner}), but the sender "
                                          f"{from_address} is a contact of {', '.join(companies[:3])}")
    return Match(engagement, direction, f"the subject names ENG-{engagement.id}")


def by_contact(addresses: list[str], direction: str) -> Match:
    who = "the sender" if direction == Direction.INBOUND.value else "the recipients"
    if not addresses:
        return Match(None, direction, f"no address to match ({who})")
    contacts = db.session.execute(
        sa.select(CompanyContact.company_id, CompanyContact.email)
        .where(sa.func.lower(CompanyContact.email).in_(addresses), CompanyContact.active,
               CompanyContact.erased_at.is_(None))).all()
    companies = sorted({c.company_id for c in contacts})
    shown = ", ".join(addresses[:5])
    if not companies:
        return Match(None, direction, f"{who} ({shown}) is not an active contact of any company")
    if len(companies) > 1:
        return Match(None, direction, f"{who} ({shown}) are contacts of {len(companies)} companies")
    engagements = db.session.scalars(
        sa.select(Engagement).where(Engagement.company_id == companies[0], Engagement.stage != Stage.CLOSED.value)
        .order_by(Engagement.id)).all()
    company = db.session.get(Company, companies[0])
    if len(engagements) != 1:
        return Match(None, direction, f"{who} ({shown}) is a contact of {company.name}, which has "
                                      f"{len(engagements) or 'no'} open engagement{'s' if len(engagements) != 1 else ''}")
    return Match(engagements[0], direction, f"{who} ({shown}) is a contact of {company.name}")


def match(*, from_address: str, to: list[str], cc: list[str], subject: str, replied_to: list[str],
          mailbox_address: str) -> Match:
    direction = direction_of(from_address)
    found = by_thread(replied_to, direction) or by_subject(subject, direction, from_address)
    if found is not None:
        return found
    if direction == Direction.INBOUND.value:
        addresses = [from_address] if from_address else []
    else:
        users = {e.lower() for e in db.session.scalars(sa.select(User.email))}
        addresses = [a for a in [*to, *cc] if a != mailbox_address and a not in users]
    return by_contact(addresses, direction)
