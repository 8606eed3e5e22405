"""The screening pages' figures and rankings, stored and used while nothing they come from has changed (issue 20).

The screening page, a fund's full lists and the held-again list count and rank the flagged
holdings (7,434 at 100,000 companies) and the held-again ones (41,686) on every request, so they
grew with the data. What they count and rank depends on holdings, risk flags and funds (written
down by the funds page's counter, engage.holdings.stored: its triggers are already there, so a
holdings import pays for nothing new), on engagements (which company, owner, stage, escalation,
outcome, dates), on the events that divest an engagement, and on companies' names (the order by
name); and on the threshold of "new since the last screening", part of the stored key. Triggers
on engagements (`UPDATE OF` those columns only: the stored follow-up and contact dates written by
every interaction do not count), on engagement events (SQLite: only divesting ones) and on
companies (`UPDATE OF` the names, and deletes) add one to the "screening" counter, as
engage.holdings.stored does for "exposure" (SQLite: row triggers on the counter row; PostgreSQL:
statement triggers adding one row per writing transaction to `write_log`, so no writer waits).

Three rows of `dashboard_figures`, each with both counters' values read *before* counting and
the key it was counted for:

- "screening-figures": `flagged_figures` (every count of the overview and a fund's sections),
  each fund's first SHOWN flagged holdings per section and new ones (their ids: the rows, their
  flags and engagements are read on the request), and each fund's first SHOWN held-again rows
  and how many there are (from the dashboard's stored counts when the page may use them, as
  before, and then kept only while those are the same count);
- "screening-lists": `flagged_figures` again and every fund's flagged holdings per section, as
  ids in the order shown (a fund's full lists);
- "screening-held": every fund's held-again holdings, as ids in the order shown.

A page reads the counters (one or two short queries) and its row; when both values and the key
are those stored, the stored figures are exactly what counting would give now, and the page
reads only the rows it shows, by id. Otherwise it counts as before and stores the result. A write
committed while it counts leaves the stored values older than the counters: the next request
counts again. So the pages are never stale, whatever wrote the rows (the ORM, an import's COPY,
raw SQL); the first request after a write pays what every request paid before.
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
from engage.holdings import stored as exposure_stored
from engage.models import DashboardFigures


COUNTER = "screening"
FUNCTION = "screening_writes_bump"
#: The columns of engagements the screening pages read (is_open, is_divested, divested_on, held-again rows).
ENGAGEMENT_COLUMNS = ("company_id", "owner_id", "stage", "escalation", "outcome", "opened_on", "closed_on")
#: The columns of companies the pages order or show by.
COMPANY_COLUMNS = ("name", "normalized_name")
DIVESTING = "(({row}.kind = 'escalation' AND {row}.to_value = 'divested') OR ({row}.kind = 'close' AND {row}.outcome = 'divested'))"

#: trigger name -> (table, event, SQLite WHEN condition or None)
_TRIGGERS: dict[str, tuple[str, str, str | None]] = {
    "screening_writes_engagements_ai": ("engagements", "INSERT", None),
    "screening_writes_engagements_au": ("engagements", f"UPDATE OF {', '.join(ENGAGEMENT_COLUMNS)}", None),
    "screening_writes_engagements_ad": ("engagements", "DELETE", None),
    "screening_writes_engagement_events_ai": ("engagement_events", "INSERT", DIVESTING.format(row="NEW")),
    "screening_writes_engagement_events_au": ("engagement_events", "UPDATE",
                                              f"{DIVESTING.format(row='OLD')} OR {DIVESTING.format(row='NEW')}"),
    "screening_writes_engagement_events_ad": ("engagement_events", "DELETE", DIVESTING.format(row="OLD")),
    "screening_writes_companies_au": ("companies", f"UPDATE OF {', '.join(COMPANY_COLUMNS)}", None),
    "screening_writes_companies_ad": ("companies", "DELETE", None),
}
TRIGGERS = {name: table for name, (table, _, _) in _TRIGGERS.items()}
PG_TRUNCATE_TRIGGERS = {f"screening_writes_{table}_at": table for table in ("engagements", "engagement_events", "companies")}

BUMP = (f"INSERT INTO write_counters (name, writes) VALUES ('{COUNTER}', 1) "
        "ON CONFLICT (name) DO UPDATE SET writes = write_counters.writes + 1")

FIGURES, LISTS, HELD = "screening-figures", "screening-lists", "screening-held"


# --- the counter and its triggers ----------------------------------------------------------------

def statements(dialect: str) -> list[str]:
    """The DDL that makes the triggers (and PostgreSQL's function)."""
    if dialect == "postgresql":
        out = [dbutil.write_log_function(FUNCTION, COUNTER)]
        for name, (table, event, _) in _TRIGGERS.items():
            out.append(f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()")
        for name, table in PG_TRUNCATE_TRIGGERS.items():
            out.append(f"CREATE TRIGGER {name} AFTER TRUNCATE ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()")
        return out
    return [f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW" + (f" WHEN {when}" if when else "")
            + f" BEGIN {BUMP}; END" for name, (table, event, when) in _TRIGGERS.items()]


def _triggers(conn) -> dict[str, str]:
    """The triggers by name → table: on PostgreSQL also the statement-level ones on TRUNCATE."""
    return {**TRIGGERS, **(PG_TRUNCATE_TRIGGERS if conn.dialect.name == "postgresql" else {})}


def install(conn) -> None:
    dbutil.create_triggers(conn, statements(conn.dialect.name), _triggers(conn), [FUNCTION])


def uninstall(conn) -> None:
    dbutil.drop_triggers(conn, _triggers(conn), [FUNCTION])


def missing_triggers(conn) -> list[str]:
    return dbutil.missing_triggers(conn, "screening_writes_", _triggers(conn), [FUNCTION])


def writes() -> list[int]:
    """Values that grow with every committed write the screening pages depend on: the funds page's
    counter (holdings, flags, funds) and this one (engagements, divesting events, company names),
    read in one statement. See engage.holdings.stored.writes for PostgreSQL's (clearings, log rows)."""
    names = {"e": exposure_stored.COUNTER, "s": COUNTER}
    if db.session.get_bind().dialect.name != "postgresql":
        return list(db.session.execute(sa.text(
            "SELECT (SELECT writes FROM write_counters WHERE name = :e), "
            "(SELECT writes FROM write_counters WHERE name = :s)"), names).one())
    row = db.session.execute(sa.text(
        "SELECT (SELECT writes FROM write_counters WHERE name = :e), (SELECT count(*) FROM write_log WHERE name = :e), "
        "(SELECT writes FROM write_counters WHERE name = :s), (SELECT count(*) FROM write_log WHERE name = :s)"),
        names).one()
    return [((row[0] or 0) << 32) + row[1], ((row[2] or 0) << 32) + row[3]]


def clear_log() -> int:
    """PostgreSQL: empty this counter's write log once it holds LOG_CLEAR_AT rows or more (as
    engage.holdings.stored.clear_log, the caller commits); the rows removed (0: nothing done)."""
    if db.session.get_bind().dialect.name != "postgresql":
        return 0
    # the funds page's threshold (read now: one setting for both logs)
    if db.session.scalar(sa.text("SELECT count(*) FROM write_log WHERE name = :n"), {"n": COUNTER}) < exposure_stored.LOG_CLEAR_AT:
        return 0
    db.session.execute(sa.text(BUMP))
    return db.session.execute(sa.text("DELETE FROM write_log WHERE name = :n"), {"n": COUNTER}).rowcount


# --- the stored figures ----------------------------------------------------------------------------

def _store(kind: str, data: dict, seconds: float, cpu_seconds: float) -> None:
    now = clock.utcnow()
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[db.engine.dialect.name]
    table = DashboardFigures.__table__
    statement = insert(table).values(kind=kind, day=now.date(), data=data, computed_at=now, seconds=seconds,
                                     cpu_seconds=cpu_seconds)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.kind],
        set_={name: statement.excluded[name] for name in ("day", "data", "computed_at", "seconds", "cpu_seconds")})
    db.session.execute(statement)
    db.session.commit()


