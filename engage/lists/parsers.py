"""Read a list file in its publisher's layout into plain entries (nothing is written here).

One parser per layout; each returns `Parsed`: the entries of each list the file holds (a US
Consolidated Screening List file may hold several lists, a Norges Bank table two). A file is
refused whole (`ListError`, with the rows and columns at fault) when anything in it cannot be
read: nothing partial is ever loaded. `detect()` tells the layout from the content.

Layouts and the columns read are listed in the README ("Lists").
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from engage.errors import FieldError
from engage.formatting import format_date
from engage.holdings.parsing import ENCODING_HOW, FileRefused, RowError, clean_cell, decode, parse_date
from engage.identifiers import compact_isin, compact_lei, isin_problem, lei_problem
from engage.models import ACTIVE_STATUSES, RiskSource, normalize_name

FORMATS = ("csl-csv", "csl-json", "cbp-wro", "uflpa-html", "ftm", "nbim", "csv")
#: Most rows one file may hold (the whole CSL is about 25,000 entries).
MAX_ROWS = 200_000
MAX_ERRORS = 200


class ListError(FieldError):
    """A list file refused whole; `errors` holds the row-level report (nothing was loaded)."""

    def __init__(self, message: str, errors: list[RowError] | None = None, field: str = "file"):
        super().__init__(field, message)
        self.errors = errors or []


@dataclass
class Entry:
    """One entry as the publisher gives it (the fields of `ListedEntity`), and the row it came from."""

    row: int
    source: str
    name: str
    key: str = ""
    aliases: list[str] = field(default_factory=list)
    identifiers: dict[str, list[str]] = field(default_factory=dict)
    country: str | None = None
    address: str = ""
    section: str | None = None
    kind: str = ""
    status: str = "active"
    covers_subsidiaries: bool = False
    effective_date: dt.date | None = None
    citation: str = ""
    citation_url: str | None = None
    note: str = ""

    #: The fields stored and compared between versions (the diff names these).
    FIELDS = ("name", "aliases", "identifiers", "country", "address", "section", "kind", "status",
              "covers_subsidiaries", "effective_date", "citation", "citation_url", "note")

    def values(self) -> dict:
        return {f: getattr(self, f) for f in self.FIELDS}


@dataclass
class Parsed:
    format: str
    #: list name -> its entries, in file order.
    lists: dict[str, list[Entry]]
    #: The CSL `source` values loaded (empty for other layouts).
    sources: list[str] = field(default_factory=list)
    mapping: dict[str, str] = field(default_factory=dict)
    #: Rows of the file not loaded, and why ("rows of other CSL sources": 12).
    skipped: dict[str, int] = field(default_factory=dict)


# --- names ------------------------------------------------------------------------------------

_SUBSIDIARIES = re.compile(r"\b(?:and|including|incl\.?|with)\s+(?:all\s+)?(?:of\s+)?(?:its\s+)?subsidiaries\b",
                           re.IGNORECASE)
_ALIAS_MARK = re.compile(
    r"[\s,;]*\(?\s*\b(?:a[./]?k[./]?a|f[./]?k[./]?a|d[./]?b[./]?a|also\s+known\s+as|formerly\s+known\s+as|formerly|"
    r"previously\s+known\s+as|doing\s+business\s+as)\b\.?[\s,:]*",
    re.IGNORECASE)


def _tidy(text: str) -> str:
    text = " ".join(text.split()).strip(" ,;:")
    while text.endswith(")") and text.count(")") > text.count("("):
        text = text[:-1].rstrip(" ,;:")
    while text.startswith("(") and text.count("(") > text.count(")"):
        text = text[1:].lstrip(" ,;:")
    return text


def split_name(text: str) -> tuple[str, list[str], bool]:
    """(name, aliases, covers_subsidiaries) of a published name.

    "X (also known as Y; and Z)", "X a/k/a Y", "X f/k/a Y", "X, formerly Y": X is the name, Y and Z
    aliases. A name saying "... and its subsidiaries" reaches them; the name is kept as published.
    """
    text = " ".join((text or "").split())
    covers = bool(_SUBSIDIARIES.search(text))
    parts = _ALIAS_MARK.split(text)
    name = _tidy(parts[0])
    aliases = []
    for chunk in parts[1:]:
        for alias in re.split(r";|,\s+and\s+", chunk):
            alias = _tidy(re.sub(r"^\s*and\s+", "", alias))
            if alias and alias not in aliases and alias != name:
                aliases.append(alias)
    if not name:  # "a/k/a X" alone: the alias is the name
        name, aliases = (aliases[0], aliases[1:]) if aliases else (text, [])
    if covers:  # the company itself, without the words that reach its subsidiaries, is a name it goes by
        bare = _tidy(_SUBSIDIARIES.sub("", name).replace("()", ""))
        if bare and bare != name and bare not in aliases:
            aliases.insert(0, bare)
    return name, aliases, covers


def _add_aliases(entry: Entry, names) -> None:
    for value in names:
        value = " ".join(str(value or "").split())
        if not value:
            continue
        name, more, covers = split_name(value)
        entry.covers_subsidiaries = entry.covers_subsidiaries or covers
        for alias in (name, *more):
            if alias and alias != entry.name and alias not in entry.aliases:
                entry.aliases.append(alias[:300])


def _entry(row: int, source: str, published_name: str, **values) -> Entry:
    name, aliases, covers = split_name(published_name)
    entry = Entry(row=row, source=source, name=name[:300], aliases=[a[:300] for a in aliases],
                  covers_subsidiaries=covers, **values)
    return entry


# --- reading text and tables ------------------------------------------------------------------

#: What a file that is no text is, told by its first bytes.
_BINARY = ((b"%PDF", "a PDF document"), (b"PK\x03\x04", "a ZIP archive (an Excel workbook is one)"),
           (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Office file (.xls, .doc)"), (b"\x1f\x8b", "a gzip archive"))


def _text(data: bytes) -> str:
    """The file's text: UTF-8, UTF-16 with a byte-order mark, or GB18030 / Windows-1252 when the bytes
    leave no doubt (the holdings import's reading); a binary file or a NUL character is refused."""
    for magic, what in _BINARY:
        if data.startswith(magic):
            raise ListError(f"the file is {what}, not a list file; save the list as CSV (UTF-8), JSON or HTML")
    try:
        text, _ = decode(data)
    except FileRefused as exc:
        message = str(exc).replace(f"say which it is{ENCODING_HOW}, or ", "").replace(
            f" or say its encoding{ENCODING_HOW}", "")
        raise ListError(message) from exc
    nul = text.find("\x00")
    if nul >= 0:
        raise ListError(f"the file has a NUL character at line {text.count(chr(10), 0, nul) + 1}: it is not a text "
                        "file, or it was damaged; save the list again as CSV (UTF-8)")
    return text


def _key(header: str) -> str:
    return " ".join(clean_cell(header or "").lower().replace("_", " ").split())


class Table:
    """Rows of a header-and-rows table with its columns found by any of their accepted names."""

    def __init__(self, header: list[str], rows: list[tuple[int, list[str]]], columns: dict[str, tuple[str, ...]],
                 required: tuple[str, ...], what: str):
        self.header = [clean_cell(h) for h in header]
        keys = [_key(h) for h in header]
        self.index: dict[str, int] = {}
        for target, names in columns.items():
            for name in names:
                if name in keys:
                    self.index[target] = keys.index(name)
                    break
        for target, at in self.index.items():  # a column read twice: which one is meant cannot be told
            twice = [i + 1 for i, k in enumerate(keys) if k == keys[at]]
            if len(twice) > 1:
                raise ListError(f"the {what} has two columns called {self.header[at]!r} (columns "
                                f"{' and '.join(map(str, twice[:2]))}); rename or remove one")
        missing = [t for t in required if t not in self.index]
        if missing:
            wanted = "; ".join(f"{t}: one of {', '.join(repr(n) for n in columns[t])}" for t in missing)
            raise ListError(f"the {what} has no {', '.join(missing)} column (found {', '.join(map(repr, self.header))}; "
                            f"expected {wanted})")
        self.rows = rows

    def column(self, target: str) -> str:
        return self.header[self.index[target]] if target in self.index else target

    def __iter__(self):
        for number, cells in self.rows:
            yield number, lambda target, cells=cells: (
                clean_cell(cells[self.index[target]]) if target in self.index and self.index[target] < len(cells) else "")


def _csv_rows(data: bytes) -> tuple[list[str], list[tuple[int, list[str]]]]:
    text = _text(data)
    if not text.strip():
        raise ListError("the file is empty")
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=None), dialect)  # any line ending, old Macs' "\r" too
    try:
        rows = [(reader.line_num, row) for row in reader]
    except csv.Error as exc:
        raise ListError(f"the CSV cannot be read at line {reader.line_num}: {exc}") from exc
    rows = [(n, r) for n, r in rows if any(c.strip() for c in r)]
    if not rows:
        raise ListError("the file is empty")
    if len(rows) == 1:
        raise ListError("the file is empty: a header row and no entries")
    if len(rows) - 1 > MAX_ROWS:
        raise ListError(f"the file has {len(rows) - 1} entries; at most {MAX_ROWS} are read")
    return rows[0][1], rows[1:]


