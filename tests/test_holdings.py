"""Holdings import from provider files, matching, screening against public lists, exposure."""

import datetime as dt
import io
import re
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from engage.extensions import db
from engage.models import Company, Engagement, Fund, Holding, ListedEntity
from tests import factories

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture()
def seeded(runner):
    assert runner.invoke(args=["seed"]).exit_code == 0


def counts():
    return (db.session.scalar(sa.select(sa.func.count(Holding.id))),
            db.session.scalar(sa.select(sa.func.count(Company.id))))


def positions(fund_name):
    fund = db.session.scalar(sa.select(Fund).where(Fund.name == fund_name))
    return {h.company.name: h for h in db.session.scalars(sa.select(Holding).where(Holding.fund_id == fund.id))}


def test_ishares_csv_with_all_its_quirks(runner, seeded):
    result = runner.invoke(args=["holdings", "import", str(FIXTURES / "ishares_em.csv"), "--fund", "EM Index",
                                 "--create-fund", "--partial"])
    assert result.exit_code == 0, result.output + result.stderr
    assert "EM Index as of 20 Nov 2026: 5 rows → 5 positions" in result.output
    assert "matched: 2 by ticker and exchange" in result.output
    assert "created: 3 companies" in result.output
    assert "1 Cash" in result.output and "1 Futures" in result.output and "1 Money Market" in result.output
    held = positions("EM Index")
    hik = held["Hangzhou Hikvision Digital Technology Co., Ltd."]
    assert hik.market_value == Decimal("12345678.00") and hik.shares == Decimal("2750000") and hik.weight == Decimal("0.06")
    assert hik.as_of == dt.date(2026, 11, 20)
    assert held["XINJIANG EXAMPLE COTTON TEXTILES LTD A"].market_value is None  # "-" is missing, not zero
    tencent = db.session.scalar(sa.select(Company).where(Company.name == "TENCENT HOLDINGS LTD"))
    assert (tencent.ticker, tencent.exchange, tencent.country, tencent.origin.startswith("holdings import")) == \
        ("700", "XHKG", "CN", True)
    again = runner.invoke(args=["holdings", "import", str(FIXTURES / "ishares_em.csv"), "--fund", "EM Index", "--partial"])
    assert again.exit_code == 0 and "replaced: 5 positions" in again.output and "created: 0" in again.output
    assert counts()[0] == 5


def test_ishares_shares_column_and_other_date_style(runner, seeded):
    result = runner.invoke(args=["holdings", "import", str(FIXTURES / "ishares_us.csv"), "--fund", "World",
                                 "--create-fund", "--partial"])
    assert result.exit_code == 0, result.stderr
    held = positions("World")
    assert held["Apple Inc."].shares == Decimal("105000") and held["Apple Inc."].as_of == dt.date(2026, 11, 20)
    assert "Thermo Fisher Scientific Inc." in held and len(held) == 2


def spdr_xlsx(rows) -> bytes:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    for row in [["Fund Name:", "SPDR Example Emerging Asia ETF"], ["Ticker Symbol:", "XEA"],
                ["Holdings:", "As of 20-Nov-2026"], [],
                ["Name", "Ticker", "Identifier", "SEDOL", "Weight", "Sector", "Shares Held", "Local Currency"], *rows]:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def test_spdr_xlsx(runner, seeded, tmp_path):
    path = tmp_path / "spdr.xlsx"
    path.write_bytes(spdr_xlsx([
        ["HANGZHOU HIKVISION DIGITAL-A", "002415", "CNE100000PM8", "BD5CPP1", 0.3121, "Information Technology", 1200000, "CNY"],
        ["Zhejiang Dahua Technology Co., Ltd.", "002236 C2", "-", "B2QD5Y0", 0.1002, "Information Technology", 800000, "CNY"],
        ["SSGA USD LIQUIDITY FUND", "-", "-", "-", 0.5, "Cash", 1000, "USD"],
    ]))
    result = runner.invoke(args=["holdings", "import", str(path), "--fund", "SPDR Asia", "--create-fund", "--partial"])
    assert result.exit_code == 0, result.stderr
    assert "1 by ISIN" in result.output and "1 by name" in result.output and "created: 0" in result.output
    assert "1 cash or derivative" in result.output
    held = positions("SPDR Asia")
    assert held["Hangzhou Hikvision Digital Technology Co., Ltd."].weight == Decimal("0.3121")


