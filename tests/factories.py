"""Small builders for test data: each creates only what a test needs."""

from __future__ import annotations

import datetime as dt
import itertools

from engage.extensions import db
from engage.models import Campaign, Company, CompanyContact, Engagement

_n = itertools.count(1)


def company(name: str | None = None, **kw) -> Company:
    item = Company(name=name or f"Test Company {next(_n)}", **kw)
    db.session.add(item)
    return item


def campaign(slug: str | None = None) -> Campaign:
    n = next(_n)
    item = Campaign(slug=slug or f"campaign-{n}", name=f"Campaign {n}")
    db.session.add(item)
    return item


def contact(company: Company, name: str | None = None, **kw) -> CompanyContact:
    """A fictional contact with an example.org address; letters to the company are addressed to it."""
    n = next(_n)
    kw.setdefault("role", "investor_relations")
    kw.setdefault("email", f"contact{n}@company.example")
    kw.setdefault("address", "1 Example Road\nExample City")
    kw.setdefault("language", "en")
    item = CompanyContact(company=company, name=name or f"Contact {n}", active=True, **kw)
    db.session.add(item)
    return item


def engagement(opened_on: dt.date = dt.date(2026, 1, 5), with_contact: bool = True, **kw) -> Engagement:
    """An engagement; its company gets an investor-relations contact (a letter needs an addressee)
    unless it has one already or `with_contact` is False."""
    kw.setdefault("company", company())
    kw.setdefault("campaign", campaign())
    item = Engagement(opened_on=opened_on, **kw)
    db.session.add(item)
    db.session.flush()
    if with_contact and not db.session.query(CompanyContact.id).filter_by(company_id=item.company_id).first():
        contact(item.company)
    db.session.commit()
    return item


def confirmation(page: str) -> dict:
    """The form data of a holdings preview's "Import" button: the preview it confirms."""
    import re  # only the holdings tests need it

    found = re.search(r'name="preview" value="([0-9a-f]{64})"', page)
    return {"preview": found.group(1)} if found else {}
