"""Importing a parsed holdings file: match rows to companies and write one snapshot atomically.

Matching order: ISIN, then ticker + exchange, then normalised name or a known alias. Rows that
match nothing create companies carrying the file's identifiers (marked with `origin` for the
review page). Rows that land on one company (its share classes: an existing company matched by
several rows, or rows of one new name with different ISINs or none) make one position, their
numbers added up, and the preview and the result say which rows (`plan_positions`); a new
company gets the first ISIN, the others are listed for review. One ISIN twice is refused by the
parser.
Re-importing a fund and date replaces that snapshot (the preview and the result say which
earlier import it replaces); other dates stay as history. A row matched by ticker or name that
carries a valid ISIN the company lacks gives the company that ISIN; a row whose ISIN disagrees
with the company's is reported for review, never applied. Once the snapshot is written, the
fund's held-again alerts follow its latest snapshot (screening.alert_divested_held_again) in the
same transaction.

Imports run one at a time (`lock_imports`, a transaction-scoped lock): two imports of one fund
and date, started together, both succeed, the second replacing the first; companies new to both
are created once. An import that cannot get its turn within HOLDINGS_IMPORT_WAIT_SECONDS is
refused whole with ImportBusy.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache

import sqlalchemy as sa
from flask import current_app

from engage import audit, clock, dbutil, names
from engage.extensions import db
from engage.formatting import format_date, format_datetime
from engage.holdings import screening
from engage.holdings.parsing import HoldingRow, ParsedFile
from engage.models import Company, CompanyAlias, Fund, Holding, normalize_name
from engage.models.holdings import HoldingImport

#: Exchange names as providers write them → ISO 10383 market identifier codes.
EXCHANGES = {
    "shenzhen stock exchange": "XSHE", "shanghai stock exchange": "XSHG",
    "hong kong exchanges and clearing ltd": "XHKG", "hong kong stock exchange": "XHKG", "hkex": "XHKG",
    "nasdaq": "XNAS", "nasdaq global select": "XNAS", "new york stock exchange inc.": "XNYS",
    "new york stock exchange": "XNYS", "nyse": "XNYS", "london stock exchange": "XLON",
    "tokyo stock exchange": "XTKS", "taiwan stock exchange": "XTAI", "korea exchange": "XKRX",
    "xetra": "XETR", "euronext amsterdam": "XAMS", "euronext paris": "XPAR", "six swiss exchange": "XSWX",
    "national stock exchange of india": "XNSE", "bombay stock exchange": "XBOM", "b3 s.a.": "BVMF",
}


@lru_cache(maxsize=4096)  # a file names a few exchanges, on each of its rows
def exchange_code(value: str | None) -> str | None:
    if not value:
        return None
    text = value.strip()
    if len(text) == 4 and text.isupper() and text.isalpha():
        return text
    return EXCHANGES.get(text.lower(), text.upper()[:40])


@lru_cache(maxsize=4096)  # a few countries, each looked up in pycountry once, not on every row
def country_code(value: str | None) -> str | None:
    if not value:
        return None
    if len(value.strip()) == 2:
        return value.strip().upper()
    # pycountry takes about 60 ms to import: only a file that names a country in words pays it.
    import pycountry

    try:
        return pycountry.countries.lookup(value.strip()).alpha_2
    except LookupError:
        return None


#: The PostgreSQL advisory lock key of holdings imports (any fixed 64-bit number).
IMPORT_LOCK_KEY = 0x656E6761_67654849  # "engageHI"


class ImportBusy(Exception):
    """Another holdings import kept the database for longer than the wait allows; nothing was written."""


def lock_imports() -> None:
    """Wait for the holdings-import turn; held until the caller's transaction ends.

    PostgreSQL: a transaction-scoped advisory lock (re-entrant). SQLite: the database's write
    lock, taken by an UPDATE that changes nothing, so the reads that follow see what an import
    committed meanwhile. Call it before reading the fund or the companies an import relies on.
    """
    wait = float(current_app.config["HOLDINGS_IMPORT_WAIT_SECONDS"])
    message = (f"another holdings import is being written and did not finish within {wait:g} s; "
               f"nothing was imported, try again")
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        deadline = time.monotonic() + wait
        while not connection.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(IMPORT_LOCK_KEY))):
            if time.monotonic() >= deadline:
                raise ImportBusy(message)
            time.sleep(0.05)
        return
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql(f"PRAGMA busy_timeout={max(0, min(int(wait * 1000), 2**31 - 1))}")
        try:
            connection.execute(sa.update(Fund).where(sa.false()).values(id=Fund.id))
        except sa.exc.OperationalError as exc:
            if "locked" in str(exc.orig) or "busy" in str(exc.orig):
                raise ImportBusy(message) from exc
            raise
        finally:
            connection.exec_driver_sql(f"PRAGMA busy_timeout={int(current_app.config['SQLITE_BUSY_TIMEOUT_MS'])}")


@dataclass
class Matcher:
    """Company look-ups loaded once (a few queries), then used for every row."""

    by_isin: dict[str, int] = field(default_factory=dict)
    by_ticker: dict[tuple[str, str | None], int] = field(default_factory=dict)
    by_name: dict[str, int] = field(default_factory=dict)
    #: company id → (name, ISIN or None)
    companies: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    #: row number → its match, so that planning ISINs and positions match each row once
    matched: dict[int, tuple[int | None, str | None]] = field(default_factory=dict)
    #: row number → normalize_name of its name, read once per row
    names: dict[int, str] = field(default_factory=dict)

    @classmethod
    def load(cls) -> Matcher:
        matcher = cls()
        for company_id, name, isin, ticker, exchange, normalized in db.session.execute(
            sa.select(Company.id, Company.name, Company.isin, Company.ticker, Company.exchange, Company.normalized_name)
        ):
            matcher.companies[company_id] = (name, isin)
            if isin:
                matcher.by_isin[isin] = company_id
            if ticker:
                matcher.by_ticker.setdefault((ticker.upper(), exchange), company_id)
            if normalized:
                matcher.by_name.setdefault(normalized, company_id)
        for company_id, normalized in db.session.execute(
            sa.select(CompanyAlias.company_id, CompanyAlias.normalized_alias)
        ):
            matcher.by_name.setdefault(normalized, company_id)
        return matcher

    def normalized(self, row: HoldingRow) -> str:
        if row.row not in self.names:
            self.names[row.row] = normalize_name(row.name)
        return self.names[row.row]

    def match(self, row: HoldingRow) -> tuple[int | None, str | None]:
        if row.row not in self.matched:
            self.matched[row.row] = self._match(row)
        return self.matched[row.row]

    def _match(self, row: HoldingRow) -> tuple[int | None, str | None]:
        if row.isin and row.isin in self.by_isin:
            return self.by_isin[row.isin], "ISIN"
        if row.ticker:
            found = self.by_ticker.get((row.ticker.upper(), exchange_code(row.exchange)))
            if found:
                return found, "ticker and exchange"
        normalized = self.normalized(row)
        if normalized and normalized in self.by_name:
            return self.by_name[normalized], "name"
        return None, None


@dataclass
class IsinPlan:
    """ISINs the file adds to companies matched without one, and those left for review."""

    #: company id → (ISIN, row) to store
    store: dict[int, tuple[str, int]] = field(default_factory=dict)
    #: sentences for the review: ISINs that disagree with the company's, or compete for it
    review: list[str] = field(default_factory=list)


def plan_isins(parsed: ParsedFile, matcher: Matcher) -> IsinPlan:
    """Which valid ISINs of rows matched by ticker or name can be stored on their company."""
    plan = IsinPlan()
    offered: dict[int, dict[str, int]] = {}
    for row in parsed.rows:
        company_id, rule = matcher.match(row)
        if company_id is None or rule == "ISIN" or not row.isin:
            continue
        name, isin = matcher.companies[company_id]
        if isin and isin != row.isin:
            plan.review.append(f"row {row.row}: {row.name} matched {name} by {rule}, but the file gives ISIN "
                               f"{row.isin} and the company has {isin}")
            continue
        owner = matcher.by_isin.get(row.isin)
        if owner is not None and owner != company_id:
            plan.review.append(f"row {row.row}: {row.name} matched {name} by {rule}, but ISIN {row.isin} belongs "
                               f"to {matcher.companies[owner][0]}")
            continue
        offered.setdefault(company_id, {}).setdefault(row.isin, row.row)
    for company_id, isins in offered.items():
        if len(isins) == 1:
            (isin, row_number), = isins.items()
            plan.store[company_id] = (isin, row_number)
        else:
            listed = ", ".join(f"{isin} (row {row_number})" for isin, row_number in isins.items())
            plan.review.append(f"{matcher.companies[company_id][0]} has no ISIN and the file gives several: {listed}")
    return plan


@dataclass
class Planned:
    """One position an import writes: the company (existing id, or None for one it creates) and its rows."""

    company_id: int | None
    rows: list[HoldingRow] = field(default_factory=list)
    #: How each row matched its company ("ISIN", "ticker and exchange", "name"; None: created).
    rules: list[str | None] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.rows[0].name

    def sentence(self, matcher: Matcher) -> str:
        """The rows that add up to one position, for the preview and the result (share classes)."""
        name = matcher.companies[self.company_id][0] if self.company_id else self.name
        isins = sorted({r.isin for r in self.rows if r.isin})
        return (f"one position from rows {', '.join(str(r.row) for r in self.rows)}: {name}"
                + (f" (ISINs {', '.join(isins)}: share classes of one company)" if len(isins) > 1 else ""))


def plan_positions(parsed: ParsedFile, matcher: Matcher) -> list[Planned]:
    """Rows grouped into positions: per matched company, and per new company by normalised name.

    Rows of one issuer (its share classes, with different ISINs or one without) make one company
    and one position, their numbers added up; the preview and the result list them.
    """
    planned: dict[object, Planned] = {}
    for row in parsed.rows:
        company_id, rule = matcher.match(row)
        key = company_id if company_id is not None else ("new", matcher.normalized(row) or row.isin or row.name)
        position = planned.setdefault(key, Planned(company_id))
        position.rows.append(row)
        position.rules.append(rule)
    return list(planned.values())


def new_company_isins(position: Planned) -> tuple[str | None, list[str]]:
    """The ISIN a company created for `position` gets (the first in the file), and the review notes for the others."""
    isins: dict[str, int] = {}
    for row in position.rows:
        if row.isin:
            isins.setdefault(row.isin, row.row)
    if not isins:
        return None, []
    first, *others = isins
    notes = [f"{position.name}: created with ISIN {first}; the file also gives ISIN {isin} (row {isins[isin]}) "
             f"for it (another share class), not stored" for isin in others]
    return first, notes


@dataclass
class Replaced:
    """The snapshot an import would replace: its positions and the import that wrote it."""

    positions: int
    earlier: HoldingImport | None

    def sentence(self) -> str:
        if not self.positions:
            return "nothing (no earlier import for this date)"
        if self.earlier is None:
            return f"{self.positions} positions of an earlier import for this date (no record of its file)"
        e = self.earlier
        return (f"{self.positions} positions of the import of {format_date(e.as_of)} from {e.filename} by "
                f"{e.actor_label} at {format_datetime(e.created_at)}")


def replaced_snapshot(fund: Fund | None, as_of: dt.date | None) -> Replaced:
    if fund is None or fund.id is None or as_of is None:
        return Replaced(0, None)
    positions = db.session.scalar(sa.select(sa.func.count(Holding.id)).where(
        Holding.fund_id == fund.id, Holding.as_of == as_of)) or 0
    earlier = db.session.scalar(sa.select(HoldingImport).where(
        HoldingImport.fund_id == fund.id, HoldingImport.as_of == as_of).order_by(HoldingImport.id.desc()).limit(1))
    return Replaced(positions, earlier if positions else None)


@dataclass
class Preview:
    matched: int = 0
    to_create: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)
    samples: list[tuple[HoldingRow, str | None]] = field(default_factory=list)
    replaced: Replaced = field(default_factory=lambda: Replaced(0, None))
    isins: IsinPlan = field(default_factory=IsinPlan)
    #: Positions made of several rows (share classes of one company), as sentences.
    combined: list[str] = field(default_factory=list)


def preview(parsed: ParsedFile, fund: Fund | None = None, as_of: dt.date | None = None) -> Preview:
    """What an import would do, read-only: matches per rule, companies to create, what it replaces."""
    matcher = Matcher.load()
    result = Preview(replaced=replaced_snapshot(fund, as_of), isins=plan_isins(parsed, matcher))
    rules = {}
    for position in plan_positions(parsed, matcher):
        if position.company_id is None:
            result.to_create += 1
            result.isins.review.extend(new_company_isins(position)[1])
        else:
            result.matched += len(position.rows)
            for rule in position.rules:
                result.by_rule[rule] = result.by_rule.get(rule, 0) + 1
        if len(position.rows) > 1:
            result.combined.append(position.sentence(matcher))
        for row, rule in zip(position.rows, position.rules):
            rules[row.row] = rule
    result.samples = [(row, rules[row.row]) for row in parsed.rows[:15]]
    return result


@dataclass
class ImportResult:
    fund: Fund
    as_of: dt.date
    rows: int
    positions: int
    matched: dict[str, int]
    #: The ids of the companies the import created (in the file's order).
    created: list[int]
    replaced: Replaced
    skipped: dict[str, int]
    isins: IsinPlan
    record: HoldingImport
    alerts: screening.AlertResult = field(default_factory=screening.AlertResult)
    #: Positions written without a market value (shown as "value unknown", never as 0).
    without_value: int = 0
    #: Positions made of several rows (share classes of one company), as sentences.
    combined: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        matched = ", ".join(f"{n} by {rule}" for rule, n in self.matched.items()) or "none"
        skipped = ", ".join(f"{n} {what}" for what, n in self.skipped.items()) or "none"
        lines = [
            f"{self.fund.name} as of {format_date(self.as_of)}: {self.rows} rows → {self.positions} positions"
            + (" (partial file)" if self.record.partial else ""),
            f"matched: {matched}",
            f"created: {len(self.created)} companies",
            f"skipped (not equities): {skipped}",
            f"replaced: {self.replaced.sentence()}",
        ]
        if self.without_value:
            lines.append(f"no market value: {self.without_value} of {self.positions} positions (shown as value "
                         f"unknown, never counted as 0)")
        lines += self.combined
        if self.isins.store:
            lines.append(f"ISIN stored on {len(self.isins.store)} matched companies that had none")
        lines += [f"for review: {item}" for item in self.isins.review]
        return lines

    def warnings(self) -> list[str]:
        """What needs a person: divested companies the fund's latest snapshot holds again."""
        alerts = self.alerts
        if not alerts.held_again:
            return []
        where = "" if alerts.as_of == self.as_of else \
            f" in the fund's latest snapshot ({format_date(alerts.as_of)}, not the file imported)"
        return [f"held again after divestment{where}: {', '.join(item.company for item in alerts.held_again)} "
                f"({alerts.raised} new alert(s), {alerts.emails} owner email(s) queued); a divested company is "
                f"readmitted only on recorded evidence of change in practice"]


