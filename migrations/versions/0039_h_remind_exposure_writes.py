"""a counter of writes to holdings, risk flags and funds, kept by triggers (issue 20: the funds page)

write_log: on PostgreSQL the triggers add a row per writing transaction there instead of updating
the counter row (which made every such transaction wait for the one before to commit).

Revision ID: 0039
Revises: 0038
Create Date: 2026-12-06 02:50:00

write_counters (name, writes) and the triggers that add one to its "exposure" row on every write
to holdings, risk_flags and funds (engage.holdings.stored: SQLite row triggers; PostgreSQL
statement triggers, on TRUNCATE too). The funds page stores the exposures it counts with the
counter's value and shows the stored ones while the value is unchanged. Plain CREATE TABLE and
CREATE TRIGGER: no table is rebuilt. A later SQLite batch migration of one of these tables drops
its triggers with the old table and must install them again (engage.holdings.stored.install).
"""
from alembic import op
import sqlalchemy as sa

from engage.holdings import stored


# revision identifiers, used by Alembic.
revision = '0039'
down_revision = '0038'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'write_counters',
        sa.Column('name', sa.String(length=40), nullable=False),
        sa.Column('writes', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_write_counters')),
    )
    op.create_table(
        'write_log',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('name', sa.String(length=40), nullable=False),
        sa.Column('txid', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_write_log')),
        sa.UniqueConstraint('name', 'txid', name=op.f('uq_write_log_name_txid')),
    )
    stored.install(op.get_bind())


def downgrade():
    stored.uninstall(op.get_bind())
    op.execute("DELETE FROM dashboard_figures WHERE kind = 'exposure'")
    op.drop_table('write_log')
    op.drop_table('write_counters')
