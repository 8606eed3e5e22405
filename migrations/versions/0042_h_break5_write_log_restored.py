"""the write logs' trigger functions (PostgreSQL): a write whose transaction id a restored dump's log holds still counts

Revision ID: 0042
Revises: 0041
Create Date: 2026-12-06 18:55:00

0039 and 0041 made the functions add `(name, txid_current())` to write_log with ON CONFLICT DO
NOTHING. A dump restored into another server carries the old server's rows, whose transaction
ids the new server hands out again: such a write added nothing and the funds and screening pages
kept figures counted before it. The functions are replaced (engage.dbutil.write_log_function);
no table or trigger changes. SQLite keeps its counter rows: nothing to do.
"""
from alembic import op

from engage import dbutil
from engage.holdings import screening_stored, stored


# revision identifiers, used by Alembic.
revision = '0042'
down_revision = '0041'
branch_labels = None
depends_on = None

FUNCTIONS = {stored.FUNCTION: stored.COUNTER, screening_stored.FUNCTION: screening_stored.COUNTER}


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for function, counter in FUNCTIONS.items():
        op.execute(dbutil.write_log_function(function, counter))


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for function, counter in FUNCTIONS.items():  # the bodies 0039 and 0041 made
        op.execute(f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $body$ BEGIN "
                   f"INSERT INTO write_log (name, txid) VALUES ('{counter}', txid_current()) "
                   f"ON CONFLICT (name, txid) DO NOTHING; RETURN NULL; END $body$")
