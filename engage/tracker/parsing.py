"""Reading a team's own engagement tracker (CSV or XLSX) into rows, without writing anything.

The file is opened by the value-chain reader (engage.valuechain.parsing.open_rows, itself on the
holdings reader's machinery): the same encodings, XLSX limits and cleaning of cells. On top of it a
tracker needs what spreadsheets kept by hand have:

- merged cells: a company merged down over its rows is read on every row it covers; a row merged
  across the sheet ("Wave 2 - 2024") is a heading and skipped;
- blank rows anywhere, and a title or notes above the header;
- dates as Excel dates, Excel serial numbers (45327), ISO text, "2 Feb 2024" and "03/02/2024" (day
  first or month first: decided by the file's own unambiguous dates, else by the `day_first` choice).

The header is the first row (within HEADER_ROWS) naming a company column. Columns are recognised by
a mapping `field=Column`, by the team's remembered headers, or by the names in SYNONYMS. The team's
words for a status or an escalation are translated by `values` (the mapping step); a word nobody
mapped yet is reported in `unmapped`, not guessed.
"""

from __future__ import annotations

import datetime as dt
import re
from contextlib import closing
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from openpyxl.utils.cell import get_column_letter, range_boundaries

from engage.holdings.parsing import MISSING, FileRefused, Limits, NumberCell, RowError, clean_cell, clean_identifier
from engage.identifiers import compact_isin, isin_problem
from engage.formatting import format_date
from engage.models import Escalation, Outcome, Stage
from engage.validators import DATE_MIN
from engage.valuechain.parsing import MapRefused, open_rows

#: A tracker with more rows than this is refused (a team's tracker has hundreds).
MAX_ROWS = 5_000
#: Rows a sheet may run to, empty ones included.
MAX_SHEET_ROWS = 50_000
#: Rows above the header that may hold a title or notes.
HEADER_ROWS = 20
#: field -> header names (lower case) that mean it.
SYNONYMS = {
    "key": ["id", "ref", "ref.", "reference", "tracker id", "row id", "#", "no", "no.", "number"],
    "company": ["company", "company name", "issuer", "issuer name", "name", "investee", "holding", "security"],
    "isin": ["isin", "isin code"],
    "ticker": ["ticker", "symbol", "bloomberg ticker", "ticker symbol"],
    "campaign": ["campaign", "programme", "program", "theme", "engagement theme", "project"],
    "owner": ["owner", "analyst", "lead", "lead analyst", "engagement lead", "responsible", "assigned to"],
    "status": ["status", "stage", "engagement status", "current status"],
    "escalation": ["escalation", "escalation level", "escalation status"],
    "opened_on": ["opened", "opened on", "start date", "date added", "added", "date opened", "start"],
    "letter_on": ["letter sent", "initial letter", "first letter", "letter date", "date of letter",
                  "1st letter", "letter 1", "initial letter sent"],
    "follow_up_on": ["follow-up", "follow up", "follow-up letter", "follow up letter", "2nd letter", "second letter",
                     "letter 2", "follow-up sent", "reminder sent"],
    "reply_on": ["reply", "reply date", "reply received", "response", "response date", "response received",
                 "date of reply", "company reply", "answered"],
    "meeting_on": ["meeting", "meeting date", "call", "call date", "dialogue"],
    "status_on": ["status date", "last updated", "updated", "last update", "as of", "status as of"],
    "closed_on": ["closed", "closed on", "date closed", "end date", "closing date"],
    "notes": ["notes", "note", "comments", "comment", "remarks", "summary", "latest"],
    "score": ["score", "rating", "assessment score", "total score"],
}
FIELDS = tuple(SYNONYMS)
#: Fields holding a date, in the order a tracker's history happens.
DATE_FIELDS = ("opened_on", "letter_on", "follow_up_on", "reply_on", "meeting_on", "status_on", "closed_on")
#: Fields naming the company (a row needs one of them).
COMPANY_FIELDS = ("company", "isin", "ticker")
#: What a value mapping may map to: stages, "closed:<outcome>", escalation levels.
STATUS_TARGETS = [s.value for s in Stage if s != Stage.CLOSED] + [f"closed:{o.value}" for o in Outcome]
ESCALATION_TARGETS = Escalation.values()
#: A column mapped to this is not read.
IGNORE = "ignore"
#: Characters a cell may have, by field (the columns' sizes); longer is a row error, never cut.
MAX_CHARS = {"key": 200, "company": 200, "ticker": 20, "campaign": 200, "owner": 254, "status": 200,
             "escalation": 200, "notes": 20_000}