def _date(get, target: str, table: Table, number: int, errors: list, required: bool = False) -> dt.date | None:
    text = get(target)
    if not text:
        if required:
            errors.append(RowError(number, table.column(target), "", "a date is needed"))
        return None
    value = parse_date(text)
    if value is None:
        errors.append(RowError(number, table.column(target), text, "not a date (e.g. 2021-06-24)"))
    return value


def _country(text: str) -> str | None:
    text = (text or "").strip()
    if not text:
        return None
    if len(text) == 2 and text.isalpha():
        return text.upper()
    import pycountry  # about 60 ms to import: only files naming countries in words pay it

    try:
        return pycountry.countries.lookup(text).alpha_2
    except LookupError:
        return None


#: Characters no entry may hold: C0 controls but tab and line ends, DEL and the 8-bit CSI (a NUL
#: cannot be stored in PostgreSQL; an escape sequence rewrites the terminal the diff is printed on),
#: and the halves of a surrogate pair a JSON escape ("\\ud800") can leave. Other C1 characters are
#: let through: text decoded wrongly once (U+0092 for an apostrophe) is common in published files.
_UNSTORABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x9b\ud800-\udfff]")


def _unstorable(entry: Entry) -> RowError | None:
    for column, value in (("key", entry.key), *entry.values().items()):
        texts = value if isinstance(value, list) else [v for vs in value.values() for v in vs] \
            if isinstance(value, dict) else [value]
        for text in texts:
            found = _UNSTORABLE.search(text) if isinstance(text, str) else None
            if found:
                char = found.group()
                code = f"U+{ord(char):04X}"
                what = (f"a broken character ({code}, half of a surrogate pair)" if "\ud800" <= char <= "\udfff"
                        else f"a control character ({code})")
                return RowError(entry.row, column, text.encode("unicode_escape").decode()[:80], what)
    return None


