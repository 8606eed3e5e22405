"""Importing a disclosed value-chain map: preview, save in one transaction, screen; the status of each link.

Counterparties are companies. Each row of a map is resolved with the list matching engine
(engage.lists.matching.match) against every company (names, aliases, ISIN, LEI):

- a score of FLAG_SCORE or more resolves the row to that company;
- a score in the review band is shown as a possible match; the import creates a new company
  unless the caller asks to take possible matches (`accept_possible`);
- otherwise a new company is created on save, with `origin` "value chain of <company>" (a
  company created but not reviewed, as the holdings import does).

The preview shows, per row, the current risk flags of a resolved counterparty (direct, or linked
through its parent), what the lists would flag for a new one, the Uyghur Region flag, and the
diff against the company's previous map. Its number of queries does not grow with the rows.
`save` writes the map, the new companies and the relationships in the caller's transaction,
carries the status of each relationship forward from the previous map, then screens the map's
counterparties (created or resolved, with their parents and subsidiaries; not every company).
Given the preview of the same import (`preview=`), the save takes its resolution and its one
matching against the lists (`Preview.screened`) instead of doing them again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from dataclasses import dataclass, field, replace

import sqlalchemy as sa

from engage import audit, clock
from engage.errors import FieldError
from engage.extensions import db
from engage.formatting import format_date
from engage.holdings.parsing import RowError, clean_cell
from engage.lists import screening
from engage.lists.matching import FLAG_SCORE, REVIEW_SCORE, Candidate, CompanyRecord, EntryRecord, match
from engage.models import (
    ACTIVE_STATUSES,
    Company,
    CompanyAlias,
    Engagement,
    ListedEntity,
    ListVersion,
    MapSourceKind,
    Relationship,
    RelationshipKind,
    RelationshipStatus,
    RelationshipStatusChange,
    RiskFlag,
    RiskSource,
    ValueChainMap,
    normalize_name,
)
from engage.names import NameForm, as_entry, encoded, name_forms
from engage.valuechain import feeds, parsing
from engage.valuechain.parsing import MapRefused, MapRow
from engage.valuechain.regions import in_uyghur_region

EXISTING, NEW, POSSIBLE = "existing", "new", "possible"
__all__ = ["FLAG_SCORE", "REVIEW_SCORE", "EXISTING", "NEW", "POSSIBLE", "preview", "save", "change_status"]


class ValueChainError(ValueError):
    """A map refused whole: `message`, and the row errors if any."""

    def __init__(self, message: str, errors: list[RowError] | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or []


@dataclass
class FlagNote:
    """Why a counterparty is (or would be) flagged."""

    list_label: str
    link: str  # direct or linked
    reason: str
    via: str | None = None  # for a linked flag: the parent named by the entry
    would: bool = False  # a new counterparty the lists would flag once saved

    def __str__(self) -> str:
        via = f" via {self.via}" if self.via else ""
        return f"{'would be ' if self.would else ''}{self.list_label} ({self.link}{via}: {self.reason})"


@dataclass
class RowPreview:
    item: MapRow
    resolution: str
    company_id: int | None = None
    company_name: str | None = None
    score: int | None = None
    reason: str = ""
    #: A possible match (review band) shown, not taken: (company id, name, score, reason).
    possible: tuple[int, str, int, str] | None = None
    flags: list[FlagNote] = field(default_factory=list)
    region_reason: str | None = None
    #: The row's name and aliases read for matching (_read), once for the preview and the save.
    reading: tuple[list[NameForm], dict[str, list[NameForm]]] | None = field(default=None, repr=False)

    @property
    def flagged(self) -> bool:
        return bool(self.flags or self.region_reason)

    def describe(self) -> str:
        if self.resolution == EXISTING:
            return f"{self.company_name} (existing company, {self.score}: {self.reason})"
        text = "new company"
        if self.possible:
            _id, name, score, reason = self.possible
            text += f"; possible: {name} ({score}, {reason})"
        return text


@dataclass
class Diff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    previous_number: int | None = None

    def as_json(self) -> dict:
        return {"added": len(self.added), "removed": len(self.removed), "changed": len(self.changed),
                "lines": [f"+ {a}" for a in self.added] + [f"- {r}" for r in self.removed]
                + [f"~ {c}" for c in self.changed]}

    def summary(self) -> str:
        if self.previous_number is None:
            return f"First map of the company: {len(self.added)} relationship{'' if len(self.added) == 1 else 's'}"
        return (f"Changes against map {self.previous_number}: {len(self.added)} added, {len(self.removed)} removed, "
                f"{len(self.changed)} changed")


@dataclass
class Screened:
    """The preview's matching of the map's counterparties against the lists, kept for the save.

    One `match` call covers the new rows (as records with id -1 - row index) and the resolved
    companies with their parents and subsidiaries (by company id): the save's screening takes
    these candidates instead of matching the same names against the same entries again.
    """

    candidates: list[Candidate]
    #: Company ids (and -1 - index for new rows) whose candidates are all in `candidates`.
    covered: frozenset[int]
    #: The list versions whose active entries were matched.
    versions: frozenset[int]


@dataclass
class Preview:
    company: Company
    rows: list[RowPreview]
    diff: Diff
    columns: dict[str, str]
    mapping: dict[str, str]
    sha256: str
    file_name: str
    accept_possible: bool = False
    #: Header cells of the columns not read (shown, so a misspelt column is noticed).
    ignored_columns: list[str] = field(default_factory=list)
    #: The company's latest map when previewed (the diff is against it).
    previous_id: int | None = None
    screened: Screened | None = field(default=None, repr=False)

    @property
    def flagged(self) -> list[RowPreview]:
        return [r for r in self.rows if r.flagged]


def _company_records(exclude: int) -> tuple[dict[int, CompanyRecord], dict[int, str]]:
    """Every company but the engaged one, as the matching engine reads them, by id (two queries)."""
    rows = db.session.execute(sa.select(*screening.COMPANY_COLUMNS).where(Company.id != exclude)
                              .order_by(Company.id)).all()
    aliases = db.session.execute(sa.select(*screening.ALIAS_COLUMNS)
                                 .order_by(CompanyAlias.company_id, CompanyAlias.alias)).all()
    return screening.company_records(rows, aliases), {row[0]: row[1] for row in rows}


def _read(item: MapRow) -> tuple[list[NameForm], dict[str, list[NameForm]]]:
    """The row's name, and each of its aliases, read as a company's: the preview's two matchings and
    the save's stored readings are made of these, each name read once."""
    return name_forms([item.name]), {a: name_forms([a], first=False) for a in dict.fromkeys(item.aliases)}


