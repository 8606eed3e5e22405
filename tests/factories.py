"""Small builders for test data: each creates only what a test needs."""

from __future__ import annotations

import datetime as dt
import itertools

from engage.extensions import db
from engage.models import Campaign, Company, Engagement

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


def engagement(opened_on: dt.date = dt.date(2026, 1, 5), **kw) -> Engagement:
    kw.setdefault("company", company())
    kw.setdefault("campaign", campaign())
    item = Engagement(opened_on=opened_on, **kw)
    db.session.add(item)
    db.session.commit()
    return item


def confirmation(page: str) -> dict:
    """The form data of a holdings preview's "Import" button: the preview it confirms."""
    import re  # only the holdings tests need it

    found = re.search(r'name="preview" value="([0-9a-f]{64})"', page)
    return {"preview": found.group(1)} if found else {}