#: Excel's day 0 (serials count from here, with Lotus's 29 Feb 1900 already counted).
EXCEL_EPOCH = dt.date(1899, 12, 30)
#: Serial numbers read as dates: 1990-01-01 to 2100-12-31.
SERIALS = range(32874, 73051)
#: Cells that mean "no date" in a date column.
NO_DATE = MISSING | {"tbc", "tbd", "pending", "none", "no", "not yet", "no reply", "n.a.", "?"}
_TEXT_FORMATS = ("%Y-%m-%d", "%d %b %Y", "%d %B %Y", "%b %d %Y", "%B %d %Y", "%d-%b-%Y", "%d-%B-%Y", "%d-%b-%y",
                 "%d %b %y", "%Y/%m/%d")
_NUMERIC = re.compile(r"^(\d{1,2})[/.](\d{1,2})[/.](\d{2}|\d{4})$")


def label(text: str) -> str:
    """A header or one of the team's words as it is compared: lower case, single spaces, plain dashes."""
    text = clean_identifier(text or "").replace("\u2014", "-").replace("\u2013", "-")
    return " ".join(text.lower().split())


def status_words() -> dict[str, str]:
    """The words every team uses for a stage or outcome: Engage's own codes and labels."""
    words = {}
    for stage in Stage:
        if stage != Stage.CLOSED:
            words[stage.value] = words[label(stage.label)] = stage.value
    for outcome in Outcome:
        target = f"closed:{outcome.value}"
        words[outcome.value] = words[label(outcome.label)] = words[f"closed - {outcome.value}"] = target
        words[f"closed ({outcome.value})"] = words[f"closed: {outcome.value}"] = words[target] = target
    return words


def escalation_words() -> dict[str, str]:
    """Engage's own codes and labels of the escalation levels."""
    words = {}
    for level in Escalation:
        words[level.value] = words[label(level.label)] = level.value
    words.update({"": Escalation.NONE.value, "no": Escalation.NONE.value, "-": Escalation.NONE.value})
    return words


def target_label(kind: str, target: str) -> str:
    """How a page says a target: "Mapping requested", "Closed (divested)", "Follow up"."""
    if kind == "status" and target.startswith("closed:"):
        return f"Closed ({Outcome(target.split(':', 1)[1]).label.lower()})"
    if kind == "status":
        return Stage(target).label
    return Escalation(target).label


class TrackerRefused(MapRefused):
    """The file (or the mapping) cannot be read at all."""


@dataclass
class TrackerItem:
    """One row of the tracker, read and checked (not yet resolved against the database)."""

    row: int
    key: str = ""
    company: str = ""
    isin: str | None = None
    ticker: str | None = None
    campaign: str = ""
    owner: str = ""
    #: The team's word and what it maps to (a stage or closed:<outcome>); None when the cell is empty.
    status: str = ""
    stage: str | None = None
    escalation_word: str = ""
    escalation: str | None = None
    dates: dict[str, dt.date] = field(default_factory=dict)
    notes: str = ""
    score: Decimal | None = None


@dataclass
class Table:
    """The tracker's header and its data rows (merged cells filled, blank rows and headings dropped)."""

    header_row: int
    header: list[str]
    #: field -> column position
    columns: dict[str, int]
    rows: list[tuple[int, list[str]]]
    #: Rows skipped as headings (a row merged across the sheet, or with one cell only and no company).
    headings: list[int] = field(default_factory=list)
    #: An XLSX's sheet read, and its other sheets (with " (hidden)" for a hidden one).
    sheet: str | None = None
    other_sheets: list[str] = field(default_factory=list)

    @property
    def labels(self) -> dict[str, str]:
        return {f: self.header[i] for f, i in self.columns.items()}

    @property
    def ignored(self) -> list[str]:
        return [c for i, c in enumerate(self.header) if c.strip() and i not in self.columns.values()]


