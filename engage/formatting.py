"""Display helpers shared by templates and exports: one date format, one way to round a score."""

from __future__ import annotations

import datetime as dt
import unicodedata
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from markdown_it import MarkdownIt
from markupsafe import Markup

#: CommonMark with raw HTML off: tags typed by users are shown as text; unsafe link
#: schemes (javascript:, vbscript:, file:, most data:) are refused by markdown-it itself.
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
# No images: a summary (a company's email above all) must never make the browser fetch a remote
# address (tracking pixels); `![x](url)` stays text.
_markdown.disable("image")

#: The one way a day is written for people, everywhere: pages, emails, letters, CLI lines, XLSX
#: cells ("05 Dec 2026"). A moment adds the time and says the zone once: "05 Dec 2026, 14:05 UTC".
DATE_FORMAT = "%d %b %Y"
#: DATE_FORMAT as a spreadsheet number format, for the date cells of XLSX exports.
XLSX_DATE_FORMAT = "dd mmm yyyy"


def _utc(value: dt.datetime) -> dt.datetime:
    """An aware moment as naive UTC (the database's convention); a naive one is UTC already."""
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value


def format_date(value: dt.date | dt.datetime | None) -> str:
    """A day as people read it everywhere: '05 Dec 2026' ('–' for none); a moment gives its UTC day."""
    if value is None:
        return "–"
    if isinstance(value, dt.datetime):
        value = _utc(value)
    return value.strftime(DATE_FORMAT.replace("%Y", f"{value.year:04d}"))  # strftime drops a small year's zeros


def format_datetime(value: dt.datetime | dt.date | None) -> str:
    """A moment as people read it everywhere: '05 Dec 2026, 14:05 UTC' (a plain day stays a day)."""
    if value is None:
        return "–"
    if not isinstance(value, dt.datetime):
        return format_date(value)
    value = _utc(value)
    return f"{format_date(value)}, {value:%H:%M} UTC"


def format_month(value: dt.date | None) -> str:
    """A month (of a report, an export) as people read it: 'December 2026'."""
    if value is None:
        return "–"
    return value.strftime("%B %Y")


class AmountError(ValueError):
    """An amount that cannot be printed as money (infinite or not a number)."""


def format_money(value: Decimal | float | None, currency: str = "US$") -> str:
    """Compact amounts: US$5.12 trillion, US$840.0 million, US$12,300. Non-finite amounts are refused."""
    if value is None:
        return "–"
    amount = Decimal(value)
    if not amount.is_finite():
        raise AmountError(f"{value} is not a finite amount of money")
    for size, word in ((Decimal(10) ** 12, "trillion"), (Decimal(10) ** 9, "billion"), (Decimal(10) ** 6, "million")):
        if abs(amount) >= size:
            return f"{currency}{amount / size:,.2f} {word}"
    return f"{currency}{amount:,.0f}"


def round_half_up(value: Decimal | float | int, places: int = 0) -> Decimal:
    """`value` to `places` decimals, halves away from zero (62.5 → 63), unlike `round()` and `%.0f`.

    Floats go through their shortest repr, so 62.5 and 0.1 + 0.2 round as a reader expects.
    """
    amount = value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float) else value)
    rounded = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return rounded + 0 if rounded.is_zero() else rounded  # no "-0"


def shown_score(value: Decimal | float | int, places: int = 0) -> Decimal:
    """The number a score (or change, or average) is shown as: `places` decimals, half up (62.50 → 63)."""
    return round_half_up(value, places)


def format_score(value: Decimal | float | int | None, places: int = 0, sign: bool = False) -> str:
    """A score (0-100), a score change or an average of scores as shown everywhere: 62.50 → "63".

    `places` decimals (averages use 1), rounded half up; `sign` prefixes + or − (for changes).
    """
    if value is None:
        return "–"
    try:
        rounded = shown_score(value, places)
    except (InvalidOperation, ValueError, TypeError):
        return "–"
    if not rounded.is_finite():
        return "–"
    return f"{rounded:+}" if sign else f"{rounded}"


def shown_below(whole: int) -> Decimal:
    """The exact scores that `format_score` shows as less than `whole` are those under this bound."""
    return Decimal(whole) - Decimal("0.5")


def money_on_page(value: Decimal | float | None, currency: str = "US$") -> str:
    """format_money for pages: a non-finite amount says so instead of breaking the page."""
    try:
        return format_money(value, currency)
    except AmountError:
        return f"not a finite amount ({value})"


#: The smallest score change `format_score(sign=True)` shows as a rise (+1); a change under it shows
#: as "+0". Score trends ("Improving", "Declining") count only changes shown as non-zero.
SHOWN_CHANGE = Decimal("0.5")


#: Codes whose label is not their words capitalised.
_LABELS = {"sub_supplier": "Sub-supplier"}


def label(value: str | None) -> str:
    """'mapping_requested' -> 'Mapping requested'."""
    if not value:
        return "–"
    return _LABELS.get(value) or value.replace("_", " ").capitalize()


def markdown(text: str | None) -> Markup:
    """Render user Markdown to safe HTML (no raw HTML, no script links, no images)."""
    return Markup(_markdown.render(text or ""))


def as_options(values) -> list[tuple[str, str]]:
    """(value, label) pairs for a <select>: enum members use their label, strings themselves."""
    pairs = []
    for value in values:
        if isinstance(value, tuple):
            pairs.append(value)
        elif hasattr(value, "label") and hasattr(value, "value"):
            pairs.append((value.value, value.label))
        else:
            pairs.append((value, value))
    return pairs


def one_line(text: str | None, limit: int) -> str:
    """Text for one line (a subject, an email header): line breaks and other control or format
    characters become spaces, runs of spaces collapse, capped at `limit` characters."""
    text = "".join(ch if unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co") else " "
                   for ch in text or "")
    return " ".join(text.split())[:limit]


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """A count with its noun agreed: '1 relationship', '12 relationships', '1 company', '3 companies'
    (an irregular plural is given: counted(n, "company", "companies"))."""
    return f"{number} {noun if number == 1 else (plural or noun + 's')}"
