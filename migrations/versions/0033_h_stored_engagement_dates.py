"""stored next follow-up and last contact on engagements, kept by triggers (issue 20)

Revision ID: 0033
Revises: 0032
Create Date: 2026-12-05 15:30:00

engagements.next_follow_up_on (earliest waiting reminder) and engagements.last_contact_on (latest
interaction that is not a note), with the indexes the pages sort and filter by, the triggers on
reminders and interactions that keep them (engage.engagements.stored: SQLite row triggers,
PostgreSQL statement triggers with transition tables), and a set-based fill of the existing rows.

Plain ALTER TABLE, not batch mode: rebuilding `engagements` on SQLite would drop the search
triggers migration 0023 made on it. The triggers are on reminders and interactions: a later SQLite
batch migration of either table drops them with the old table and must install them again
(`flask engagements check-dates` says so, `flask engagements recount --triggers` repairs).
"""
from alembic import op
import sqlalchemy as sa

from engage.engagements import stored


# revision identifiers, used by Alembic.
revision = '0033'
down_revision = '0032'
branch_labels = None
depends_on = None

OPEN = "stage != 'closed'"


def upgrade():
    op.add_column('engagements', sa.Column('next_follow_up_on', sa.Date(), nullable=True))
    op.add_column('engagements', sa.Column('last_contact_on', sa.Date(), nullable=True))
    bind = op.get_bind()
    stored.install(bind)
    stored.recount(bind)  # before the indexes: the fill does not update them row by row
    op.create_index('ix_engagements_next_follow_up', 'engagements', ['next_follow_up_on', 'id'], unique=False)
    op.create_index('ix_engagements_last_contact', 'engagements', ['last_contact_on', 'id'], unique=False)
    op.create_index('ix_engagements_open_last_contact', 'engagements', ['last_contact_on', 'opened_on'],
                    unique=False, sqlite_where=sa.text(OPEN), postgresql_where=sa.text(OPEN))


def downgrade():
    stored.uninstall(op.get_bind())
    op.drop_index('ix_engagements_open_last_contact', table_name='engagements')
    op.drop_index('ix_engagements_last_contact', table_name='engagements')
    op.drop_index('ix_engagements_next_follow_up', table_name='engagements')
    op.drop_column('engagements', 'last_contact_on')
    op.drop_column('engagements', 'next_follow_up_on')
