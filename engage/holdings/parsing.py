"""Reading holdings files as users really have them, without writing anything.

Formats, detected from the content:
- an ETF provider's CSV in the iShares layout: preamble lines (fund name, "Fund Holdings as of"),
  a header, quoted values with thousands separators, "-" for missing, cash and derivative rows,
  a legal disclaimer as trailer; UTF-8 with or without BOM, UTF-16 with BOM, GB18030 (GBK) or
  Windows-1252 when the bytes leave no doubt (see `decode`);
- an XLSX sheet (the first visible one, or the one named) with a preamble (SPDR layout: Name, Ticker, Identifier, SEDOL, Weight, Sector,
  Shares Held, Local Currency);
- a plain CSV or XLSX with a header row, with a column mapping when the names are unusual.
The CSV delimiter (, ; tab |) is the one under which a header row appears; the decimal
separator is read per column from the values ("1.234,56" can only be a decimal comma, "1,234"
could be either) unless the caller says which one the file uses.

Every problem with a row is collected as a RowError (row, column, value, reason); a file with
any error is refused whole by the importer. A file that cannot be read at all, or that breaks a
limit (rows, columns, line length, unpacked size), raises FileRefused as soon as that is known:
the reader streams the file and stops there, whatever size the file declares.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import unicodedata
import zipfile
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from itertools import islice

from openpyxl import load_workbook
from openpyxl.utils.cell import range_boundaries
from openpyxl.worksheet._reader import FORMULA_TAG, VALUE_TAG, WorkSheetParser
from openpyxl.cell.read_only import ReadOnlyCell

from engage.identifiers import compact_isin, isin_problem
from engage.validators import date_problem

#: Header names (lower-case) that mean each field.
SYNONYMS = {
    "name": ["name", "security name", "security", "issuer", "issuer name", "description", "company"],
    "ticker": ["ticker", "symbol", "ticker symbol", "issuer ticker"],
    "isin": ["isin", "isin code"],
    "identifier": ["identifier"],
    "sedol": ["sedol"],
    "exchange": ["exchange", "market", "listing exchange"],
    "location": ["location", "country", "country of risk", "domicile"],
    "sector": ["sector", "gics sector", "industry"],
    "asset_class": ["asset class", "security type", "asset type", "type"],
    "market_value": ["market value", "market value (usd)", "market value ($)", "value", "notional value"],
    "weight": ["weight (%)", "weight", "% of net assets", "weight %", "% weight", "percent of fund"],
    "shares": ["shares", "quantity", "shares held", "nominal", "par value"],
    "currency": ["currency", "local currency", "market currency", "trade currency"],
    "price": ["price", "market price"],
}
IDENTIFYING = ("isin", "identifier", "ticker", "name")
NON_EQUITY = re.compile(
    r"cash|money market|future|derivative|\bfx\b|forward|swap|collateral|margin|option|bond|fixed income|"
    r"treasur|repo", re.IGNORECASE)
DATE_FORMATS = ["%b %d, %Y", "%B %d, %Y", "%d-%b-%Y", "%d-%B-%Y", "%Y-%m-%d", "%m/%d/%Y", "%d %b %Y", "%d %B %Y",
                "%d.%m.%Y", "%Y%m%d", "%Y-%m-%dT%H:%M:%S"]
#: Holdings dates outside this range are typing mistakes (0026, 2206), not history.
AS_OF = re.compile(r"(?:holdings\s+)?as\s+of[:\s]+(.+)$", re.IGNORECASE)
#: The preamble line of an iShares-style download ("Fund Holdings as of,...").
PROVIDER_DATE = re.compile(r"holdings\s+as\s+of", re.IGNORECASE)
NBSP = "\u00a0"
#: The CSV delimiters a holdings file may use.
DELIMITERS = (",", ";", "\t", "|")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "vertical bar"}
#: Decimal conventions: "point" reads 1,234.56, "comma" reads 1.234,56.
DECIMALS = ("point", "comma")
#: The header must be within this many rows of the top.
HEADER_ROWS = 40
#: Rows read after the end of the table (trailer, disclaimer); anything further down is not read.
TRAILER_ROWS = 1000
NUMBER_FIELDS = ("market_value", "weight", "shares", "price")
PARTIAL_HOW = " (--partial, or “Partial file” on the preview)"
ENCODING_HOW = " (--encoding, or “Encoding” on the preview)"
#: Encodings a user may name for a CSV file → how the preview names them.
ENCODINGS = {
    "utf-8": "UTF-8", "utf-16": "UTF-16", "gb18030": "GB18030 (Chinese, also GBK and GB2312)",
    "big5": "Big5 (traditional Chinese)", "shift_jis": "Shift JIS (Japanese)", "cp949": "EUC-KR/CP949 (Korean)",
    "cp1252": "Windows-1252 (Western European)", "latin-1": "ISO-8859-1 (Latin-1)",
}
#: A zip member declared larger than this is checked for its compression ratio.
ZIP_RATIO_FROM = 1024 * 1024
#: A zip member that unpacks to more than this many times its packed size is a zip bomb, not a sheet.
MAX_ZIP_RATIO = 200
#: Parts of an XLSX file (a workbook has a dozen or two).
MAX_ZIP_MEMBERS = 1000
#: field → (smallest, largest, what it is): the range a number of that field must be in.
BOUNDS = {
    "market_value": (Decimal(0), Decimal(10) ** 15, "a market value"),
    "shares": (Decimal(0), Decimal(10) ** 15, "a number of shares"),
    "price": (Decimal(0), Decimal(10) ** 9, "a price"),
    "weight": (Decimal(0), Decimal(100), "a weight"),
}


def _same_text(name: str) -> str:
    """A name as a reader sees it: compatibility forms (full-width letters, ligatures, decomposed
    accents) composed, case folded, runs of spaces made one. Two rows whose names read the same are
    the same security listed twice; names that differ in wording (share classes) are grouped later."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