@dataclass
class ParsedTracker:
    table: Table
    items: list[TrackerItem] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    #: kind (status/escalation) -> the team's word (label()) -> rows it is in, for words no mapping knows.
    unmapped: dict[str, dict[str, list[int]]] = field(default_factory=lambda: {"status": {}, "escalation": {}})
    #: kind -> every distinct word of its column (label()) -> the word as first written.
    words: dict[str, dict[str, str]] = field(default_factory=lambda: {"status": {}, "escalation": {}})
    #: True when numeric dates were read day first (03/02/2024 = 3 February).
    day_first: bool = True
    #: Why: "the file's dates" or "the choice".
    day_first_why: str = ""


# --- the mapping -----------------------------------------------------------------------------

def parse_mapping(text: str | dict | None) -> dict[str, str]:
    """'company=Issuer,status=State' (or a dict) -> {'company': 'Issuer', ...}; unknown or doubled fields refused."""
    if isinstance(text, dict):
        pairs = [(k, v) for k, v in text.items() if v and str(v).strip()]
    else:
        pairs = []
        for part in (text or "").split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise TrackerRefused(f"column mapping {part.strip()!r} must look like field=Column")
            name, column = part.split("=", 1)
            pairs.append((name, column))
    mapping: dict[str, str] = {}
    for name, column in pairs:
        name, column = name.strip().lower(), str(column).strip()
        if name not in FIELDS:
            raise TrackerRefused(f"unknown field {name!r} in the column mapping; the fields are {', '.join(FIELDS)}")
        if name in mapping:
            raise TrackerRefused(f"the column mapping is ambiguous: field {name} is mapped twice")
        mapping[name] = column
    labels = [label(c) for c in mapping.values()]
    twice = sorted({c for c in mapping.values() if labels.count(label(c)) > 1})
    if twice:
        raise TrackerRefused(f"the column mapping is ambiguous: column {', '.join(twice)} is mapped to two fields")
    return mapping


def parse_value_mapping(items) -> dict[str, dict[str, str]]:
    """['status:Letter sent=mapping_requested', ...] -> {'status': {'letter sent': 'mapping_requested'}, ...}."""
    result: dict[str, dict[str, str]] = {"status": {}, "escalation": {}}
    for item in items or ():
        kind, _, rest = (item or "").partition(":")
        word, equals, target = rest.rpartition("=")
        kind, target = kind.strip().lower(), target.strip()
        if kind not in result or not equals:
            raise TrackerRefused(f"value mapping {item!r} must look like status:Their word=stage or "
                                 f"escalation:Their word=level")
        check_target(kind, target, word.strip())
        result[kind][label(word)] = target
    return result


def check_target(kind: str, target: str, word: str) -> None:
    allowed = STATUS_TARGETS if kind == "status" else ESCALATION_TARGETS
    if target not in allowed:
        raise TrackerRefused(f"{kind} {word!r} cannot mean {target!r}: use one of {', '.join(allowed)}")


# --- the table -------------------------------------------------------------------------------

def _header(row: list[str], mapping: dict[str, str], remembered: dict[str, str]) -> dict[str, int]:
    columns: dict[str, int] = {}
    mapped = {label(column): name for name, column in mapping.items()}
    for position, cell in enumerate(row):
        text = label(cell)
        if not text:
            continue
        name = mapped.get(text)
        if name is None:
            name = remembered.get(text)
            if name is not None and (name in mapping or name == IGNORE):
                name = None
        if name is None and text not in remembered:
            name = next((f for f, names in SYNONYMS.items() if text in names and f not in mapping), None)
        if name and name not in columns:
            columns[name] = position
    return columns