def remembered(kind: str, key, count) -> dict:
    """The stored value of `kind` when it was counted for `key` with the counters as they are now;
    else `count()` (JSON-able), stored with the counters' values read before counting.

    The caller reads no ORM object before this (storing commits, which expires them)."""
    current = writes()
    row = db.session.get(DashboardFigures, kind, populate_existing=True)
    if row is not None and row.data.get("writes") == current and row.data.get("key") == key:
        return row.data["value"]
    wall, cpu = time.perf_counter(), time.process_time()
    value = count()
    dbutil.store_if_possible(lambda: _store(kind, {"writes": current, "key": key, "value": value},
                                            round(time.perf_counter() - wall, 3), round(time.process_time() - cpu, 3)),
                             "screening figures")
    return value


def _group_json(g: screening.FlaggedGroup) -> list:
    return [g.fund_id, g.source, g.link, g.section, g.first, g.new, g.count, str(g.amount), g.unknown, g.can_open]


def _group(item: list) -> screening.FlaggedGroup:
    fund_id, source, link, section, first, new, count, amount, unknown, can_open = item
    return screening.FlaggedGroup(fund_id, source, link, section, first, new, count, Decimal(amount), unknown, can_open)


def _held_json(item: screening.HeldAgain) -> list:
    return [item.fund_id, item.fund, item.currency, item.as_of.isoformat(), item.company_id, item.company,
            None if item.market_value is None else str(item.market_value), item.engagement_id, item.owner_id,
            item.divested_on.isoformat()]