def _finish(parsed: Parsed, errors: list[RowError]) -> Parsed:
    """Refuse the file on any row error; give each entry its key (unique in its list).

    The key is the publisher's number, else the normalised name; a name listed twice (two orders
    on one company) is told apart by its date.
    """
    for entries in parsed.lists.values():
        base = {}
        for entry in entries:
            bad = _unstorable(entry)
            if bad is not None:
                errors.append(bad)
            if not entry.name:
                errors.append(RowError(entry.row, "name", "", "a listed entity needs a name"))
            elif not entry.key:
                base[id(entry)] = normalize_name(entry.name) or entry.name.lower()
        counts: dict[str, int] = {}
        for key in base.values():
            counts[key] = counts.get(key, 0) + 1
        seen: dict[str, int] = {}
        for entry in entries:
            if not entry.name:
                continue
            key = entry.key
            if not key:
                key = base[id(entry)]
                if counts[key] > 1:
                    key = f"{key} {entry.effective_date.isoformat() if entry.effective_date else ''}".strip()
            key = key[:200]
            if key in seen:
                errors.append(RowError(entry.row, "name", entry.name, f"the same entry as row {seen[key]}"))
                continue
            entry.key = key
            seen[key] = entry.row
    if errors:
        errors.sort(key=lambda e: e.row)
        raise ListError(f"{len(errors)} problem(s) in the file; nothing was loaded", errors[:MAX_ERRORS])
    return parsed


# --- US Consolidated Screening List -----------------------------------------------------------

#: CSL `source` values (as in the file, or as given to --sources) and the list each one is.
CSL_LISTS = {
    "us_entity_list": ("entity list", "(el)", "el"),
    "us_meu_list": ("military end user", "(meu)", "meu"),
    "ofac_sdn": ("specially designated nationals", "(sdn)", "sdn"),
}
CSL_LABELS = {"us_entity_list": "Entity List", "us_meu_list": "MEU", "ofac_sdn": "SDN"}
CSL_COLUMNS = {
    "source": ("source",), "entity_number": ("entity number",), "name": ("name",), "alt_names": ("alt names",),
    "addresses": ("addresses",), "federal_register_notice": ("federal register notice",),
    "start_date": ("start date",), "source_list_url": ("source list url",),
    "source_information_url": ("source information url",), "ids": ("ids",), "remarks": ("remarks",),
    "type": ("type",), "programs": ("programs",),
}


def csl_list(source_text: str) -> str | None:
    """The list a CSL `source` value (or a --sources word) names, or None."""
    text = " ".join((source_text or "").lower().split())
    for name, marks in CSL_LISTS.items():
        if text in marks or any(mark in text for mark in marks[:2]) or text == name:
            return name
    return None


def chosen_lists(sources: list[str] | None) -> set[str] | None:
    if not sources:
        return None
    chosen, unknown = set(), []
    for word in sources:
        name = csl_list(word)
        if name is None:
            unknown.append(word)
        else:
            chosen.add(name)
    if unknown:
        raise ListError(f"unknown CSL source(s) {', '.join(map(repr, unknown))}; choose among "
                        f"{', '.join(CSL_LABELS.values())} (the UFLPA Entity List is not part of the CSL)",
                        field="sources")
    return chosen


def _csl_records_csv(data: bytes) -> list[tuple[int, dict]]:
    header, rows = _csv_rows(data)
    table = Table(header, rows, CSL_COLUMNS, ("source", "name"), "Consolidated Screening List file")
    records = []
    for number, get in table:
        record = {target: get(target) for target in CSL_COLUMNS}
        record["alt_names"] = [a for a in record["alt_names"].split(";")]
        record["addresses"] = [a.strip() for a in record["addresses"].split(";") if a.strip()]
        ids = []
        for item in record["ids"].split(";"):
            parts = [p.strip() for p in item.split(",")]
            if len(parts) >= 2 and parts[0] and parts[1]:
                ids.append({"type": parts[0], "number": parts[1]})
        record["ids"] = ids
        records.append((number, record))
    return records


