"""The funds page's exposures, stored and used while nothing they are counted from has changed (issue 20).

Each fund's exposure at its latest snapshot (`screening.exposures`) sums every holding of the
snapshot against the current risk flags: it grows with the holdings. It depends on the holdings,
the risk flags and which funds exist, and on nothing else (not on the day). Triggers on
`holdings`, `risk_flags` and `funds` (SQLite: one per row; PostgreSQL: one per statement, and on
TRUNCATE) add one to a counter, `write_counters` row "exposure", in the transaction of the write.

`exposures()` reads the counter (one row), then the stored exposures (one row of
`dashboard_figures`, kind "exposure", holding the counter's value it was counted at); when the
values are equal nothing was written since, and the stored exposures are exactly what counting
would give: shown, with the funds' names and details read now (one query). Otherwise it counts
(`screening.exposures`, two queries over every snapshot) and stores the result with the counter's
value read *before* counting: a write committed while it counts makes the value older than the
counter, so the next request counts again (never stale, at worst counted twice).

So the figures are never stale, whatever writes the rows (the ORM, an import's COPY, raw SQL).
The cost: the first request after any write to holdings, flags or funds counts (as before) and
stores. On PostgreSQL one counter row updated by every writing transaction would make such
transactions take turns until each commits (a minute-long holdings import holding up a flag added
on a company page, and a deadlock wherever two of them also wait on each other's rows); there the
triggers instead add one row per writing transaction to `write_log` (name, the transaction's id:
nothing for its later statements, and no two transactions share a key, so none waits; a
transaction id already logged by the server a dump was restored from gets a row of its own:
dbutil.write_log_function, migration 0042), and the value compared is (clearings, rows in the
log): a commit adds a row, so the value changes exactly when a write commits. Housekeeping clears
the log when it passes LOG_CLEAR_AT rows and counts the clearing in the counter row, in one
transaction (`clear_log`).
"""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from engage import clock, dbutil
from engage.extensions import db
from engage.holdings import screening
from engage.models import DashboardFigures, Fund


KIND = "exposure"
COUNTER = "exposure"
#: The tables the exposures are counted from.
TABLES = ("holdings", "risk_flags", "funds")
TRIGGERS = {f"exposure_writes_{table}_{suffix}": table for table in TABLES for suffix in ("ai", "au", "ad")}
PG_TRUNCATE_TRIGGERS = {f"exposure_writes_{table}_at": table for table in TABLES}
FUNCTION = "exposure_writes_bump"

BUMP = (f"INSERT INTO write_counters (name, writes) VALUES ('{COUNTER}', 1) "
        "ON CONFLICT (name) DO UPDATE SET writes = write_counters.writes + 1")
#: Housekeeping clears PostgreSQL's log past this many rows (a clearing makes the next funds page count once).
LOG_CLEAR_AT = 1000


# --- the counter and its triggers ----------------------------------------------------------------