def test_plain_csv_with_a_column_mapping(runner, seeded, tmp_path):
    path = tmp_path / "custodian.csv"
    path.write_text("Security;ISIN Code;Value;Pct\nApple Inc;US0378331005;1.000.000;1,5\n", encoding="utf-8")
    refused = runner.invoke(args=["holdings", "import", str(path), "--fund", "Custody", "--create-fund",
                                  "--as-of", "2026-10-31", "--decimal", "point"])
    assert refused.exit_code == 1 and "row 2, column Value: not a number ('1.000.000')" in refused.stderr
    path.write_text("Security,ISIN Code,Value,Pct\n\"Apple Inc\",US0378331005,\"1,000,000\",1.5\n"
                    "\"New Co\",,\"2,500\",0.1\n", encoding="utf-8")
    result = runner.invoke(args=["holdings", "import", str(path), "--fund", "Custody", "--create-fund",
                                 "--as-of", "2026-10-31", "--map", "isin=ISIN Code,name=Security,market_value=Value,weight=Pct",
                                 "--partial"])
    assert result.exit_code == 0, result.stderr
    assert "1 by ISIN" in result.output and "created: 1" in result.output
    assert positions("Custody")["Apple Inc."].market_value == Decimal("1000000")


MALFORMED = [
    ("not a table", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "png.csv", "not a CSV or XLSX file"),
    ("empty", b"", "empty.csv", "the file is empty"),
    ("blank", b"   \n\n", "blank.csv", "the file is empty"),
    ("old excel", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "old.xls", "old Excel (.xls)"),
    ("no identifier", b"Foo,Bar\n1,2\n", "x.csv", "no header row with an identifier column"),
    ("bad number", b"Name,Ticker,Market Value\nAlpha,AAA,12abc\nBeta,BBB,5\n", "x.csv", "row 2, column Market Value: not a number ('12abc')"),
    ("duplicate", b"Name,ISIN,Market Value\nApple,US0378331005,1\nApple again,US0378331005,2\n", "x.csv", "row 3: ISIN US0378331005 is also in row 2"),
    # a name that reads the same (decomposed accents, spaces, full-width letters) is the same security
    # listed twice, refused as a case difference is, not added up as if share classes (h-break5)
    ("same name, another form", "Name,Market Value\nSoci\u00e9t\u00e9 G\u00e9n\u00e9rale Test,100\n"
     "  Socie\u0301te\u0301   Ge\u0301ne\u0301rale Test ,5\n".encode(), "x.csv", "row 3: this name is also in row 2"),
    ("same name, full-width", "Name,Market Value\nSoci\u00e9t\u00e9 G\u00e9n\u00e9rale Test,100\n"
     "\uff33\uff4f\uff43\uff49\u00e9t\u00e9 G\u00e9n\u00e9rale Test,5\n".encode(), "x.csv", "row 3: this name is also in row 2"),
    ("bad isin", b"Name,ISIN,Market Value\nApple,US0378331006,1\n", "x.csv", "expected 5"),
    ("weight over 100", b"Name,Ticker,Weight (%)\nAlpha,AAA,250\n", "x.csv", "a weight is 0 to 100"),
    ("header only", b"Name,Ticker,Market Value\n", "x.csv", "header but no holdings"),
    ("broken xlsx", b"PK\x03\x04 not really a zip", "x.xlsx", "cannot be read"),
]


