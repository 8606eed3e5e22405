"""campaigns: paper size of letters (A4 or US Letter, issue 17)

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04 18:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.add_column(sa.Column('paper_size', sa.String(length=8), server_default='A4', nullable=False))
        batch_op.create_check_constraint(op.f('ck_campaigns_paper_size_valid'), "paper_size IN ('A4', 'letter')")


def downgrade():
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_campaigns_paper_size_valid'), type_='check')
        batch_op.drop_column('paper_size')