@dataclass(frozen=True)
class Limits:
    """How much of a file is read at most; the CLI and the web build it from the app's config."""

    #: Rows in the holdings table (cash and derivative rows included).
    max_rows: int = 50_000
    #: Columns of any row.
    max_columns: int = 100
    #: Characters in one line of a CSV file.
    max_line_chars: int = 20_000
    #: Characters in one cell of the header or the table.
    max_field_chars: int = 1_000
    #: Bytes an XLSX file may unpack to (all its parts together).
    max_unzipped_bytes: int = 100 * 1024 * 1024
    #: Bytes the shared strings of an XLSX file may unpack to (openpyxl loads them all at once).
    max_shared_strings_bytes: int = 64 * 1024 * 1024
    #: Shared strings of an XLSX file (counted before openpyxl loads them).
    max_shared_strings: int = 1_000_000
    #: Weights of a whole-fund file add up to at least this many percent.
    min_weight_total: Decimal = Decimal(90)
    #: Weights of any file add up to at most this many percent; more means rows are counted twice.
    max_weight_total: Decimal = Decimal(101)

    @classmethod
    def from_config(cls, config) -> Limits:
        return cls(max_rows=int(config.get("HOLDINGS_MAX_ROWS", cls.max_rows)),
                   max_columns=int(config.get("HOLDINGS_MAX_COLUMNS", cls.max_columns)),
                   max_unzipped_bytes=int(config.get("HOLDINGS_MAX_UNZIPPED_BYTES", cls.max_unzipped_bytes)),
                   max_shared_strings_bytes=int(config.get("HOLDINGS_MAX_SHARED_STRINGS_BYTES",
                                                           cls.max_shared_strings_bytes)),
                   max_shared_strings=int(config.get("HOLDINGS_MAX_SHARED_STRINGS", cls.max_shared_strings)),
                   min_weight_total=Decimal(str(config.get("HOLDINGS_MIN_WEIGHT_TOTAL", cls.min_weight_total))),
                   max_weight_total=Decimal(str(config.get("HOLDINGS_MAX_WEIGHT_TOTAL", cls.max_weight_total))))


@dataclass
class RowError:
    row: int
    column: str
    value: str
    reason: str

    def __str__(self) -> str:
        where = f"row {self.row}" + (f", column {self.column}" if self.column else "")
        return f"{where}: {self.reason}" + (f" ({self.value!r})" if self.value else "")


@dataclass
class HoldingRow:
    row: int
    name: str
    ticker: str | None = None
    isin: str | None = None
    exchange: str | None = None
    location: str | None = None
    sector: str | None = None
    market_value: Decimal | None = None
    weight: Decimal | None = None
    shares: Decimal | None = None
    currency: str | None = None