def _filled(source, rows):
    """Rows with a vertically merged cell's value on every row it covers, and the rows a wide merge heads."""
    merges = []
    if source is not None:
        for ref, first, last in source.merges:
            min_col, _r, max_col, _r2 = range_boundaries(ref if ":" in ref else f"{ref}:{ref}")
            merges.append((first, last, min_col - 1, max_col - min_col + 1))
    carried: dict[int, tuple[int, str]] = {}  # column -> (last row, value)
    starts = {first: [(col, last, width) for f, last, col, width in merges if f == first] for first, *_ in merges}
    for number, row in rows:
        wide, down_to = False, number
        for column, last, width in starts.get(number, ()):
            down_to = max(down_to, last)
            if width >= 3:
                wide = True
            if last > number and column < len(row) and row[column]:
                carried[column] = (last, row[column])
        blank = not any(row)  # a blank row inside a merge stays blank (skipped), not a row of the merged value alone
        for column, (last, value) in list(carried.items()):
            if number > last:
                del carried[column]
            elif not blank and (column >= len(row) or not row[column]):
                row = row + [""] * (column + 1 - len(row)) if column >= len(row) else list(row)
                row[column] = value
        yield number, row, wide, down_to


def read_table(data: bytes, mapping: dict[str, str] | None = None, remembered: dict[str, str] | None = None,
               *, max_rows: int = MAX_ROWS, sheet: str | None = None) -> Table:
    """The header and data rows of a tracker file (of `sheet`, an XLSX's first visible one by default), or
    TrackerRefused."""
    mapping, remembered = mapping or {}, remembered or {}
    limits = Limits(max_rows=max_rows)
    try:
        source, rows = open_rows(data, limits, lambda row: len(_header(row, mapping, remembered)), sheet or None)
    except MapRefused as exc:
        raise TrackerRefused(str(exc).replace("CSV, XLSX or PDF", "CSV or XLSX")) from exc
    if source is None and sheet:
        raise TrackerRefused(f"a sheet ({sheet!r}) is named, but the file is a CSV, which has none")
    with closing(source) if source is not None else _Nothing():
        try:
            table = _table(_filled(source, rows), mapping, remembered, max_rows)
        except (MapRefused, FileRefused) as exc:  # a sheet's cells are read (and refused) as the rows are
            raise TrackerRefused(str(exc)) from exc
        if source is not None:
            table.sheet = source.sheet.title
            table.other_sheets = [f"{title}{' (hidden)' if hidden else ''}" for title, hidden in source.sheets
                                  if title != source.sheet.title]
        return table


class _Nothing:
    def __enter__(self):
        return None

    def __exit__(self, *_):
        return False


def _refuse_doubled(header: list[str], header_row: int, columns: dict[str, int]) -> None:
    """Two columns with the same header, one of them read as a field: which one holds it is a guess, so refused."""
    for name, position in columns.items():
        same = [p for p, cell in enumerate(header) if label(cell) == label(header[position])]
        if len(same) > 1:
            letters = " and ".join(get_column_letter(p + 1) for p in same)
            raise TrackerRefused(f"row {header_row}: columns {letters} are both headed “{clean_cell(header[position])}”"
                                 f" (read as {name}); rename one of them, or delete the one not kept, and import again")


def _table(rows, mapping, remembered, max_rows: int) -> Table:
    header, header_row, columns, down_to = None, 0, {}, 0
    for number, row, _wide, down_to in rows:
        columns = _header(row, mapping, remembered)
        if any(f in columns for f in COMPANY_FIELDS):
            header, header_row = row, number
            break
        if number >= HEADER_ROWS:
            break
    if header is not None and down_to > header_row:
        # a header of two (or more) rows, its cells merged down over them ("Dates" above "Letter sent" and
        # "Reply"): each column is named by its lowest cell, and the rows under the header are no data
        header = list(header)
        for number, row, _wide, _down in rows:
            for position, cell in enumerate(row):
                if cell and position >= len(header):
                    header += [""] * (position + 1 - len(header))
                if cell:
                    header[position] = cell
            if number >= down_to:
                break
        columns = _header(header, mapping, remembered)
    if header is None:
        raise TrackerRefused(f"no header row naming the company (a column such as Company, Issuer, ISIN or Ticker) "
                             f"in the first {HEADER_ROWS} rows; map the column, e.g. company=Investee")
    _refuse_doubled(header, header_row, columns)
    missing = [f"{f}={c}" for f, c in mapping.items() if f not in columns]
    if missing:
        raise TrackerRefused(f"mapped column(s) not found in the header (row {header_row}): {', '.join(missing)}")
    table = Table(header_row, [clean_cell(c) for c in header], columns, [])
    company_columns = [columns[f] for f in COMPANY_FIELDS if f in columns]
    for number, row, wide, _down in rows:
        if number > MAX_SHEET_ROWS:
            raise TrackerRefused(f"row {MAX_SHEET_ROWS + 1:,}: the sheet goes on past row {MAX_SHEET_ROWS:,} (empty "
                                 f"rows included); delete the empty rows below the tracker and import it again")
        filled = [c for c in row if c]
        if not filled:
            continue
        if wide or (len(filled) == 1 and not any(p < len(row) and row[p] for p in company_columns)):
            table.headings.append(number)
            continue
        table.rows.append((number, row))
        if len(table.rows) > max_rows:
            raise TrackerRefused(f"the tracker has more than {max_rows:,} rows, the limit for one import; split it")
    if not table.rows:
        raise TrackerRefused(f"the file has a header (row {header_row}) but no rows")
    return table