def _row_record(index: int, item: MapRow, reading=None) -> EntryRecord:
    identifiers = {k: [v] for k, v in (("isin", item.isin), ("lei", item.lei)) if v}
    name, aliases = reading or _read(item)
    return EntryRecord(id=index, names=(item.name, *item.aliases), identifiers=identifiers,
                       forms=as_entry(name + [f for a in item.aliases for f in aliases[a]]))


def _list_label(list_name: str) -> str:
    try:
        return RiskSource(list_name).label
    except ValueError:
        return list_name


def _current_flags(company_ids: list[int]) -> dict[int, list[FlagNote]]:
    """Current risk flags of these companies, direct or linked (one query)."""
    parent = sa.orm.aliased(Company)
    notes: dict[int, list[FlagNote]] = defaultdict(list)
    for flag, via in db.session.execute(
            sa.select(RiskFlag, parent.name).outerjoin(parent, parent.id == RiskFlag.linked_via_id)
            .where(RiskFlag.company_id.in_(company_ids or [-1]), RiskFlag.ended_on.is_(None))
            .order_by(RiskFlag.company_id, RiskFlag.id)):
        notes[flag.company_id].append(FlagNote(list_label=flag.source_label, link=flag.link,
                                               reason=flag.match_reason or flag.citation, via=via))
    return notes


def _new_record(index: int, item: MapRow, reading=None) -> CompanyRecord:
    """A new row as the company `save` will make of it (its name, then its other aliases sorted)."""
    aliases = sorted(a for a in dict.fromkeys(item.aliases) if a.lower() != item.name.lower())
    name, read = reading or _read(item)
    return CompanyRecord(id=-1 - index, names=(item.name, *aliases), isin=item.isin, lei=item.lei,
                         forms=name + [f for a in aliases for f in read[a]])


def _screen_rows(rows: list[RowPreview], records: dict[int, CompanyRecord]) -> Screened:
    """Match the new rows, and the resolved companies with their parents and subsidiaries, against
    the lists' latest versions (three queries, one `match`); what `screening.screen` would match."""
    versions = screening.latest_versions()
    by_version = {v.id: v for v in versions.values()}
    entries = [screening.entry_record(entry_id, name, aliases, identifiers, stored)
               for entry_id, name, aliases, identifiers, status, stored in db.session.execute(
                   sa.select(ListedEntity.id, ListedEntity.name, ListedEntity.aliases, ListedEntity.identifiers,
                             ListedEntity.status, ListedEntity.name_forms)
                   .where(ListedEntity.version_id.in_(list(by_version) or [-1])))
               if status in ACTIVE_STATUSES]
    parents = dict(db.session.execute(sa.select(Company.id, Company.parent_id)
                                      .where(Company.parent_id.is_not(None))).all())
    resolved = {r.company_id for r in rows if r.company_id}
    scope = resolved | screening._ancestors(resolved, parents) | screening._descendants(resolved, parents)
    companies = [records[cid] for cid in sorted(scope) if cid in records]
    companies += [_new_record(index, row.item, row.reading) for index, row in enumerate(rows) if row.company_id is None]
    candidates = match(companies, entries) if entries and companies else []
    return Screened(candidates=candidates, covered=frozenset(c.id for c in companies), versions=frozenset(by_version))


