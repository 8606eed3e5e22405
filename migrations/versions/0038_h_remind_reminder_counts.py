"""waiting reminders counted per owner and due date, kept by triggers (issue 20: the reminders page)

Revision ID: 0038
Revises: 0037
Create Date: 2026-12-06 02:40:00

reminder_counts (owner_key, due_on, waiting): how many reminders wait on open engagements per
owner (0: nobody) and due date, kept by triggers on reminders and engagements
(engage.reminders.stored: SQLite row triggers, PostgreSQL statement triggers with transition
tables), filled from the rows. The reminders page sums these rows for its counts instead of
counting every waiting reminder. Plain CREATE TABLE/TRIGGER: no table is rebuilt. A later SQLite
batch migration of reminders or engagements drops the triggers with the old table and must
install them again (`flask reminders check-counts` says so, `flask reminders recount --triggers`
repairs).
"""
from alembic import op
import sqlalchemy as sa

from engage.reminders import stored


# revision identifiers, used by Alembic.
revision = '0038'
down_revision = '0037'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'reminder_counts',
        sa.Column('owner_key', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('due_on', sa.Date(), nullable=False),
        sa.Column('waiting', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('owner_key', 'due_on', name=op.f('pk_reminder_counts')),
    )
    bind = op.get_bind()
    stored.install(bind)
    stored.recount(bind)


def downgrade():
    stored.uninstall(op.get_bind())
    op.drop_table('reminder_counts')
