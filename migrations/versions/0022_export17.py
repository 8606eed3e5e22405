"""next step on engagements (a short text and its date)

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04 18:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('engagements', schema=None) as batch_op:
        batch_op.add_column(sa.Column('next_step', sa.String(length=200), server_default='', nullable=False))
        batch_op.add_column(sa.Column('next_step_on', sa.Date(), nullable=True))
        batch_op.create_index('ix_engagements_next_step_on', ['next_step_on'], unique=False)


def downgrade():
    with op.batch_alter_table('engagements', schema=None) as batch_op:
        batch_op.drop_index('ix_engagements_next_step_on')
        batch_op.drop_column('next_step_on')
        batch_op.drop_column('next_step')
