"""Reading a disclosed value-chain map (CSV, XLSX or a PDF's tables) into rows, without writing anything.

The file is read with the holdings reader's machinery (engage.holdings.parsing): the same
encodings (UTF-8, UTF-16, GB18030, Windows-1252), the same XLSX reading with its limits, the same
cleaning of cells. The header is the first row (within HEADER_ROWS) naming a counterparty column;
columns are recognised by the names in SYNONYMS or by a mapping `field=Column`. A PDF's tables
are read by engage.valuechain.pdf into the same rows, one table across its pages, and each row's
source is its page ("p. 12") unless the mapping names a source column.

Every problem with a row is a RowError (row, column, value, reason); a file with any is refused
whole. A file that cannot be read at all raises MapRefused.
"""

from __future__ import annotations

import csv
import io
from contextlib import closing
from dataclasses import dataclass, field
from itertools import islice

from engage.holdings import parsing as holdings_parsing
from engage.holdings.parsing import FileRefused, Limits, RowError, clean_cell, clean_identifier
from engage.identifiers import compact_isin, isin_problem, lei_problem
from engage.models import RelationshipKind
from engage.models.companies import normalize_name
from engage.valuechain import pdf
from engage.valuechain import regions

#: A map with more rows than this is refused (a disclosed map has hundreds, at most a few thousand).
MAX_ROWS = 25_000
#: Rows a sheet (or CSV) may run to, empty ones included: a million empty rows take half a minute to read.
MAX_SHEET_ROWS = 100_000
#: Rows above the header that may hold a title or notes.
HEADER_ROWS = 20
#: field -> header names (lower case) that mean it.
SYNONYMS = {
    "name": ["name", "supplier", "supplier name", "counterparty", "counterparty name", "company", "company name",
             "customer", "customer name", "entity", "partner"],
    "aliases": ["aliases", "alias", "other names", "also known as", "aka", "chinese name"],
    "kind": ["kind", "type", "relationship", "relationship type", "role"],
    "tier": ["tier", "supplier tier", "level"],
    "products": ["products", "product", "inputs", "input", "materials", "material", "products or inputs",
                 "goods", "commodity", "category"],
    "country": ["country", "country of origin", "country code"],
    "region": ["region", "province", "province or state", "state", "city", "location", "site", "address"],
    "isin": ["isin"],
    "lei": ["lei"],
    "source_ref": ["source", "source ref", "reference", "page"],
}
FIELDS = tuple(SYNONYMS)
#: Words a map uses for the kinds (lower case) -> RelationshipKind value.
KIND_WORDS = {
    **{k.value: k.value for k in RelationshipKind},
    **{k.value.replace("_", " "): k.value for k in RelationshipKind},
    "sub-supplier": "sub_supplier", "subsupplier": "sub_supplier", "sub supplier": "sub_supplier",
    "jv": "joint_venture", "joint-venture": "joint_venture", "vendor": "supplier", "client": "customer",
    "buyer": "customer",
}
#: Characters a cell may have, by field (the columns' sizes); a longer cell is a row error, never cut.
MAX_CHARS = {"name": 200, "products": 1000, "region": 200, "source_ref": 200}
#: Tiers above this are recorded as this ("3" means "3 or further").
TOP_TIER = 3


class MapRefused(ValueError):
    """The file (or the mapping) cannot be read at all."""


@dataclass
class MapRow:
    row: int
    name: str
    aliases: list[str] = field(default_factory=list)
    kind: str = RelationshipKind.SUPPLIER.value
    tier: int = 1
    products: str = ""
    country: str | None = None
    region: str = ""
    #: ISO 3166-2 code of the subdivision of `country` the region names ("CN-XJ"), when it names one.
    subdivision: str | None = None
    isin: str | None = None
    lei: str | None = None
    source_ref: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """Identity of the counterparty within one map: its normalised name and the kind."""
        return (normalize_name(self.name) or self.name.lower(), self.kind)


