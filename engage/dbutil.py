"""Database helpers shared by features."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite

from engage.extensions import db


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
