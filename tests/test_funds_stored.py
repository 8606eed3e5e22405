"""The funds page's stored exposures (engage.holdings.stored).

The page shows, after every kind of write to holdings, risk flags and funds (the ORM, an
executemany, raw SQL, a cascade, a fund created or deleted), exactly what counting gives
(`screening.exposures`); between writes it reads the stored copy instead of counting (fewer
and cheaper queries, none over the holdings). Without the triggers the stored copy would go
stale: the test that drops them sees it. Runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
import sqlalchemy as sa

from engage.extensions import db
from engage.holdings import screening, stored
from engage.models import Company, Fund, Holding, RiskFlag

from tests.test_exposure import MILLION, flagged, honest_fund

AS_OF = dt.date(2026, 10, 31)


def rows_of(html: str) -> list[str]:
    """The funds table's rows as text (tags dropped, spaces collapsed)."""
    body = html.split("<tbody>")[1].split("</tbody>")[0]
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip() for row in body.split("</tr>") if row.strip()]


def page(client) -> list[str]:
    db.session.expire_all()
    return rows_of(client.get("/holdings/funds").get_data(as_text=True))


def counted(app) -> list[str]:
    """The page as counting now draws it (the definition): the template over `screening.exposures()`."""
    from flask import render_template

    db.session.expire_all()
    with app.test_request_context():
        from flask_login import login_user

        from engage.models import User
        login_user(db.session.scalar(sa.select(User).limit(1)))
        return rows_of(render_template("holdings/funds.html", exposures=screening.exposures()))


def assert_page_right(app, client) -> list[str]:
    shown = page(client)
    assert shown == counted(app)
    assert stored.drift() == []
    return shown


def test_the_page_shows_what_counting_gives_after_every_kind_of_write(app, client, login_as, count_queries):
    login_as("analyst")
    honest_fund("Alpha Fund")
    honest_fund("Beta Fund")
    first = assert_page_right(app, client)
    assert len(first) == 2 and "8.0 %" in first[0]
    with count_queries() as reading:  # stored: no write since
        client.get("/holdings/funds")
    assert not any("holdings" in s for s in reading.statements), reading.statements
    beta = db.session.scalar(sa.select(Fund).where(Fund.name == "Beta Fund"))
    # a new flag (the ORM)
    plain = db.session.scalar(sa.select(Company).where(Company.name == "Beta Fund Plain"))
    plain.risk_flags.append(RiskFlag(source="ofac_sdn", citation="SDN"))
    db.session.commit()
    shown = assert_page_right(app, client)
    assert shown != first and "10.0 %" in shown[1]
    # a flag ended (raw SQL)
    db.session.execute(sa.text("UPDATE risk_flags SET ended_on = :d WHERE source = 'ofac_sdn'"), {"d": AS_OF})
    db.session.commit()
    assert assert_page_right(app, client) == first
    # a new snapshot (executemany), then a value changed and a holding deleted (raw SQL)
    companies = list(db.session.scalars(sa.select(Company).where(Company.name.like("Beta Fund%")).order_by(Company.id)))
    db.session.execute(sa.insert(Holding.__table__), [
        {"fund_id": beta.id, "company_id": c.id, "as_of": AS_OF + dt.timedelta(days=30), "market_value": MILLION * (i + 1),
         "created_at": dt.datetime(2026, 12, 1), "updated_at": dt.datetime(2026, 12, 1)} for i, c in enumerate(companies)])
    db.session.commit()
    assert "30 Nov 2026" in assert_page_right(app, client)[1]  # Beta's latest snapshot now
    db.session.execute(sa.text("UPDATE holdings SET market_value = NULL WHERE fund_id = :f AND as_of = :d AND "
                               "company_id = :c"), {"f": beta.id, "d": AS_OF + dt.timedelta(days=30), "c": companies[1].id})
    db.session.commit()
    assert "value unknown" in " ".join(assert_page_right(app, client))
    db.session.execute(sa.text("DELETE FROM holdings WHERE fund_id = :f AND company_id = :c"),
                       {"f": beta.id, "c": companies[0].id})
    db.session.commit()
    assert_page_right(app, client)
    # a fund created, renamed (read now: the order follows), deleted (the cascade takes its holdings)
    db.session.add(Fund(name="Aardvark Fund"))
    db.session.commit()
    assert assert_page_right(app, client)[0].startswith("Aardvark Fund")
    beta.name = "0 Beta Fund"
    db.session.commit()
    assert assert_page_right(app, client)[0].startswith("0 Beta Fund")
    db.session.delete(beta)
    db.session.commit()
    assert len(assert_page_right(app, client)) == 2


def test_without_the_triggers_the_stored_copy_would_be_stale(app, client, login_as):
    """The triggers are what keeps it right: dropped, a new flag is not seen (the test that the
    figures follow the writes could not fail otherwise)."""
    login_as("analyst")
    honest_fund("Gamma Fund")
    before = assert_page_right(app, client)
    stored.uninstall(db.session.connection())
    db.session.commit()
    try:
        assert stored.missing_triggers(db.session.connection())
        plain = db.session.scalar(sa.select(Company).where(Company.name == "Gamma Fund Plain"))
        plain.risk_flags.append(RiskFlag(source="ofac_sdn", citation="SDN"))
        db.session.commit()
        assert page(client) == before != counted(app)
    finally:
        stored.install(db.session.connection())
        db.session.commit()
    assert stored.missing_triggers(db.session.connection()) == []
    plain.risk_flags.append(RiskFlag(source="cbp_wro", citation="WRO"))
    db.session.commit()
    assert assert_page_right(app, client) != before