def import_parsed(parsed: ParsedFile, fund: Fund, as_of: dt.date, progress=None, filename: str = "",
                  data: bytes = b"", bulk: bool = True) -> ImportResult:
    """Write the snapshot in the caller's transaction; the caller commits once.

    The companies it creates, their audit events and the positions are written through the driver
    (`_create_companies`, dbutil.write_rows: many rows per statement, or COPY); `bulk=False` writes
    them as imports did before, the definition the tests compare the fast path with: one ORM object
    per company (the mapper hooks write the reading and the audit events), the positions with
    SQLAlchemy's executemany.

    Takes the import lock first (a caller that read the fund before should take it earlier);
    raises ImportBusy when it does not come in time.
    """
    if not parsed.ok:
        raise ValueError("refusing to import a file with errors")
    lock_imports()
    matcher = Matcher.load()
    replaced = replaced_snapshot(fund, as_of)
    isins = plan_isins(parsed, matcher)
    origin = f"holdings import: {fund.name} {as_of.isoformat()}"[:200]
    matched: dict[str, int] = {}
    positions: list[dict] = []
    combined: list[str] = []
    done = 0
    new_companies: list[dict] = []  # the companies this import creates, as rows (see _create_companies)
    for planned in plan_positions(parsed, matcher):
        if planned.company_id is None:
            first = planned.rows[0]
            isin, notes = new_company_isins(planned)
            isins.review.extend(notes)
            target = {"name": first.name[:200], "isin": isin, "ticker": (first.ticker or "")[:20] or None,
                      "normalized_name": matcher.normalized(first) if len(first.name) <= 200 else None,
                      "exchange": exchange_code(first.exchange), "country": country_code(first.location),
                      "sector": (first.sector or "")[:80] or None, "origin": origin}
            new_companies.append(target)
        else:
            target = planned.company_id
            for rule in planned.rules:
                matched[rule] = matched.get(rule, 0) + 1
        if len(planned.rows) > 1:
            combined.append(planned.sentence(matcher))
        position = {"company": target, "shares": None, "market_value": None, "weight": None}
        for row in planned.rows:
            for name in ("shares", "market_value", "weight"):
                value = getattr(row, name)
                if value is not None:
                    position[name] = (position[name] or Decimal(0)) + value
        positions.append(position)
        done += len(planned.rows)
        if progress and done // 500 != (done - len(planned.rows)) // 500:
            progress(done)
    created = (_create_companies if bulk else _create_companies_one_by_one)(new_companies)
    for company_id, (isin, _row) in isins.store.items():
        company = db.session.get(Company, company_id)
        if company is not None and company.isin is None:
            company.isin = isin  # an ORM update, so the audit trail records it
    db.session.flush()
    db.session.execute(sa.delete(Holding).where(Holding.fund_id == fund.id, Holding.as_of == as_of))
    now = clock.utcnow()
    rows = [
        {"fund_id": fund.id, "company_id": p["company"]["id"] if isinstance(p["company"], dict) else p["company"],
         "as_of": as_of, "shares": p["shares"], "market_value": p["market_value"],
         "weight": min(p["weight"], Decimal(100)) if p["weight"] is not None else None}
        for p in positions
    ]
    if rows and bulk:
        dbutil.write_rows(Holding.__table__, ("company_id", "shares", "market_value", "weight"),
                          ((r["company_id"], r["shares"], r["market_value"], r["weight"]) for r in rows),
                          constants={"fund_id": fund.id, "as_of": as_of, "created_at": now, "updated_at": now})
    elif rows:  # the definition the fast path is compared with: SQLAlchemy's executemany
        db.session.execute(sa.insert(Holding), [row | {"created_at": now, "updated_at": now} for row in rows])
    actor = audit.current_actor()
    record = HoldingImport(fund_id=fund.id, as_of=as_of, filename=(filename or "upload")[:255],
                           sha256=hashlib.sha256(data).hexdigest(), layout=parsed.layout, rows=len(parsed.rows),
                           positions=len(rows), replaced=replaced.positions, partial=parsed.partial,
                           decimal=parsed.decimal_chosen, created_by_id=actor.user_id, actor_label=actor.label[:200])
    db.session.add(record)
    audit.record("holdings_import", f"{len(rows)} positions of {fund.name} as of {format_date(as_of)} from "
                                    f"{record.filename} ({len(created)} companies created, "
                                    f"{replaced.positions} replaced)", obj=fund,
                 changes={"as_of": as_of.isoformat(), "filename": record.filename, "sha256": record.sha256,
                          "positions": len(rows), "replaced": replaced.sentence(), "partial": parsed.partial,
                          "isins_stored": {str(k): v[0] for k, v in isins.store.items()},
                          "for_review": isins.review})
    db.session.flush()
    alerts = screening.alert_divested_held_again(fund)
    if progress:
        progress(len(parsed.rows))
    return ImportResult(fund=fund, as_of=as_of, rows=len(parsed.rows), positions=len(rows), matched=matched,
                        created=created, replaced=replaced, skipped=parsed.skipped, isins=isins,
                        record=record, alerts=alerts,
                        without_value=sum(1 for row in rows if row["market_value"] is None), combined=combined)


