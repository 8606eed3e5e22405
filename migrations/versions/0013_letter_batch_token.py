"""letter batch submit token (a double-submitted bulk form makes one batch)

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-23 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0013'
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('letter_batches', schema=None) as batch_op:
        batch_op.add_column(sa.Column('submit_token', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_letter_batches_submit_token'), ['submit_token'])


def downgrade():
    with op.batch_alter_table('letter_batches', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_letter_batches_submit_token'), type_='unique')
        batch_op.drop_column('submit_token')