def test_a_count_that_a_write_overtook_is_counted_again(app, client, login_as, monkeypatch):
    """The stored copy keeps the counter's value read before counting: a write committed while a
    request counts leaves the counter ahead, so the next request counts again."""
    login_as("analyst")
    fund = honest_fund("Delta Fund")
    real = screening.exposures

    def counting_while_a_flag_is_added(*args, **kwargs):
        result = real(*args, **kwargs)
        company = db.session.scalar(sa.select(Company).where(Company.name == "Delta Fund Plain"))
        company.risk_flags.append(RiskFlag(source="ofac_sdn", citation="SDN"))  # committed by the store
        return result

    monkeypatch.setattr(screening, "exposures", counting_while_a_flag_is_added)
    overtaken = page(client)
    monkeypatch.setattr(screening, "exposures", real)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RiskFlag).where(RiskFlag.source == "ofac_sdn")) == 1
    shown = assert_page_right(app, client)
    assert shown != overtaken and "10.0 %" in shown[0], (fund.name, shown)


def test_the_dashboard_and_the_funds_page_agree(app, client, login_as):
    login_as("analyst")
    fund = honest_fund("Epsilon Fund")
    db.session.add(Holding(fund=fund, company=flagged("Epsilon Linked", "gpfg_exclusion"), as_of=AS_OF,
                           market_value=Decimal(5) * MILLION))
    db.session.commit()
    shown = assert_page_right(app, client)
    dashboard = client.get("/").get_data(as_text=True)
    assert "Epsilon Fund" in dashboard and shown[0].startswith("Epsilon Fund")


def test_postgresql_writers_of_holdings_and_flags_do_not_wait_on_each_other(app, client, login_as):
    """PostgreSQL: one transaction adds a flag and stays open (a long holdings import would) while a
    second adds a holding and commits; the second does not wait on the first (lock_timeout 2 s
    would refuse it if the triggers still updated one counter row), each commit moves the value,
    and the page shows what counting gives after both."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("concurrent writers: PostgreSQL only (SQLite has one writer at a time)")
    login_as("analyst")
    fund = honest_fund("Epsilon Fund")
    assert_page_right(app, client)
    company = db.session.scalar(sa.select(Company).where(Company.name == "Epsilon Fund Plain"))
    company_id, fund_id = company.id, fund.id
    other = Company(name="Epsilon Newcomer", country="CN")
    db.session.add(other)
    db.session.commit()
    other_id = other.id
    start = stored.writes()
    with db.engine.connect() as first, db.engine.connect() as second:
        first.execute(sa.insert(RiskFlag.__table__).values(company_id=company_id, source="ofac_sdn", citation="SDN"))
        second.execute(sa.text("SET lock_timeout = '2s'"))
        second.execute(sa.insert(Holding.__table__).values(fund_id=fund_id, company_id=other_id, as_of=AS_OF,
                                                           market_value=Decimal("1000000")))
        second.commit()  # did not wait for the first
        db.session.rollback()
        after_second = stored.writes()
        assert after_second > start
        first.commit()
    db.session.rollback()
    assert stored.writes() > after_second
    assert_page_right(app, client)


def test_postgresql_clearing_the_write_log_moves_the_value_and_the_page_counts_again(app, client, login_as,
                                                                                    monkeypatch):
    """Housekeeping clears PostgreSQL's write log once it is long; the value compared moves on (it
    never comes back to a stored one), so the page counts again and stays right."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the write log is PostgreSQL's")
    from engage.housekeeping import run

    login_as("analyst")
    honest_fund("Zeta Fund")
    monkeypatch.setattr(stored, "LOG_CLEAR_AT", 2)
    shown = assert_page_right(app, client)
    stored_at = stored.writes()
    assert db.session.scalar(sa.text("SELECT count(*) FROM write_log WHERE name = 'exposure'")) >= 2
    lines = run(dt.datetime(2026, 11, 22, 12, 0))
    db.session.commit()
    assert any("write log cleared" in line for line in lines), lines
    assert db.session.scalar(sa.text("SELECT count(*) FROM write_log WHERE name = 'exposure'")) == 0
    # the screening pages' log (engage.holdings.screening_stored) shares the table and the threshold
    assert db.session.scalar(sa.text("SELECT count(*) FROM write_log WHERE name = 'screening'")) < 2
    assert stored.writes() > stored_at
    assert assert_page_right(app, client) == shown  # counted again: the same figures
    plain = db.session.scalar(sa.select(Company).where(Company.name == "Zeta Fund Plain"))
    plain.risk_flags.append(RiskFlag(source="ofac_sdn", citation="SDN"))
    db.session.commit()
    assert assert_page_right(app, client) != shown
