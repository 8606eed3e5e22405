"""audit trail: a group id shared by the rows of one change (issue 17)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04 18:00:00

Rows recorded before this migration keep NULL: the audit page shows each of them on its own.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('group_id', sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f('ix_audit_events_group_id'), ['group_id'], unique=False)


def downgrade():
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_events_group_id'))
        batch_op.drop_column('group_id')
