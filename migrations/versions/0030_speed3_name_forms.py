"""stored name readings for list matching (companies, their aliases, list entries)

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-05 07:30:00

"""
from alembic import op
import sqlalchemy as sa

from engage import names


# revision identifiers, used by Alembic.
revision = '0030'
down_revision = '0029'
branch_labels = None
depends_on = None


# Plain ALTER TABLE, not batch mode: rebuilding `companies` on SQLite would drop the search
# triggers migration 0023 made on it. The backfill reads every name once (engage.names.refresh,
# which `flask lists name-forms` runs too); a reading gone stale later is only slower, never wrong.
def upgrade():
    for table in ('companies', 'company_aliases', 'listed_entities'):
        op.add_column(table, sa.Column('name_forms', sa.Text(), nullable=True))
    names.refresh(op.get_bind())


def downgrade():
    for table in ('listed_entities', 'company_aliases', 'companies'):
        op.drop_column(table, 'name_forms')
