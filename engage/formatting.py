"""Display helpers shared by templates and exports: one date format everywhere."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

DATE_FORMAT = "%d %b %Y"


def format_date(value: dt.date | dt.datetime | None) -> str:
    if value is None:
        return "–"
    return value.strftime(DATE_FORMAT)


def format_datetime(value: dt.datetime | None) -> str:
    if value is None:
        return "–"
    return value.strftime(DATE_FORMAT + " %H:%M") + " UTC"


def format_money(value: Decimal | float | None, currency: str = "US$") -> str:
    """Compact amounts: US$5.12 trillion, US$840.0 million, US$12,300."""
    if value is None:
        return "–"
    amount = Decimal(value)
    for size, word in ((Decimal(10) ** 12, "trillion"), (Decimal(10) ** 9, "billion"), (Decimal(10) ** 6, "million")):
        if abs(amount) >= size:
            return f"{currency}{amount / size:,.2f} {word}"
    return f"{currency}{amount:,.0f}"


def label(value: str | None) -> str:
    """'mapping_requested' -> 'Mapping requested'."""
    if not value:
        return "–"
    return value.replace("_", " ").capitalize()