# --- dates -----------------------------------------------------------------------------------

def _numeric_parts(text: str) -> tuple[int, int, int] | None:
    match = _NUMERIC.match(text)
    if not match:
        return None
    first, second, year = (int(g) for g in match.groups())
    return first, second, (2000 + year if year < 100 else year)


def date_order(table: Table) -> tuple[bool | None, str]:
    """Day first (True), month first (False) or undecided (None) from the file's own numeric dates; the
    refusal when the file has both ("25/03/2024" in one row and "03/25/2024" in another)."""
    day_row = month_row = None
    for name in DATE_FIELDS:
        position = table.columns.get(name)
        if position is None:
            continue
        for number, row in table.rows:
            parts = _numeric_parts(row[position].strip()) if position < len(row) else None
            if parts is None:
                continue
            if parts[0] > 12 >= parts[1]:
                day_row = day_row or (number, row[position])
            elif parts[1] > 12 >= parts[0]:
                month_row = month_row or (number, row[position])
    if day_row and month_row:
        raise TrackerRefused(f"the dates mix two orders: row {day_row[0]} has {day_row[1]} (day first), row "
                             f"{month_row[0]} has {month_row[1]} (month first); write them one way and import again")
    if day_row:
        return True, f"the file's dates (row {day_row[0]}: {day_row[1]})"
    if month_row:
        return False, f"the file's dates (row {month_row[0]}: {month_row[1]})"
    return None, ""


def read_date(text: str, day_first: bool) -> dt.date | str:
    """A tracker cell as a date, or the reason it is not one."""
    if isinstance(text, NumberCell) or re.fullmatch(r"\d{5}(\.0+)?", text.strip()):
        try:
            serial = int(Decimal(str(text)))
        except InvalidOperation:
            serial = -1
        if serial in SERIALS:
            return EXCEL_EPOCH + dt.timedelta(days=serial)
        return "a number that is not an Excel date (1990 to 2100)"
    value = " ".join(text.replace(",", " ").split())
    if "T" in value and value[:4].isdigit():
        value = value.split("T", 1)[0]
    parts = _numeric_parts(value)
    if parts is not None:
        day, month = (parts[0], parts[1]) if day_first else (parts[1], parts[0])
        try:
            return dt.date(parts[2], month, day)
        except ValueError:
            return "not a date (" + ("day/month/year" if day_first else "month/day/year") + ")"
    for fmt in _TEXT_FORMATS:
        try:
            return dt.datetime.strptime(value, fmt).date()
        except ValueError:
            continue
    return "not a date; write it as 2024-02-03, 3 Feb 2024 or 03/02/2024"


# --- rows ------------------------------------------------------------------------------------

