"""search: full-text indexes over companies, aliases, contacts, engagements and interactions (issue 17)

SQLite: one FTS5 table per searched table, "external content" (the text stays in the table, the
FTS table holds only the index), kept current by triggers on insert, update and delete, and
filled from the existing rows by the 'rebuild' command. Names and identifiers use the trigram
tokenizer (substrings of 3+ characters, Chinese included); free text uses unicode61 with prefix
indexes.

PostgreSQL: GIN expression indexes on to_tsvector('simple', ...): PostgreSQL keeps them current
itself. engage/search/service.py repeats each expression exactly, or the planner cannot use it.

None of these objects is described by the models; engage.search.schema.include_object keeps
Alembic's comparison (autogenerate, tests/test_migrations.py) from reporting them.

A later SQLite *batch* migration that rebuilds one of these tables (copy, drop, rename) drops its
triggers with the old table: such a migration must run SQLITE_TRIGGERS for that table again and
'rebuild' its index (tests/test_search.py fails otherwise: the index stops following edits).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04 18:00:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None

TRIGRAM = "tokenize='trigram'"
WORDS = "tokenize='unicode61 remove_diacritics 2', prefix='2 3'"

#: (FTS table, content table, indexed columns, tokenizer options)
SQLITE_INDEXES = [
    ("search_companies", "companies", ["name", "isin", "ticker", "lei"], TRIGRAM),
    ("search_company_aliases", "company_aliases", ["alias"], TRIGRAM),
    ("search_contacts", "company_contacts", ["name", "title", "email"], WORDS),
    ("search_engagements", "engagements", ["objectives"], WORDS),
    ("search_interactions", "interactions", ["subject", "summary", "participants"], WORDS),
]

#: (index name, table, expression); engage/search/service.py uses the same expressions.
POSTGRESQL_INDEXES = [
    ("ix_search_companies", "companies",
     "to_tsvector('simple', coalesce(name, '') || ' ' || coalesce(isin, '') || ' ' || coalesce(ticker, '') "
     "|| ' ' || coalesce(lei, ''))"),
    ("ix_search_company_aliases", "company_aliases", "to_tsvector('simple', alias)"),
    ("ix_search_contacts", "company_contacts",
     # The address cut at "@" and "." (the parser keeps an address whole): its domain is a word.
     "to_tsvector('simple', name || ' ' || title || ' ' || translate(coalesce(email, ''), '@.', '  '))"),
    ("ix_search_engagements", "engagements", "to_tsvector('simple', objectives)"),
    ("ix_search_interactions", "interactions",
     "to_tsvector('simple', subject || ' ' || summary || ' ' || participants)"),
]


def sqlite_triggers(fts: str, table: str, columns: list[str]) -> list[str]:
    """The three triggers that keep an external-content FTS5 table in step with its table."""
    names = ", ".join(columns)
    new = ", ".join(f"new.{c}" for c in columns)
    old = ", ".join(f"old.{c}" for c in columns)
    return [
        f"CREATE TRIGGER {fts}_ai AFTER INSERT ON {table} BEGIN "
        f"INSERT INTO {fts}(rowid, {names}) VALUES (new.id, {new}); END",
        f"CREATE TRIGGER {fts}_ad AFTER DELETE ON {table} BEGIN "
        f"INSERT INTO {fts}({fts}, rowid, {names}) VALUES ('delete', old.id, {old}); END",
        # Only when an indexed column changes (not on every updated_at).
        f"CREATE TRIGGER {fts}_au AFTER UPDATE OF id, {names} ON {table} BEGIN "
        f"INSERT INTO {fts}({fts}, rowid, {names}) VALUES ('delete', old.id, {old}); "
        f"INSERT INTO {fts}(rowid, {names}) VALUES (new.id, {new}); END",
    ]


def upgrade():
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for fts, table, columns, options in SQLITE_INDEXES:
            op.execute(f"CREATE VIRTUAL TABLE {fts} USING fts5({', '.join(columns)}, "
                       f"content='{table}', content_rowid='id', {options})")
            for statement in sqlite_triggers(fts, table, columns):
                op.execute(statement)
            op.execute(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')")  # the rows already there
    elif bind.dialect.name == "postgresql":
        for name, table, expression in POSTGRESQL_INDEXES:
            op.execute(f"CREATE INDEX {name} ON {table} USING gin (({expression}))")


def downgrade():
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for fts, _table, _columns, _options in SQLITE_INDEXES:
            for suffix in ("ai", "ad", "au"):
                op.execute(f"DROP TRIGGER IF EXISTS {fts}_{suffix}")
            op.execute(f"DROP TABLE IF EXISTS {fts}")
    elif bind.dialect.name == "postgresql":
        for name, _table, _expression in POSTGRESQL_INDEXES:
            op.execute(f"DROP INDEX IF EXISTS {name}")
