"""Break-testing issue 13 (honest figures): failing regressions found by a tester."""

from decimal import Decimal

import sqlalchemy as sa

from engage.extensions import db
from engage.holdings import screening
from engage.models import Fund, Holding, OutboxEmail
from tests import factories
from tests.test_exposure import AS_OF, MILLION, divested, flagged, frozen, import_cli  # noqa: F401


def test_a_short_or_negative_position_does_not_make_exposure_negative_or_smaller(app):
    """A file with '(3,000,000)' for an unflagged line (a short, a cash overdraft) imports as -3 M."""
    fund = Fund(name="Net Short Fund")
    db.session.add(fund)
    db.session.add(Holding(fund=fund, company=flagged("Listed Co", "us_entity_list"), as_of=AS_OF,
                           market_value=1 * MILLION))
    db.session.add(Holding(fund=fund, company=factories.company("Plain Co"), as_of=AS_OF,
                           market_value=-3 * MILLION))
    db.session.commit()
    e = screening.exposure(fund)
    assert e.total > 0, f"fund total {e.total}"
    assert e.official.share is None or e.official.share >= 0, f"exposure shown as {e.official.share} %"


def test_a_listed_holding_without_market_value_is_not_silently_zero(app):
    fund = Fund(name="Unknown Value Fund")
    db.session.add(fund)
    db.session.add(Holding(fund=fund, company=flagged("Listed No Value", "us_entity_list"), as_of=AS_OF,
                           market_value=None))
    db.session.add(Holding(fund=fund, company=factories.company("Plain Co 2"), as_of=AS_OF,
                           market_value=10 * MILLION))
    db.session.commit()
    e = screening.exposure(fund)
    # 1 listed position, USD 0, 0.0 % of the fund: reads as "no exposure", though its value is unknown
    assert not (e.official.positions == 1 and e.official.share == Decimal("0.0")), \
        "a listed holding of unknown value is reported as 0.0 % exposure with no warning"


def test_importing_an_older_snapshot_does_not_email_held_again_for_a_position_already_gone(
        runner, tmp_path, divested, frozen):  # noqa: F811
    """Latest snapshot (14 Nov) no longer holds the company; a back-filled 31 Oct file emails 'held again'."""
    assert import_cli(runner, tmp_path, as_of="2026-11-14").exit_code == 0
    fund = db.session.scalar(sa.select(Fund))
    db.session.execute(sa.delete(Holding).where(Holding.company_id == divested.company_id))  # sold by 14 Nov
    db.session.commit()
    before = db.session.scalar(sa.select(sa.func.count(OutboxEmail.id)))
    assert screening.exposure(fund).held_again == []  # dashboard and screening: nothing held again
    assert import_cli(runner, tmp_path, as_of="2026-10-31").exit_code == 0  # an older snapshot, back-filled
    after = db.session.scalar(sa.select(sa.func.count(OutboxEmail.id)))
    assert after == before, "owner emailed 'held again' (and pointed at the dashboard) for a past snapshot"
