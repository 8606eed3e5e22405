"""the words of the interactions' search index (SQLite) and the engagements' stage and escalation
index with their company (issue 20: SQLite list pages and search at 100,000 companies)

Revision ID: 0040
Revises: 0039
Create Date: 2026-12-06 06:20:00

- SQLite: `search_interactions_terms`, an fts5vocab table (one row per word and place) over
  search_interactions. It stores nothing: it reads the FTS5 index. The search reads from it the
  words a typed word begins, to look them up exactly and newest first
  (engage.search.service.fts5_newest_match). Its name begins with `search_`, so
  engage.search.schema.include_object keeps it out of Alembic's comparison.
- Both databases: ix_engagements_stage_escalation becomes (stage, escalation, company_id), so the
  engagements list filtered by stage and escalation reads each match's company from the index
  instead of the engagement's row (SQLite: 4,026 row reads at 100,000 companies).
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0040'
down_revision = '0039'
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == "sqlite":
        op.execute("CREATE VIRTUAL TABLE search_interactions_terms USING fts5vocab(search_interactions, 'instance')")
    op.drop_index('ix_engagements_stage_escalation', table_name='engagements')
    op.create_index('ix_engagements_stage_escalation', 'engagements', ['stage', 'escalation', 'company_id'],
                    unique=False)


def downgrade():
    op.drop_index('ix_engagements_stage_escalation', table_name='engagements')
    op.create_index('ix_engagements_stage_escalation', 'engagements', ['stage', 'escalation'], unique=False)
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS search_interactions_terms")
