"""audit trail: a group id shared by the rows of one change (issue 17)

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-04 18:00:00

Rows recorded before this migration get "#<id>": a group of their own, each shown on its own.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('group_id', sa.String(length=32), nullable=True))
    op.execute("UPDATE audit_events SET group_id = '#' || CAST(id AS VARCHAR(20)) WHERE group_id IS NULL")
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.alter_column('group_id', existing_type=sa.String(length=32), nullable=False)
        batch_op.create_index('ix_audit_events_group', ['group_id', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_events_group')
        batch_op.drop_column('group_id')