def _csl_records_json(data: bytes) -> list[tuple[int, dict]]:
    text = _text(data)
    if not text.strip():
        raise ListError("the file is empty")
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ListError(f"the file is not JSON ({exc})") from exc
    except RecursionError as exc:  # [[[[...]]]]: no list export nests like that
        raise ListError("the file's JSON is nested too deeply to be a list export") from exc
    results = document.get("results") if isinstance(document, dict) else document
    if not isinstance(results, list):
        raise ListError('a CSL JSON file holds {"results": [...]} or a list of entries')
    if not results:
        raise ListError("the file is empty: no results")
    if len(results) > MAX_ROWS:
        raise ListError(f"the file has {len(results)} entries; at most {MAX_ROWS} are read")
    records = []
    errors: list[RowError] = []
    for number, item in enumerate(results, start=1):
        if not isinstance(item, dict):
            raise ListError(f"entry {number} is not an object", [RowError(number, "", str(item)[:80], "not an object")])
        record = {k: item.get(k) for k in CSL_COLUMNS}
        for k in ("source", "entity_number", "name", "federal_register_notice", "start_date", "source_list_url",
                  "source_information_url", "remarks", "type"):
            value = record.get(k)
            record[k] = clean_cell(str(value)) if value is not None and not isinstance(value, (list, dict)) else ""
        # A list of texts (a text alone is one, or several split by ";"); anything else is not what a CSL export holds.
        alt, addresses, ids = (item.get(k) or [] for k in ("alt_names", "addresses", "ids"))
        for column, value in (("alt_names", alt), ("addresses", addresses), ("ids", ids)):
            if not isinstance(value, (list, str)) or (column == "ids" and isinstance(value, str)):
                errors.append(RowError(number, column, str(value)[:80],
                                       "a list of objects" if column == "ids" else "a list of texts"))
        if errors and errors[-1].row == number:
            continue
        record["alt_names"] = ([str(a) for a in alt if isinstance(a, (str, int, float))] if isinstance(alt, list)
                               else alt.split(";"))
        record["addresses"] = []
        for address in [addresses] if isinstance(addresses, str) else addresses:
            if isinstance(address, dict):
                parts = [address.get(k) for k in ("address", "city", "state", "postal_code", "country")]
                record["addresses"].append(", ".join(str(p) for p in parts if p and not isinstance(p, (list, dict))))
            elif address and isinstance(address, (str, int, float)):
                record["addresses"].append(str(address))
        record["ids"] = [i for i in ids if isinstance(i, dict)]
        records.append((number, record))
    if errors:
        raise ListError(f"{len(errors)} problem(s) in the file; nothing was loaded", errors[:MAX_ERRORS])
    return records


_ID_TYPES = {"lei": "lei", "legal entity number": "lei", "isin": "isin", "swift/bic": "bic"}


def _csl(records: list[tuple[int, dict]], fmt: str, sources: list[str] | None) -> Parsed:
    chosen = chosen_lists(sources)
    parsed = Parsed(fmt, {})
    errors: list[RowError] = []
    found_sources: dict[str, str] = {}
    other: set[str] = set()
    for number, record in records:
        source_text = record["source"]
        list_name = csl_list(source_text)
        if list_name is None:
            other.add(source_text or "(no source)")
            parsed.skipped["rows of other CSL sources"] = parsed.skipped.get("rows of other CSL sources", 0) + 1
            continue
        found_sources.setdefault(list_name, source_text)
        if chosen is not None and list_name not in chosen:
            parsed.skipped["rows of CSL sources not chosen"] = parsed.skipped.get("rows of CSL sources not chosen", 0) + 1
            continue
        address = "; ".join(record["addresses"])
        country = None
        if record["addresses"]:
            tail = record["addresses"][0].rsplit(",", 1)[-1].strip()
            country = tail.upper() if len(tail) == 2 and tail.isalpha() else None
        date_text = record["start_date"]
        effective = parse_date(date_text) if date_text else None
        if date_text and effective is None:
            errors.append(RowError(number, "start_date", date_text, "not a date (e.g. 2019-10-09)"))
        identifiers: dict[str, list[str]] = {}
        for item in record["ids"]:
            kind = _ID_TYPES.get(str(item.get("type") or "").strip().lower())
            number_text = str(item.get("number") or "").strip()
            if kind and number_text:
                identifiers.setdefault(kind, []).append(number_text[:40])
        entry = _entry(number, list_name, record["name"], key=record["entity_number"][:200], country=country,
                       address=address[:2000], kind=source_text[:80], effective_date=effective,
                       identifiers=identifiers,
                       citation=(record["federal_register_notice"] or source_text)[:500],
                       citation_url=(record["source_information_url"] or record["source_list_url"] or "")[:500] or None,
                       note=record["remarks"][:2000])
        _add_aliases(entry, record["alt_names"])
        parsed.lists.setdefault(list_name, []).append(entry)
    if not found_sources:
        raise ListError("the file's source column names no list Engage loads (found "
                        f"{', '.join(sorted(map(repr, other))[:8]) or 'none'}; known: {', '.join(CSL_LABELS.values())})",
                        field="sources")
    if chosen is not None:
        absent = [CSL_LABELS[n] for n in sorted(chosen) if n not in found_sources]
        if absent:
            raise ListError(f"the file has no entries of {', '.join(absent)}; its known sources are "
                            f"{', '.join(found_sources.values())}", field="sources")
    parsed.sources = [found_sources[n] for n in parsed.lists]
    return _finish(parsed, errors)


# --- CBP Withhold Release Orders and Findings -------------------------------------------------

CBP_COLUMNS = {
    "name": ("entity", "entities", "entity name", "manufacturer", "company", "name"),
    "country": ("country",),
    "merchandise": ("merchandise", "industry", "product", "products", "merchandise/industry"),
    "status": ("status",),
    "kind": ("type", "wro or finding", "wro/finding", "action", "kind"),
    "date": ("effective date", "date", "date issued", "issued"),
    "remarks": ("remarks", "notes", "note", "status notes"),
}
CBP_STATUSES = ("active", "partially active", "modified", "revoked", "inactive")


