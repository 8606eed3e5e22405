"""Database helpers shared by features."""

from __future__ import annotations

import sqlalchemy as sa
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