def _held(item: list) -> screening.HeldAgain:
    fund_id, fund, currency, as_of, company_id, company, value, engagement_id, owner_id, divested_on = item
    return screening.HeldAgain(fund_id, fund, currency, dt.date.fromisoformat(as_of), company_id, company,
                               None if value is None else Decimal(value), engagement_id, owner_id,
                               dt.date.fromisoformat(divested_on))


def overview(new_after: int | None, held_counts: dict[int, int] | None = None, counted_at=None):
    """The screening page's counted parts: (`flagged_figures` of the latest snapshots, the slices'
    holding ids by (fund, section or "new"), `held_again_slices` by fund).

    `held_counts` (the dashboard's stored held-again counts, counted at `counted_at`), as the page
    used them before: the held-again totals are taken from them (no count over every holding) and
    the stored value is used only while they are the same count (`counted_at` is part of the key),
    so it is never older than they are; without them the totals are counted exactly."""
    key = [new_after, None if counted_at is None else counted_at.isoformat()]

    def count() -> dict:
        snap = screening.snapshots()
        groups = screening.flagged_figures(snap, new_after)
        slices = screening.flagged_slice_ids(snap, screening.SHOWN, new_after)
        held = screening.held_again_slices(snap, screening.SHOWN, counts=held_counts)
        return {"groups": [_group_json(g) for g in groups],
                "slices": [[fund, name, ids] for (fund, name), ids in slices.items()],
                "held": [[fund, total, [_held_json(item) for item in items]] for fund, (items, total) in held.items()]}

    value = remembered(FIGURES, key, count)
    held = {fund: ([_held(item) for item in items], total) for fund, total, items in value["held"]}
    return ([_group(item) for item in value["groups"]], {(fund, name): ids for fund, name, ids in value["slices"]},
            held)


def fund_lists(new_after: int | None):
    """A fund's page's counted parts: (`flagged_figures` of the latest snapshots, every fund's
    flagged holdings per section as ids in the order shown, by (fund, section))."""
    def count() -> dict:
        snap = screening.snapshots()
        return {"groups": [_group_json(g) for g in screening.flagged_figures(snap, new_after)],
                "lists": [[fund, section, ids] for (fund, section), ids in screening.flagged_list_ids(snap).items()]}

    value = remembered(LISTS, new_after, count)
    return ([_group(item) for item in value["groups"]],
            {(fund, section): ids for fund, section, ids in value["lists"]})


def held_lists() -> dict[int, list[int]]:
    """Every fund's held-again holdings of its latest snapshot, as ids in the order shown."""
    value = remembered(HELD, None, lambda: [[fund, ids] for fund, ids in
                                            screening.held_again_ids(screening.snapshots()).items()])
    return {fund: ids for fund, ids in value}


def forget() -> int:
    """Delete the stored figures (the caller commits); how many rows."""
    return db.session.execute(sa.delete(DashboardFigures).where(DashboardFigures.kind.in_((FIGURES, LISTS, HELD)))).rowcount


def drift() -> list[str]:
    """The stored kinds (when current) that differ from a count now."""
    wrong = []
    current = writes()
    row = db.session.get(DashboardFigures, HELD, populate_existing=True)
    if row is not None and row.data.get("writes") == current and row.data["value"] != [
            [f, ids] for f, ids in screening.held_again_ids(screening.snapshots()).items()]:
        wrong.append(HELD)
    row = db.session.get(DashboardFigures, LISTS, populate_existing=True)
    if row is not None and row.data.get("writes") == current:
        snap, key = screening.snapshots(), row.data.get("key")
        if (sorted(row.data["value"]["groups"]) != sorted(_group_json(g) for g in screening.flagged_figures(snap, key))
                or row.data["value"]["lists"] != [[f, s, ids] for (f, s), ids in screening.flagged_list_ids(snap).items()]):
            wrong.append(LISTS)
    row = db.session.get(DashboardFigures, FIGURES, populate_existing=True)
    if row is not None and row.data.get("writes") == current and row.data["key"][1] is None:  # counted exactly
        snap, key = screening.snapshots(), row.data["key"][0]
        value = row.data["value"]
        if (sorted(value["groups"]) != sorted(_group_json(g) for g in screening.flagged_figures(snap, key))
                or {(f, n): ids for f, n, ids in value["slices"]} != screening.flagged_slice_ids(snap, screening.SHOWN, key)
                or {f: (t, items) for f, t, items in value["held"]} != {
                    f: (t, [_held_json(i) for i in items])
                    for f, (items, t) in screening.held_again_slices(snap, screening.SHOWN).items()}):
            wrong.append(FIGURES)
    return wrong