@dataclass
class ParsedFile:
    layout: str
    fund_name: str | None = None
    as_of: dt.date | None = None
    rows: list[HoldingRow] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    errors: list[RowError] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)
    #: The CSV delimiter (None for XLSX).
    delimiter: str | None = None
    #: Column label → "point" or "comma", for the number columns that had separators to read.
    decimals: dict[str, str] = field(default_factory=dict)
    #: Whether the caller chose the decimal convention (else it was read from the values).
    decimal_chosen: str | None = None
    #: The caller said the file lists only part of the fund (no trailer or weight-total check).
    partial: bool = False
    #: Sum of the weights of every table row, cash and derivatives included (None without weights).
    weight_total: Decimal | None = None
    #: Row number of the last row of the holdings table.
    last_row: int = 0
    #: The text encoding of a CSV file (a key of ENCODINGS; None for XLSX).
    encoding: str | None = None
    #: Whether the caller chose the encoding (else it was read from the bytes).
    encoding_chosen: bool = False
    #: The XLSX sheet read, and the workbook's sheets as (name, hidden).
    sheet: str | None = None
    sheets: list[tuple[str, bool]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def delimiter_name(self) -> str | None:
        return DELIMITER_NAMES.get(self.delimiter) if self.delimiter else None

    @property
    def encoding_name(self) -> str | None:
        return ENCODINGS.get(self.encoding) if self.encoding else None

    @property
    def sheet_note(self) -> str | None:
        """Which sheet was read, and why that one, for the preview and the CLI."""
        if self.sheet is None:
            return None
        hidden = [name for name, is_hidden in self.sheets if is_hidden and name != self.sheet]
        others = [name for name, is_hidden in self.sheets if not is_hidden and name != self.sheet]
        note = f"sheet “{self.sheet}”" + (" (hidden, as chosen)" if (self.sheet, True) in self.sheets else "")
        if hidden:
            note += f" (hidden, not read: {', '.join(hidden)})"
        if others:
            note += f"; other sheets: {', '.join(others)}"
        return note


class FileRefused(ValueError):
    """The file cannot be read at all (wrong type, empty, undecodable, over a limit, cut off)."""


class NumberError(ValueError):
    """A cell that should hold a number does not; `reason` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class NumberCell(str):
    """A spreadsheet cell that held a number: its text, plus the number itself (no separators to guess)."""

    number: Decimal

    def __new__(cls, number: Decimal) -> NumberCell:
        cell = super().__new__(cls, str(number))
        cell.number = number
        return cell


# --- numbers -------------------------------------------------------------------------------

MISSING = {"", "-", "--", "\u2013", "\u2014", "n/a", "na", "#n/a"}
_SPACES = str.maketrans({NBSP: " ", "\u202f": " ", "\u2009": " ", "\u2007": " "})
_CURRENCY = ("US$", "HK$", "NT$", "A$", "C$", "S$", "R$", "CHF", "$", "\u20ac", "\u00a3", "\u00a5", "\u20a9", "\u20b9")
_SIGNS = {"-": True, "\u2212": True, "+": False}
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_GROUPED = {
    # 1,234,567 or Indian 12,34,567 or 1'234'567 or 1 234 567, then the decimal point
    "point": re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+|[0-9]{1,2}(?:,[0-9]{2})+,[0-9]{3}|[0-9]{1,3}(?:'[0-9]{3})+"
                        r"|[0-9]{1,3}(?: [0-9]{3})+", re.ASCII),
    # 1.234.567 or 1'234'567 or 1 234 567, then the decimal comma
    "comma": re.compile(r"[0-9]{1,3}(?:\.[0-9]{3})+|[0-9]{1,3}(?:'[0-9]{3})+|[0-9]{1,3}(?: [0-9]{3})+", re.ASCII),
}
_EXPONENT = re.compile(r"(.+?)[eE]([+-]?[0-9]{1,4})", re.ASCII)
_SEPARATED = re.compile(r"[0-9.,]*[0-9][0-9.,]*", re.ASCII)
_PLAIN = re.compile(r"[0-9][0-9.,]*", re.ASCII)


def _undecorate(text: str) -> tuple[str, bool] | None:
    """The bare number of a cell and whether it is negative; None for a missing value.

    Removes quotes, a sign (also "(12)" and the Unicode minus), a currency symbol before or after
    the number, and a trailing "%". Raises NumberError for two signs.
    """
    value = str(text or "").translate(_SPACES).strip().strip('"').strip()
    if _PLAIN.fullmatch(value):
        return value, False  # the common case, without the search for signs and symbols below
    if value.lower() in MISSING:
        return None
    negative = False
    if value.endswith("%"):
        value = value[:-1].rstrip()
    if value.startswith("(") and value.endswith(")"):
        negative, value = True, value[1:-1].strip()
        if value.endswith("%"):
            value = value[:-1].rstrip()
    signed = False
    if value[:1] in _SIGNS:
        if negative:
            raise NumberError("not a number")
        negative, signed, value = _SIGNS[value[0]], True, value[1:].lstrip()
    if value and not (value[0].isdigit() and value[-1].isdigit()):
        for symbol in _CURRENCY:
            if value.startswith(symbol):
                value = value[len(symbol):].lstrip()
                break
            if value.endswith(symbol):
                value = value[:-len(symbol)].rstrip()
                break
    if value[:1] in _SIGNS:
        if signed or negative:
            raise NumberError("not a number")
        negative, value = _SIGNS[value[0]], value[1:].lstrip()
    return value, negative


def parse_number(text: str, decimal: str = "point") -> Decimal | None:
    """'1,234.50' → 1234.50 (decimal="point") or '1.234,50' → 1234.50 (decimal="comma").

    '-', '' or 'n/a' → None; '(12)' → -12; '1.5%' → 1.5; thousands separated by the other mark,
    a space or an apostrophe, in groups of three. Raises NumberError for anything else, for
    infinities and NaN too. A NumberCell (a spreadsheet number) is taken as it is.
    """
    if isinstance(text, NumberCell):
        if not text.number.is_finite():
            raise NumberError("not a finite number")
        return text.number
    if decimal not in DECIMALS:
        raise ValueError(f"decimal must be one of {DECIMALS}, not {decimal!r}")
    bare = _undecorate(text)
    if bare is None:
        return None
    core, negative = bare
    mantissa, exponent = core, ""
    match = _EXPONENT.fullmatch(core)
    if match:
        mantissa, exponent = match.groups()
    whole, separator, fraction = mantissa.partition("." if decimal == "point" else ",")
    if not whole and not fraction:
        raise NumberError("not a number")
    if separator and fraction and not _DIGITS.fullmatch(fraction):
        raise NumberError("not a number")
    if whole and not (_DIGITS.fullmatch(whole) or _GROUPED[decimal].fullmatch(whole)):
        raise NumberError("not a number")
    digits = re.sub(r"[^0-9]", "", whole) or "0"
    try:
        number = Decimal(f"{digits}.{fraction or '0'}" + (f"E{exponent}" if exponent else ""))
    except InvalidOperation as exc:  # cannot happen for the shapes above; kept as the parser's own error
        raise NumberError("not a number") from exc
    return -number if negative and number else number


def decimal_hint(text: str) -> str | None:
    """What a cell says about the decimal convention: "point", "comma", "ambiguous" or None.

    "1.234,56", "0,5" and "1.234.567" can only be decimal commas; "1,234.56", "0.5" and "1,234,567"
    only decimal points; "1,234" and "1.234" could be either. Numbers without separators and text
    say nothing.
    """
    if isinstance(text, NumberCell):
        return None
    try:
        bare = _undecorate(text)
    except NumberError:
        return None
    if bare is None:
        return None
    core = bare[0].replace(" ", "").replace("'", "")
    if not _SEPARATED.fullmatch(core):
        return None
    points, commas = core.count("."), core.count(",")
    if points and commas:
        return "point" if core.rfind(".") > core.rfind(",") else "comma"
    if commas > 1:
        return "point"
    if points > 1:
        return "comma"
    if not points and not commas:
        return None
    mark = "," if commas else "."
    whole, _, fraction = core.partition(mark)
    if len(fraction) == 3 and 1 <= len(whole) <= 3 and whole[0] != "0":
        return "ambiguous"
    return "comma" if mark == "," else "point"


def check_bounds(field_name: str, number: Decimal | None) -> str | None:
    """None when `number` is in the range of `field_name` (see BOUNDS), else the reason."""
    if number is None or field_name not in BOUNDS:
        return None
    low, high, what = BOUNDS[field_name]
    if not number.is_finite():
        return "not a finite number"
    if field_name == "weight":
        return None if low <= number <= high else "a weight is 0 to 100 %"
    if number < low:
        return f"{what} cannot be negative (short positions are not imported)"
    if number >= high:
        return f"{what} must be below {high:,.0f}"
    return None


# --- dates ---------------------------------------------------------------------------------

def parse_date(text: str) -> dt.date | None:
    """A date in one of DATE_FORMATS, or None; never raises."""
    text = str(text or "").strip().strip('"').replace(NBSP, " ").strip()
    if not text or len(text) > 40:
        return None
    for fmt in DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


# --- reading rows --------------------------------------------------------------------------

#: Characters that carry nothing in a cell: zero-width spaces, word joiners, byte-order marks,
#: direction marks and overrides, the soft hyphen. Removed from every cell.
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062"
                                    "\u2063\u2064\u2066\u2067\u2068\u2069\ufeff"), None)
#: Spaces that are not " " (no-break, thin, figure, ideographic ...) → " ".
_CELL = {**_INVISIBLE, **dict.fromkeys(map(ord, "\u00a0\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
                                             "\u202f\u205f\u3000"), " ")}


def clean_cell(text: str) -> str:
    """A cell's text without invisible characters, with any kind of space as a plain one, stripped."""
    return text.strip() if text.isascii() else text.translate(_CELL).strip()


def clean_identifier(text: str) -> str:
    """An ISIN or ticker: also without the joiners (U+200C, U+200D) or any other format character."""
    if text.isascii():
        return text.strip()
    return "".join(ch for ch in clean_cell(text) if unicodedata.category(ch) != "Cf")


def _label(header: str) -> str:
    """A header cell as the field synonyms are written: lower case, one space between words."""
    return " ".join(clean_identifier(header).lower().split())


def decode(data: bytes, chosen: str | None = None) -> tuple[str, str]:
    """(text, encoding) of a CSV file: the caller's encoding, or one that the bytes leave no doubt about.

    UTF-8 (with or without BOM) and UTF-16 with BOM first; then GB18030 when every non-ASCII
    character is a common Chinese one (the GB2312 area, which Western text never fills); then
    Windows-1252 when the bytes are not GB18030 at all. A file that reads as either GB18030 or
    Windows-1252 (as "Müller" does) is refused with both readings, for the user to choose.
    """
    if chosen:
        if chosen not in ENCODINGS:
            raise FileRefused(f"unknown encoding {chosen!r}; use one of {', '.join(ENCODINGS)}")
        codec = {"utf-8": "utf-8-sig", "utf-16": "utf-16"}.get(chosen, chosen)
        try:
            return data.decode(codec), chosen
        except UnicodeDecodeError as exc:
            raise FileRefused(f"the file is not {ENCODINGS[chosen]} text (byte {exc.start + 1:,} cannot be read "
                              f"that way); choose another encoding{ENCODING_HOW}") from exc
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):  # Excel's "Unicode Text": UTF-16, tab-separated
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise FileRefused("the file says it is UTF-16 text but cannot be decoded") from exc
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError as exc:
        if data[:3] == b"\xef\xbb\xbf":
            raise FileRefused(f"the file says it is UTF-8 text (it starts with a byte-order mark) but byte "
                              f"{exc.start + 1:,} is not UTF-8; save it again as UTF-8") from exc
    readings = {}
    for codec in ("gb2312", "gb18030", "cp1252"):
        try:
            readings[codec] = data.decode(codec)
        except UnicodeDecodeError:
            continue
    if "gb2312" in readings:
        return readings["gb2312"], "gb18030"  # GB2312 is a part of GB18030
    if "gb18030" in readings and "cp1252" in readings:
        raise FileRefused(f"the file is not UTF-8 and its encoding is ambiguous: {_two_readings(data)}; say which "
                          f"it is{ENCODING_HOW}, or save the file as UTF-8")
    if "gb18030" in readings:
        return readings["gb18030"], "gb18030"
    if "cp1252" in readings:
        return readings["cp1252"], "cp1252"
    raise FileRefused(f"the file is neither UTF-8, GB18030 nor Windows-1252 text; save it as UTF-8 or say its "
                      f"encoding{ENCODING_HOW}")


