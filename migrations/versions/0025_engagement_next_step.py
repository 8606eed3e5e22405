"""next step on engagements (a short text and its date)

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-04 18:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0025'
down_revision = '0024'
branch_labels = None
depends_on = None


# Plain ALTER TABLE, not batch mode: rebuilding `engagements` on SQLite would drop the search
# triggers migration 0023 made on it (SQLite 3.35+ drops a column in place).
def upgrade():
    op.add_column('engagements', sa.Column('next_step', sa.String(length=200), server_default='', nullable=False))
    op.add_column('engagements', sa.Column('next_step_on', sa.Date(), nullable=True))
    op.create_index('ix_engagements_next_step_on', 'engagements', ['next_step_on'], unique=False)


def downgrade():
    op.drop_index('ix_engagements_next_step_on', table_name='engagements')
    op.drop_column('engagements', 'next_step_on')
    op.drop_column('engagements', 'next_step')
