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
