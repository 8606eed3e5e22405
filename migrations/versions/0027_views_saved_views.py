"""saved views on the engagements and companies lists

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-05 07:10:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0027'
down_revision = '0026'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'saved_views',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('owner_id', sa.Integer(), nullable=False),
        sa.Column('list_kind', sa.String(length=20), nullable=False),
        sa.Column('name', sa.String(length=80), nullable=False),
        sa.Column('query', sa.String(length=1000), nullable=False),
        sa.Column('shared', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.CheckConstraint("list_kind IN ('engagements', 'companies')", name=op.f('ck_saved_views_list_kind_valid')),
        sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_saved_views_owner_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_saved_views')),
        sa.UniqueConstraint('owner_id', 'list_kind', 'name', name=op.f('uq_saved_views_owner_id_list_kind_name')),
    )
    op.create_index(op.f('ix_saved_views_owner_id'), 'saved_views', ['owner_id'], unique=False)
    op.create_index(op.f('ix_saved_views_shared'), 'saved_views', ['shared'], unique=False)


def downgrade():
    op.drop_index('ix_saved_views_shared', table_name='saved_views')
    op.drop_index('ix_saved_views_owner_id', table_name='saved_views')
    op.drop_table('saved_views')