def _would_flag(screened: Screened) -> dict[int, list[FlagNote]]:
    """What the lists would flag among the new rows (by row index), from the preview's matching (one query)."""
    wanted = [c for c in screened.candidates if c.company_id < 0 and c.score >= FLAG_SCORE]
    if not wanted:
        return {}
    entries = {entry_id: (name, list_name) for entry_id, name, list_name in db.session.execute(
        sa.select(ListedEntity.id, ListedEntity.name, ListVersion.name)
        .join(ListVersion, ListVersion.id == ListedEntity.version_id)
        .where(ListedEntity.id.in_(sorted({c.entry_id for c in wanted}))))}
    notes: dict[int, list[FlagNote]] = defaultdict(list)
    for candidate in wanted:
        name, list_name = entries[candidate.entry_id]
        notes[-1 - candidate.company_id].append(FlagNote(
            list_label=_list_label(list_name), link="direct", reason=f"entry “{name}”: {candidate.reason}", would=True))
    return notes


def latest_map(company: Company) -> ValueChainMap | None:
    return db.session.scalar(sa.select(ValueChainMap).where(ValueChainMap.company_id == company.id)
                             .order_by(ValueChainMap.number.desc()).limit(1))


def _previous_relationships(previous: ValueChainMap | None) -> dict[tuple[int, str], tuple[Relationship, str]]:
    """(counterparty id, kind) -> (relationship, counterparty name) of the previous map (one query)."""
    if previous is None:
        return {}
    return {(r.counterparty_id, r.kind): (r, name) for r, name in db.session.execute(
        sa.select(Relationship, Company.name).join(Company, Company.id == Relationship.counterparty_id)
        .where(Relationship.map_id == previous.id).order_by(Relationship.id))}


def _label(name: str, item_kind: str, tier: int) -> str:
    return f"{name} ({item_kind.replace('_', '-')}, tier {tier}{'+' if tier >= parsing.TOP_TIER else ''})"


def preview(company: Company, data: bytes, file_name: str, mapping: dict[str, str] | str | None = None, *,
            accept_possible: bool = False, pdf_seconds: float | None = None) -> Preview:
    """Read, resolve and screen a map without writing anything; ValueChainError if any row is bad.

    `pdf_seconds` bounds the reading of a PDF (pdf.MAX_SECONDS if None; the web gives less)."""
    try:
        mapping = parsing.parse_mapping(mapping)
        parsed = parsing.parse(data, mapping, pdf_seconds=pdf_seconds)
    except MapRefused as exc:
        raise ValueChainError(f"{file_name}: {exc}") from exc
    own = {company.normalized_name or normalize_name(company.name)} | {normalize_name(a.alias) for a in company.aliases}
    parsed.errors += [RowError(item.row, parsed.columns["name"], item.name,
                               f"this is {company.name} itself, whose map this is")
                      for item in parsed.rows if normalize_name(item.name) in own - {None, ""}
                      or (item.isin and item.isin == company.isin) or (item.lei and item.lei == company.lei)]
    if parsed.errors:
        raise ValueChainError(f"{file_name}: {len(parsed.errors)} row(s) with errors; nothing was imported",
                              sorted(parsed.errors, key=lambda e: e.row))
    records, names = _company_records(company.id)
    best: dict[int, tuple[int, int, str]] = {}
    readings = [_read(item) for item in parsed.rows]
    for candidate in match(records.values(), [_row_record(i, item, readings[i]) for i, item in enumerate(parsed.rows)]):
        kept = best.get(candidate.entry_id)
        if kept is None or candidate.score > kept[1]:
            best[candidate.entry_id] = (candidate.company_id, candidate.score,
                                        candidate.reason.replace("entry name", "disclosed name"))
    rows = []
    for index, item in enumerate(parsed.rows):
        found = best.get(index)
        row = RowPreview(item=item, resolution=NEW, region_reason=in_uyghur_region(item.region, item.name),
                         reading=readings[index])
        if found and (found[1] >= FLAG_SCORE or accept_possible):
            row.resolution, row.company_id, row.score, row.reason = EXISTING, found[0], found[1], found[2]
            row.company_name = names[found[0]]
        elif found:
            row.resolution, row.possible = POSSIBLE, (found[0], names[found[0]], found[1], found[2])
        rows.append(row)
    flags = _current_flags(sorted({r.company_id for r in rows if r.company_id}))
    screened = _screen_rows(rows, records)
    would = _would_flag(screened)
    for index, row in enumerate(rows):
        row.flags = flags.get(row.company_id, []) if row.company_id else would.get(index, [])
    # the same counterparty under two names of one existing company would be one relationship twice
    seen: dict[tuple[int, str], int] = {}
    duplicates = []
    for row in rows:
        if row.company_id is None:
            continue
        key = (row.company_id, row.item.kind)
        if key in seen:
            duplicates.append(RowError(row.item.row, parsed.columns["name"], row.item.name,
                                       f"resolves to {row.company_name}, as row {seen[key]} does: a map lists each "
                                       f"counterparty once per kind"))
        seen[key] = row.item.row
    new_seen: dict[tuple[str, str, str], int] = {}  # two new rows with one ISIN or LEI would be one company twice
    for row in rows:
        item = row.item
        for scheme, value in (("ISIN", item.isin), ("LEI", item.lei)) if row.company_id is None else ():
            if value and (scheme, value, item.kind) in new_seen:
                duplicates.append(RowError(item.row, parsed.columns["name"], item.name,
                                           f"has the {scheme} of row {new_seen[(scheme, value, item.kind)]}: a map "
                                           f"lists each counterparty once per kind"))
                break
            if value:
                new_seen[(scheme, value, item.kind)] = item.row
    if duplicates:
        raise ValueChainError(f"{file_name}: {len(duplicates)} duplicate counterparties; nothing was imported",
                              duplicates)
    previous = latest_map(company)
    diff = _diff(rows, _previous_relationships(previous))
    diff.previous_number = previous.number if previous else None
    return Preview(company=company, rows=rows, diff=diff, columns=parsed.columns, mapping=mapping,
                   sha256=hashlib.sha256(data).hexdigest(), file_name=file_name, accept_possible=accept_possible,
                   ignored_columns=parsed.ignored,
                   previous_id=previous.id if previous else None, screened=screened)