@dataclass
class ParsedMap:
    rows: list[MapRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    #: field -> the header it was read from.
    columns: dict[str, str] = field(default_factory=dict)
    #: Header cells of columns that are not read (no field's name, or a field's second column), in order.
    ignored: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def parse_mapping(text: str | dict | None) -> dict[str, str]:
    """'name=Supplier,tier=Level' -> {'name': 'Supplier', 'tier': 'Level'}; unknown fields refused."""
    if isinstance(text, dict):
        mapping = {k.strip().lower(): v.strip() for k, v in text.items() if v and v.strip()}
    else:
        fields = [part.split("=", 1)[0].strip().lower() for part in (text or "").split(",") if part.strip()]
        twice = sorted({f for f in fields if fields.count(f) > 1})
        if twice:
            raise MapRefused(f"the column mapping is ambiguous: field {', '.join(twice)} is mapped twice")
        try:
            mapping = holdings_parsing.parse_mapping(text)
        except FileRefused as exc:
            raise MapRefused(str(exc)) from exc
    labels = [_label(c) for c in mapping.values()]
    twice = sorted({c for c in mapping.values() if labels.count(_label(c)) > 1})
    if twice:
        raise MapRefused(f"the column mapping is ambiguous: column {', '.join(twice)} is mapped to two fields")
    unknown = sorted(set(mapping) - set(FIELDS))
    if unknown:
        raise MapRefused(f"unknown field(s) in the column mapping: {', '.join(unknown)}; the fields are "
                         f"{', '.join(FIELDS)}")
    return mapping


def _label(text: str) -> str:
    return " ".join(clean_identifier(text or "").lower().split())


def _header(row: list[str], mapping: dict[str, str]) -> dict[str, int]:
    columns: dict[str, int] = {}
    mapped = {_label(column): name for name, column in mapping.items()}
    for position, cell in enumerate(row):
        label = _label(cell)
        if not label:
            continue
        name = mapped.get(label)
        if name is None and label not in mapped:
            name = next((f for f, names in SYNONYMS.items() if label in names and f not in mapping), None)
        if name and name not in columns:
            columns[name] = position
    return columns


def _rows(data: bytes, mapping: dict[str, str], limits: Limits):
    return open_rows(data, limits, lambda row: len(_header(row, mapping)))


def open_rows(data: bytes, limits: Limits, header_width, sheet: str | None = None):
    """(an XlsxSource to close or None, an iterator of (row number, cells)) of a CSV or XLSX file, or MapRefused.

    The encoding is detected (a file mixing two is refused); a CSV's delimiter is the one with which
    some line in the first HEADER_ROWS has the widest `header_width(cells)` (the most columns the
    caller recognises); `sheet` names an XLSX sheet other than the first visible one. The tracker
    import (engage.tracker.parsing) reads its files with it too.
    """
    if not data or not data.strip():
        raise MapRefused("the file is empty")
    try:
        if data[:4] == b"PK\x03\x04":
            source = holdings_parsing.XlsxSource(data, limits, sheet)
            return source, iter(source)
        if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
            raise MapRefused("old Excel (.xls) files are not supported; save it as .xlsx or CSV")
        if data[:2] not in (b"\xff\xfe", b"\xfe\xff") and b"\x00" in data[:4096]:
            raise MapRefused("this is not a CSV, XLSX or PDF file (it holds binary data: an image, a document?)")
        text, encoding = holdings_parsing.decode(data)
        if encoding == "cp1252":
            _refuse_mixed(data)
    except FileRefused as exc:
        raise MapRefused(str(exc).replace("not a CSV or XLSX file", "not a CSV, XLSX or PDF file")) from exc
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise MapRefused(f"line {line:,} holds a NUL character, which no text file has: the file is damaged or not "
                         f"a CSV; save it again as CSV (or XLSX)")
    head = list(islice(io.StringIO(text, newline=""), HEADER_ROWS))
    best, best_count = ",", 0
    for delimiter in holdings_parsing.DELIMITERS:
        try:
            count = max((header_width(r) for r in csv.reader(head, delimiter=delimiter)), default=0)
        except csv.Error:
            continue
        if count > best_count:
            best, best_count = delimiter, count
    return None, holdings_parsing.csv_rows(text, best, limits)


def _refuse_mixed(data: bytes) -> None:
    """A file read as Windows-1252 with a line that is UTF-8 text mixes encodings (lines pasted from two
    files): read either way some names come out garbled ("CafÃ©"), so it is refused with both lines."""
    utf8 = other = None
    for number, line in enumerate(data.split(b"\n"), start=1):
        if line.isascii():
            continue
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            other = other or number
        else:
            utf8 = utf8 or number
        if utf8 and other:
            raise MapRefused(f"the file mixes two encodings: line {utf8:,} is UTF-8 text, line {other:,} is not "
                             f"(Windows-1252?); save it again as UTF-8")


def parse(data: bytes, mapping: dict[str, str] | None = None, *, max_rows: int = MAX_ROWS,
          pdf_seconds: float | None = None) -> ParsedMap:
    """Parse a map; bad rows become errors (the caller refuses the file), MapRefused for the rest."""
    mapping = parse_mapping(mapping or {})
    if data and pdf.is_pdf(data):
        try:
            stitched = pdf.stitch(pdf.tables(data, max_rows, pdf_seconds), lambda row: _header(row, mapping), HEADER_ROWS)
        except pdf.PdfRefused as exc:
            raise MapRefused(str(exc)) from exc
        parsed = _parse_rows(iter(stitched.rows), mapping, max_rows, page_of=stitched.pages)
        for error in parsed.errors:  # a row number of the joined table says little; the page says where
            error.reason = f"{error.reason} [p. {stitched.pages.get(error.row, '?')}]"
        return parsed
    limits = Limits(max_rows=max_rows)
    source, rows = _rows(data, mapping, limits)
    with closing(source) if source is not None else _nothing():
        try:
            return _parse_rows(rows, mapping, max_rows)
        except FileRefused as exc:
            raise MapRefused(str(exc)) from exc


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *_):
        return False