def read(data: bytes, mapping: dict[str, str] | None = None, values: dict[str, dict[str, str]] | None = None, *,
         remembered_columns: dict[str, str] | None = None, day_first: bool = True, today: dt.date,
         max_rows: int = MAX_ROWS, sheet: str | None = None) -> ParsedTracker:
    """Parse a tracker; bad rows become errors, unknown words `unmapped`; TrackerRefused for the rest.

    `values` maps each kind (status, escalation) to {the team's word (label()): target}: the words
    given now, over the remembered ones (the caller merges them), over Engage's own words."""
    table = read_table(data, parse_mapping(mapping or {}), remembered_columns, max_rows=max_rows, sheet=sheet)
    parsed = ParsedTracker(table)
    found, why = date_order(table)
    parsed.day_first = found if found is not None else day_first
    parsed.day_first_why = why or "the choice made for this import"
    words = {"status": {**status_words(), **(values or {}).get("status", {})},
             "escalation": {**escalation_words(), **(values or {}).get("escalation", {})}}
    seen: dict[str, int] = {}
    for number, row in table.rows:
        item = _read_row(number, row, parsed, words, today)
        if item is None:
            continue
        key = f"id:{label(item.key)}" if item.key else None
        if key:
            if key in seen:
                parsed.errors.append(RowError(number, table.labels["key"], item.key,
                                              f"the same id is also in row {seen[key]}; each row of a tracker has "
                                              f"its own id"))
                continue
            seen[key] = number
        parsed.items.append(item)
    return parsed


def _read_row(number: int, row: list[str], parsed: ParsedTracker, words: dict, today: dt.date) -> TrackerItem | None:
    table = parsed.table
    labels = table.labels
    errors_before = len(parsed.errors)

    def cell(name: str) -> str:
        position = table.columns.get(name)
        return clean_cell(row[position]) if position is not None and position < len(row) else ""

    def error(name: str, value: str, reason: str) -> None:
        parsed.errors.append(RowError(number, labels.get(name, ""), value[:80], reason))

    item = TrackerItem(row=number)
    for name in ("key", "company", "campaign", "owner", "notes"):
        text = cell(name)
        if len(text) > MAX_CHARS[name]:
            error(name, text, f"at most {MAX_CHARS[name]:,} characters (this one has {len(text):,})")
            text = ""
        setattr(item, name, " ".join(text.split()) if name != "notes" else text)
    isin = clean_identifier(cell("isin")).upper().replace(" ", "")
    if isin and isin.lower() not in MISSING:
        problem = isin_problem(isin)
        if problem:
            error("isin", isin, problem)
        else:
            item.isin = compact_isin(isin)
    ticker = clean_identifier(cell("ticker")).upper()
    if ticker and ticker.lower() not in MISSING:
        if len(ticker) > MAX_CHARS["ticker"]:
            error("ticker", ticker, f"a ticker is at most {MAX_CHARS['ticker']} characters")
        else:
            item.ticker = ticker.split()[0] if " equity" in ticker.lower() else ticker
    if not (item.company or item.isin or item.ticker) and len(parsed.errors) == errors_before:
        error("company", "", "no company: give its name, ISIN or ticker")
    for kind, name, attribute in (("status", "status", "stage"), ("escalation", "escalation", "escalation")):
        text = cell(name)
        if not text:
            continue
        setattr(item, "status" if kind == "status" else "escalation_word", text)
        key = label(text)
        parsed.words[kind].setdefault(key, text)
        target = words[kind].get(key)
        if target is None:
            parsed.unmapped[kind].setdefault(key, []).append(number)
        elif target != IGNORE:
            setattr(item, attribute, target)
    for name in DATE_FIELDS:
        text = cell(name)
        if not text or text.strip().lower() in NO_DATE:
            continue
        value = read_date(row[table.columns[name]], parsed.day_first)
        if isinstance(value, str):
            error(name, text, value)
        elif value > today:
            error(name, text, f"{format_date(value)} is in the future; a tracker's dates are history")
        elif value < DATE_MIN:
            error(name, text, f"{format_date(value)} is before {DATE_MIN.year}, which Engage does not record")
        else:
            item.dates[name] = value
    score = cell("score").rstrip("%").strip()
    if score and score.lower() not in MISSING:
        try:
            number_ = Decimal(score.replace(",", "."))
        except InvalidOperation:
            number_ = None
        if number_ is None or not number_.is_finite() or not 0 <= number_ <= 100:
            error("score", cell("score"), "a score is a number from 0 to 100")
        else:
            item.score = number_.quantize(Decimal("0.01"))
    return item if len(parsed.errors) == errors_before else None