def _create_companies(rows: list[dict]) -> list[int]:
    """Insert the companies an import creates through the driver (dbutil.write_rows); their ids.

    Writes what creating them one ORM object at a time wrote (`_create_companies_one_by_one`, which
    the tests compare it with): the normalised name, the stored reading of the name (`name_forms`),
    the timestamps, every column's default, and one "create" audit event per company, as the mapper
    hooks do. The search index follows through its triggers (SQLite) or expression index (PostgreSQL).
    The ids are taken beforehand (`_next_ids`), so no RETURNING is needed. Each row of `rows` gets
    its "id".
    """
    if not rows:
        return []
    now = clock.utcnow()
    ids = _next_ids(Company.__table__, len(rows))
    values = []
    varying = ("id", "name", "normalized_name", "isin", "ticker", "exchange", "country", "sector", "origin",
               "name_forms")

    def companies():
        """Each company's row, made as the COPY asks for it: on PostgreSQL the server writes the rows
        before (its indexes) while this reads the next names (`name_forms`, most of this CPU)."""
        for company_id, row in zip(ids, rows):
            row["id"] = company_id
            value = {"id": company_id, "name": row["name"],
                     "normalized_name": row["normalized_name"] or normalize_name(row["name"]),
                     "isin": row["isin"], "lei": None, "parent_id": None, "ticker": row["ticker"],
                     "exchange": row["exchange"], "country": row["country"], "sector": row["sector"],
                     "website": None, "address": "", "description": "", "origin": row["origin"],
                     "name_forms": names.stored_forms([row["name"]]), "created_at": now, "updated_at": now}
            values.append(value)
            yield tuple(value[k] for k in varying)

    dbutil.write_rows(Company.__table__, varying, companies(),
                      constants={"lei": None, "parent_id": None, "website": None, "address": "", "description": "",
                                 "created_at": now, "updated_at": now})
    audit.record_inserted(Company, values)
    return ids