_preview = preview  # save's parameter `preview` hides the function's name there


def _diff(rows: list[RowPreview], before: dict[tuple[int, str], tuple[Relationship, str]]) -> Diff:
    diff = Diff()
    present = set()
    for row in rows:
        item = row.item
        key = (row.company_id, item.kind) if row.company_id else None
        old = before.get(key) if key else None
        if old is None:
            diff.added.append(_label(row.company_name or item.name, item.kind, item.tier))
            continue
        present.add(key)
        relationship, name = old
        changes = [f"{what} {a or '—'} → {b or '—'}" for what, a, b in (
            ("tier", relationship.tier, item.tier), ("products", relationship.products, item.products),
            ("country", relationship.country, item.country), ("region", relationship.region, item.region))
            if (a or None) != (b or None)]
        if changes:
            diff.changed.append(f"{_label(name, item.kind, item.tier)}: {'; '.join(changes)}")
    for key, (relationship, name) in before.items():
        if key not in present:
            diff.removed.append(_label(name, relationship.kind, relationship.tier))
    return diff


@dataclass
class Saved:
    preview: Preview
    map: ValueChainMap
    created: list[Company]
    screening: screening.ScreenResult | None


def save(company: Company, data: bytes, file_name: str, mapping: dict[str, str] | str | None = None, *,
         source_kind: str = MapSourceKind.ATTACHMENT.value, source_ref: str = "", disclosed_on: dt.date | None = None,
         imported_by_id: int | None = None, accept_possible: bool = False, screen: bool = True,
         preview: Preview | None = None, pdf_seconds: float | None = None) -> Saved:
    """Write the map, its new counterparties and relationships in the caller's transaction, then screen.

    `preview`: the Preview of this same file made earlier in this same transaction (the CLI's and a
    benchmark's preview-then-save); its resolution and its matching against the lists are used
    instead of being done again. It is taken only when it is of this company, these bytes, this
    mapping and `accept_possible`, and the company's latest map is still the one it was made
    against; otherwise (and always when None) the file is previewed again here (a PDF read for at most
    `pdf_seconds`).
    """
    if source_kind not in MapSourceKind.values():
        raise FieldError("source_kind", f"the source is one of {', '.join(MapSourceKind.values())}")
    if disclosed_on is not None and disclosed_on > clock.today():
        raise FieldError("disclosed_on", "the disclosure date is in the future")
    previous = latest_map(company)
    shown = preview
    if not _current(shown, company, data, mapping, accept_possible, previous):
        shown = _preview(company, data, file_name, mapping, accept_possible=accept_possible, pdf_seconds=pdf_seconds)
    if (previous is not None and previous.sha256 == shown.sha256 and (previous.mapping or {}) == shown.mapping
            and not (previous.diff or {}).get("by_hand")):
        raise ValueChainError(f"{file_name}: this file is identical to map {previous.number} of {company.name} "
                              f"({previous.file_name}, SHA-256 {shown.sha256[:12]}); nothing to import")
    before = _previous_relationships(previous)
    vc_map = ValueChainMap(company_id=company.id, number=(previous.number + 1) if previous else 1,
                           file_name=file_name[:255], sha256=shown.sha256, source_kind=source_kind,
                           source_ref=(source_ref or "")[:500], disclosed_on=disclosed_on, mapping=shown.mapping,
                           imported_by_id=imported_by_id, previous_id=previous.id if previous else None,
                           diff=shown.diff.as_json())
    db.session.add(vc_map)
    db.session.flush()
    # The companies, aliases and relationships go in with one multi-row INSERT each (RETURNING the
    # rows, in order) and their audit events with one more: building and flushing ten thousand ORM
    # objects was most of a 5,000-row save. The audit events are the ones the mapper hooks write.
    origin = f"value chain of {company.name}"[:200]
    now = clock.utcnow()
    counterparty_of: list[int | None] = []  # per row: the existing company id, or None (new)
    new_index: list[int] = []  # per row: the index of the row whose new company it is (-1: existing)
    made: dict[tuple[str, str], int] = {}  # one new counterparty in several rows (kinds) is one company
    new_rows: list[int] = []
    for index, row in enumerate(shown.rows):
        item = row.item
        keys = [k for k in (("isin", item.isin), ("lei", item.lei),
                            ("name", normalize_name(item.name) or item.name.lower())) if k[1]]
        if row.company_id is None:
            first = next((made[k] for k in keys if k in made), None)
            if first is None:
                first = index
                new_rows.append(index)
                made.update((k, index) for k in keys)
            new_index.append(first)
        else:
            new_index.append(-1)
        counterparty_of.append(row.company_id)
    made_from: dict[int, int] = {}  # -1 - row index -> the new company's id
    created: list[Company] = []
    if new_rows:
        values = [{"name": shown.rows[i].item.name, "normalized_name": normalize_name(shown.rows[i].item.name),
                   "name_forms": encoded(_reading(shown.rows[i])[0], [shown.rows[i].item.name]),
                   "country": shown.rows[i].item.country, "isin": shown.rows[i].item.isin,
                   "lei": shown.rows[i].item.lei, "origin": origin, "ticker": None, "exchange": None,
                   "sector": None, "website": None, "parent_id": None, "address": "", "description": "",
                   "created_at": now, "updated_at": now} for i in new_rows]
        newest = db.session.scalar(sa.select(sa.func.max(Company.id))) or 0
        inserted = _insert(Company, values, ("name",), Company.origin == origin, Company.created_at == now,
                           Company.id > newest)  # a new counterparty's name is unique within the import
        made_from = {-1 - i: row["id"] for i, row in zip(new_rows, inserted)}
        aliases = [{"company_id": made_from[-1 - i], "alias": alias, "normalized_alias": normalize_name(alias),
                    "name_forms": encoded(_reading(shown.rows[i])[1][alias], [alias], first=False),
                    "created_at": now, "updated_at": now}
                   for i in new_rows for alias in dict.fromkeys(shown.rows[i].item.aliases)
                   if alias.lower() != shown.rows[i].item.name.lower()]
        if aliases:
            _insert(CompanyAlias, aliases, ("company_id", "alias"),
                    CompanyAlias.company_id.in_(list(made_from.values())))
        created = list(db.session.scalars(sa.select(Company).where(Company.id.in_(list(made_from.values())))
                                          .order_by(Company.id)))
    relationships = []
    for index, row in enumerate(shown.rows):
        item = row.item
        counterparty_id = counterparty_of[index] or made_from[-1 - new_index[index]]
        values = {"map_id": vc_map.id, "company_id": company.id, "counterparty_id": counterparty_id,
                  "kind": item.kind, "tier": item.tier, "products": item.products, "country": item.country,
                  "region": item.region, "in_uyghur_region": row.region_reason is not None,
                  "source_ref": item.source_ref, "status": RelationshipStatus.ACTIVE.value, "status_date": None,
                  "target_date": None, "evidence": "", "not_linked_reason": "", "created_at": now, "updated_at": now}
        old = before.get((row.company_id, item.kind)) if row.company_id else None
        if old is not None:  # the status carries over to the next version of the same relationship
            for name in ("status", "status_date", "target_date", "evidence", "not_linked_reason"):
                values[name] = getattr(old[0], name)
        relationships.append(values)
    _insert(Relationship, relationships, ("counterparty_id", "kind"), Relationship.map_id == vc_map.id)
    result = None
    counterparty_ids = sorted({r["counterparty_id"] for r in relationships})
    if screen and counterparty_ids:
        result = _screen(counterparty_ids, shown.screened, made_from)
    return Saved(preview=shown, map=vc_map, created=created, screening=result)


