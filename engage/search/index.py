"""Checking and rebuilding the search indexes (`flask search check|rebuild`).

The indexes keep themselves current (SQLite triggers, PostgreSQL expression indexes); these are
for an operator who wants to know, or who ran something that may have broken them: a SQLite batch
migration that rebuilt a searched table (its triggers went with the old table), a restore from a
dump made without the FTS tables, a write with INSERT OR REPLACE (whose implicit deletes fire no
trigger unless recursive_triggers is on; Engage never writes so).
"""

from __future__ import annotations

import sqlalchemy as sa

from engage.extensions import db

#: FTS5 table -> the table it indexes (migration 0023).
SQLITE_TABLES = {"search_companies": "companies", "search_company_aliases": "company_aliases",
                 "search_contacts": "company_contacts", "search_engagements": "engagements",
                 "search_interactions": "interactions"}
#: fts5vocab table -> the FTS5 table whose words it lists (migration 0040; it stores nothing).
SQLITE_TERMS = {"search_interactions_terms": "search_interactions"}
POSTGRESQL_INDEXES = {"ix_search_companies": "companies", "ix_search_company_aliases": "company_aliases",
                      "ix_search_contacts": "company_contacts", "ix_search_engagements": "engagements",
                      "ix_search_interactions": "interactions"}


def _dialect() -> str:
    return db.session.get_bind().dialect.name


def problems() -> list[str]:
    """What is wrong with the search indexes, one sentence each; [] when nothing is."""
    found = []
    if _dialect() == "postgresql":
        present = set(db.session.scalars(sa.text("SELECT indexname FROM pg_indexes WHERE indexname LIKE 'ix\\_search\\_%'")))
        for name, table in POSTGRESQL_INDEXES.items():
            if name not in present:
                found.append(f"index {name} on {table} is missing: run `flask db upgrade`")
        return found
    objects = {(row.type, row.name): row.tbl_name for row in db.session.execute(
        sa.text("SELECT type, name, tbl_name FROM sqlite_master WHERE name LIKE 'search\\_%' ESCAPE '\\'"))}
    for terms, fts in SQLITE_TERMS.items():
        if ("table", terms) not in objects:
            found.append(f"word list {terms} (of {fts}) is missing: run `flask search rebuild`")
    for fts, table in SQLITE_TABLES.items():
        if ("table", fts) not in objects:
            found.append(f"full-text table {fts} is missing: run `flask db upgrade`")
            continue
        for suffix, event in (("ai", "insert"), ("ad", "delete"), ("au", "update")):
            if objects.get(("trigger", f"{fts}_{suffix}")) != table:
                found.append(f"trigger {fts}_{suffix} ({event} on {table}) is missing: {fts} no longer follows "
                             f"{table}; create it as migration 0023 does, then run `flask search rebuild`")
        try:
            # Compares the index with the table's current rows (external content, rank 1).
            db.session.execute(sa.text(f"INSERT INTO {fts}({fts}, rank) VALUES ('integrity-check', 1)"))
        except sa.exc.DatabaseError:  # SQLITE_CORRUPT_VTAB: the index holds words the rows no longer do
            db.session.rollback()
            found.append(f"{fts} does not match the rows of {table}: run `flask search rebuild`")
    return found


def rebuild() -> list[str]:
    """Rebuild every search index from its table's rows; the names of those rebuilt."""
    if _dialect() == "postgresql":
        present = set(db.session.scalars(sa.text("SELECT indexname FROM pg_indexes WHERE indexname LIKE 'ix\\_search\\_%'")))
        names = [name for name in POSTGRESQL_INDEXES if name in present]
        for name in names:
            db.session.execute(sa.text(f"REINDEX INDEX {name}"))
        return names
    present = set(db.session.scalars(sa.text("SELECT name FROM sqlite_master WHERE type = 'table'")))
    names = [fts for fts in SQLITE_TABLES if fts in present]
    for fts in names:
        db.session.execute(sa.text(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')"))
    for terms, fts in SQLITE_TERMS.items():
        if fts in present:  # the word list stores nothing: made again as migration 0040 makes it
            db.session.execute(sa.text(f"CREATE VIRTUAL TABLE IF NOT EXISTS {terms} USING fts5vocab({fts}, 'instance')"))
    return names
