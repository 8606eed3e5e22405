"""Search everywhere: the header's search box across companies (names, aliases, ISIN, ticker, LEI),
engagements, contacts and interactions, on full-text indexes (SQLite FTS5, PostgreSQL tsvector).

The indexes are made by migration 0023 and are not models; `schema` names them for Alembic.
"""
