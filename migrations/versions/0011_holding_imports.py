"""holding imports: which file wrote each snapshot

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23 09:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('holding_imports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('fund_id', sa.Integer(), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('layout', sa.String(length=20), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('positions', sa.Integer(), nullable=False),
    sa.Column('replaced', sa.Integer(), nullable=False),
    sa.Column('partial', sa.Boolean(), nullable=False),
    sa.Column('decimal', sa.String(length=5), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('actor_label', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_holding_imports_created_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['fund_id'], ['funds.id'], name=op.f('fk_holding_imports_fund_id_funds'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_holding_imports'))
    )
    with op.batch_alter_table('holding_imports', schema=None) as batch_op:
        batch_op.create_index('ix_holding_imports_fund_as_of', ['fund_id', 'as_of'], unique=False)


def downgrade():
    with op.batch_alter_table('holding_imports', schema=None) as batch_op:
        batch_op.drop_index('ix_holding_imports_fund_as_of')

    op.drop_table('holding_imports')