def _reading(row: RowPreview) -> tuple[list[NameForm], dict[str, list[NameForm]]]:
    if row.reading is None:
        row.reading = _read(row.item)
    return row.reading


def _insert(model, rows: list[dict], key: tuple[str, ...], *where) -> list[dict]:
    """Insert `rows` (every column but the id) into `model`'s table with one executemany, then read
    their ids back by `key` (columns unique among these rows) from the rows `where` selects; the rows
    with their ids, audited as created. (A RETURNING in the rows' order makes SQLAlchemy insert one
    row at a time on SQLite: ten thousand statements.)"""
    table = model.__table__
    db.session.execute(sa.insert(table), rows)
    ids = {tuple(found[1:]): found[0] for found in db.session.execute(
        sa.select(table.c.id, *(table.c[k] for k in key)).where(*where))}
    for row in rows:
        row["id"] = ids[tuple(row[k] for k in key)]
    audit.record_inserted(model, rows)
    return rows


def _current(shown: Preview | None, company: Company, data: bytes, mapping, accept_possible: bool,
             previous: ValueChainMap | None) -> bool:
    """Whether a preview handed to `save` is of this import and still holds."""
    if shown is None or shown.company.id != company.id or shown.accept_possible != accept_possible:
        return False
    try:
        same_mapping = shown.mapping == parsing.parse_mapping(mapping)
    except MapRefused:
        return False
    return (same_mapping and shown.sha256 == hashlib.sha256(data).hexdigest()
            and shown.previous_id == (previous.id if previous else None))