def _two_readings(data: bytes) -> str:
    """The first line with a non-ASCII byte, as GB18030 and as Windows-1252 read it."""
    first = next(i for i, byte in enumerate(data) if byte >= 0x80)
    start = data.rfind(b"\n", 0, first) + 1
    end = data.find(b"\n", first)
    line = data[start:end if end >= 0 else len(data)].strip()[:120]
    line_number = data.count(b"\n", 0, first) + 1
    return (f"line {line_number} reads as “{line.decode('gb18030', 'replace')}” in GB18030 (Chinese) or as "
            f"“{line.decode('cp1252', 'replace')}” in Windows-1252 (Western European)")


def _lines(text: str, limits: Limits) -> Iterator[str]:
    """Physical lines (any line ending), refusing one longer than the limit."""
    for number, line in enumerate(io.StringIO(text, newline=""), start=1):
        if len(line) > limits.max_line_chars:
            raise FileRefused(f"line {number} is longer than {limits.max_line_chars:,} characters; "
                              f"this is not a holdings table")
        yield line


def _clean(cells) -> list[str]:
    return [clean_cell(cell) for cell in cells]


def detect_delimiter(text: str, mapping: dict[str, str], limits: Limits) -> str | None:
    """The delimiter under which the top of the file has a header row (most fields found wins)."""
    head = "".join(islice(_lines(text, limits), HEADER_ROWS + 20))
    best, best_score = None, None
    for delimiter in DELIMITERS:
        try:
            rows = [_clean(row) for row in csv.reader(io.StringIO(head, newline=""), delimiter=delimiter,
                                                      skipinitialspace=True)]
        except csv.Error:
            continue
        found = find_header(rows, mapping)
        if found is None:
            continue
        score = (len(found[1]), -found[0])
        if best_score is None or score > best_score:
            best, best_score = delimiter, score
    return best


def csv_rows(text: str, delimiter: str, limits: Limits) -> Iterator[tuple[int, list[str]]]:
    """(row number, cells) of the CSV, read strictly: a quote left open at the end means the file was cut."""
    reader = csv.reader(_lines(text, limits), delimiter=delimiter, skipinitialspace=True, strict=True)
    try:
        for number, record in enumerate(reader, start=1):
            yield number, _clean(record)
    except csv.Error as exc:
        message = str(exc)
        if "unexpected end of data" in message:
            raise FileRefused(f"the file ends inside a quoted value (line {reader.line_num}): the last row is cut "
                              f"off, as by an incomplete download; download the file again") from exc
        if "field larger than field limit" in message:
            raise FileRefused(f"line {reader.line_num}: a quoted value runs over many lines (a quote not "
                              f"closed?)") from exc
        raise FileRefused(f"line {reader.line_num}: the CSV is malformed ({message}); a quote inside a quoted "
                          f"value must be doubled") from exc


def _cell_text(cell) -> str:
    value = cell.value
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        if number.is_finite() and "%" in (getattr(cell, "number_format", None) or ""):
            number = number * 100  # a cell shown as 3.12 % holds 0.0312
        return NumberCell(number)
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return clean_cell(str(value))


# --- XLSX ----------------------------------------------------------------------------------

class _SheetParser(WorkSheetParser):
    """openpyxl's sheet parser, telling a formula without a saved value from an empty cell."""

    def parse_cell(self, element):
        cell = super().parse_cell(element)
        # a saved result is in <v>; an empty one is a result only for a formula giving text (t="str")
        if (cell["value"] is None and not element.findtext(VALUE_TAG) and element.get("t", "n") != "str"
                and element.find(FORMULA_TAG) is not None):
            cell["data_type"] = "unsaved formula"
        return cell


