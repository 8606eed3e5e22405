"""stored score and change on companies, kept by triggers (issue 20)

Revision ID: 0037
Revises: 0036
Create Date: 2026-12-06 02:30:00

companies.latest_score (the total of the company's latest primary score over its engagements) and
companies.score_change (that total minus the one before it), with the indexes the companies list
sorts and filters by, the triggers on scores and engagements that keep them
(engage.companies.stored: SQLite row triggers, PostgreSQL statement triggers with transition
tables), and a set-based fill of the existing rows.

Plain ALTER TABLE, not batch mode: rebuilding `companies` on SQLite would drop the search triggers
migration 0023 made on it. The triggers are on scores and engagements: a later SQLite batch
migration of either table drops them with the old table and must install them again (`flask
companies check-scores` says so, `flask companies recount-scores --triggers` repairs).
"""
from alembic import op
import sqlalchemy as sa

from engage.companies import stored


# revision identifiers, used by Alembic.
revision = '0037'
down_revision = '0036'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('companies', sa.Column('latest_score', sa.Numeric(5, 2), nullable=True))
    op.add_column('companies', sa.Column('score_change', sa.Numeric(5, 2), nullable=True))
    bind = op.get_bind()
    stored.install(bind)
    stored.recount(bind)  # before the indexes: the fill does not update them row by row
    op.create_index('ix_companies_latest_score', 'companies', ['latest_score', 'id'], unique=False)
    op.create_index('ix_companies_score_change', 'companies', ['score_change', 'id'], unique=False)


def downgrade():
    stored.uninstall(op.get_bind())
    op.drop_index('ix_companies_score_change', table_name='companies')
    op.drop_index('ix_companies_latest_score', table_name='companies')
    op.drop_column('companies', 'score_change')
    op.drop_column('companies', 'latest_score')