def parse_cbp_wro(data: bytes) -> Parsed:
    header, rows = _csv_rows(data)
    table = Table(header, rows, CBP_COLUMNS, ("name", "status", "date"), "CBP Withhold Release Orders file")
    parsed = Parsed("cbp-wro", {"cbp_wro": []})
    errors: list[RowError] = []
    for number, get in table:
        status = " ".join(get("status").lower().split())
        if status not in CBP_STATUSES:
            errors.append(RowError(number, table.column("status"), get("status"),
                                   f"not a CBP status ({', '.join(s.title() for s in CBP_STATUSES)})"))
        kind_text = get("kind")
        kind = "Finding" if "finding" in kind_text.lower() else "WRO" if (not kind_text or "wro" in kind_text.lower()
                                                                          or "withhold" in kind_text.lower()) else None
        if kind is None:
            errors.append(RowError(number, table.column("kind"), kind_text, "neither WRO nor Finding"))
        effective = _date(get, "date", table, number, errors, required=True)
        country_text = get("country")
        country = _country(country_text)
        if country_text and country is None:
            errors.append(RowError(number, table.column("country"), country_text, "not a country"))
        merchandise, remarks = get("merchandise"), get("remarks")
        citation = f"CBP {kind or 'WRO'}" + (f" on {merchandise}" if merchandise else "") + \
            (f", {format_date(effective)}" if effective else "")
        note = "; ".join(filter(None, [f"Merchandise: {merchandise}" if merchandise else "", remarks]))
        parsed.lists["cbp_wro"].append(_entry(number, "cbp_wro", get("name"), country=country, kind=kind or "",
                                              status=status, effective_date=effective, citation=citation[:500],
                                              note=note[:2000]))
    return _finish(parsed, errors)


# --- DHS UFLPA Entity List page ---------------------------------------------------------------

_SECTION = re.compile(r"2\s*\(\s*d\s*\)\s*\(\s*2\s*\)\s*\(\s*B\s*\)\s*\(\s*(i{1,3}|iv|v)\s*\)", re.IGNORECASE)
UFLPA_COLUMNS = {
    "name": ("entity", "entity name", "entity name and aliases", "name", "entities"),
    "date": ("effective date", "date", "date added"),
    "section": ("section", "statutory section", "list"),
    "notice": ("federal register notice", "federal register", "notice", "citation"),
}


