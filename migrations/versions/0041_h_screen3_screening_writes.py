"""a counter of writes to engagements, divesting events and company names, kept by triggers (issue 20: the screening pages)

Revision ID: 0041
Revises: 0040
Create Date: 2026-12-06 06:30:00

The "screening" row of write_counters (SQLite) or its rows of write_log (PostgreSQL), moved by
triggers on engagements (insert, delete, UPDATE OF the columns the screening pages read), on
engagement events (SQLite: the divesting ones) and on companies (UPDATE OF the names, delete):
engage.holdings.screening_stored. With the funds page's counter (holdings, risk flags, funds:
0039) it tells when the screening pages' stored figures may be used. No table is added or
rebuilt, and no trigger on holdings. A later SQLite batch migration of one of these tables drops
its triggers with the old table and must install them again (screening_stored.install).
"""
from alembic import op

from engage.holdings import screening_stored


# revision identifiers, used by Alembic.
revision = '0041'
down_revision = '0040'
branch_labels = None
depends_on = None


def upgrade():
    screening_stored.install(op.get_bind())


def downgrade():
    screening_stored.uninstall(op.get_bind())
    op.execute("DELETE FROM dashboard_figures WHERE kind IN ('screening-figures', 'screening-lists', 'screening-held')")
    op.execute("DELETE FROM write_log WHERE name = 'screening'")
    op.execute("DELETE FROM write_counters WHERE name = 'screening'")
