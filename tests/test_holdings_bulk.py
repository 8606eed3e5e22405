"""The holdings import writes the companies it creates in bulk (one INSERT per table, issue 20):
the same rows, audit events, stored readings and search index entries as creating them one ORM
object at a time, which is what imports did before.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from engage import audit, names
from engage.extensions import db
from engage.holdings import importer, service
from engage.identifiers import isin_check_digit
from engage.models import AuditEvent, Company, Fund, Holding
from engage.search import service as search


def _isin(n: int, country: str = "XS") -> str:
    first11 = f"{country}{n:09d}"
    return f"{first11}{isin_check_digit(first11)}"


def small_file() -> bytes:
    """New companies of every kind the import meets: share classes of one issuer (two ISINs, added
    up into one position), a name without an ISIN, accents, a Chinese name, a country in words, an
    exchange by name and by code, a long sector, and one company already known."""
    lines = ["iShares Bulk Fund", 'Fund Holdings as of,"Oct 31, 2026"', "",
             "Ticker,Name,Sector,Asset Class,Market Value,Weight (%),Notional Value,Quantity,Price,Location,Exchange,ISIN"]
    rows = [
        ("AAA", "Alpha Mining Co Ltd A", "Materials", "1,000.00", "10", "China", "Shanghai Stock Exchange", _isin(1)),
        ("AAB", "Alpha Mining Co Ltd B", "Materials", "500.00", "5", "China", "Shanghai Stock Exchange", _isin(2)),
        ("", "Société Générale de Test", "Financials", "2,000.00", "20", "FR", "XPAR", ""),
        ("600", "新疆测试棉业有限公司", "Consumer " + "Staples " * 12, "3,000.00", "30", "China",
         "Shenzhen Stock Exchange", _isin(3, "CN")),
        ("KNOWN", "Known Holdings Plc", "Energy", "1,500.00", "15", "United Kingdom", "London Stock Exchange",
         _isin(4, "GB")),
        ("ZZZ", "Zeta Widgets Inc", "-", "1,000.00", "10", "Atlantis", "Some Exchange Nobody Lists", _isin(5, "US")),
    ]
    for ticker, name, sector, value, weight, location, exchange, isin in rows:
        lines.append(f'"{ticker}","{name}","{sector}","Equity","{value}","{weight}","{value}","10.00","1.00",'
                     f'"{location}","{exchange}","{isin}"')
    lines += ["", '"Holdings are subject to change."']
    return "\n".join(lines).encode()


def _written(fund: Fund, group: str | None) -> dict:
    """What an import wrote, without ids and clocks: companies, their audit events, holdings."""
    created = db.session.scalars(sa.select(Company).where(Company.origin.is_not(None)).order_by(Company.id)).all()
    ids = {c.id: c.name for c in created}
    companies = [{k: v for k, v in audit._snapshot(c).items() if k != "id"} | {"name_forms": c.name_forms}
                 for c in created]
    events = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.object_type == "Company")
                                .order_by(AuditEvent.id)).all()
    audited = [(e.action, ids.get(e.object_id), e.actor_id, e.actor_label, e.summary, e.ip_address,
                {k: v for k, v in e.changes.items() if k != "id"}, e.changes.get("id") == e.object_id,
                e.group_id == group) for e in events]
    held = sorted(tuple(row) for row in db.session.execute(
        sa.select(Company.name, Holding.as_of, Holding.shares, Holding.market_value, Holding.weight)
        .join(Company, Company.id == Holding.company_id).where(Holding.fund_id == fund.id)))
    found = {name: [hit.id for hit in search.search(name.split()[0], kind="companies").groups[0].hits]
             for name in ids.values()}
    return {"companies": companies, "audit": audited, "holdings": held,
            "searchable": {name: any(ids.get(i) == name for i in hits) for name, hits in found.items()}}


def test_bulk_creation_writes_what_one_by_one_creation_wrote(app, make_user):
    analyst = make_user("analyst")
    known = Company(name="Known Holdings Plc")
    fund = Fund(name="Bulk Fund")
    db.session.add_all([known, fund])
    db.session.commit()
    data = small_file()
    parsed = service.check_file(data, "bulk.csv", service.ReadOptions(partial=True), fund).parsed
    assert parsed.ok, parsed.errors
    seen = {}
    for bulk in (False, True):
        with audit.acting_as(analyst.email, analyst.id), audit.grouped() as group:
            result = importer.import_parsed(parsed, fund, dt.date(2026, 10, 31), filename="bulk.csv", data=data,
                                            bulk=bulk)
            db.session.flush()
            seen[bulk] = _written(fund, group), result.lines(), len(result.created)
        db.session.rollback()  # the next way starts from the same database
    one_by_one, in_bulk = seen[False], seen[True]
    assert in_bulk == one_by_one
    written, lines, created = in_bulk
    assert created == 4 and "created: 4 companies" in lines  # the share classes make one company
    assert [c["name"] for c in written["companies"]] == [
        "Alpha Mining Co Ltd A", "Société Générale de Test", "新疆测试棉业有限公司", "Zeta Widgets Inc"]
    by_name = {c["name"]: c for c in written["companies"]}
    alpha = by_name["Alpha Mining Co Ltd A"]
    assert (alpha["isin"], alpha["exchange"], alpha["country"], alpha["normalized_name"]) == \
        (_isin(1), "XSHG", "CN", "alpha mining")
    assert by_name["新疆测试棉业有限公司"]["sector"] == ("Consumer " + "Staples " * 12)[:80]
    assert by_name["Zeta Widgets Inc"]["country"] is None and by_name["Zeta Widgets Inc"]["exchange"] == \
        "SOME EXCHANGE NOBODY LISTS"
    for company in written["companies"]:  # the stored reading is the matching's fresh reading of the name
        assert company["name_forms"] == names.stored_forms([company["name"]])
    made = [event for event in written["audit"] if event[1] is not None]  # the known company's are not the import's
    assert len(made) == 4 and all(event[0] == "create" and event[2] == analyst.id and event[7] and event[8]
                                  for event in made)
    assert written["audit"][-1][0] == "update" and written["audit"][-1][6] == {"isin": [None, _isin(4, "GB")]}
    assert all(written["searchable"].values()), written["searchable"]
    assert len(written["holdings"]) == 5


def test_bulk_ids_come_before_those_of_companies_created_afterwards(app):
    """Ids are taken before the INSERT (a sequence on PostgreSQL, above the largest id on SQLite
    under the import's write lock): a company created after is numbered after them."""
    fund = Fund(name="Ids Fund")
    db.session.add(fund)
    db.session.commit()
    data = small_file()
    service.import_file(data, "ids.csv", service.ReadOptions(partial=True), fund_id=fund.id)
    db.session.commit()
    made = db.session.scalars(sa.select(Company.id).where(Company.origin.is_not(None))).all()
    later = Company(name="Later Company")
    db.session.add(later)
    db.session.commit()
    assert len(made) == 5 and later.id > max(made)
    assert db.session.scalar(sa.select(sa.func.count(Holding.id)).where(Holding.fund_id == fund.id)) == 5


@pytest.mark.parametrize("bulk", [True])
def test_a_file_bad_halfway_writes_nothing(app, bulk):
    """A row refused in the middle of a file: nothing is imported, no company created."""
    fund = Fund(name="Halfway Fund")
    db.session.add(fund)
    db.session.commit()
    lines = small_file().decode().splitlines()
    lines.insert(7, '"BAD","Broken Row Ltd","Energy","Equity","not a number","1","1","1","1","China","XSHG",""')
    before = db.session.scalar(sa.select(sa.func.count(Company.id)))
    with pytest.raises(service.ImportRefused) as refused:
        service.import_file("\n".join(lines).encode(), "bad.csv", service.ReadOptions(partial=True), fund_id=fund.id)
    db.session.rollback()
    assert refused.value.errors and refused.value.errors[0].row == 8
    assert db.session.scalar(sa.select(sa.func.count(Company.id))) == before
    assert db.session.scalar(sa.select(sa.func.count(Holding.id))) == 0
