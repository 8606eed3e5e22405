"""holdings of a fund's snapshot by market value, largest first (issue 20: the held-again slice)

Revision ID: 0036
Revises: 0035
Create Date: 2026-12-05 21:40:00

ix_holdings_fund_as_of_value (fund_id, as_of, market_value DESC, NULLS LAST on PostgreSQL; SQLite
sorts NULLs last in a DESC index of its own and refuses the words): each fund's first held-again
holdings are found by walking its snapshot in the order the screening page shows them and
stopping after 20 (engage.holdings.screening._held_again_per_fund). Plain CREATE INDEX: no table
is rebuilt (the search triggers of migration 0023 are untouched).
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0036'
down_revision = '0035'
branch_labels = None
depends_on = None


def upgrade():
    nulls = " NULLS LAST" if op.get_bind().dialect.name == "postgresql" else ""
    op.execute(f"CREATE INDEX ix_holdings_fund_as_of_value ON holdings (fund_id, as_of, market_value DESC{nulls})")


def downgrade():
    op.drop_index('ix_holdings_fund_as_of_value', table_name='holdings')