def _screen(company_ids: list[int], screened: Screened | None, made_from: dict[int, int]) -> screening.ScreenResult:
    """screening.screen(companies=company_ids), taking the preview's candidates for what it matched.

    The scope is screening.load's (the counterparties, their parents and their subsidiaries); a
    company of it the preview did not match (or every one, when the lists changed since) is
    matched here; the decisions, flags, review questions and the recorded run are screening's.
    """
    screening.lock()
    loaded = screening.load(companies=company_ids)
    if screened is None or screened.versions != {v.id for v in loaded.versions.values()}:
        return screening.decide(loaded, screening.find_candidates(loaded), notify=True)
    covered = {made_from.get(cid, cid) for cid in screened.covered if cid >= 0 or cid in made_from}
    candidates = [replace(c, company_id=made_from[c.company_id]) if c.company_id < 0 else c
                  for c in screened.candidates if c.company_id >= 0 or c.company_id in made_from]
    candidates = [c for c in candidates if c.company_id in loaded.companies]
    missing = [record for cid, record in loaded.companies.items() if cid not in covered]
    if missing:
        entries = [screening.entry_record(e.id, e.name, e.aliases, e.identifiers, e.name_forms)
                   for e in loaded.entries.values() if e.status in ACTIVE_STATUSES]
        candidates += match(missing, entries)
    candidates.sort(key=lambda c: (c.company_id, c.entry_id))
    return screening.decide(loaded, candidates, notify=True)


# --- status --------------------------------------------------------------------------------

def change_status(relationship: Relationship, new: str, on: dt.date | None, target_date: dt.date | None = None,
                  evidence: str | None = None, reason: str | None = None,
                  actor_id: int | None = None) -> RelationshipStatusChange:
    """Move a relationship to `new`, dated `on`; recorded as a RelationshipStatusChange (and so in the audit trail).

    exit_planned needs a target date (not before `on`); an exit already planned can be planned again
    with a new target date (exit_planned -> exit_planned); exited needs a date and evidence;
    not_linked needs a reason. The relationship's exit reminder follows (engage.valuechain.feeds).
    """
    if new not in RelationshipStatus.values():
        raise FieldError("status", f"the status is one of {', '.join(RelationshipStatus.values())}")
    replan = new == relationship.status == RelationshipStatus.EXIT_PLANNED.value and target_date is not None \
        and target_date != relationship.target_date  # a new target date for the planned exit
    if new == relationship.status and not replan:
        raise FieldError("status", f"the relationship is already {new.replace('_', ' ')}")
    if on is None:
        raise FieldError("date", "say when the status changed")
    if on > clock.today():
        raise FieldError("date", "the date of the change is in the future")
    if relationship.status_date is not None and on < relationship.status_date:
        raise FieldError("date", f"the change is dated {format_date(on)}, before the last one "
                                 f"({RelationshipStatus(relationship.status).label.lower()} on "
                                 f"{format_date(relationship.status_date)}); a status follows the one before it in time")
    evidence, reason = (evidence or "").strip(), (reason or "").strip()
    if new == RelationshipStatus.EXIT_PLANNED.value:
        if target_date is None:
            raise FieldError("target_date", "an exit plan needs the target date of the exit")
        if target_date < on:
            raise FieldError("target_date", "the target date of the exit is before the date of the plan")
    if new == RelationshipStatus.EXITED.value and not evidence:
        raise FieldError("evidence", "an exit needs its evidence (the company's statement, a report, a document)")
    if new == RelationshipStatus.NOT_LINKED.value and not reason:
        raise FieldError("reason", "say why the link was wrong (a different company of the same name...)")
    engagement_id = db.session.scalar(sa.select(Engagement.id).where(
        Engagement.company_id == relationship.company_id, Engagement.closed_on.is_(None)).order_by(Engagement.id.desc())
        .limit(1))
    change = RelationshipStatusChange(relationship_id=relationship.id, engagement_id=engagement_id,
                                      from_status=relationship.status, to_status=new, occurred_on=on,
                                      target_date=target_date if new == RelationshipStatus.EXIT_PLANNED.value else None,
                                      evidence=evidence, reason=reason, actor_id=actor_id)
    relationship.status, relationship.status_date = new, on
    relationship.target_date = target_date if new == RelationshipStatus.EXIT_PLANNED.value else relationship.target_date
    if evidence:
        relationship.evidence = evidence
    if new == RelationshipStatus.NOT_LINKED.value:
        relationship.not_linked_reason = reason
    db.session.add(change)
    db.session.flush()
    feeds.follow_status_change(relationship, change)  # the exit reminder follows the status
    return change


