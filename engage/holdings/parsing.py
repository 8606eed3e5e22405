"""Reading holdings files as users really have them, without writing anything.

Formats, detected from the content:
- an ETF provider's CSV in the iShares layout: preamble lines (fund name, "Fund Holdings as of"),
  a header, quoted values with thousands separators, "-" for missing, cash and derivative rows,
  a legal disclaimer as trailer; UTF-8 with or without BOM;
- an XLSX sheet with a preamble (SPDR layout: Name, Ticker, Identifier, SEDOL, Weight, Sector,
  Shares Held, Local Currency);
- a plain CSV or XLSX with a header row, with a column mapping when the names are unusual.
Every problem is collected as a RowError (row, column, value, reason); a file with any error
is refused whole by the importer.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from engage.identifiers import isin_problem

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
                "%d.%m.%Y", "%Y%m%d"]
AS_OF = re.compile(r"(?:holdings\s+)?as\s+of[:\s]+(.+)$", re.IGNORECASE)
NBSP = "\u00a0"


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

    @property
    def ok(self) -> bool:
        return not self.errors


class FileRefused(ValueError):
    """The file cannot be read at all (wrong type, empty, undecodable)."""


def parse_date(text: str) -> dt.date | None:
    text = text.strip().strip('"').replace(NBSP, " ").strip()
    for fmt in DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def parse_number(text: str) -> Decimal | None:
    """'1,234.50' → 1234.50; '-' or '' → None; '(12)' → -12; '1.5%' → 1.5. ValueError if not a number."""
    value = (text or "").replace(NBSP, "").replace(" ", "").strip().strip('"')
    if value in ("", "-", "--", "—", "N/A", "n/a", "NA"):
        return None
    negative = value.startswith("(") and value.endswith(")")
    value = value.strip("()").rstrip("%").replace(",", "")
    for symbol in ("$", "€", "£", "¥", "US$"):
        value = value.replace(symbol, "")
    try:
        number = Decimal(value)
    except InvalidOperation as exc:
        raise ValueError("not a number") from exc
    if not number.is_finite():
        raise ValueError("not a number")
    return -number if negative else number


def read_rows(filename: str, data: bytes) -> list[list[str]]:
    """All rows of the first sheet or of the CSV, as lists of strings."""
    if not data or not data.strip():
        raise FileRefused("the file is empty")
    if data[:4] == b"PK\x03\x04":
        return _xlsx_rows(data)
    if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        raise FileRefused("old Excel (.xls) files are not supported; save it as .xlsx or CSV")
    if b"\x00" in data[:4096]:
        raise FileRefused("this is not a CSV or XLSX file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError as exc:
            raise FileRefused("the file is neither UTF-8 nor Windows-1252 text") from exc
    sample = text[:4096]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    return [[cell.replace(NBSP, " ").strip() for cell in row] for row in csv.reader(io.StringIO(text), dialect)]


def _xlsx_rows(data: bytes) -> list[list[str]]:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a broken zip or sheet
        raise FileRefused(f"the XLSX file cannot be read: {exc}") from exc
    sheet = workbook.worksheets[0]
    rows = []
    for values in sheet.iter_rows(values_only=True):
        rows.append(["" if v is None else (v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else str(v)).strip()
                     for v in values])
    workbook.close()
    return rows


def _field_for(header: str, mapping: dict[str, str]) -> str | None:
    label = header.strip().lower()
    for field_name, column in mapping.items():
        if column.strip().lower() == label:
            return field_name
    for field_name, names in SYNONYMS.items():
        if label in names:
            return field_name
    return None


def find_header(rows: list[list[str]], mapping: dict[str, str]) -> tuple[int, dict[str, int]] | None:
    """The header row (index) and field → column index, within the first 40 rows."""
    for index, row in enumerate(rows[:40]):
        columns: dict[str, int] = {}
        for position, cell in enumerate(row):
            field_name = _field_for(cell, mapping)
            if field_name and field_name not in columns:
                columns[field_name] = position
        if any(f in columns for f in IDENTIFYING) and len(columns) >= 2:
            return index, columns
    return None


def parse(filename: str, data: bytes, mapping: dict[str, str] | None = None) -> ParsedFile:
    """Parse a holdings file; never raises for bad rows (they become errors), only FileRefused."""
    mapping = mapping or {}
    unknown = set(mapping) - set(SYNONYMS)
    if unknown:
        raise FileRefused(f"unknown field(s) in the column mapping: {', '.join(sorted(unknown))}; "
                          f"fields are {', '.join(SYNONYMS)}")
    rows = read_rows(filename, data)
    found = find_header(rows, mapping)
    if found is None:
        raise FileRefused("no header row with an identifier column (ISIN, Ticker, Identifier or Name) in the first "
                          "40 rows; give a column mapping such as --map isin=ISIN,name=Security")
    header_index, columns = found
    if mapping:
        missing = [f"{f}={c}" for f, c in mapping.items() if f not in columns]
        if missing:
            raise FileRefused(f"mapped column(s) not found in the header: {', '.join(missing)}")
    xlsx = data[:4] == b"PK\x03\x04"
    preamble = rows[:header_index]
    layout = "plain-xlsx" if xlsx else "plain-csv"
    if preamble:
        layout = "spdr-xlsx" if xlsx else "ishares-csv"
    result = ParsedFile(layout=layout, columns={f: rows[header_index][i] for f, i in columns.items()})
    _read_preamble(preamble, result)
    _read_body(rows, header_index, columns, result)
    return result


def _read_preamble(preamble: list[list[str]], result: ParsedFile) -> None:
    for row in preamble:
        cells = [c for c in row if c]
        if not cells:
            continue
        line = " ".join(cells)
        label = cells[0].rstrip(":").strip().lower()
        match = AS_OF.search(line)
        if match and result.as_of is None:
            result.as_of = parse_date(match.group(1)) or parse_date(cells[-1])
        elif label in ("fund name", "fund") and len(cells) > 1:
            result.fund_name = cells[1]
        elif result.fund_name is None and len(cells) == 1 and not match:
            result.fund_name = cells[0]


def _read_body(rows, header_index: int, columns: dict[str, int], result: ParsedFile) -> None:
    seen: dict[tuple, int] = {}
    width = max(columns.values()) + 1
    for index in range(header_index + 1, len(rows)):
        row = rows[index]
        line = index + 1
        if len([c for c in row if c]) < 2:
            break  # a blank line or the disclaimer paragraph: the table has ended
        cells = row + [""] * (width - len(row))

        def cell(name):
            return cells[columns[name]].strip() if name in columns else ""

        asset_class = cell("asset_class") or cell("sector")
        name = cell("name")
        if asset_class and NON_EQUITY.search(asset_class) and not cell("isin"):
            label = cell("asset_class") or "cash or derivative"
            result.skipped[label] = result.skipped.get(label, 0) + 1
            continue
        if not asset_class and NON_EQUITY.search(name) and not cell("isin"):
            result.skipped["cash or derivative"] = result.skipped.get("cash or derivative", 0) + 1
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
                    result.errors.append(RowError(line, result.columns["isin"], value, isin_problem(value)))
        holding.exchange = cell("exchange") or None
        holding.location = cell("location") or None
        holding.sector = cell("sector") or None
        holding.currency = (cell("currency") or "")[:3] or None
        for number_field in ("market_value", "weight", "shares"):
            raw = cell(number_field)
            try:
                setattr(holding, number_field, parse_number(raw))
            except ValueError:
                result.errors.append(RowError(line, result.columns[number_field], raw, "not a number"))
        if holding.weight is not None and not Decimal(0) <= holding.weight <= 100:
            result.errors.append(RowError(line, result.columns["weight"], cell("weight"), "a weight is 0 to 100 %"))
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
        result.errors.append(RowError(header_index + 2, "", "", "the file has a header but no holdings"))


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