_MERGE = re.compile(rb'<(?:\w+:)?mergeCell\s[^>]*?ref="([A-Za-z]{1,3}[0-9]{1,7}(?::[A-Za-z]{1,3}[0-9]{1,7})?)"')
_SHARED_STRING = re.compile(rb"<(?:\w+:)?si[\s>/]")


def _check_archive(archive: zipfile.ZipFile, limits: Limits) -> None:
    """Refuse a workbook by what its parts declare, before any of them is unpacked."""
    members = archive.infolist()
    if len(members) > MAX_ZIP_MEMBERS:
        raise FileRefused(f"the XLSX file has {len(members):,} parts, more than a workbook has; save the sheet as CSV")
    unpacked = sum(info.file_size for info in members)
    if unpacked > limits.max_unzipped_bytes:
        raise FileRefused(f"the XLSX file unpacks to {unpacked / 1024 / 1024:,.0f} MB, more than the "
                          f"{limits.max_unzipped_bytes / 1024 / 1024:,.0f} MB limit; save the sheet as CSV")
    for info in members:
        if info.file_size > ZIP_RATIO_FROM and info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1):
            raise FileRefused(f"the XLSX part {info.filename} unpacks to {info.file_size / 1024 / 1024:,.0f} MB "
                              f"from {info.compress_size / 1024:,.0f} KB (compressed "
                              f"{info.file_size // max(info.compress_size, 1):,}:1): a zip bomb, not a workbook")
        if info.filename.rsplit("/", 1)[-1].lower().startswith("sharedstrings"):
            if info.file_size > limits.max_shared_strings_bytes:
                raise FileRefused(f"the XLSX part {info.filename} unpacks to {info.file_size / 1024 / 1024:,.1f} MB, "
                                  f"more than the {limits.max_shared_strings_bytes / 1024 / 1024:,.0f} MB limit for "
                                  f"shared strings; save the sheet as CSV")
            _count_shared_strings(archive, info, limits)


def _scan(archive: zipfile.ZipFile, name: str, pattern: re.Pattern, stop: int) -> tuple[int, set[bytes]]:
    """How often `pattern` occurs in a part, unpacked in chunks (counting stops past `stop`), and the
    distinct values of its group."""
    count, values, tail = 0, set(), b""
    with archive.open(name) as stream:
        while chunk := stream.read(1024 * 1024):
            buffer = tail + chunk
            for match in pattern.finditer(buffer):
                if match.end() > len(tail):  # one ending within the tail was counted with the previous chunk
                    count += 1
                    if pattern.groups:
                        values.add(bytes(match.group(1)))
            if count > stop:
                break
            tail = buffer[-400:]
    return count, values


def _count_shared_strings(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: Limits) -> None:
    if _scan(archive, info.filename, _SHARED_STRING, limits.max_shared_strings)[0] > limits.max_shared_strings:
        raise FileRefused(f"the XLSX file has more than {limits.max_shared_strings:,} shared strings, the limit; "
                          f"save the sheet as CSV")


class XlsxSource:
    """Rows of one sheet of a workbook checked by `_check_archive`, read by openpyxl's own parser.

    The sheet's declared dimensions are not used (they can be anything); merged cells and
    formulas without a saved value are found on the way.
    """

    def __init__(self, data: bytes, limits: Limits, sheet: str | None):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                _check_archive(archive, limits)
        except FileRefused:
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
            raise FileRefused(f"the XLSX file cannot be read: {exc}") from exc
        try:
            self.workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises many types for a broken zip or sheet
            raise FileRefused(f"the XLSX file cannot be read: {exc}") from exc
        self.limits = limits
        try:
            sheets = [ws for ws in self.workbook.worksheets if hasattr(ws, "_get_source")]
            self.sheets = [(ws.title, ws.sheet_state != "visible") for ws in sheets]
            if sheet:
                wanted = [ws for ws in sheets if ws.title.strip().casefold() == sheet.strip().casefold()]
                if not wanted:
                    names = ", ".join(f"{title}{' (hidden)' if hidden else ''}" for title, hidden in self.sheets)
                    raise FileRefused(f"the workbook has no sheet called {sheet!r}; its sheets are: {names}")
            else:
                wanted = [ws for ws in sheets if ws.sheet_state == "visible"]
                if not wanted:
                    raise FileRefused("the XLSX file has no visible worksheet")
            self.sheet = wanted[0]
            self.merges = self._merges()
        except Exception:
            self.workbook.close()
            raise

    def _merges(self) -> list[tuple[str, int, int]]:
        """(range, first row, last row) of every merged range of the sheet."""
        refs = _scan(self.workbook._archive, self.sheet._worksheet_path, _MERGE, 10_000)[1]
        merges = []
        for ref in sorted(refs):
            text = ref.decode("ascii").upper()
            _min_col, min_row, _max_col, max_row = range_boundaries(text if ":" in text else f"{text}:{text}")
            merges.append((text, min_row, max_row))
        return merges

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        sheet, width = self.sheet, self.limits.max_columns + 1
        number = 0
        try:
            with sheet._get_source() as source:  # as ReadOnlyWorksheet._cells_by_row does, with our parser
                parser = _SheetParser(source, sheet._shared_strings, data_only=True, epoch=self.workbook.epoch,
                                      date_formats=self.workbook._date_formats,
                                      timedelta_formats=self.workbook._timedelta_formats)
                for index, cells in parser.parse():
                    if index > number + 1:
                        yield number + 1, []  # empty rows are not in the file: one stands for all of them
                    number = index
                    row: list[str] = []
                    for cell in cells:
                        column = cell["column"]
                        if column > width:
                            if cell["value"] is not None:
                                row.extend([""] * (width - len(row)))
                                row.append("beyond")
                            continue
                        if cell["data_type"] == "unsaved formula":
                            raise FileRefused(f"{_coordinate(index, column)} is a formula without a saved value; "
                                              f"open and save the file in Excel, or export it as CSV")
                        if column > len(row):
                            row.extend([""] * (column - len(row)))
                        row[column - 1] = _cell_text(ReadOnlyCell(sheet, **cell))
                    while row and not row[-1]:
                        row.pop()
                    yield index, row
        except FileRefused:
            raise
        except Exception as exc:  # a malformed sheet part fails while it is read, not when opened
            raise FileRefused(f"the XLSX sheet cannot be read after row {number}: {exc}") from exc

    def close(self) -> None:
        self.workbook.close()


