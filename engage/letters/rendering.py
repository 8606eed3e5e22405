"""Render letter templates in a sandbox, from plain data rather than ORM objects.

- The sandbox (ImmutableSandboxedEnvironment) refuses access to Python internals
  (`__class__`, `mro`, `|attr` tricks) and to methods that mutate data.
- Strict undefined variables: a misspelt or missing value is an error naming what is missing,
  never a silently blank letter. Missing data (a company without an address, a campaign without
  signatories) is left out of the context, so a template that uses it fails with a hint.
- Budgets: `range` is capped across the whole render, string/list repetition and powers are
  bounded, and the output is cut at MAX_OUTPUT characters, so a hostile or careless template
  cannot hang or exhaust the worker.
"""

from __future__ import annotations

import datetime as dt
import operator

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

from engage import clock, formatting

MAX_OUTPUT = 100_000
MAX_RANGE_ITEMS = 10_000
MAX_SEQUENCE = 10_000
MAX_EXPONENT = 100

#: Hints shown when a template uses a value the data does not have.
MISSING_HINTS = {
    "company.address": "add the company's postal address on its page",
    "company.isin": "add the company's ISIN on its page",
    "company.country": "add the company's country on its page",
    "company.sector": "add the company's sector on its page",
    "campaign.letterhead": "set the campaign's letterhead (Admin → Campaigns)",
    "campaign.call_to_action": "describe the campaign's Call to Action (Admin → Campaigns)",
    "campaign.call_to_action_url": "give the campaign's Call to Action link (Admin → Campaigns)",
    "signatories": "the campaign has no co-signatories yet (Admin → Campaigns)",
    "signatories_aum": "no co-signatory has a known AUM (Admin → Investors)",
    "engagement.owner": "assign an owner to the engagement",
    "engagement.last_letter_date": "no letter has been sent on this engagement yet",
    "sender.name": "the letter has no sender",
}


class LetterTemplateError(ValueError):
    """A template that cannot be rendered; `line` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(f"line {line}: {message}" if line else message)
        self.message = message
        self.line = line


class Record(dict):
    """A dict that knows its place in the context, for 'company.address is missing' messages."""

    def __init__(self, path: str, values: dict):
        super().__init__({k: v for k, v in values.items() if v not in (None, "", [], ())})
        self.path = path


class MissingValue(StrictUndefined):
    """StrictUndefined with messages that name the missing value and how to supply it."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        owner = self._undefined_obj
        if owner is missing:
            path = str(self._undefined_name)
        elif isinstance(owner, Record):
            path = f"{owner.path}.{self._undefined_name}"
        else:
            return f"a {type(owner).__name__} value has no attribute {self._undefined_name!r}"
        hint = MISSING_HINTS.get(path)
        if hint:
            return f"{path} is missing: {hint}."
        return f"{path} is not a variable letters can use."


class LetterEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox plus budgets on the ways a template can make work for itself."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self):
        super().__init__(undefined=MissingValue, autoescape=False, keep_trailing_newline=True)
        self.globals["range"] = self._limited_range
        self._range_budget = MAX_RANGE_ITEMS

    def _limited_range(self, *args):
        values = range(*args)
        self._range_budget -= len(values)
        if self._range_budget < 0:
            raise SecurityError(f"loops in a letter may not run more than {MAX_RANGE_ITEMS} steps in all")
        return values

    def call_binop(self, context, operator_name, left, right):
        if operator_name == "**":
            if isinstance(right, (int, float)) and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"powers above {MAX_EXPONENT} are not allowed in letters")
            return operator.pow(left, right)
        sequences = (str, list, tuple)
        if isinstance(left, sequences) or isinstance(right, sequences):
            seq, times = (left, right) if isinstance(left, sequences) else (right, left)
            if isinstance(times, int) and len(seq) * times > MAX_SEQUENCE:
                raise SecurityError(f"repeating text or lists beyond {MAX_SEQUENCE} items is not allowed")
        return operator.mul(left, right)


