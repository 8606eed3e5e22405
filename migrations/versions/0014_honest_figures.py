"""honest figures: holdings values never negative; one open held-again alert per company and fund

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-24 09:00:00

Holdings with a negative market value or number of shares (short positions imported before the
parser refused them) keep their row with no value: they are shown as "value unknown", never as
a negative figure. Held-again alerts were one per snapshot; the older alerts of a company and
fund are marked resolved on the date of the next one, so only the latest stays open.
"""
import logging

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def upgrade():
    conn = op.get_bind()
    for column in ("market_value", "shares"):
        cleared = conn.execute(sa.text(f"UPDATE holdings SET {column} = NULL WHERE {column} < 0")).rowcount
        if cleared:
            log.warning("%s holdings had a negative %s (a short position); it is now unknown", cleared, column)
    with op.batch_alter_table("holdings", schema=None) as batch_op:
        batch_op.create_check_constraint(op.f("ck_holdings_market_value_not_negative"), "market_value IS NULL OR market_value >= 0")
        batch_op.create_check_constraint(op.f("ck_holdings_shares_not_negative"), "shares IS NULL OR shares >= 0")

    with op.batch_alter_table("divestment_alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resolved_on", sa.Date(), nullable=True))
        batch_op.drop_constraint(op.f("uq_divestment_alerts_company_id_fund_id_as_of"), type_="unique")
    conn.execute(sa.text(
        "UPDATE divestment_alerts SET resolved_on = (SELECT MIN(later.as_of) FROM divestment_alerts later "
        "WHERE later.company_id = divestment_alerts.company_id AND later.fund_id = divestment_alerts.fund_id "
        "AND later.as_of > divestment_alerts.as_of)"))
    with op.batch_alter_table("divestment_alerts", schema=None) as batch_op:
        batch_op.create_index("ux_divestment_alerts_open", ["company_id", "fund_id"], unique=True,
                              sqlite_where=sa.text("resolved_on IS NULL"),
                              postgresql_where=sa.text("resolved_on IS NULL"))


def downgrade():
    with op.batch_alter_table("divestment_alerts", schema=None) as batch_op:
        batch_op.drop_index("ux_divestment_alerts_open",
                            sqlite_where=sa.text("resolved_on IS NULL"), postgresql_where=sa.text("resolved_on IS NULL"))
        batch_op.create_unique_constraint(op.f("uq_divestment_alerts_company_id_fund_id_as_of"),
                                          ["company_id", "fund_id", "as_of"])
        batch_op.drop_column("resolved_on")
    with op.batch_alter_table("holdings", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_holdings_shares_not_negative"), type_="check")
        batch_op.drop_constraint(op.f("ck_holdings_market_value_not_negative"), type_="check")