@pytest.mark.parametrize("label, data, filename, message", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_files_are_refused_whole(runner, seeded, tmp_path, label, data, filename, message):
    path = tmp_path / filename
    path.write_bytes(data)
    before = counts()
    result = runner.invoke(args=["holdings", "import", str(path), "--fund", "F", "--create-fund", "--as-of", "2026-10-31"])
    assert result.exit_code == 1
    assert message in result.stderr, result.stderr
    assert counts() == before
    assert db.session.scalar(sa.select(Fund.id).where(Fund.name == "F")) is None


def test_cli_argument_errors(runner, seeded, tmp_path, app):
    path = FIXTURES / "ishares_us.csv"
    assert "no such file" in runner.invoke(args=["holdings", "import", "missing.csv", "--fund", "F"]).stderr
    assert "--as-of must be a date" in runner.invoke(
        args=["holdings", "import", str(path), "--fund", "F", "--as-of", "20/11/2026"]).stderr
    assert "no fund called 'Nope'" in runner.invoke(args=["holdings", "import", str(path), "--fund", "Nope"]).stderr
    undated = tmp_path / "undated.csv"
    undated.write_text("Name,Ticker\nAlpha,AAA\n")
    result = runner.invoke(args=["holdings", "import", str(undated), "--fund", "F", "--create-fund"])
    assert result.exit_code == 1 and "give --as-of" in result.stderr
    app.config["HOLDINGS_MAX_BYTES"] = 100
    try:
        big = runner.invoke(args=["holdings", "import", str(path), "--fund", "F", "--create-fund"])
    finally:
        app.config["HOLDINGS_MAX_BYTES"] = 50 * 1024 * 1024
    assert big.exit_code == 1 and "larger than" in big.stderr


def test_web_upload_preview_then_confirm(client, login_as, seeded):
    login_as("analyst")
    fund = Fund(name="Web Fund")
    db.session.add(fund)
    db.session.commit()
    data = (FIXTURES / "ishares_em.csv").read_bytes()
    preview = client.post("/holdings/import", data={"fund_id": fund.id, "file": (io.BytesIO(data), "holdings.csv"),
                                                    "partial": "y"},
                          content_type="multipart/form-data")
    page = preview.get_data(as_text=True)
    assert preview.status_code == 200 and "Import 5 holdings" in page and "ishares-csv" in page
    assert "20 Nov 2026" in page and "1 Futures" in page
    assert counts()[0] == 0  # nothing written before confirming
    token = page.split("/holdings/import/")[1].split('"')[0]
    assert client.post(f"/holdings/import/{token}", data=factories.confirmation(page)).status_code == 302
    assert counts()[0] == 5
    assert client.post(f"/holdings/import/{token}", data=factories.confirmation(page)).status_code == 302  # the stash is gone: nothing twice
    assert counts()[0] == 5
    bad = client.post("/holdings/import", data={"fund_id": fund.id,
                                                "file": (io.BytesIO(b"Name,Ticker,Market Value\nA,AAA,x\n"), "b.csv")},
                      content_type="multipart/form-data")
    assert bad.status_code == 422 and "nothing was saved" in bad.get_data(as_text=True)
    assert "not a number" in bad.get_data(as_text=True)


def test_screening_flags_listed_companies_and_shows_exposure(runner, seeded, client, login_as, tmp_path):
    path = tmp_path / "solar.csv"
    path.write_text("Ticker,Name,Market Value,Weight (%),Exchange\n"
                    "\"DQ\",\"Xinjiang Daqo New Energy Co Ltd\",\"1,000,000\",\"1.0\",\"Shanghai Stock Exchange\"\n"
                    "\"002415\",\"Hikvision\",\"3,000,000\",\"3.0\",\"Shenzhen Stock Exchange\"\n"
                    "\"ZZZ\",\"Unlisted Harmless Co\",\"6,000,000\",\"6.0\",\"NASDAQ\"\n")
    assert runner.invoke(args=["holdings", "import", str(path), "--fund", "Solar", "--create-fund",
                               "--as-of", "2026-10-31", "--partial"]).exit_code == 0
    result = runner.invoke(args=["screen", "--fund", "Solar"])
    assert result.exit_code == 0
    assert "Xinjiang Daqo New Energy Co Ltd: us_entity_list (86 FR 33119" in result.output
    # exposure per official list (issue 13): Hikvision's analyst note is reported apart, not summed in
    assert "Solar (31 Oct 2026): on an official list: 2 companies, 4,000,000.00 USD = 40.0 % of the fund" in result.output
    assert "  US Entity List: 2 companies, 4,000,000.00 USD = 40.0 % of the fund" in result.output
    assert "  not counted as exposure: Analyst note: 1 company, 3,000,000.00 USD = 30.0 % of the fund" in result.output
    assert runner.invoke(args=["screen"]).output.count("new risk flag(s)") == 1
    analyst = login_as("analyst")
    page = client.get("/holdings/screening").get_data(as_text=True)
    assert "Xinjiang Daqo New Energy Co Ltd" in page and "Unlisted Harmless Co" not in page.split("Solar")[1]
    from engage.models import Campaign

    campaign = db.session.scalar(sa.select(Campaign))
    fund = db.session.scalar(sa.select(Fund).where(Fund.name == "Solar"))
    assert client.post("/holdings/screening/engage", data={"fund_id": fund.id, "campaign_id": campaign.id}).status_code == 302
    opened = db.session.scalars(sa.select(Engagement)).all()
    assert len(opened) == 2 and {e.stage for e in opened} == {"identified"} and opened[0].owner_id == analyst.id
    client.post("/holdings/screening/engage", data={"fund_id": fund.id, "campaign_id": campaign.id})
    assert db.session.scalar(sa.select(sa.func.count(Engagement.id))) == 2  # not twice


def test_lists_import_reads_a_consolidated_screening_list_export(runner, tmp_path):
    path = tmp_path / "csl.csv"
    path.write_text(
        "_id,source,entity_number,type,programs,name,title,addresses,federal_register_notice,start_date,"
        "end_date,standard_order,license_requirement,license_policy,call_sign,vessel_type,gross_tonnage,"
        "gross_registered_tonnage,vessel_flag,vessel_owner,remarks,source_list_url,alt_names,citizenships,"
        "dates_of_birth,nationalities,places_of_birth,source_information_url,ids\n"
        "1,Entity List (EL) - Bureau of Industry and Security,,,,Example Surveillance Tech Co.,,\"Urumqi, CN\","
        "\"89 FR 12345\",2024-03-01,,,,,,,,,,,,,Example Surv; EST,,,,,https://www.bis.gov/entity-list,\n"
        "2,Specially Designated Nationals (SDN) - Treasury Department,,,,Some Sanctioned Person,,,,2020-01-01,"
        ",,,,,,,,,,,,,,,,,,\n")
    result = runner.invoke(args=["lists", "import", str(path), "--sources", "Entity List"])
    assert result.exit_code == 0, result.stderr
    assert "US Entity List: 1 entries, 1 added, 0 removed, 0 changed (first version)" in result.output
    assert "Skipped 1 rows of CSL sources not chosen" in result.output
    entry = db.session.scalar(sa.select(ListedEntity))
    assert (entry.version.file_name, entry.version.entry_count, entry.country) == ("csl.csv", 1, "CN")
    assert (entry.name, entry.aliases, entry.effective_date, entry.citation) == (
        "Example Surveillance Tech Co.", ["Example Surv", "EST"], dt.date(2024, 3, 1), "89 FR 12345")
    again = runner.invoke(args=["lists", "import", str(path), "--sources", "Entity List"])
    assert again.exit_code == 1 and "identical to version" in again.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text(path.read_text().replace("2024-03-01", "yesterday"))
    refused = runner.invoke(args=["lists", "import", str(bad), "--sources", "Entity List"])
    assert refused.exit_code == 1 and "row 2, column start_date: not a date" in refused.stderr
    assert db.session.scalar(sa.select(sa.func.count(ListedEntity.id))) == 1  # nothing of the refused files
    assert "unknown CSL source" in runner.invoke(args=["lists", "import", str(path), "--sources", "interpol"]).stderr


def test_review_merges_a_created_company(client, login_as, seeded, runner):
    runner.invoke(args=["holdings", "import", str(FIXTURES / "ishares_em.csv"), "--fund", "EM", "--create-fund",
                        "--partial"])
    created = db.session.scalar(sa.select(Company).where(Company.name == "XINJIANG EXAMPLE COTTON TEXTILES LTD A"))
    target = Company(name="Xinjiang Example Cotton Textiles Group", isin=None, country="CN")
    db.session.add(target)
    db.session.commit()
    login_as("analyst")
    assert "XINJIANG EXAMPLE COTTON" in client.get("/holdings/review").get_data(as_text=True)
    client.post(f"/holdings/review/{created.id}", data={"action": "merge", "target": "nobody at all"})
    assert db.session.get(Company, created.id) is not None  # not found: nothing merged
    shown = client.post(f"/holdings/review/{created.id}", data={"action": "merge", "target": str(target.id)})
    assert shown.status_code == 200 and db.session.get(Company, created.id) is not None  # shown, not merged yet
    plan = re.search(r'name="plan" type="hidden" value="([0-9a-f]+)"', shown.get_data(as_text=True)).group(1)
    response = client.post(f"/holdings/review/{created.id}/merge", data={"target_id": target.id, "plan": plan})
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(Company, created.id) is None
    target = db.session.get(Company, target.id)
    assert "XINJIANG EXAMPLE COTTON TEXTILES LTD A" in target.alias_names and target.ticker == "XTEC"
    assert db.session.scalar(sa.select(Holding).where(Holding.company_id == target.id)) is not None
    tencent = db.session.scalar(sa.select(Company).where(Company.name == "TENCENT HOLDINGS LTD"))
    client.post(f"/holdings/review/{tencent.id}", data={"action": "keep"})
    db.session.expire_all()
    assert db.session.get(Company, tencent.id).origin is None


def test_viewers_cannot_import_or_screen(client, login_as):
    login_as("viewer")
    assert client.get("/holdings/import").status_code == 403
    assert client.post("/holdings/screening/run").status_code == 403
    assert client.post("/holdings/screening/engage", data={}).status_code == 403
    assert client.get("/holdings/screening").status_code == 200 and client.get("/holdings/funds").status_code == 200