def _create_companies_one_by_one(rows: list[dict]) -> list[int]:
    """The same companies as `_create_companies`, one ORM object each (the mapper hooks write the
    reading and the audit events): how imports created them before, kept to compare with."""
    companies = []
    for row in rows:
        company = Company(**{k: v for k, v in row.items() if k != "normalized_name"})  # set with the name
        db.session.add(company)
        companies.append(company)
    db.session.flush()
    for row, company in zip(rows, companies):
        row["id"] = company.id
    return [company.id for company in companies]


def _next_ids(table: sa.Table, count: int) -> list[int]:
    """`count` ids for new rows of `table`, taken before inserting them with explicit ids.

    PostgreSQL: from the id column's sequence (nextval, so concurrent writers get other ids).
    SQLite: above the largest id, as SQLite picks them itself (the import holds the write lock,
    taken by lock_imports, so no other writer can take them meanwhile).
    """
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        # The sequence found first, by its oid (a constant to nextval: pg_get_serial_sequence for
        # each id took 3.7 of 4 s at 200,000 ids), and the ids returned in one row (an array).
        sequence = connection.scalar(
            sa.text("SELECT CAST(CAST(pg_get_serial_sequence(:table, 'id') AS regclass) AS oid)"), {"table": table.name})
        return sorted(connection.scalar(sa.text(
            "SELECT array_agg(nextval(CAST(CAST(:sequence AS oid) AS regclass))) FROM generate_series(1, :count)"),
            {"sequence": sequence, "count": count}))
    start = (connection.scalar(sa.select(sa.func.max(table.c.id))) or 0) + 1
    return list(range(start, start + count))