def _template_line(exc: BaseException) -> int | None:
    """The template line an error happened on, from Jinja's rewritten traceback."""
    line = getattr(exc, "lineno", None)
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render(source: str, context: dict) -> str:
    """Render one template string, raising LetterTemplateError with the line on failure."""
    env = LetterEnvironment()
    try:
        template = env.from_string(source)
    except TemplateSyntaxError as exc:
        raise LetterTemplateError(f"syntax error: {exc.message}", exc.lineno) from exc
    parts, size = [], 0
    try:
        for chunk in template.generate(context):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise LetterTemplateError(f"the letter is longer than {MAX_OUTPUT:,} characters; "
                                          "check the template for a runaway loop")
            parts.append(chunk)
    except UndefinedError as exc:
        raise LetterTemplateError(exc.message or str(exc), _template_line(exc)) from exc
    except SecurityError as exc:
        raise LetterTemplateError(f"not allowed in a letter template: {exc}", _template_line(exc)) from exc
    except TemplateError as exc:
        raise LetterTemplateError(str(exc), _template_line(exc)) from exc
    except RecursionError as exc:
        raise LetterTemplateError("the template calls itself without end") from exc
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise LetterTemplateError(f"{type(exc).__name__}: {exc}", _template_line(exc)) from exc
    return "".join(parts)


def _day(value: dt.date | None) -> str | None:
    return formatting.format_date(value) if value else None


def letter_context(engagement, sender, last_letter_date: dt.date | None = None) -> dict:
    """Plain data a template may use; nothing here exposes the database."""
    company = engagement.company
    campaign = engagement.campaign
    signatories = [
        Record("signatory", {"name": i.name, "aum": formatting.format_money(i.aum_usd) if i.aum_usd else None})
        for i in campaign.signatories
    ]
    total_aum = campaign.signatories_aum_usd
    context = {
        "company": Record("company", {
            "name": company.name, "isin": company.isin, "country": company.country, "sector": company.sector,
            "address": getattr(company, "address", None)}),
        "engagement": Record("engagement", {
            "stage": engagement.stage_label,
            "owner": engagement.owner.name if engagement.owner else None,
            "opened_on": _day(engagement.opened_on),
            "last_letter_date": _day(last_letter_date),
        }),
        "campaign": Record("campaign", {
            "name": campaign.name,
            "expectations": [Record("expectation", dict(e)) for e in campaign.expectations or []],
            "call_to_action": campaign.call_to_action,
            "call_to_action_url": campaign.call_to_action_url,
            "letterhead": getattr(campaign, "letterhead", None),
        }),
        "signatories": signatories,
        "signatories_aum": formatting.format_money(total_aum) if total_aum else None,
        "sender": Record("sender", {"name": sender.name if sender else None, "email": sender.email if sender else None}),
        "today": formatting.format_date(clock.today()),
    }
    return {key: value for key, value in context.items() if value not in (None, "", [])}


#: The shape of letter_context() with every value present, to check a template before saving.
SAMPLE_CONTEXT = {
    "company": Record("company", {"name": "Example Holdings Ltd", "isin": "XS0000000009", "country": "CN",
                                  "sector": "Electronics", "address": "1 Example Road\nShenzhen"}),
    "engagement": Record("engagement", {"stage": "Identified", "owner": "A. Analyst", "opened_on": "01 Jan 2026",
                                        "last_letter_date": "15 Jan 2026"}),
    "campaign": Record("campaign", {
        "name": "Example campaign",
        "expectations": [Record("expectation", {"key": "map", "title": "Map the value chain", "text": "Map it."})],
        "call_to_action": "Sign the Call to Action.",
        "call_to_action_url": "https://example.org/call-to-action",
        "letterhead": "Example Investors\n1 Example Street",
    }),
    "signatories": [Record("signatory", {"name": "Example Pension Fund", "aum": "US$1.00 billion"})],
    "signatories_aum": "US$1.00 billion",
    "sender": Record("sender", {"name": "A. Analyst", "email": "analyst@example.org"}),
    "today": "01 Jan 2026",
}


def check_template(source: str) -> None:
    """Raise LetterTemplateError for a syntax error, unknown variable or sandbox violation."""
    render(source, SAMPLE_CONTEXT)
