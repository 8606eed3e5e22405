"""Database helpers shared by features."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import closing
from itertools import chain, islice

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from engage.extensions import db

log = logging.getLogger(__name__)


def insert_ignoring_conflicts(model, rows: list[dict]) -> list[int]:
    """INSERT rows, silently skipping those a unique constraint or index already blocks.

    The database decides (ON CONFLICT DO NOTHING), so concurrent callers never both win.
    Returns the ids actually inserted.
    """
    if not rows:
        return []
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[db.engine.dialect.name]
    table = model.__table__
    statement = insert(table).values(rows).on_conflict_do_nothing().returning(table.c.id)
    return [row[0] for row in db.session.execute(statement)]


#: Connection info key: the connection's SQLite busy timeout was raised (reset when it is checked in).
RAISED_BUSY_TIMEOUT = "engage_busy_timeout_raised"


def raise_busy_timeout(connection, milliseconds: int) -> None:
    """On SQLite, let this connection wait up to `milliseconds` for the write lock until it returns
    to the pool (engage's checkin listener then sets SQLITE_BUSY_TIMEOUT_MS again)."""
    if connection.dialect.name != "sqlite":
        return
    connection.info[RAISED_BUSY_TIMEOUT] = True
    connection.exec_driver_sql(f"PRAGMA busy_timeout={max(0, min(int(milliseconds), 2**31 - 1))}")


def is_lock_timeout(error: Exception) -> bool:
    """The database gave up waiting for another transaction's lock: SQLite's "database is locked"
    (past the busy timeout), PostgreSQL's lock_timeout (55P03, lock_not_available)."""
    original = getattr(error, "orig", None)
    if original is None:
        return False
    if getattr(original, "sqlstate", None) == "55P03" or getattr(original, "pgcode", None) == "55P03":
        return True
    return type(original).__name__ == "OperationalError" and "database is locked" in str(original)


def store_if_possible(store: Callable[[], None], what: str) -> None:
    """Run `store` (figures counted in a request, stored for the next ones, then committed); if the
    database cannot take the write now (SQLite's write lock held past the busy timeout, or a
    read-only PostgreSQL database: SQLSTATE 25006), roll back and log a warning: the page shows
    what it counted all the same. Any other error is raised."""
    try:
        store()
    except (sa.exc.OperationalError, sa.exc.InternalError) as error:
        if isinstance(error, sa.exc.InternalError) and getattr(error.orig, "sqlstate", None) != "25006":
            raise
        db.session.rollback()
        log.warning("%s counted in the request could not be stored", what, exc_info=True)

def write_rows(table, columns: Sequence[str], rows: Iterable[Sequence], *, constants: dict | None = None,
               encoded: Collection[str] = ()) -> None:
    """INSERT `rows` (each a sequence of `columns`' values) into `table` in the session's transaction,
    through the driver: COPY on PostgreSQL, INSERTs of many rows each on SQLite.

    For hundreds of thousands of rows, where SQLAlchemy's per-row parameter handling of an
    executemany costs as much as the database's work. The values are converted as SQLAlchemy
    converts them (each column type's bind processor for this dialect), so the stored values are
    the same as `session.execute(sa.insert(table), dicts)` writes; `constants` (column → value, the
    same in every row) are converted once. `encoded` columns already hold what their type sends
    to the database (a JSON column's serialized text) and are not converted. No column defaults
    are applied: give every column the table needs. A database error is raised as SQLAlchemy's
    (sa.exc.IntegrityError for a constraint), and the caller's transaction is left to roll back.

    `rows` may be a generator: its rows are taken as the statements need them (CHUNK at a time on
    PostgreSQL, one INSERT's worth on SQLite), so a caller that makes each row as it is asked for
    (an import reading each new company's name) works while the server writes the rows before it
    (PostgreSQL reads a COPY's rows as they arrive). An exception raised by the generator ends the
    COPY unfinished and is raised as it is; the caller's transaction is left to roll back.
    """
    connection = db.session.connection()
    dialect = connection.dialect
    constants = dict(constants or {})
    names = list(columns) + list(constants)
    processors = []
    for index, name in enumerate(columns):
        if name not in encoded:
            processor = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors.append((index, processor))
    fixed = []
    for name, value in constants.items():
        processor = None if name in encoded else table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        fixed.append(processor(value) if processor is not None else value)
    fixed = tuple(fixed)

    def converted(chunk):
        for row in chunk:
            if processors:
                row = list(row)
                for index, processor in processors:
                    row[index] = processor(row[index])
            yield (*row, *fixed) if fixed else tuple(row)

    driver = connection.connection.driver_connection
    preparer = dialect.identifier_preparer
    quoted = ", ".join(preparer.quote(name) for name in names)
    rows = iter(rows)  # taken as they come: a generator's rows are made while the database writes the earlier ones
    statement = f"COPY {preparer.format_table(table)} ({quoted}) FROM STDIN"
    try:
        if dialect.name == "postgresql":
            while True:
                first = next(rows, _END)
                if first is _END:
                    return
                with closing(driver.cursor()) as cursor, cursor.copy(statement) as copy:
                    for row in converted(chain((first,), islice(rows, CHUNK - 1))):
                        copy.write_row(row)
        # SQLite: INSERTs of many rows each (as many as its limit of bound parameters takes, at
        # most 1,000), not one statement per row: SQLite's full-text tables (the search index,
        # filled by triggers) write their pending entries out at the end of each statement, which
        # made one row per statement several times slower.
        limit = driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) if hasattr(driver, "getlimit") else 999
        per_statement = max(1, min(1000, limit // len(names)))
        one = f"({', '.join('?' for _ in names)})"
        head = f"INSERT INTO {preparer.format_table(table)} ({quoted}) VALUES "
        with closing(driver.cursor()) as cursor:
            while chunk := list(converted(islice(rows, per_statement))):
                statement = head + ", ".join([one] * len(chunk))
                cursor.execute(statement, [value for row in chunk for value in row])
    except dialect.loaded_dbapi.Error as exc:
        raise sa.exc.DBAPIError.instance(statement, None, exc, dialect.loaded_dbapi.Error,
                                         dialect=dialect) from exc


#: Rows per COPY of write_rows on PostgreSQL.
CHUNK = 20_000
_END = object()


def distinct_values(column) -> list:
    """The column's distinct values other than NULL, in order, read by skipping through its index.

    `SELECT DISTINCT` reads every row's entry (the companies list's sector and country choices:
    10 to 30 ms at 100,000 companies, each request); this asks the index for the smallest value,
    then the smallest above it, and so on (a recursive CTE): one short index search per value.
    The same values in the same order, the database's collation deciding both.
    """
    found = sa.select(sa.func.min(column).label("value")).cte("found", recursive=True)
    found = found.union_all(
        sa.select(sa.select(sa.func.min(column)).where(column > found.c.value).scalar_subquery())
        .where(found.c.value.is_not(None)))
    return list(db.session.scalars(sa.select(found.c.value).where(found.c.value.is_not(None)).order_by(found.c.value)))


def write_log_function(function: str, counter: str) -> str:
    """PostgreSQL: the trigger function adding the writing transaction's row to `write_log` for
    `counter` (engage.holdings.stored explains the log), once per transaction.

    A row is keyed by the transaction's id, and a transaction's later statements add nothing (a
    transaction-local setting says it has its row; rolled back with it, as the row is). The key
    alone cannot say so: a dump restored into another server carries the old server's rows, whose
    ids the new one hands out again (a young server starts below 1,000), and a write whose id is
    already there would move nothing, leaving the pages counted before it in use. Such a write
    gets a row of its own instead, keyed by the log's own sequence, negated (no transaction id is
    negative, and the sequence never repeats, in a restored dump too)."""
    setting = f"engage.write_logged_{counter}"
    return (
        f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $body$ BEGIN "
        f"IF current_setting('{setting}', true) IS DISTINCT FROM txid_current()::text THEN "
        f"INSERT INTO write_log (name, txid) VALUES ('{counter}', txid_current()) ON CONFLICT (name, txid) DO NOTHING; "
        f"IF NOT FOUND THEN "
        f"INSERT INTO write_log (name, txid) VALUES ('{counter}', -nextval(pg_get_serial_sequence('write_log', 'id'))); "
        f"END IF; "
        f"PERFORM set_config('{setting}', txid_current()::text, true); "
        f"END IF; RETURN NULL; END $body$")


def missing_triggers(conn, prefix: str, triggers: dict[str, str], functions: Collection[str] = ()) -> list[str]:
    """Which of `triggers` (name → table) and, on PostgreSQL, of their trigger `functions` are not
    in the database (or are disabled), as 'trigger name (on table)' and 'function name()'.

    `prefix` is the names' common start (the stored figures' modules name theirs so: every trigger
    of engage.engagements.stored starts with "engagement_dates_")."""
    like = prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"
    if conn.dialect.name == "postgresql":
        present = {(row[0], row[1]) for row in conn.execute(sa.text(
            "SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE NOT t.tgisinternal AND t.tgenabled != 'D' AND t.tgname LIKE :like"), {"like": like})}
        there = set(conn.execute(sa.text("SELECT proname FROM pg_proc WHERE proname LIKE :like"), {"like": like}).scalars())
        missing = [f"function {name}()" for name in functions if name not in there]
    else:
        present = {(row[0], row[1]) for row in conn.execute(sa.text(
            "SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger' AND name LIKE :like ESCAPE '\\'"),
            {"like": like})}
        missing = []
    return missing + [f"trigger {name} (on {table})" for name, table in triggers.items() if (name, table) not in present]


def drop_triggers(conn, triggers: dict[str, str], functions: Collection[str] = ()) -> None:
    """Drop `triggers` (name → table) and, on PostgreSQL, their trigger `functions` where present."""
    postgresql = conn.dialect.name == "postgresql"
    for name, table in triggers.items():
        conn.execute(sa.text(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if postgresql else "")))
    if postgresql:
        for name in functions:
            conn.execute(sa.text(f"DROP FUNCTION IF EXISTS {name}()"))


def create_triggers(conn, statements: Iterable[str], triggers: dict[str, str], functions: Collection[str] = ()) -> None:
    """Run the DDL `statements` that make a stored figure's triggers, dropping any of the same name
    (`triggers`, `functions`) first, so it serves both a migration and a repair."""
    drop_triggers(conn, triggers, functions)
    for statement in statements:
        conn.execute(sa.text(statement))


def column_drift(conn, table: str, columns: Iterable[str], computed, limit: int = 5) -> dict[str, tuple[int, list[int]]]:
    """Per stored column of `table`: how many rows hold a value other than `computed(column, "t.id")`
    (SQL giving what the row should hold) gives, and the first `limit` ids."""
    found = {}
    distinct = "IS DISTINCT FROM" if conn.dialect.name == "postgresql" else "IS NOT"
    for column in columns:
        where = f"t.{column} {distinct} {computed(column, 't.id')}"
        count = conn.execute(sa.text(f"SELECT count(*) FROM {table} t WHERE {where}")).scalar_one()
        ids = list(conn.execute(sa.text(f"SELECT t.id FROM {table} t WHERE {where} ORDER BY t.id LIMIT {int(limit)}"))
                   .scalars()) if count else []
        found[column] = (count, ids)
    return found
