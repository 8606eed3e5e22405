"""The search indexes' database objects, which no model describes (migration 0023 makes them).

SQLite: FTS5 tables named search_* (and their shadow tables search_*_data, _idx, _docsize,
_config) kept by triggers; PostgreSQL: GIN expression indexes named ix_search_*.
`include_object` keeps Alembic's comparison of models and database (autogenerate, the
migrations test) from proposing to drop them.
"""

from __future__ import annotations

TABLE_PREFIX = "search_"
INDEX_PREFIX = "ix_search_"


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Alembic hook: leave out the search index objects that exist only in the database."""
    if reflected and compare_to is None and name:
        if type_ == "table" and name.startswith(TABLE_PREFIX):
            return False
        if type_ == "index" and name.startswith(INDEX_PREFIX):
            return False
    return True