def maps(company: Company) -> list[ValueChainMap]:
    return list(db.session.scalars(sa.select(ValueChainMap).where(ValueChainMap.company_id == company.id)
                                   .order_by(ValueChainMap.number)))


# --- the tab: a status change against the status the form was shown with; one relationship added ---------------

class StaleStatus(ValueError):
    """The relationship's status changed since the form was shown (another tab, another user)."""

    def __init__(self, relationship: Relationship, seen: str):
        self.relationship, self.seen = relationship, seen
        when = f" on {format_date(relationship.status_date)}" if relationship.status_date else ""
        self.message = (f"Not saved: the status of {relationship.counterparty.name} changed from "
                        f"{RelationshipStatus(seen).label.lower()} to "
                        f"{RelationshipStatus(relationship.status).label.lower()}{when} after this page was opened. "
                        f"Check the new status, then change it again if you still mean to.")
        super().__init__(self.message)


def open_engagement_of(company_id: int) -> Engagement | None:
    """The company's open engagement (the latest one), under which a status change is recorded."""
    return db.session.scalar(sa.select(Engagement).where(Engagement.company_id == company_id, Engagement.is_open)
                             .order_by(Engagement.id.desc()).limit(1))


def check_open(engagement: Engagement, field_name: str) -> None:
    """A closed engagement's tab is read-only (FieldError on `field_name`).

    A status change is dated and goes on the timeline and into the reminders of the engagement it is
    recorded under; a closed engagement takes no new entries, as it takes no new contact. The
    refusal says how to make the change: reopen the engagement, or use the company's open one
    (the route adds its link). A map import is the company's, not the engagement's, and is not refused.
    """
    if engagement.is_open:
        return
    since = f" on {format_date(engagement.closed_on)}" if engagement.closed_on else ""
    other = open_engagement_of(engagement.company_id)
    message = (f"Not saved: the engagement with {engagement.company.name} was closed{since}; reopen it to change "
               f"its value chain")
    if other is not None:
        message += f", or change it from the company's open engagement ({other.campaign.name})"
    raise FieldError(field_name, message + ".")


def change_status_seen(relationship: Relationship, seen_status: str, new: str, on: dt.date | None,
                       **kwargs) -> RelationshipStatusChange:
    """`change_status`, but only if the status is still `seen_status` (the one the form showed); else StaleStatus.

    The check is an UPDATE of the row on that condition, so it also holds against a concurrent
    change: PostgreSQL makes the second UPDATE wait for the first transaction and then finds the
    status changed; SQLite lets one writer at a time.
    """
    checked = db.session.execute(
        sa.update(Relationship.__table__)
        .where(Relationship.__table__.c.id == relationship.id, Relationship.__table__.c.status == seen_status)
        .values(status=Relationship.__table__.c.status))
    if checked.rowcount != 1:
        db.session.refresh(relationship)
        raise StaleStatus(relationship, seen_status)
    return change_status(relationship, new, on, **kwargs)


@dataclass
class Added:
    relationship: Relationship
    map: ValueChainMap
    #: The counterparty was made a new company (nothing matched well enough).
    created: bool
    #: A possible match not taken: (company id, name, score, reason).
    possible: tuple[int, str, int, str] | None
    flags: list[FlagNote]
    region_reason: str | None
    screening: screening.ScreenResult | None

    @property
    def flagged(self) -> bool:
        return bool(self.flags or self.region_reason)


MANUAL_SOURCE_REF = "relationships added one by one"


