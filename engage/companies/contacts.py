"""A company's contacts: who letters are addressed to, and erasing one on request.

Contacts are personal data. Every change goes through the ORM, so the audit trail records it;
erasure is the exception: it blanks the contact, replaces its name and details on the
company's letters, interactions and emails by "erased contact", scrubs them from the earlier
audit events too, and records only that an erasure happened. Functions mutate; the request
commits.
"""

from __future__ import annotations

import sqlalchemy as sa

from engage import audit, clock
from engage.extensions import db
from engage.models import (
    ERASED,
    AuditEvent,
    Company,
    CompanyContact,
    Engagement,
    Interaction,
    Letter,
    OutboxEmail,
    OutboxStatus,
)
from engage.models.contacts import ROLE_ORDER

#: Contact columns that hold personal data: blanked by erasure, scrubbed from audit events.
PERSONAL_FIELDS = ("name", "title", "email", "phone", "address", "notes", "source")


def role_rank():
    """SQL ordering by role: investor relations first, as letters are addressed."""
    return sa.case({role: index for index, role in enumerate(ROLE_ORDER)}, value=CompanyContact.role, else_=99)


def contacts_of(company_id: int, active_only: bool = False) -> list[CompanyContact]:
    query = sa.select(CompanyContact).where(CompanyContact.company_id == company_id)
    if active_only:
        query = query.where(CompanyContact.active.is_(True), CompanyContact.erased_at.is_(None))
    return list(db.session.scalars(query.order_by(CompanyContact.active.desc(), role_rank(), CompanyContact.name,
                                                  CompanyContact.id)))


def primary_contacts(company_ids: list[int], with_email: bool = False) -> dict[int, CompanyContact]:
    """Per company, the active contact a letter goes to when none is chosen (investor relations first)."""
    if not company_ids:
        return {}
    query = sa.select(CompanyContact).where(
        CompanyContact.company_id.in_(company_ids), CompanyContact.active.is_(True),
        CompanyContact.erased_at.is_(None))
    if with_email:
        query = query.where(CompanyContact.email.is_not(None), CompanyContact.email != "")
    chosen: dict[int, CompanyContact] = {}
    for contact in db.session.scalars(query.order_by(role_rank(), CompanyContact.id)):
        chosen.setdefault(contact.company_id, contact)
    return chosen


def apply_form(contact: CompanyContact, form) -> CompanyContact:
    """Copy a validated ContactForm onto the contact (audited by the ORM hooks)."""
    contact.name = form.name.data.strip()
    contact.role = form.role.data
    contact.title = (form.title.data or "").strip()
    contact.email = form.email.data or None
    contact.phone = (form.phone.data or "").strip()
    contact.address = (form.address.data or "").strip()
    contact.language = form.language.data
    contact.notes = (form.notes.data or "").strip()
    contact.source = (form.source.data or "").strip()
    return contact


def _replace(text, needles: list[str]):
    """`text` with every needle replaced by ERASED; lists and dicts are walked (audit changes, snapshots)."""
    if isinstance(text, str):
        for needle in needles:
            text = text.replace(needle, ERASED)
        return text
    if isinstance(text, list):
        return [_replace(item, needles) for item in text]
    if isinstance(text, dict):
        return {key: _replace(value, needles) for key, value in text.items()}
    return text


def _without(addresses: str | None, address: str) -> list[str]:
    """A comma-separated address list as a list, without `address` (compared case-insensitively)."""
    return [a.strip() for a in (addresses or "").split(",") if a.strip() and a.strip().lower() != address.lower()]


def _needles(contact: CompanyContact) -> list[str]:
    """The contact's personal strings to look for, longest first (an address before its lines)."""
    values = [contact.name, contact.email or "", contact.phone, contact.address,
              *contact.address.splitlines()]
    return sorted({v.strip() for v in values if v and len(v.strip()) >= 3}, key=len, reverse=True)


