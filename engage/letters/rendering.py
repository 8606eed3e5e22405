"""Render letter templates in a sandbox, from plain data rather than ORM objects.

The sandbox stops a template from reaching Python internals; StrictUndefined turns a
misspelt variable into an error instead of a silently blank letter.
"""

from __future__ import annotations

import datetime as dt

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engage import clock, formatting
from engage.models import Engagement, User

_env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


class LetterTemplateError(ValueError):
    """A template that cannot be rendered; `line` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(f"line {line}: {message}" if line else message)
        self.message = message
        self.line = line


def _day(value: dt.date | None) -> str | None:
    return formatting.format_date(value) if value else None


def letter_context(engagement: Engagement, sender: User | None, last_letter_date: dt.date | None = None) -> dict:
    """Plain data a template may use; nothing here exposes the database."""
    company = engagement.company
    campaign = engagement.campaign
    signatories = [
        {"name": i.name, "aum": formatting.format_money(i.aum_usd) if i.aum_usd is not None else None}
        for i in campaign.signatories
    ]
    return {
        "company": {"name": company.name, "isin": company.isin, "country": company.country, "sector": company.sector},
        "engagement": {
            "stage": engagement.stage,
            "owner": engagement.owner.name if engagement.owner else None,
            "opened_on": _day(engagement.opened_on),
            "last_letter_date": _day(last_letter_date),
        },
        "campaign": {
            "name": campaign.name,
            "expectations": [dict(e) for e in campaign.expectations or []],
            "call_to_action": campaign.call_to_action or "",
            "call_to_action_url": campaign.call_to_action_url or "",
        },
        "signatories": signatories,
        "signatories_aum": formatting.format_money(campaign.signatories_aum_usd),
        "sender": {"name": sender.name if sender else "", "email": sender.email if sender else ""},
        "today": formatting.format_date(clock.today()),
    }


def render(source: str, context: dict) -> str:
    """Render one template string, raising LetterTemplateError with the line on failure."""
    try:
        return _env.from_string(source).render(context)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        raise LetterTemplateError(str(exc.message if hasattr(exc, "message") and exc.message else exc), line) from exc


#: The shape of letter_context(), with placeholder values, to test a template before saving.
SAMPLE_CONTEXT = {
    "company": {"name": "Example Holdings Ltd", "isin": "XS0000000009", "country": "CN", "sector": "Electronics"},
    "engagement": {"stage": "identified", "owner": "A. Analyst", "opened_on": "01 Jan 2026", "last_letter_date": None},
    "campaign": {
        "name": "Example campaign",
        "expectations": [{"key": "map", "title": "Map the value chain", "text": "Map it."}],
        "call_to_action": "Sign the Call to Action.",
        "call_to_action_url": "https://example.org/call-to-action",
    },
    "signatories": [{"name": "Example Pension Fund", "aum": "US$1.00 billion"}],
    "signatories_aum": "US$1.00 billion",
    "sender": {"name": "A. Analyst", "email": "analyst@example.org"},
    "today": "01 Jan 2026",
}


def check_template(source: str) -> None:
    """Raise LetterTemplateError for a syntax error, unknown variable or sandbox violation."""
    render(source, SAMPLE_CONTEXT)