def _coordinate(row: int, column: int) -> str:
    letters = ""
    while column:
        column, rest = divmod(column - 1, 26)
        letters = chr(65 + rest) + letters
    return f"{letters}{row}"


def _header_columns(row: list[str], mapping: dict[str, str]) -> dict[str, int] | None:
    columns: dict[str, int] = {}
    for position, cell in enumerate(row):
        field_name = _field_for(cell, mapping)
        if field_name and field_name not in columns:
            columns[field_name] = position
    if any(f in columns for f in IDENTIFYING) and len(columns) >= 2:
        return columns
    return None


def _field_for(header: str, mapping: dict[str, str]) -> str | None:
    label = _label(header)
    if not label:
        return None
    for field_name, column in mapping.items():
        if _label(column) == label:
            return field_name
    for field_name, names in SYNONYMS.items():
        if label in names:
            return field_name
    return None


def find_header(rows: list[list[str]], mapping: dict[str, str]) -> tuple[int, dict[str, int]] | None:
    """The header row (index) and field → column index, within the first HEADER_ROWS rows."""
    for index, row in enumerate(rows[:HEADER_ROWS]):
        columns = _header_columns(row, mapping)
        if columns:
            return index, columns
    return None


@dataclass
class _Source:
    """The rows of a file, as (row number, cells), and what was learnt opening it."""

    rows: Iterator[tuple[int, list[str]]]
    delimiter: str | None = None
    encoding: str | None = None
    xlsx: XlsxSource | None = None

    def close(self) -> None:
        if self.xlsx is not None:
            self.xlsx.close()


#: Stream names of an encrypted Office file (an OLE compound file around the encrypted package).
_ENCRYPTED = ("EncryptedPackage".encode("utf-16-le"), "EncryptionInfo".encode("utf-16-le"))


def _open(data: bytes, mapping: dict[str, str], limits: Limits, encoding: str | None,
          sheet: str | None) -> _Source:
    if not data or not data.strip():
        raise FileRefused("the file is empty")
    if data[:4] == b"PK\x03\x04":
        xlsx = XlsxSource(data, limits, sheet)
        return _Source(rows=iter(xlsx), xlsx=xlsx)
    if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        if any(name in data for name in _ENCRYPTED):
            raise FileRefused("this workbook is password-protected; save it without a password (File → Info → "
                              "Protect Workbook → Encrypt with Password, then clear it) or export it as CSV")
        raise FileRefused("old Excel (.xls) files are not supported; save it as .xlsx or CSV")
    if encoding not in ("utf-16",) and data[:2] not in (b"\xff\xfe", b"\xfe\xff") and b"\x00" in data[:4096]:
        raise FileRefused("this is not a CSV or XLSX file")
    text, encoding = decode(data, encoding)
    if "\x00" in text:
        raise FileRefused("this is not a CSV or XLSX file (it contains NUL characters)")
    delimiter = detect_delimiter(text, mapping, limits)
    return _Source(rows=csv_rows(text, delimiter or ",", limits), delimiter=delimiter, encoding=encoding)



# --- the file ------------------------------------------------------------------------------

@dataclass
class _TableRow:
    row: int
    cells: dict[str, str]


def parse(filename: str, data: bytes, mapping: dict[str, str] | None = None, *, decimal: str | None = None,
          partial: bool = False, limits: Limits | None = None, encoding: str | None = None,
          sheet: str | None = None) -> ParsedFile:
    """Parse a holdings file; bad rows become errors, and only FileRefused is raised.

    `decimal` ("point" or "comma") says which decimal separator the file uses; None reads it
    from the values. `partial` says the file deliberately lists only part of the fund, so a
    missing provider trailer or weights far below 100 % are not taken for a cut download.
    `encoding` (a key of ENCODINGS) says how a CSV file is encoded; None reads it from the bytes.
    `sheet` names the XLSX sheet to read; None reads the first visible one.
    """
    mapping = mapping or {}
    limits = limits or Limits()
    unknown = set(mapping) - set(SYNONYMS)
    if unknown:
        raise FileRefused(f"unknown field(s) in the column mapping: {', '.join(sorted(unknown))}; "
                          f"fields are {', '.join(SYNONYMS)}")
    if decimal not in (None, *DECIMALS):
        raise FileRefused(f"the decimal separator is 'point' or 'comma', not {decimal!r}")
    source = _open(data, mapping, limits, encoding, sheet)
    with closing(source):
        result = _parse_rows(source, mapping, decimal, partial, limits)
    result.encoding, result.encoding_chosen = source.encoding, bool(encoding) and source.xlsx is None
    if source.xlsx is not None:
        result.sheet, result.sheets = source.xlsx.sheet.title, source.xlsx.sheets
    return result


def _parse_rows(source: _Source, mapping, decimal, partial, limits) -> ParsedFile:
    rows, xlsx = source.rows, source.xlsx is not None
    preamble: list[tuple[int, list[str]]] = []
    header: list[str] | None = None
    header_row = 0
    columns: dict[str, int] = {}
    for number, row in rows:
        _check_width(number, row, limits)
        columns = _header_columns(row, mapping)
        if columns:
            header, header_row = row, number
            break
        preamble.append((number, row))
        if number >= HEADER_ROWS:
            break
    if header is None:
        raise FileRefused(f"no header row with an identifier column (ISIN, Ticker, Identifier or Name) in the first "
                          f"{HEADER_ROWS} rows; give a column mapping such as --map isin=ISIN,name=Security")
    if mapping:
        missing = [f"{f}={c}" for f, c in mapping.items() if f not in columns]
        if missing:
            raise FileRefused(f"mapped column(s) not found in the header: {', '.join(missing)}")
    layout = "plain-xlsx" if xlsx else "plain-csv"
    if any(row for _, row in preamble) and xlsx:
        layout = "spdr-xlsx"
    elif any(PROVIDER_DATE.search(" ".join(row)) for _, row in preamble):
        layout = "ishares-csv"  # a provider download, which ends with its disclaimer
    result = ParsedFile(layout=layout, columns={f: header[i] for f, i in columns.items()}, delimiter=source.delimiter,
                        decimal_chosen=decimal, partial=partial)
    for position, label in enumerate(header):
        if len(label) > limits.max_field_chars:
            raise FileRefused(f"row {header_row}, column {position + 1}: a header longer than "
                              f"{limits.max_field_chars:,} characters")
    _read_preamble(preamble, result)
    table = _read_table(rows, header_row, header, columns, result, xlsx, limits)
    if xlsx:
        merged = [ref for ref, first, last in source.xlsx.merges if first <= result.last_row and last >= header_row]
        if merged:
            raise FileRefused(f"the sheet has merged cells in the holdings table: {', '.join(merged[:10])}; unmerge "
                              f"them (each value in its own cell) or export the sheet as CSV")
    _read_holdings(table, header_row, result, decimal)
    _check_weight_total(result, limits)
    return result