def _parse_rows(rows, mapping: dict[str, str], max_rows: int, page_of: dict[int, int] | None = None) -> ParsedMap:
    """The map's rows after its header; `page_of` (a PDF's row -> page) makes each row's source its page."""
    header, header_row, columns = None, 0, {}
    for number, row in rows:
        columns = _header(row, mapping)
        if "name" in columns:
            header, header_row = row, number
            break
        if number >= HEADER_ROWS:
            break
    if header is None:
        raise MapRefused(f"no header row naming the counterparty (a column such as Supplier, Counterparty or Name) "
                         f"in the first {HEADER_ROWS} rows; give a column mapping such as --map name=Vendor")
    missing = [f"{f}={c}" for f, c in mapping.items() if f not in columns]
    if missing:
        raise MapRefused(f"mapped column(s) not found in the header (row {header_row}): {', '.join(missing)}")
    result = ParsedMap(columns={f: header[i] for f, i in columns.items()},
                       ignored=[c.strip() for i, c in enumerate(header) if c.strip() and i not in columns.values()])
    seen: dict[tuple[str, str], int] = {}
    count = 0
    for number, row in rows:
        if number > MAX_SHEET_ROWS:
            raise MapRefused(f"row {MAX_SHEET_ROWS + 1:,}: the sheet goes on past row {MAX_SHEET_ROWS:,} (empty rows "
                             f"included), more than a map of at most {max_rows:,} rows needs; delete the empty rows "
                             f"below the map (or export it to CSV) and import it again")
        if not any(row):
            continue
        count += 1
        if count > max_rows:
            raise MapRefused(f"the map has more than {max_rows:,} rows, the limit for one map (MAX_ROWS); split it "
                             f"or ask for the limit to be raised")

        def cell(name: str) -> str:
            position = columns.get(name)
            # a PDF's text is not cleaned on the way as a CSV's or XLSX's is: cleaned here for all
            return clean_cell(row[position]) if position is not None and position < len(row) else ""

        where, read = f"row {number}", cell
        if page_of is not None:
            where = f"p. {page_of[number]}"
            if "source_ref" not in mapping:  # the page, not a column that happens to be called Source
                read = _without_source(cell)
        item = _read_row(number, read, result, where)
        if item is None:
            continue
        earlier = seen.get(item.key)
        if earlier is not None:
            result.errors.append(RowError(number, result.columns["name"], item.name,
                                          f"this counterparty is also in row {earlier} as {item.kind.replace('_', '-')}; "
                                          f"a map lists each counterparty once per kind"))
            continue
        seen[item.key] = number
        result.rows.append(item)
    if not result.rows and not result.errors:
        raise MapRefused(f"the file has a header (row {header_row}) but no counterparties")
    return result