class _Tables(HTMLParser):
    """Every <table> of a page: its rows of cell texts, with the text last seen before it (its heading)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables: list[tuple[str, list[list[str]]]] = []
        self._depth = 0
        self._rows: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self._before: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._depth += 1
            if self._depth == 1:
                self._rows = []
        elif self._depth == 1 and tag == "tr":
            self._rows.append([])
        elif self._depth == 1 and tag in ("td", "th"):
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._depth == 1 and self._cell is not None:
            if self._rows is not None:
                if not self._rows:
                    self._rows.append([])
                self._rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table" and self._depth:
            self._depth -= 1
            if self._depth == 0:
                heading = " ".join(" ".join(self._before).split())[-400:]
                self.tables.append((heading, [r for r in self._rows or [] if any(c for c in r)]))
                self._rows, self._before = None, []

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        elif self._depth == 0 and data.strip():
            self._before.append(data)
            self._before = self._before[-20:]


def _html_tables(data: bytes) -> list[tuple[str, list[list[str]]]]:
    text = _text(data)
    if not text.strip():
        raise ListError("the file is empty")
    reader = _Tables()
    reader.feed(text)
    reader.close()
    return reader.tables


def parse_uflpa_html(data: bytes) -> Parsed:
    tables = _html_tables(data)
    parsed = Parsed("uflpa-html", {"uflpa_entity_list": []})
    errors: list[RowError] = []
    number = 0
    for heading, rows in tables:
        if not rows:
            continue
        header, body = rows[0], rows[1:]
        keys = [_key(h) for h in header]
        if not any(k in keys for k in UFLPA_COLUMNS["name"]):
            continue  # a layout table of the page, not a list
        start = number
        table = Table(header, [(start + i + 1, r) for i, r in enumerate(body)], UFLPA_COLUMNS, ("name", "date"),
                      "UFLPA Entity List table")
        heading_section = _SECTION.search(heading)
        for number, get in table:
            found = _SECTION.search(get("section")) or heading_section
            if found is None:
                errors.append(RowError(number, table.column("section"), get("section"),
                                       "no statutory section (neither a Section column nor a heading naming "
                                       "section 2(d)(2)(B)(i)-(v) before the table)"))
            section = f"2(d)(2)(B)({found.group(1).lower()})" if found else None
            effective = _date(get, "date", table, number, errors, required=True)
            notice = get("notice")
            parsed.lists["uflpa_entity_list"].append(_entry(
                number, "uflpa_entity_list", get("name"), section=section, effective_date=effective, country="CN",
                kind=f"UFLPA section {section}" if section else "UFLPA",
                citation=(notice or f"UFLPA Entity List, section {section}")[:500],
                citation_url="https://www.dhs.gov/uflpa-entity-list"))
    if not parsed.lists["uflpa_entity_list"] and not errors:
        raise ListError("the page has no table with an Entity column (expected the UFLPA Entity List tables: "
                        "entity, effective date, under a heading naming the statutory section)")
    return _finish(parsed, errors)


# --- OpenSanctions FollowTheMoney JSON lines --------------------------------------------------

_FTM_IDS = {"leiCode": "lei", "isinCode": "isin", "uscCode": "usc", "registrationNumber": "registration",
            "ogrnCode": "ogrn", "innCode": "inn", "dunsCode": "duns"}


def parse_ftm(data: bytes, list_name: str) -> Parsed:
    limit = csv.field_size_limit()
    try:
        # imported on first use (it takes a while); importing it raises the csv module's field limit for everyone
        from followthemoney import model
        from followthemoney.exc import FollowTheMoneyException
    finally:
        csv.field_size_limit(limit)  # the holdings reader relies on the default to catch an unclosed quote

    text = _text(data)
    if not text.strip():
        raise ListError("the file is empty")
    errors: list[RowError] = []
    proxies = []
    lines = text.split("\n")  # not splitlines(): JSON strings may hold U+2028, U+2029, \x1c...
    count = sum(1 for line in lines if line.strip())
    if count > MAX_ROWS:
        raise ListError(f"the file has {count} entities; at most {MAX_ROWS} are read")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            proxies.append((number, model.get_proxy(json.loads(line), cleaned=False)))
        except (ValueError, TypeError, AttributeError, KeyError, FollowTheMoneyException) as exc:
            errors.append(RowError(number, "", line[:60], f"not a FollowTheMoney entity ({str(exc)[:120]})"))
        except RecursionError:
            errors.append(RowError(number, "", line[:60], "not a FollowTheMoney entity (JSON nested too deeply)"))
    if errors:
        raise ListError(f"{len(errors)} line(s) are not FollowTheMoney entities; nothing was loaded", errors[:MAX_ERRORS])
    sanctions: dict[str, list] = {}
    for _, proxy in proxies:
        if proxy.schema.is_a("Sanction"):
            for entity_id in proxy.get("entity"):
                sanctions.setdefault(entity_id, []).append(proxy)
    parsed = Parsed("ftm", {list_name: []})
    for number, proxy in proxies:
        if not proxy.schema.is_a("LegalEntity"):
            if not proxy.schema.is_a("Sanction"):
                parsed.skipped[f"{proxy.schema.name} entities"] = parsed.skipped.get(f"{proxy.schema.name} entities", 0) + 1
            continue
        names = proxy.get("name")
        if not names:
            errors.append(RowError(number, "name", proxy.id or "", "the entity has no name"))
            continue
        entry = _entry(number, list_name, names[0], key=(proxy.id or "")[:200])
        _add_aliases(entry, names[1:] + proxy.get("alias") + proxy.get("previousName") + proxy.get("weakAlias"))
        for prop, kind in _FTM_IDS.items():
            if proxy.schema.get(prop) is not None and proxy.get(prop):
                entry.identifiers[kind] = [v[:40] for v in proxy.get(prop)]
        countries = proxy.get("country") or proxy.get("jurisdiction")
        entry.country = countries[0].upper()[:2] if countries and len(countries[0]) == 2 else None
        entry.address = "; ".join(proxy.get("address"))[:2000]
        entry.note = "; ".join(proxy.get("notes"))[:2000]
        urls = proxy.get("sourceUrl")
        dates, sections, citations = [], [], []
        for sanction in sanctions.get(proxy.id, []):
            dates += sanction.get("listingDate") + sanction.get("startDate")
            for text_value in sanction.get("provisions") + sanction.get("program") + sanction.get("reason"):
                found = _SECTION.search(text_value)
                if found:
                    sections.append(f"2(d)(2)(B)({found.group(1).lower()})")
            citations += sanction.get("program") + sanction.get("authority")
            urls = urls or sanction.get("sourceUrl")
            if any(s.lower() in ("ended", "revoked", "delisted", "inactive") for s in sanction.get("status")):
                entry.status = "revoked"
        dates += proxy.get("createdAt")
        for value in dates:
            day = parse_date(value[:10])
            if day:
                entry.effective_date = day
                break
        entry.section = sections[0] if sections else None
        entry.kind = proxy.schema.name
        entry.citation = (citations[0] if citations else f"OpenSanctions {proxy.schema.name} {proxy.id}")[:500]
        entry.citation_url = urls[0][:500] if urls else None
        parsed.lists[list_name].append(entry)
    if not parsed.lists[list_name] and not errors:
        raise ListError("the file holds no company, organisation or person (FollowTheMoney LegalEntity) to load")
    return _finish(parsed, errors)


# --- Norges Bank Investment Management decisions ----------------------------------------------

NBIM_COLUMNS = {
    "name": ("company", "company name", "name"),
    "decision": ("decision", "type", "category of decision", "observation/exclusion"),
    "criterion": ("criterion", "criteria", "category", "reason", "ground"),
    "date": ("date", "decision date", "published", "publish date", "date of decision"),
}


def parse_nbim(data: bytes) -> Parsed:
    if _looks_like_html(data):
        tables = [rows for _, rows in _html_tables(data)
                  if rows and any(_key(h) in NBIM_COLUMNS["name"] for h in rows[0])]
        if not tables:
            raise ListError("the page has no table with a Company column (expected Norges Bank's decisions table: "
                            "company, decision, criterion, date)")
        readers, number = [], 0
        for rows in tables:  # each table by its own header: their columns need not come in the same order
            readers.append(Table(rows[0], [(number + i + 1, r) for i, r in enumerate(rows[1:])], NBIM_COLUMNS,
                                 ("name", "decision"), "Norges Bank decisions table"))
            number += len(rows) - 1
    else:
        header, rows = _csv_rows(data)
        readers = [Table(header, rows, NBIM_COLUMNS, ("name", "decision"), "Norges Bank decisions table")]
    parsed = Parsed("nbim", {"gpfg_exclusion": [], "gpfg_observation": []})
    errors: list[RowError] = []
    for table, (number, get) in ((table, row) for table in readers for row in table):
        decision = get("decision").lower()
        list_name = ("gpfg_observation" if "observ" in decision else "gpfg_exclusion" if "exclu" in decision else None)
        if list_name is None:
            errors.append(RowError(number, table.column("decision"), get("decision"),
                                   "neither an exclusion nor an observation"))
            continue
        ended = any(word in decision for word in ("revoke", "revocation", "ended", "end of", "lifted"))
        effective = _date(get, "date", table, number, errors)
        criterion = get("criterion")
        parsed.lists[list_name].append(_entry(
            number, list_name, get("name"), kind=get("decision")[:80], status="revoked" if ended else "active",
            effective_date=effective, note=criterion[:2000],
            citation=(f"Norges Bank decision: {get('decision')}" + (f" ({criterion})" if criterion else "")
                      + (f", {format_date(effective)}" if effective else ""))[:500],
            citation_url="https://www.nbim.no/en/responsible-investment/ethical-exclusions/exclusion-of-companies/"))
    parsed.lists = {k: v for k, v in parsed.lists.items() if v}
    if not parsed.lists and not errors:
        raise ListError("the table has no decisions")
    return _finish(parsed, errors)


# --- any CSV with a column mapping ------------------------------------------------------------

MAPPING_TARGETS = ("name", "aliases", "date", "country", "key", "lei", "isin", "address", "section", "kind", "status",
                   "citation", "citation_url", "note")


#: A team list's statuses: the active ones keep a flag standing, the others end it.
TEAM_STATUSES = (*ACTIVE_STATUSES, "revoked", "inactive", "ended")


def parse_mapping(text: str | dict | None) -> dict[str, str]:
    """`name=Company,aliases=Other names,date=Added` -> {"name": "Company", ...}; unknown targets refused."""
    if isinstance(text, dict):
        pairs = list(text.items())
    else:
        pairs = []
        for part in (text or "").split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise ListError(f"mapping part {part.strip()!r} is not target=Column", field="mapping")
            target, column = part.split("=", 1)
            pairs.append((target, column))
    mapping = {}
    for target, column in pairs:
        target, column = target.strip().lower(), column.strip()
        if target not in MAPPING_TARGETS:
            raise ListError(f"unknown mapping target {target!r}; targets are {', '.join(MAPPING_TARGETS)}",
                            field="mapping")
        if not column:
            raise ListError(f"mapping target {target!r} names no column", field="mapping")
        if target in mapping and mapping[target] != column:
            raise ListError(f"mapping target {target!r} is given twice ({mapping[target]}, {column})", field="mapping")
        mapping[target] = column
    return mapping


def parse_team_csv(data: bytes, list_name: str, mapping: dict[str, str]) -> Parsed:
    header, rows = _csv_rows(data)
    keys = [_key(h) for h in header]
    mapping = dict(mapping)
    if "name" not in mapping:
        if "name" in keys:
            mapping["name"] = header[keys.index("name")]
        else:
            raise ListError(f"the file has no 'name' column and the mapping names none (found "
                            f"{', '.join(map(repr, header))}); give e.g. --mapping name=Company", field="mapping")
    missing = [f"{t}={c}" for t, c in mapping.items() if _key(c) not in keys]
    if missing:
        raise ListError(f"the mapping names column(s) the file does not have: {', '.join(missing)} (found "
                        f"{', '.join(map(repr, header))})", field="mapping")
    table = Table(header, rows, {t: (_key(c),) for t, c in mapping.items()}, ("name",), "file")
    parsed = Parsed("csv", {list_name: []}, mapping=mapping)
    errors: list[RowError] = []
    for number, get in table:
        status = " ".join(get("status").lower().split()) or "active"
        if status not in TEAM_STATUSES:
            errors.append(RowError(number, table.column("status"), get("status"),
                                   f"not a status ({', '.join(s.title() for s in TEAM_STATUSES)})"))
        country_text = get("country")
        country = _country(country_text)
        if country_text and country is None:
            errors.append(RowError(number, table.column("country"), country_text, "not a country"))
        identifiers = {}
        for kind, problem, compact in (("lei", lei_problem, compact_lei), ("isin", isin_problem, compact_isin)):
            values = [v.strip() for v in get(kind).split(";") if v.strip()]
            for value in values:
                if problem(value):
                    errors.append(RowError(number, table.column(kind), "", problem(value)))
            if values:
                identifiers[kind] = [compact(v).upper() for v in values]
        entry = _entry(number, "team_list", get("name"), key=get("key")[:200], country=country,
                       address=get("address")[:2000], section=get("section")[:40] or None, kind=get("kind")[:80],
                       status=status[:40], effective_date=_date(get, "date", table, number, errors),
                       identifiers=identifiers, citation=(get("citation") or f"{list_name} (team list)")[:500],
                       citation_url=get("citation_url")[:500] or None, note=get("note")[:2000])
        _add_aliases(entry, get("aliases").split(";"))
        parsed.lists[list_name].append(entry)
    return _finish(parsed, errors)


# --- detection and the one entry point ---------------------------------------------------------

def _looks_like_html(data: bytes) -> bool:
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<!doctype html", b"<html", b"<table", b"<head", b"<body", b"<div", b"<meta", b"<!--"))


def detect(data: bytes) -> str:
    """The layout of a list file, told from its content; ListError when it cannot be told."""
    if not data.strip(b"\xef\xbb\xbf \t\r\n"):
        raise ListError("the file is empty")
    if _looks_like_html(data):
        text = data[:2_000_000].decode("utf-8", "replace").lower()
        if "uflpa" in text or "forced labor prevention" in text or _SECTION.search(text):
            return "uflpa-html"
        if "norges bank" in text or "nbim" in text or "observation" in text or "exclusion" in text:
            return "nbim"
        raise ListError("an HTML page, but neither the UFLPA Entity List nor Norges Bank's decisions; give --format",
                        field="format")
    stripped = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped[:1] in (b"{", b"["):
        first = stripped.split(b"\n", 1)[0].strip()
        try:
            line = json.loads(first)
        except ValueError:
            line = None
        except RecursionError as exc:
            raise ListError("the file's JSON is nested too deeply to be a list export") from exc
        if isinstance(line, dict) and "schema" in line and "properties" in line:
            return "ftm"
        return "csl-json"
    header, _ = _csv_rows(data)
    keys = {_key(h) for h in header}
    if {"source", "name"} <= keys and ({"entity number", "alt names", "federal register notice", "start date"} & keys):
        return "csl-csv"
    if keys & {"company", "company name"} and keys & set(NBIM_COLUMNS["decision"]):
        return "nbim"
    if "status" in keys and keys & set(CBP_COLUMNS["name"]) and keys & {"merchandise", "industry", "wro or finding",
                                                                         "wro/finding"}:
        return "cbp-wro"
    raise ListError(f"the format cannot be told from the columns ({', '.join(sorted(keys))[:300]}); give --format "
                    f"({', '.join(FORMATS)}), and for a team's own CSV a list name and --mapping", field="format")


#: The list a single-list layout loads into.
FORMAT_LISTS = {"cbp-wro": "cbp_wro", "uflpa-html": "uflpa_entity_list"}


def parse(data: bytes, format: str | None = None, *, list_name: str | None = None, sources: list[str] | None = None,
          mapping: dict[str, str] | None = None) -> Parsed:
    """Read `data` in `format` (told from the content when None); ListError on anything wrong."""
    if not data or not data.strip(b"\xef\xbb\xbf \t\r\n"):
        raise ListError("the file is empty")
    data = _text(data).encode("utf-8")  # each layout reads UTF-8 (a UTF-16 or GB18030 file is read the same)
    if format is None and mapping:
        format = "csv"  # a column mapping: a team's CSV
    if format is None:
        try:
            format = detect(data)
        except ListError as exc:
            if exc.field != "format" or not list_name or list_name in RiskSource.values():
                raise
            format = "csv"  # a layout of no publisher, and a list name of the team's own: a team's CSV
    if format not in FORMATS:
        raise ListError(f"unknown format {format!r}; formats are {', '.join(FORMATS)}", field="format")
    if sources and format not in ("csl-csv", "csl-json"):
        raise ListError("sources choose lists of a Consolidated Screening List file only", field="sources")
    if mapping and format != "csv":
        raise ListError("a column mapping is for a team's own CSV (--format csv) only", field="mapping")
    if list_name and format in ("csl-csv", "csl-json", "nbim"):
        raise ListError(f"a {format} file names its lists itself (choose CSL lists with sources); give no list name",
                        field="list_name")
    if list_name and format in FORMAT_LISTS and list_name != FORMAT_LISTS[format]:
        raise ListError(f"a {format} file is the {RiskSource(FORMAT_LISTS[format]).label}; give no other list name",
                        field="list_name")
    if format == "csl-csv":
        return _csl(_csl_records_csv(data), format, sources)
    if format == "csl-json":
        return _csl(_csl_records_json(data), format, sources)
    if format == "cbp-wro":
        return parse_cbp_wro(data)
    if format == "uflpa-html":
        return parse_uflpa_html(data)
    if format == "nbim":
        return parse_nbim(data)
    if format == "ftm":
        name = list_name or "uflpa_entity_list"
        published = [s.value for s in RiskSource.official()]  # not an analyst note, a sector signal or a team's list
        if name not in published:
            raise ListError(f"an OpenSanctions file loads into a published list ({', '.join(published)}), "
                            f"not {name!r}", field="list_name")
        return parse_ftm(data, name)
    name = (list_name or "").strip()
    if not name:
        raise ListError("a team's own CSV needs a list name (--list)", field="list_name")
    if name in RiskSource.values() and name != "team_list":
        raise ListError(f"{name!r} is a published list; a team's own list takes another name", field="list_name")
    if len(name) > 80 or not re.fullmatch(r"[\w .&()'-]+", name):
        raise ListError("a list name has at most 80 letters, digits, spaces and . & ( ) ' -", field="list_name")
    return parse_team_csv(data, name, parse_mapping(mapping or {}))