def _check_width(number: int, row: list[str], limits: Limits) -> None:
    if len(row) > limits.max_columns and any(row[limits.max_columns:]):
        raise FileRefused(f"row {number} has values beyond column {limits.max_columns}, the limit "
                          f"(HOLDINGS_MAX_COLUMNS); this is not a holdings table")


def _read_preamble(preamble: list[tuple[int, list[str]]], result: ParsedFile) -> None:
    for number, row in preamble:
        cells = [c for c in row if c]
        if not cells:
            continue
        line = " ".join(cells)
        label = cells[0].rstrip(":").strip().lower()
        match = AS_OF.search(line)
        if match and result.as_of is None:
            as_of = parse_date(match.group(1)) or parse_date(cells[-1])
            problem = date_problem(as_of)
            if problem:
                result.errors.append(RowError(number, "", cells[-1][:100], f"the holdings date {problem.rstrip('.')}"))
            else:
                result.as_of = as_of
        elif label in ("fund name", "fund") and len(cells) > 1:
            result.fund_name = cells[1][:200]
        elif result.fund_name is None and len(cells) == 1 and not match:
            result.fund_name = cells[0][:200]


def _read_table(rows, header_row: int, header: list[str], columns: dict[str, int], result: ParsedFile, xlsx: bool,
                limits: Limits) -> list[_TableRow]:
    """The rows of the holdings table: from the header to the first blank (or one-cell) row.

    Checks what a cut or garbled download leaves behind: rows with fewer cells than the header
    (or more, as an unquoted "1,234" makes), rows that look like holdings below the end of the
    table, and for provider layouts the trailer that closes the file.
    """
    width = max((i + 1 for i, label in enumerate(header) if label), default=0)
    labels = {f: header[i] for f, i in columns.items()}
    table: list[_TableRow] = []
    short: list[tuple[int, int]] = []
    end_row = None
    ending: list[str] = []
    trailer = False
    after = 0
    continued = None
    for number, row in rows:
        _check_width(number, row, limits)
        filled = sum(1 for cell in row if cell)
        if end_row is None:
            if filled < 2:
                end_row, trailer, ending = number, bool(filled), row
                continue
            if len(table) >= limits.max_rows:
                raise FileRefused(f"the holdings table has more than {limits.max_rows:,} rows, the limit "
                                  f"(HOLDINGS_MAX_ROWS); split the file")
            cells = {f: (row[i] if i < len(row) else "") for f, i in columns.items()}
            for field_name, value in cells.items():
                if len(value) > limits.max_field_chars:
                    result.errors.append(RowError(number, labels[field_name], value[:40] + "…",
                                                  f"longer than {limits.max_field_chars:,} characters"))
                    cells[field_name] = ""
            if not xlsx:
                if len(row) < width:
                    short.append((number, len(row)))
                elif len(row) > width and any(row[width:]):
                    result.errors.append(RowError(
                        number, "", "", f"{len(row)} values but the header has {width} columns; is a number with "
                                        f"a thousands separator not quoted?"))
            table.append(_TableRow(number, cells))
            continue
        after += 1
        if after > TRAILER_ROWS:
            break
        trailer = trailer or filled > 0
        if continued is None and filled >= max(3, (width + 1) // 2):
            continued = number
            result.errors.append(RowError(
                number, "", "", f"this row looks like a holding, but the table ended at the empty row {end_row}; "
                                f"remove the empty row (or the rows below it)"))
    result.last_row = table[-1].row if table else header_row
    if not xlsx and end_row is not None and after == 0 and any(ending) and (
            len(ending) >= 2 or (end_row == result.last_row + 1 and width >= 2)):
        # the last line of the file has one value (and maybe delimiters), right below the table: a row cut
        # after or inside its first value; a note below a table comes after an empty row
        short.append((end_row, len(ending)))
        result.last_row, end_row = end_row, None
    for number, count in short:
        if number == result.last_row and end_row is None:
            reason = (f"the file ends in the middle of this row ({count} of {width} columns): it looks cut off, "
                      f"as by an incomplete download; download the file again"
                      + ("" if count > 1 else " (a note below the table goes after an empty row)"))
        else:
            reason = f"{count} of {width} columns: the row is incomplete"
        result.errors.append(RowError(number, "", "", reason))
    if result.layout == "ishares-csv" and table and not trailer and not result.partial:
        result.errors.append(RowError(
            result.last_row, "", "",
            "the file ends inside the holdings table, without the provider's closing text (disclaimer): "
            "the download looks incomplete. Download it again; if the file deliberately lists only part "
            f"of the fund, import it as partial{PARTIAL_HOW}"))
    return table


def _resolve_decimals(table: list[_TableRow], labels: dict[str, str], result: ParsedFile,
                      chosen: str | None) -> dict[str, str]:
    """The decimal convention of each number column: the caller's, or what the values say."""
    fields = [f for f in NUMBER_FIELDS if f in labels]
    if chosen:
        result.decimals = {labels[f]: chosen for f in fields}
        return {f: chosen for f in fields}
    votes: dict[str, dict[str, tuple[int, str]]] = {f: {} for f in fields}
    for item in table:
        for field_name in fields:
            hint = decimal_hint(item.cells[field_name])
            if hint and hint not in votes[field_name]:
                votes[field_name][hint] = (item.row, item.cells[field_name])
    decided: dict[str, str] = {}
    mixed: set[str] = set()
    for field_name in fields:
        seen = votes[field_name]
        if "point" in seen and "comma" in seen:
            mixed.add(field_name)
            (p_row, p_value), (c_row, c_value) = seen["point"], seen["comma"]
            row, value = max(seen["point"], seen["comma"])
            result.errors.append(RowError(row, labels[field_name], value,
                                          f"the column mixes decimal points (row {p_row}: {p_value!r}) and decimal "
                                          f"commas (row {c_row}: {c_value!r})"))
        elif "point" in seen or "comma" in seen:
            decided[field_name] = "point" if "point" in seen else "comma"
    agreed = set(decided.values())
    conventions = dict(decided)
    for field_name in fields:
        if field_name in conventions or field_name in mixed:
            continue  # a mixed column is already an error: its values are not read
        if "ambiguous" in votes[field_name]:
            if len(agreed) == 1:
                conventions[field_name] = next(iter(agreed))  # the other columns of the same file say which
            else:
                row, value = votes[field_name]["ambiguous"]
                result.errors.append(RowError(
                    row, labels[field_name], value,
                    "could be read with a decimal point or a decimal comma, and no value in the file says which; "
                    "say which the file uses (--decimal point|comma, or the choice on the preview)"))
        else:
            conventions.setdefault(field_name, "point")
    result.decimals = {labels[f]: conventions[f] for f in fields if f in conventions and votes[f]}
    return conventions


def _read_holdings(table: list[_TableRow], header_row: int, result: ParsedFile, chosen: str | None) -> None:
    labels = result.columns
    conventions = _resolve_decimals(table, labels, result, chosen)
    seen: dict[tuple, int] = {}
    weights: list[Decimal] = []
    weight_missing = weight_invalid = False
    for item in table:
        line = item.row

        def cell(name):
            return item.cells.get(name, "")

        asset_class = cell("asset_class") or cell("sector")
        name = cell("name")
        skip = None
        if asset_class and NON_EQUITY.search(asset_class) and not cell("isin"):
            skip = cell("asset_class") or "cash or derivative"
        elif not asset_class and NON_EQUITY.search(name) and not cell("isin"):
            skip = "cash or derivative"
        if skip:
            result.skipped[skip] = result.skipped.get(skip, 0) + 1
            if "weight" in conventions:
                try:  # cash and derivatives count towards the total, negative (short futures) included
                    weight = parse_number(cell("weight"), conventions["weight"])
                except NumberError:
                    weight = None
                if weight is not None and weight.is_finite() and abs(weight) <= 100:
                    weights.append(weight)
            continue
        holding = HoldingRow(row=line, name=name)
        ticker = clean_identifier(cell("ticker"))
        holding.ticker = ticker if ticker not in ("", "-") else None
        for source in ("isin", "identifier"):
            value = clean_identifier(cell(source)).upper()
            if value and value != "-":
                if isin_problem(value) is None:
                    holding.isin = compact_isin(value)
                elif source == "isin":
                    result.errors.append(RowError(line, labels["isin"], value, isin_problem(value)))
        holding.exchange = cell("exchange") or None
        holding.location = cell("location") or None
        holding.sector = cell("sector") or None
        holding.currency = (cell("currency") or "")[:3] or None
        for number_field in NUMBER_FIELDS:
            if number_field not in conventions:
                continue
            raw = cell(number_field)
            try:
                value = parse_number(raw, conventions[number_field])
            except NumberError as error:
                result.errors.append(RowError(line, labels[number_field], raw, error.reason))
                if number_field == "weight":
                    weight_invalid = True
                continue
            problem = check_bounds(number_field, value)
            if problem:
                result.errors.append(RowError(line, labels[number_field], raw, problem))
                if number_field == "weight":
                    weight_invalid = True
                continue
            if number_field == "weight":
                if value is None:
                    weight_missing = True
                else:
                    weights.append(value)
            if number_field != "price":  # checked, not stored
                setattr(holding, number_field, value)
        if not holding.name and not holding.isin and not holding.ticker:
            result.errors.append(RowError(line, "", "", "no name, ISIN or ticker"))
            continue
        if not holding.name:
            holding.name = holding.isin or holding.ticker
        key = ("isin", holding.isin) if holding.isin else ("ticker", holding.ticker, holding.exchange) \
            if holding.ticker else ("name", _same_text(holding.name))
        if key in seen:
            what = {"isin": f"ISIN {holding.isin}", "ticker": f"ticker {holding.ticker}"}.get(key[0], "this name")
            result.errors.append(RowError(line, "", holding.name, f"{what} is also in row {seen[key]}: a holdings "
                                                                  f"file lists each security once (add lots up)"))
            continue
        seen[key] = line
        result.rows.append(holding)
    if not result.rows and not result.errors:
        result.errors.append(RowError(header_row + 1, "", "", "the file has a header but no holdings"))
    if "weight" in conventions and weights and not weight_missing and not weight_invalid:
        result.weight_total = sum(weights, Decimal(0))


def _check_weight_total(result: ParsedFile, limits: Limits) -> None:
    """Weights far below 100 % mean rows are missing, unless the caller said the file is partial;
    weights over `max_weight_total` mean rows are counted twice, whatever the caller says."""
    total = result.weight_total
    if total is None or not result.rows:
        return
    if total > limits.max_weight_total:
        result.errors.append(RowError(
            result.last_row, result.columns.get("weight", ""), "",
            f"the weights add up to {total:.2f} %, more than {limits.max_weight_total:g} %: rows are counted twice "
            f"(a table pasted twice, or subtotal rows?); correct the file"))
        return
    if result.partial or total >= limits.min_weight_total:
        return
    hint = (" Are they fractions (0.05 for 5 %) rather than percentages?" if Decimal("0.9") <= total <= Decimal("1.1")
            else "")
    result.errors.append(RowError(
        result.last_row, result.columns.get("weight", ""), "",
        f"the weights add up to {total:.2f} %, far below 100 %: the file looks incomplete (a cut download?).{hint} "
        f"If it deliberately lists only part of the fund, import it as partial{PARTIAL_HOW}"))


def parse_mapping(text: str | None) -> dict[str, str]:
    """'isin=ISIN,name=Security' → {'isin': 'ISIN', 'name': 'Security'}."""
    mapping = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise FileRefused(f"column mapping {part!r} must look like field=Column Name")
        field_name, column = part.split("=", 1)
        mapping[field_name.strip().lower()] = column.strip()
    return mapping
