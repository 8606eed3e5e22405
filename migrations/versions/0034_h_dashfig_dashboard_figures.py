"""the dashboard's stored figures (issue 20)

Revision ID: 0034
Revises: 0033
Create Date: 2026-12-05 21:05:00

One row per kind of figures ("dashboard"): JSON counts computed by the scheduler (engage.main.figures),
the day they were counted for, when, and what the computation cost.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0034'
down_revision = '0033'
branch_labels = None
depends_on = None


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


def downgrade():
    op.drop_table('dashboard_figures')
