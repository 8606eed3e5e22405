"""tracker import: remembered mappings of a team's words, and the rows imported (issue 19)

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-05 07:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0028'
down_revision = '0027'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'tracker_value_mappings',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('value', sa.String(length=200), nullable=False),
        sa.Column('target', sa.String(length=40), nullable=False),
        sa.Column('label', sa.String(length=200), nullable=False),
        sa.Column('updated_by_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.CheckConstraint("kind IN ('column', 'status', 'escalation')",
                           name=op.f('ck_tracker_value_mappings_kind_valid')),
        sa.ForeignKeyConstraint(['updated_by_id'], ['users.id'],
                                name=op.f('fk_tracker_value_mappings_updated_by_id_users'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_tracker_value_mappings')),
        sa.UniqueConstraint('kind', 'value', name=op.f('uq_tracker_value_mappings_kind_value')),
    )
    op.create_table(
        'tracker_rows',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('row_key', sa.String(length=240), nullable=False),
        sa.Column('engagement_id', sa.Integer(), nullable=False),
        sa.Column('file_name', sa.String(length=255), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['engagement_id'], ['engagements.id'],
                                name=op.f('fk_tracker_rows_engagement_id_engagements'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_tracker_rows')),
        sa.UniqueConstraint('row_key', name=op.f('uq_tracker_rows_row_key')),
    )
    op.create_index(op.f('ix_tracker_rows_engagement_id'), 'tracker_rows', ['engagement_id'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_tracker_rows_engagement_id'), table_name='tracker_rows')
    op.drop_table('tracker_rows')
    op.drop_table('tracker_value_mappings')
