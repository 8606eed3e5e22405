"""background jobs say when their stored result was deleted (issue 20: job results retention)

Revision ID: 0035
Revises: 0034
Create Date: 2026-12-05 21:05:00

background_jobs.expired_at: when housekeeping (or `flask jobs clean`) deleted the job's stored
result (an export, a letter batch's ZIP, a kept upload and its preview) after JOB_RESULTS_KEEP_DAYS;
the job's page then says so instead of linking to a file that is gone. Plain ADD COLUMN (nullable).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0035'
down_revision = '0034'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('background_jobs', sa.Column('expired_at', sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('background_jobs') as batch:
        batch.drop_column('expired_at')