def add_relationship(company: Company, name: str, *, kind: str = RelationshipKind.SUPPLIER.value, tier: int | str = 1,
                     products: str = "", country: str | None = None, region: str = "", isin: str | None = None,
                     lei: str | None = None, source_ref: str = "", accept_possible: bool = False,
                     actor_id: int | None = None, screen: bool = True) -> Added:
    """Add one relationship to the company's latest map (map 1, source "manual", when it has none).

    The counterparty is resolved as an import resolves a row (names, aliases, ISIN, LEI against every
    company; a possible match taken only with `accept_possible`, else a new company), the Uyghur
    Region is flagged, and the counterparty is screened. Refused with a FieldError (nothing written)
    when a value is bad or the map already has this counterparty with this kind. The latest map's
    diff gains the line; a relationship the previous map had gets its status back, as on import.
    """
    # as an import reads a cell: no invisible characters (zero-width, direction marks), any space a plain one
    name, products, region, source_ref, country = (" ".join(clean_cell(text or "").split()) for text in (
        name, products, region, source_ref, country))
    if not name:
        raise FieldError("name", "give the counterparty's name")
    if len(name) > 200:
        raise FieldError("name", f"a name is at most 200 characters (this one has {len(name):,})")
    if kind not in RelationshipKind.values():
        raise FieldError("kind", f"the kind is one of {', '.join(RelationshipKind.values())}")
    number = tier if isinstance(tier, int) else (int(tier) if str(tier).strip().isdigit() else None)
    if number is None or number < 1:
        raise FieldError("tier", "a tier is a positive whole number (1 = direct supplier, 2, 3 or further)")
    tier = min(number, parsing.TOP_TIER)
    for field_name, value, limit in (("products", products, 1000), ("region", region, 200),
                                     ("source_ref", source_ref, 200)):
        if len(value or "") > limit:
            raise FieldError(field_name, f"at most {limit} characters")
    code = None
    if (country or "").strip():
        code = parsing.country_code(country)
        if code is None:
            raise FieldError("country", "not a country (an ISO code such as CN, or a country's name)")
    isin = parsing.clean_identifier(isin or "").upper() or None
    if isin:
        problem = parsing.isin_problem(isin)
        if problem:
            raise FieldError("isin", problem)
        isin = parsing.compact_isin(isin)
    lei = parsing.clean_identifier(lei or "").upper().replace(" ", "") or None
    if lei:
        problem = parsing.lei_problem(lei)
        if problem:
            raise FieldError("lei", problem)
    own = {company.normalized_name or normalize_name(company.name)} | {normalize_name(a.alias) for a in company.aliases}
    if normalize_name(name) in own - {None, ""} or (isin and isin == company.isin) or (lei and lei == company.lei):
        raise FieldError("name", f"this is {company.name} itself, whose value chain this is")
    item = MapRow(row=1, name=name, kind=kind, tier=tier, products=(products or "").strip(), country=code,
                  region=(region or "").strip(), isin=isin, lei=lei, source_ref=(source_ref or "").strip())

    records, names = _company_records(company.id)
    best: tuple[int, int, str] | None = None
    for candidate in match(records.values(), [_row_record(0, item)]):
        if best is None or candidate.score > best[1]:
            best = (candidate.company_id, candidate.score, candidate.reason.replace("entry name", "given name"))
    counterparty_id = best[0] if best and (best[1] >= FLAG_SCORE or accept_possible) else None
    possible = (best[0], names[best[0]], best[1], best[2]) if best and counterparty_id is None else None

    latest = latest_map(company)
    if latest is not None and counterparty_id is not None:
        there = db.session.scalar(sa.select(Relationship).where(
            Relationship.map_id == latest.id, Relationship.counterparty_id == counterparty_id,
            Relationship.kind == kind))
        if there is not None:
            raise FieldError("name", f"{names[counterparty_id]} is already in map {latest.number} as "
                                     f"{kind.replace('_', '-')} ({there.source_ref or 'no source'}); a map lists "
                                     f"each counterparty once per kind")
    if latest is None:
        latest = ValueChainMap(company_id=company.id, number=1, source_kind=MapSourceKind.MANUAL.value,
                               source_ref=MANUAL_SOURCE_REF, imported_by_id=actor_id, mapping={},
                               diff={"added": 0, "removed": 0, "changed": 0, "lines": []})
        db.session.add(latest)
    if counterparty_id is None:
        counterparty = Company(name=name, country=code, isin=isin, lei=lei,
                               origin=f"value chain of {company.name}"[:200])
        db.session.add(counterparty)
    else:
        counterparty = db.session.get(Company, counterparty_id)
    old = _previous_relationships(latest.previous).get((counterparty_id, kind)) if counterparty_id else None
    region_reason = in_uyghur_region(item.region, name)
    relationship = Relationship(map=latest, company_id=company.id, counterparty=counterparty, kind=kind, tier=tier,
                                products=item.products, country=code, region=item.region,
                                in_uyghur_region=region_reason is not None,
                                source_ref=item.source_ref or f"added by hand on {format_date(clock.today())}")
    db.session.add(relationship)
    diff = dict(latest.diff or {})
    lines = list(diff.get("lines") or [])
    label = _label(counterparty.name, kind, tier)
    if old is not None:  # the previous map had it: back with its status, no longer "removed"
        for attr in ("status", "status_date", "target_date", "evidence", "not_linked_reason"):
            setattr(relationship, attr, getattr(old[0], attr))
        removed = f"- {_label(old[1], old[0].kind, old[0].tier)}"
        if removed in lines:
            lines.remove(removed)
            diff["removed"] = max(int(diff.get("removed", 0)) - 1, 0)
    else:
        lines.append(f"+ {label}")
        diff["added"] = int(diff.get("added", 0)) + 1
    diff["lines"] = lines
    diff["by_hand"] = int(diff.get("by_hand", 0)) + 1  # no longer just its file: importing the file again is a change
    latest.diff = diff  # a new dict: the JSON column sees the change
    db.session.flush()
    result = screening.screen(companies=[counterparty.id], notify=True) if screen else None
    return Added(relationship=relationship, map=latest, created=counterparty_id is None, possible=possible,
                 flags=_current_flags([counterparty.id]).get(counterparty.id, []), region_reason=region_reason,
                 screening=result)