def statements(dialect: str) -> list[str]:
    """The DDL that makes the triggers (and PostgreSQL's function)."""
    if dialect == "postgresql":
        out = [dbutil.write_log_function(FUNCTION, COUNTER)]
        for name, table in TRIGGERS.items():
            event = {"ai": "INSERT", "au": "UPDATE", "ad": "DELETE"}[name.rsplit("_", 1)[1]]
            out.append(f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()")
        for name, table in PG_TRUNCATE_TRIGGERS.items():
            out.append(f"CREATE TRIGGER {name} AFTER TRUNCATE ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()")
        return out
    out = []
    for name, table in TRIGGERS.items():
        event = {"ai": "INSERT", "au": "UPDATE", "ad": "DELETE"}[name.rsplit("_", 1)[1]]
        out.append(f"CREATE TRIGGER {name} AFTER {event} ON {table} BEGIN {BUMP}; END")
    return out


def _triggers(conn) -> dict[str, str]:
    """The triggers by name → table: on PostgreSQL also the statement-level ones on TRUNCATE."""
    return {**TRIGGERS, **(PG_TRUNCATE_TRIGGERS if conn.dialect.name == "postgresql" else {})}


def install(conn) -> None:
    dbutil.create_triggers(conn, statements(conn.dialect.name), _triggers(conn), [FUNCTION])


def uninstall(conn) -> None:
    dbutil.drop_triggers(conn, _triggers(conn), [FUNCTION])


def missing_triggers(conn) -> list[str]:
    return dbutil.missing_triggers(conn, "exposure_writes_", _triggers(conn), [FUNCTION])


def writes() -> int:
    """A value that grows with every committed write to holdings, flags and funds (0 before any).

    SQLite: the counter. PostgreSQL: the log's clearings (counter row) times 2**32 plus the log's
    rows: a committed write adds a row (an uncommitted one is not seen), a clearing adds one to the
    counter, so the value never repeats once it has moved on."""
    if db.session.get_bind().dialect.name != "postgresql":
        return db.session.scalar(sa.text("SELECT writes FROM write_counters WHERE name = :n"), {"n": COUNTER}) or 0
    cleared, rows = db.session.execute(sa.text(
        "SELECT (SELECT writes FROM write_counters WHERE name = :n), (SELECT count(*) FROM write_log WHERE name = :n)"),
        {"n": COUNTER}).one()
    return ((cleared or 0) << 32) + rows


def clear_log() -> int:
    """PostgreSQL: empty the write log once it holds LOG_CLEAR_AT rows or more, counting the clearing
    in the counter row in the same transaction (the caller commits); the rows removed (0: nothing
    done). Rows of transactions still running are not seen and stay: their commit moves the value."""
    if db.session.get_bind().dialect.name != "postgresql":
        return 0
    if db.session.scalar(sa.text("SELECT count(*) FROM write_log WHERE name = :n"), {"n": COUNTER}) < LOG_CLEAR_AT:
        return 0
    db.session.execute(sa.text(BUMP))
    return db.session.execute(sa.text("DELETE FROM write_log WHERE name = :n"), {"n": COUNTER}).rowcount


# --- the stored exposures ------------------------------------------------------------------------

def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def part_json(part: screening.Part | None) -> dict | None:
    if part is None:
        return None
    return {"source": part.source, "positions": part.positions, "value": _money(part.value),
            "total": _money(part.total), "unknown": part.unknown, "also_official": part.also_official,
            "link": part.link}


def part(data: dict | None) -> screening.Part | None:
    if data is None:
        return None
    return screening.Part(data["source"], data["positions"], Decimal(data["value"]), Decimal(data["total"]),
                          unknown=data["unknown"], also_official=data["also_official"], link=data["link"])


def exposure_json(e: screening.FundExposure) -> dict:
    return {"fund_id": e.fund.id, "as_of": e.as_of.isoformat() if e.as_of else None, "total": _money(e.total),
            "positions": e.positions, "unknown": e.unknown, "official": part_json(e.official),
            "lists": [part_json(p) for p in e.lists], "signals": [part_json(p) for p in e.signals],
            "linked": [part_json(p) for p in e.linked], "linked_any": part_json(e.linked_any)}


def from_json(items: list[dict], funds: dict[int, Fund] | None = None) -> list[screening.FundExposure]:
    """The stored exposures with their funds (read now unless given: one query); a fund deleted since is left out."""
    if not items:
        return []
    if funds is None:
        funds = {fund.id: fund for fund in db.session.scalars(
            sa.select(Fund).where(Fund.id.in_([item["fund_id"] for item in items])))}
    return [screening.FundExposure(
        fund=funds[item["fund_id"]], as_of=dt.date.fromisoformat(item["as_of"]) if item["as_of"] else None,
        total=Decimal(item["total"]), positions=item["positions"], unknown=item["unknown"],
        official=part(item["official"]), lists=[part(p) for p in item["lists"]],
        signals=[part(p) for p in item["signals"]], linked=[part(p) for p in item["linked"]],
        linked_any=part(item["linked_any"]),
    ) for item in items if item["fund_id"] in funds]


def _store(counted_at: int, items: list[dict], seconds: float, cpu_seconds: float) -> None:
    now = clock.utcnow()
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[db.engine.dialect.name]
    table = DashboardFigures.__table__
    statement = insert(table).values(kind=KIND, day=now.date(), data={"writes": counted_at, "exposure": items},
                                     computed_at=now, seconds=seconds, cpu_seconds=cpu_seconds)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.kind],
        set_={name: statement.excluded[name] for name in ("day", "data", "computed_at", "seconds", "cpu_seconds")})
    db.session.execute(statement)
    db.session.commit()


def exposures() -> list[screening.FundExposure]:
    """Every fund's exposure at its latest snapshot, by fund name: `screening.exposures()`, from the
    stored copy when nothing was written since it was counted, else counted now and stored."""
    current = writes()
    row = db.session.get(DashboardFigures, KIND, populate_existing=True)
    if row is not None and row.data.get("writes") == current:
        funds = {fund.id: fund for fund in db.session.scalars(sa.select(Fund))}
        found = from_json(row.data["exposure"], funds)
        if len(found) == len(funds):  # every fund there (a fund is a write too, so always)
            return sorted(found, key=lambda e: (e.fund.name, e.fund.id))
    wall, cpu = time.perf_counter(), time.process_time()
    counted = screening.exposures()
    ids = [e.fund.id for e in counted]  # before the commit expires the funds
    dbutil.store_if_possible(lambda: _store(current, [exposure_json(e) for e in counted],
                                            round(time.perf_counter() - wall, 3), round(time.process_time() - cpu, 3)),
                             "fund exposures")
    # The commit expired the funds: read them again in one query (not one per fund when drawn).
    db.session.scalars(sa.select(Fund).where(Fund.id.in_(ids))).all()
    return counted


def drift() -> list[str]:
    """The funds whose stored exposure (when the stored copy is current) differs from a count now, by name."""
    row = db.session.get(DashboardFigures, KIND, populate_existing=True)
    if row is None or row.data.get("writes") != writes():
        return []
    stored = {item["fund_id"]: item for item in row.data["exposure"]}
    return [e.fund.name for e in screening.exposures() if stored.get(e.fund.id) != exposure_json(e)]
