"""sign-in backoff: failures forgotten after a window, a separate budget for known browsers

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-24 09:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failed_since", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("device_failed_logins", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("device_failed_since", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("device_locked_until", sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("device_locked_until")
        batch_op.drop_column("device_failed_since")
        batch_op.drop_column("device_failed_logins")
        batch_op.drop_column("failed_since")