def _without_source(cell):
    return lambda name: "" if name == "source_ref" else cell(name)


def _read_row(number: int, cell, result: ParsedMap, where: str = "") -> MapRow | None:
    labels = result.columns
    errors_before = len(result.errors)

    def error(name: str, value: str, reason: str) -> None:
        result.errors.append(RowError(number, labels.get(name, ""), value, reason))

    name = cell("name")
    if not name:
        error("name", "", "no counterparty name")
    elif len(name) > 200:
        error("name", name[:60] + "…", f"a name is at most 200 characters (this one has {len(name):,})")
    item = MapRow(row=number, name=name[:200])
    item.aliases = [a.strip() for a in cell("aliases").replace(";", "|").split("|") if a.strip()]
    for alias in item.aliases:
        if len(alias) > MAX_CHARS["name"]:
            error("aliases", alias[:60] + "…", f"an alias is at most {MAX_CHARS['name']} characters (this one has "
                                               f"{len(alias):,})")
    kind = cell("kind")
    if kind:
        value = KIND_WORDS.get(_label(kind))
        if value is None:
            error("kind", kind, f"not a kind of relationship; use one of {', '.join(RelationshipKind.values())}")
        else:
            item.kind = value
    tier = cell("tier")
    if tier:
        text = tier.lower().removeprefix("tier").strip().rstrip("+").strip()
        try:
            value = int(float(text)) if text.replace(".", "", 1).isdigit() and float(text) == int(float(text)) else None
        except ValueError:
            value = None
        if value is None or value < 1:
            error("tier", tier, "a tier is a positive whole number (1 = direct supplier, 2, 3 or 3+)")
        else:
            item.tier = min(value, TOP_TIER)
    item.products = _within(cell("products"), "products", error)
    country = cell("country")
    if country:
        code = country_code(country)
        if code is None:
            error("country", country, "not a country (an ISO code such as CN, or a country's name)")
        item.country = code
    region = " ".join(cell("region").split())
    problem = regions.region_problem(region)
    if problem:
        error("region", region if len(region) <= 60 else region[:60] + "…", problem)
    else:
        item.region = region
        found = regions.subdivision(region, item.country)
        item.subdivision = found[0] if found else None
    isin = clean_identifier(cell("isin")).upper()
    if isin:
        problem = isin_problem(isin)
        if problem:
            error("isin", isin, problem)
        else:
            item.isin = compact_isin(isin)
    lei = clean_identifier(cell("lei")).upper().replace(" ", "")
    if lei:
        problem = lei_problem(lei)
        if problem:
            error("lei", lei, problem)
        else:
            item.lei = lei
    item.source_ref = _within(cell("source_ref"), "source_ref", error) or where or f"row {number}"
    return item if len(result.errors) == errors_before else None


def _within(text: str, name: str, error) -> str:
    """The cell, or "" with a row error when it is longer than its field takes: never cut (a region
    cut short could lose the place that flags it)."""
    limit = MAX_CHARS[name]
    if len(text) <= limit:
        return text
    error(name, text[:60] + "…", f"at most {limit:,} characters (this one has {len(text):,})")
    return ""


def country_code(text: str) -> str | None:
    """ISO 3166-1 alpha-2 code of a code or a country's name, or None if it is not a country."""
    import pycountry  # about 60 ms to import: only maps with a country column pay it

    try:
        return pycountry.countries.lookup(text.strip()).alpha_2
    except LookupError:
        return None
