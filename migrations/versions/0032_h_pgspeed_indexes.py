"""indexes for PostgreSQL and 100,000 companies (issue 20): waiting reminders by due date and by
engagement, and the events that divested an engagement

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-05 12:15:00

Partial indexes (PostgreSQL and SQLite both have them), created with plain CREATE INDEX: no table
is rebuilt, so the search triggers of migration 0023 are untouched. The queries that use them spell
the same condition with literals (engage.models.engagements: PENDING_REMINDER, DIVESTING_EVENT), so
either planner can prove the index covers them.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0032'
down_revision = '0031'
branch_labels = None
depends_on = None

PENDING = "status != 'done'"
DIVESTING = "(kind = 'escalation' AND to_value = 'divested') OR (kind = 'close' AND outcome = 'divested')"


def upgrade():
    # status and engagement_id ride along so SQLite reads the counts from the index alone (it does
    # not see that the index's condition answers the query's `status != 'done'`).
    op.create_index('ix_reminders_pending_due', 'reminders', ['due_on', 'id', 'engagement_id', 'status'], unique=False,
                    sqlite_where=sa.text(PENDING), postgresql_where=sa.text(PENDING))
    op.create_index('ix_reminders_pending_engagement_due', 'reminders', ['engagement_id', 'due_on', 'status'],
                    unique=False,
                    sqlite_where=sa.text(PENDING), postgresql_where=sa.text(PENDING))
    op.create_index('ix_engagement_events_divesting', 'engagement_events', ['engagement_id', 'occurred_on'],
                    unique=False, sqlite_where=sa.text(DIVESTING), postgresql_where=sa.text(DIVESTING))


def downgrade():
    op.drop_index('ix_engagement_events_divesting', table_name='engagement_events')
    op.drop_index('ix_reminders_pending_engagement_due', table_name='reminders')
    op.drop_index('ix_reminders_pending_due', table_name='reminders')
