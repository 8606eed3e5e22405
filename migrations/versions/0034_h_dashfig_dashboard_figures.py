"""the dashboard's stored figures, and indexes for its lists that sorted (issue 20)

Revision ID: 0034
Revises: 0033
Create Date: 2026-12-05 21:05:00

One row per kind of figures ("dashboard"): JSON counts computed by the scheduler (engage.main.figures),
the day they were counted for, when, and what the computation cost.

Indexes let the dashboard's live lists read their first ten rows in order instead of sorting
every match: recent activity (interactions by date, then id), next steps (ix_engagements_next_step_on
gains the id) and the quiet engagements (open: those contacted by last contact, those never
contacted by opening; two partial indexes, since an expression index on
coalesce(last_contact_on, opened_on) is not reflected by SQLite, so autogenerate could not check it).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0034'
down_revision = '0033'
branch_labels = None
depends_on = None

OPEN = "stage != 'closed'"
UNCONTACTED = "stage != 'closed' AND last_contact_on IS NULL"


def upgrade():
    op.create_table(
        'dashboard_figures',
        sa.Column('kind', sa.String(length=40), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('data', sa.JSON(), nullable=False),
        sa.Column('computed_at', sa.DateTime(), nullable=False),
        sa.Column('seconds', sa.Float(), nullable=False),
        sa.Column('cpu_seconds', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('kind', name=op.f('pk_dashboard_figures')),
    )
    op.create_index('ix_interactions_occurred_id', 'interactions', ['occurred_on', 'id'], unique=False)
    op.drop_index('ix_engagements_next_step_on', table_name='engagements')
    op.create_index('ix_engagements_next_step_on', 'engagements', ['next_step_on', 'id'], unique=False)
    op.create_index('ix_engagements_open_contacted', 'engagements', ['last_contact_on', 'id'],
                    unique=False, sqlite_where=sa.text(OPEN), postgresql_where=sa.text(OPEN))
    op.create_index('ix_engagements_open_uncontacted', 'engagements', ['opened_on', 'id'],
                    unique=False, sqlite_where=sa.text(UNCONTACTED), postgresql_where=sa.text(UNCONTACTED))


def downgrade():
    op.drop_index('ix_engagements_open_uncontacted', table_name='engagements')
    op.drop_index('ix_engagements_open_contacted', table_name='engagements')
    op.drop_index('ix_engagements_next_step_on', table_name='engagements')
    op.create_index('ix_engagements_next_step_on', 'engagements', ['next_step_on'], unique=False)
    op.drop_index('ix_interactions_occurred_id', table_name='interactions')
    op.drop_table('dashboard_figures')