def erase(contact: CompanyContact) -> None:
    """Erase the contact's personal data everywhere Engage keeps it, leaving "erased contact".

    Written with plain UPDATEs, not the ORM, so the audit hooks do not copy the very values
    being erased into new audit events; one `contact_erased` event records that it happened.
    """
    if contact.is_erased:
        raise ValueError("This contact was already erased.")
    needles = _needles(contact)
    company: Company = contact.company
    now = clock.utcnow()
    letters = db.session.execute(
        sa.select(Letter.id, Letter.subject, Letter.body, Letter.addressee).where(Letter.contact_id == contact.id)
    ).all()
    for row in letters:
        block = dict(row.addressee or {})
        block["name"] = ERASED
        block["title"] = ""
        if block.get("address_from") == "contact":
            block["address"] = ERASED
        db.session.execute(sa.update(Letter).where(Letter.id == row.id).values(
            subject=_replace(row.subject, needles)[:300], body=_replace(row.body, needles),
            addressee=_replace(block, needles)))
    engagement_ids = sa.select(Engagement.id).where(Engagement.company_id == company.id).scalar_subquery()
    interactions = db.session.execute(
        sa.select(Interaction.id, Interaction.subject, Interaction.summary, Interaction.participants)
        .where(Interaction.engagement_id.in_(engagement_ids))
    ).all()
    touched_interactions = []
    for row in interactions:
        values = {key: _replace(getattr(row, key), needles) for key in ("subject", "summary", "participants")}
        if any(values[key] != getattr(row, key) for key in values):
            touched_interactions.append(row.id)
            db.session.execute(sa.update(Interaction).where(Interaction.id == row.id).values(**values))
    letter_ids = [row.id for row in letters]
    emails = db.session.execute(
        sa.select(OutboxEmail.id, OutboxEmail.recipient, OutboxEmail.cc, OutboxEmail.body_text, OutboxEmail.subject,
                  OutboxEmail.status)
        .where(sa.or_(OutboxEmail.engagement_id.in_(engagement_ids),
                      OutboxEmail.letter_id.in_(letter_ids) if letter_ids else sa.false()))
    ).all()
    for row in emails:
        values = {"recipient": _replace(row.recipient, needles), "cc": _replace(row.cc, needles),
                  "body_text": _replace(row.body_text, needles), "subject": _replace(row.subject, needles)[:300]}
        if row.status != OutboxStatus.SENT.value and contact.email:
            # Not sent yet: the erased address is taken off the email (never "erased contact" as an
            # address); with nobody left to send to, it fails with why and cannot be retried.
            to, cc = _without(row.recipient, contact.email), _without(row.cc, contact.email)
            values.update(recipient=", ".join(to or cc), cc=", ".join(cc if to else []))
            if not (to or cc):
                values.update(status=OutboxStatus.FAILED.value, updated_at=now,
                              last_error=f"Not sent: its recipient (contact #{contact.id}) was erased.")
        db.session.execute(sa.update(OutboxEmail).where(OutboxEmail.id == row.id).values(**values))
    _scrub_audit(contact, needles, letter_ids, touched_interactions)
    db.session.execute(sa.update(CompanyContact).where(CompanyContact.id == contact.id).values(
        name="", title="", email=None, phone="", address="", notes="", source="", active=False,
        erased_at=now, updated_at=now))
    db.session.expire_all()
    audit.record("contact_erased", f"Contact #{contact.id} of {company.name} erased", obj=contact,
                 changes={"erased_at": now.isoformat()})


def _scrub_audit(contact: CompanyContact, needles: list[str], letter_ids: list[int],
                 interaction_ids: list[int]) -> None:
    """Earlier audit events keep what changed and when, not the contact's personal data."""
    targets = [sa.and_(AuditEvent.object_type == "CompanyContact", AuditEvent.object_id == contact.id)]
    if letter_ids:
        targets.append(sa.and_(AuditEvent.object_type == "Letter", AuditEvent.object_id.in_(letter_ids)))
    if interaction_ids:
        targets.append(sa.and_(AuditEvent.object_type == "Interaction", AuditEvent.object_id.in_(interaction_ids)))
    rows = db.session.execute(
        sa.select(AuditEvent.id, AuditEvent.object_type, AuditEvent.summary, AuditEvent.changes)
        .where(sa.or_(*targets))
    ).all()
    for row in rows:
        changes = dict(row.changes or {})
        if row.object_type == "CompanyContact":
            for key in PERSONAL_FIELDS:
                if key in changes:
                    changes[key] = "(erased)" if not isinstance(changes[key], list) else ["(erased)", "(erased)"]
        changes = _replace(changes, needles)
        db.session.execute(sa.update(AuditEvent).where(AuditEvent.id == row.id).values(
            summary=_replace(row.summary or "", needles)[:500], changes=changes))
