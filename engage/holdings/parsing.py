"""Reading holdings files as users really have them, without writing anything.

Formats, detected from the content:
- an ETF provider's CSV in the iShares layout: preamble lines (fund name, "Fund Holdings as of"),
  a header, quoted values with thousands separators, "-" for missing, cash and derivative rows,
  a legal disclaimer as trailer; UTF-8 with or without BOM;
- an XLSX sheet with a preamble (SPDR layout: Name, Ticker, Identifier, SEDOL, Weight, Sector,
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
import zipfile
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from itertools import islice

from engage.identifiers import isin_problem
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
#: field → (smallest, largest, what it is): the range a number of that field must be in.
BOUNDS = {
    "market_value": (Decimal(0), Decimal(10) ** 15, "a market value"),
    "shares": (Decimal(0), Decimal(10) ** 15, "a number of shares"),
    "price": (Decimal(0), Decimal(10) ** 9, "a price"),
    "weight": (Decimal(0), Decimal(100), "a weight"),
}


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
    #: Weights of a whole-fund file add up to at least this many percent.
    min_weight_total: Decimal = Decimal(90)

    @classmethod
    def from_config(cls, config) -> Limits:
        return cls(max_rows=int(config.get("HOLDINGS_MAX_ROWS", cls.max_rows)),
                   max_columns=int(config.get("HOLDINGS_MAX_COLUMNS", cls.max_columns)),
                   max_unzipped_bytes=int(config.get("HOLDINGS_MAX_UNZIPPED_BYTES", cls.max_unzipped_bytes)),
                   min_weight_total=Decimal(str(config.get("HOLDINGS_MIN_WEIGHT_TOTAL", cls.min_weight_total))))


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

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def delimiter_name(self) -> str | None:
        return DELIMITER_NAMES.get(self.delimiter) if self.delimiter else None


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

def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError as exc:
            raise FileRefused("the file is neither UTF-8 nor Windows-1252 text") from exc


def _lines(text: str, limits: Limits) -> Iterator[str]:
    """Physical lines (any line ending), refusing one longer than the limit."""
    for number, line in enumerate(io.StringIO(text, newline=""), start=1):
        if len(line) > limits.max_line_chars:
            raise FileRefused(f"line {number} is longer than {limits.max_line_chars:,} characters; "
                              f"this is not a holdings table")
        yield line


def _clean(cells) -> list[str]:
    return [cell.replace(NBSP, " ").strip() for cell in cells]


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


def _csv_rows(text: str, delimiter: str, limits: Limits) -> Iterator[list[str]]:
    """Records of the CSV, read strictly: a quote left open at the end means the file was cut."""
    reader = csv.reader(_lines(text, limits), delimiter=delimiter, skipinitialspace=True, strict=True)
    try:
        for record in reader:
            yield _clean(record)
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
    return str(value).replace(NBSP, " ").strip()


def _xlsx_rows(data: bytes, limits: Limits) -> Iterator[list[str]]:
    """Rows of the first sheet, ignoring the dimensions the sheet declares (they can be anything)."""
    from openpyxl import load_workbook

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
        raise FileRefused(f"the XLSX file cannot be read: {exc}") from exc
    if unpacked > limits.max_unzipped_bytes:
        raise FileRefused(f"the XLSX file unpacks to {unpacked / 1024 / 1024:,.0f} MB, more than the "
                          f"{limits.max_unzipped_bytes / 1024 / 1024:,.0f} MB limit; save the sheet as CSV")
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a broken zip or sheet
        raise FileRefused(f"the XLSX file cannot be read: {exc}") from exc
    number = 0
    try:
        sheets = workbook.worksheets
        if not sheets or not hasattr(sheets[0], "reset_dimensions"):
            raise FileRefused("the XLSX file has no worksheet")
        sheet = sheets[0]
        sheet.reset_dimensions()  # read what is there, not what <dimension ref="A1:XFD1048576"/> claims
        try:
            for cells in sheet.iter_rows(max_col=limits.max_columns + 1):
                number += 1
                row = [_cell_text(cell) for cell in cells]
                while row and not row[-1]:
                    row.pop()
                yield row
        except FileRefused:
            raise
        except Exception as exc:  # a malformed sheet part fails while it is read, not when opened
            raise FileRefused(f"the XLSX sheet cannot be read after row {number}: {exc}") from exc
    finally:
        workbook.close()


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
    label = header.strip().lower()
    if not label:
        return None
    for field_name, column in mapping.items():
        if column.strip().lower() == label:
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


def _open(data: bytes, mapping: dict[str, str], limits: Limits) -> tuple[Iterator[list[str]], str | None]:
    """The rows of the file and its CSV delimiter (None for XLSX)."""
    if not data or not data.strip():
        raise FileRefused("the file is empty")
    if data[:4] == b"PK\x03\x04":
        return _xlsx_rows(data, limits), None
    if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        raise FileRefused("old Excel (.xls) files are not supported; save it as .xlsx or CSV")
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):  # Excel's "Unicode Text": UTF-16, tab-separated
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise FileRefused("the file says it is UTF-16 text but cannot be decoded") from exc
    elif b"\x00" in data[:4096]:
        raise FileRefused("this is not a CSV or XLSX file")
    else:
        text = _decode(data)
    if "\x00" in text:
        raise FileRefused("this is not a CSV or XLSX file (it contains NUL characters)")
    delimiter = detect_delimiter(text, mapping, limits)
    return _csv_rows(text, delimiter or ",", limits), delimiter


# --- the file ------------------------------------------------------------------------------

@dataclass
class _TableRow:
    row: int
    cells: dict[str, str]


def parse(filename: str, data: bytes, mapping: dict[str, str] | None = None, *, decimal: str | None = None,
          partial: bool = False, limits: Limits | None = None) -> ParsedFile:
    """Parse a holdings file; bad rows become errors, and only FileRefused is raised.

    `decimal` ("point" or "comma") says which decimal separator the file uses; None reads it
    from the values. `partial` says the file deliberately lists only part of the fund, so a
    missing provider trailer or weights far below 100 % are not taken for a cut download.
    """
    mapping = mapping or {}
    limits = limits or Limits()
    unknown = set(mapping) - set(SYNONYMS)
    if unknown:
        raise FileRefused(f"unknown field(s) in the column mapping: {', '.join(sorted(unknown))}; "
                          f"fields are {', '.join(SYNONYMS)}")
    if decimal not in (None, *DECIMALS):
        raise FileRefused(f"the decimal separator is 'point' or 'comma', not {decimal!r}")
    source, delimiter = _open(data, mapping, limits)
    with closing(source):
        return _parse_rows(enumerate(source, start=1), delimiter, data[:4] == b"PK\x03\x04", mapping, decimal,
                           partial, limits)


def _parse_rows(rows, delimiter, xlsx, mapping, decimal, partial, limits) -> ParsedFile:
    preamble: list[list[str]] = []
    header: list[str] | None = None
    columns: dict[str, int] = {}
    for number, row in rows:
        _check_width(number, row, limits)
        columns = _header_columns(row, mapping)
        if columns:
            header = row
            break
        preamble.append(row)
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
    if preamble and xlsx:
        layout = "spdr-xlsx"
    elif any(PROVIDER_DATE.search(" ".join(row)) for row in preamble):
        layout = "ishares-csv"  # a provider download, which ends with its disclaimer
    result = ParsedFile(layout=layout, columns={f: header[i] for f, i in columns.items()}, delimiter=delimiter,
                        decimal_chosen=decimal, partial=partial)
    header_row = len(preamble) + 1
    for position, label in enumerate(header):
        if len(label) > limits.max_field_chars:
            raise FileRefused(f"row {header_row}, column {position + 1}: a header longer than "
                              f"{limits.max_field_chars:,} characters")
    _read_preamble(preamble, result)
    table = _read_table(rows, header_row, header, columns, result, xlsx, limits)
    _read_holdings(table, header_row, result, decimal)
    _check_weight_total(result, limits.min_weight_total)
    return result


def _check_width(number: int, row: list[str], limits: Limits) -> None:
    if len(row) > limits.max_columns and any(row[limits.max_columns:]):
        raise FileRefused(f"row {number} has values beyond column {limits.max_columns}, the limit "
                          f"(HOLDINGS_MAX_COLUMNS); this is not a holdings table")


def _read_preamble(preamble: list[list[str]], result: ParsedFile) -> None:
    for number, row in enumerate(preamble, start=1):
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
    if not xlsx and end_row is not None and after == 0 and len(ending) >= 2 and any(ending):
        # the last line of the file has one value and then delimiters: a row cut after its first value
        short.append((end_row, len(ending)))
        result.last_row, end_row = end_row, None
    for number, count in short:
        if number == result.last_row and end_row is None:
            reason = (f"the file ends in the middle of this row ({count} of {width} columns): it looks cut off, "
                      f"as by an incomplete download; download the file again")
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
        ticker = cell("ticker")
        holding.ticker = ticker if ticker not in ("", "-") else None
        for source in ("isin", "identifier"):
            value = cell(source).upper()
            if value and value != "-":
                if isin_problem(value) is None:
                    holding.isin = value
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
            if holding.ticker else ("name", holding.name.lower())
        if key in seen:
            result.errors.append(RowError(line, "", holding.name, f"duplicate of row {seen[key]}"))
            continue
        seen[key] = line
        result.rows.append(holding)
    if not result.rows and not result.errors:
        result.errors.append(RowError(header_row + 1, "", "", "the file has a header but no holdings"))
    if "weight" in conventions and weights and not weight_missing and not weight_invalid:
        result.weight_total = sum(weights, Decimal(0))


def _check_weight_total(result: ParsedFile, minimum: Decimal) -> None:
    """Weights far below 100 % mean rows are missing, unless the caller said the file is partial."""
    total = result.weight_total
    if total is None or result.partial or not result.rows or total >= minimum:
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
