"""Holdings import under hostile, careless and broken input (issue 13).

Bounded reading (XLSX dimensions, rows, columns, lines, cells), cut downloads, delimiters and
decimal commas, number bounds, what a re-import replaces, ISINs learnt from files, merging only
what an import created (once, after a confirmation), the fund page past 50 holdings, and the
housekeeping of previews and cache files.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import threading
import time
import tracemalloc
import zipfile
from decimal import Decimal

import pytest
import sqlalchemy as sa

from engage.extensions import db
from engage.holdings import parsing, service
from engage.identifiers import isin_check_digit
from engage.models import AuditEvent, Campaign, Company, CompanyAlias, Engagement, Fund, Holding, RiskFlag
from engage.models.holdings import HoldingImport
from tests import factories


def isin(first11: str) -> str:
    return first11 + str(isin_check_digit(first11))


def counts():
    return (db.session.scalar(sa.select(sa.func.count(Holding.id))),
            db.session.scalar(sa.select(sa.func.count(Company.id))))


FULL = [("2330", "TAIWAN SEMICONDUCTOR MANUFACTURING", "1,912,345,678.90", "40.00", "62,000,000.00"),
        ("700", "TENCENT HOLDINGS LTD", "812,000,000.00", "30.00", "17,000,000.00"),
        ("002415", "HANGZHOU HIKVISION DIGITAL TECHNOLOGY LTD A", "12,345,678.00", "20.00", "2,750,000.00"),
        ("002236", "ZHEJIANG DAHUA TECHNOLOGY LTD A", "4,567,890.12", "5.00", "1,900,000.00"),
        ("XTEC", "XINJIANG EXAMPLE COTTON TEXTILES LTD A", "-", "4.50", "-")]


def ishares(rows=FULL, trailer=True, cash="0.50") -> str:
    """A whole-fund iShares-style file: preamble, header, rows, cash, blank line, disclaimer."""
    lines = ["\ufeffiShares Example EM ETF", 'Fund Holdings as of,"Nov 20, 2026"', "\u00a0",
             "Ticker,Name,Sector,Asset Class,Market Value,Weight (%),Quantity,Location,Exchange,Currency"]
    for ticker, name, value, weight, quantity in rows:
        lines.append(f'"{ticker}","{name}","Information Technology","Equity","{value}","{weight}","{quantity}",'
                     f'"China","Shenzhen Stock Exchange","CNY"')
    lines.append(f'"USD","USD CASH","Cash and/or Derivatives","Cash","95,000,000.00","{cash}","95,000,000.00",'
                 f'"United States","-","USD"')
    text = "\n".join(lines) + "\n"
    if trailer:
        text += '\u00a0\n"The content contained herein is owned or licensed by BlackRock. Holdings are subject to change."\n'
    return text


def cli_import(runner, tmp_path, content, *args, name="file.csv", fund="F"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return runner.invoke(args=["holdings", "import", str(path), "--fund", fund, "--create-fund", *args])


def patched_xlsx(rows, edit=None, header=("Name", "Ticker", "Market Value")) -> bytes:
    """A workbook written by openpyxl, then its sheet XML edited as a hostile file would be."""
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.append(list(header))
    for row in rows:
        sheet.append(list(row))
    buffer = io.BytesIO()
    workbook.save(buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml" and edit:
                data = edit(data)
            target.writestr(info, data)
    return out.getvalue()


def whole_sheet(data: bytes) -> bytes:
    return re.sub(rb'<dimension ref="[^"]*"\s*/>', b'<dimension ref="A1:XFD1048576"/>', data)


@pytest.fixture()
def instance_dir(app, tmp_path):
    """The app's instance folder, in a temp dir for this test (uploads and cache live there)."""
    previous = app.instance_path
    app.instance_path = str(tmp_path / "instance")
    os.makedirs(app.instance_path)
    try:
        yield tmp_path / "instance"
    finally:
        app.instance_path = previous


@pytest.fixture()
def limits(app):
    """Change holdings settings for one test, restored after it."""
    saved = dict(app.config)

    def set_(**values):
        app.config.update(values)

    yield set_
    for key in ("HOLDINGS_MAX_ROWS", "HOLDINGS_MAX_COLUMNS", "HOLDINGS_MAX_UNZIPPED_BYTES", "HOLDINGS_MIN_WEIGHT_TOTAL"):
        app.config[key] = saved[key]


# --- 1. bounded reading --------------------------------------------------------------------

def test_an_xlsx_declaring_the_whole_sheet_is_read_as_it_is():
    """<dimension ref="A1:XFD1048576"/> made openpyxl pad each row to 16,384 cells (135 MB here)."""
    data = patched_xlsx([(f"Company {i}", f"T{i}", 1000 + i) for i in range(1000)], whole_sheet)
    assert len(data) < 40_000
    tracemalloc.start()
    try:
        parsed = parsing.parse("hostile.xlsx", data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert parsed.ok and len(parsed.rows) == 1000 and parsed.rows[-1].market_value == Decimal(1999)
    assert peak < 30 * 1024 * 1024, f"peak {peak / 1e6:.0f} MB"


def test_an_xlsx_with_too_many_rows_is_refused_without_reading_them_all(runner, tmp_path, limits):
    limits(HOLDINGS_MAX_ROWS=200)
    data = patched_xlsx([(f"Company {i}", f"T{i}", i) for i in range(5000)], whole_sheet)
    started = time.perf_counter()
    result = cli_import(runner, tmp_path, data, "--as-of", "2026-10-31", name="big.xlsx")
    assert time.perf_counter() - started < 5
    assert result.exit_code == 1
    assert "more than 200 rows, the limit (HOLDINGS_MAX_ROWS)" in result.stderr
    assert counts() == (0, 0)


def test_rows_that_jump_to_the_last_row_of_the_sheet_do_not_run_for_ever(tmp_path):
    """A row numbered 1048576 makes openpyxl yield a million empty rows before it."""
    def far_row(data):
        return data.replace(b"</sheetData>", b'<row r="1048576"><c r="A1048576" t="inlineStr"><is><t>Late Co</t>'
                                             b'</is></c><c r="B1048576" t="inlineStr"><is><t>LATE</t></is></c>'
                                             b'</row></sheetData>')
    started = time.perf_counter()
    parsed = parsing.parse("far.xlsx", patched_xlsx([("Alpha", "AAA", 1)], far_row))
    assert time.perf_counter() - started < 5
    assert [r.name for r in parsed.rows] == ["Alpha"]


def test_columns_beyond_the_limit_and_a_late_header_are_refused(runner, tmp_path, limits):
    limits(HOLDINGS_MAX_COLUMNS=20)
    wide = ",".join(["Name", "Ticker"] + [f"C{i}" for i in range(30)]) + "\nAlpha,AAA" + ",x" * 30 + "\n"
    result = cli_import(runner, tmp_path, wide, "--as-of", "2026-10-31")
    assert result.exit_code == 1 and "row 1 has values beyond column 20, the limit (HOLDINGS_MAX_COLUMNS)" in result.stderr
    wide_xlsx = patched_xlsx([("Alpha", "AAA", 1)], header=["Name", "Ticker"] + [f"C{i}" for i in range(30)])
    result = cli_import(runner, tmp_path, wide_xlsx, "--as-of", "2026-10-31", name="wide.xlsx")
    assert result.exit_code == 1 and "beyond column 20" in result.stderr
    late = "note\n" * 40 + "Name,Ticker\nAlpha,AAA\n"
    result = cli_import(runner, tmp_path, late, "--as-of", "2026-10-31")
    assert result.exit_code == 1 and "in the first 40 rows" in result.stderr


def test_csv_lines_cells_and_rows_are_bounded(runner, tmp_path, limits):
    long_line = "Name,Ticker\nAlpha," + "A" * 30_000 + "\n"
    result = cli_import(runner, tmp_path, long_line, "--as-of", "2026-10-31")
    assert result.exit_code == 1 and "line 2 is longer than 20,000 characters" in result.stderr
    long_cell = "Name,Ticker\n" + "B" * 1500 + ",AAA\nBeta,BBB\n"
    result = cli_import(runner, tmp_path, long_cell, "--as-of", "2026-10-31")
    assert result.exit_code == 1 and "row 2, column Name: longer than 1,000 characters" in result.stderr
    open_quote = 'Name,Ticker\n"Alpha' + "\nmore text" * 20_000 + "\n"
    result = cli_import(runner, tmp_path, open_quote, "--as-of", "2026-10-31")
    assert result.exit_code == 1 and "quote not closed?" in result.stderr
    limits(HOLDINGS_MAX_ROWS=100)
    many = "Name,Ticker\n" + "".join(f"Co {i},T{i}\n" for i in range(101))
    result = cli_import(runner, tmp_path, many, "--as-of", "2026-10-31")
    assert result.exit_code == 1 and "more than 100 rows" in result.stderr
    assert counts() == (0, 0)


def test_an_xlsx_that_unpacks_to_too_much_is_refused_before_it_is_opened(runner, tmp_path, limits):
    limits(HOLDINGS_MAX_UNZIPPED_BYTES=200_000)
    data = patched_xlsx([(f"Alpha {i}", "A" * 30_000, 1) for i in range(10)])
    assert len(data) < 50_000  # it compresses well: the size of the upload says nothing
    result = cli_import(runner, tmp_path, data, "--as-of", "2026-10-31", name="bomb.xlsx")
    assert result.exit_code == 1 and "unpacks to" in result.stderr and "limit" in result.stderr


def test_a_malformed_sheet_is_refused_not_a_crash(runner, tmp_path):
    broken = patched_xlsx([("Alpha", "AAA", 1)], lambda d: d.replace(b"</sheetData>", b"<row r='9'><c r='A9'>"))
    result = cli_import(runner, tmp_path, broken, "--as-of", "2026-10-31", name="broken.xlsx")
    assert result.exit_code == 1 and "the XLSX sheet cannot be read" in result.stderr, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_old_mac_line_endings_and_a_bom_are_read():
    text = "\ufeffName,Ticker,Weight (%)\rAlpha,AAA,60\rBeta,BBB,40\r"
    parsed = parsing.parse("mac.csv", text.encode())
    assert parsed.ok and [r.name for r in parsed.rows] == ["Alpha", "Beta"]


# --- 2. cut and incomplete files -----------------------------------------------------------

def test_a_whole_provider_file_imports_without_flags(runner, tmp_path):
    result = cli_import(runner, tmp_path, ishares())
    assert result.exit_code == 0, result.stderr
    assert "5 rows → 5 positions" in result.output and "(partial file)" not in result.output


@pytest.mark.parametrize("cut, message", [
    ("inside a quoted value", "the file ends inside a quoted value (line 10): the last row is cut off"),
    ("after a delimiter", "row 10: the file ends in the middle of this row (6 of 10 columns)"),
    ("between rows", "the file ends inside the holdings table, without the provider's closing text"),
])
def test_a_cut_download_is_refused_and_changes_nothing(runner, tmp_path, cut, message):
    full = ishares()
    assert cli_import(runner, tmp_path, full, fund="EM").exit_code == 0
    before = counts()
    lines = full.split("\n")
    if cut == "inside a quoted value":
        text = "\n".join(lines[:9]) + "\n" + lines[9][:60]
    elif cut == "after a delimiter":
        text = "\n".join(lines[:9]) + "\n" + '","'.join(lines[9].split('","')[:5]) + '",'
    else:
        text = "\n".join(lines[:10]) + "\n"
    result = cli_import(runner, tmp_path, text, fund="EM")
    assert result.exit_code == 1 and message in result.stderr, result.stderr
    assert "nothing imported" in result.stderr or "download the file again" in result.stderr
    assert counts() == before


def test_weights_far_below_100_percent_are_refused_unless_the_file_is_partial(runner, tmp_path):
    extract = "Name,Ticker,Weight (%)\nAlpha,AAA,6.5\nBeta,BBB,3.5\n"
    result = cli_import(runner, tmp_path, extract, "--as-of", "2026-10-31")
    assert result.exit_code == 1
    assert "row 3, column Weight (%): the weights add up to 10.00 %, far below 100 %" in result.stderr
    assert "--partial" in result.stderr
    fractions = "Name,Ticker,Weight\nAlpha,AAA,0.65\nBeta,BBB,0.35\n"
    result = cli_import(runner, tmp_path, fractions, "--as-of", "2026-10-31")
    assert result.exit_code == 1 and "Are they fractions" in result.stderr
    result = cli_import(runner, tmp_path, extract, "--as-of", "2026-10-31", "--partial")
    assert result.exit_code == 0 and "2 rows → 2 positions (partial file)" in result.output
    record = db.session.scalar(sa.select(HoldingImport))
    assert record.partial is True and record.filename == "file.csv"


def test_a_blank_row_inside_the_table_or_an_unquoted_thousands_separator_is_refused(runner, tmp_path):
    gap = "Name,Ticker,Weight (%)\nAlpha,AAA,50\n\nBeta,BBB,50\n"
    result = cli_import(runner, tmp_path, gap, "--as-of", "2026-10-31")
    assert result.exit_code == 1 and "row 4: this row looks like a holding, but the table ended at the empty row 3" \
        in result.stderr
    unquoted = "Name,Ticker,Market Value,Weight (%)\nAlpha,AAA,1,234.50,50\nBeta,BBB,99.00,50\n"
    result = cli_import(runner, tmp_path, unquoted, "--as-of", "2026-10-31")
    assert result.exit_code == 1 and "row 2: 5 values but the header has 4 columns" in result.stderr


def test_the_web_preview_offers_partial_and_reads_the_file_again(client, login_as, instance_dir):
    login_as("analyst")
    fund = Fund(name="Web Fund")
    db.session.add(fund)
    db.session.commit()
    extract = b"Name,Ticker,Weight (%)\nAlpha,AAA,6.5\nBeta,BBB,3.5\n"
    refused = client.post("/holdings/import", data={"fund_id": fund.id, "as_of": "2026-10-31",
                                                    "file": (io.BytesIO(extract), "top.csv")},
                          content_type="multipart/form-data")
    page = refused.get_data(as_text=True)
    assert refused.status_code == 422 and "far below 100 %" in page and "Partial file" in page
    token = re.search(r"/holdings/import/([0-9a-f]{32})/read", page).group(1)
    preview = client.post(f"/holdings/import/{token}/read", data={"partial": "y", "decimal": ""})
    page = preview.get_data(as_text=True)
    assert preview.status_code == 200 and "Import 2 holdings" in page and "partial file" in page
    assert client.post(f"/holdings/import/{token}", data=factories.confirmation(page)).status_code == 302
    assert counts()[0] == 2
    assert db.session.scalar(sa.select(HoldingImport.partial)) is True


# --- 3. delimiters and decimal commas ------------------------------------------------------

def test_a_semicolon_file_with_decimal_commas_imports_its_real_numbers(runner, tmp_path):
    text = (f"ISIN;Name;Market Value;Weight (%)\n{isin('DE000000001')};Alpha AG;1.234,56;60,5\n"
            f"{isin('DE000000002')};Beta SE;12.345.678,9;39,5\n")
    result = cli_import(runner, tmp_path, text, "--as-of", "2026-10-31")
    assert result.exit_code == 0, result.stderr
    held = {h.company.name: h for h in db.session.scalars(sa.select(Holding))}
    assert held["Alpha AG"].market_value == Decimal("1234.56") and held["Alpha AG"].weight == Decimal("60.5")
    assert held["Beta SE"].market_value == Decimal("12345678.90")


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_each_delimiter_is_detected(delimiter):
    rows = [["Name", "Ticker", "Market Value", "Weight (%)"], ["Alpha, Inc.", "AAA", "1000", "70"],
            ["Beta; Corp", "BBB", "2000", "30"]]
    buffer = io.StringIO()
    import csv

    csv.writer(buffer, delimiter=delimiter).writerows(rows)
    parsed = parsing.parse("x.csv", buffer.getvalue().encode())
    assert parsed.ok and parsed.delimiter == delimiter
    assert [(r.name, r.market_value) for r in parsed.rows] == [("Alpha, Inc.", 1000), ("Beta; Corp", 2000)]


def test_ambiguous_numbers_are_refused_with_their_column_and_row_until_the_user_says(runner, tmp_path):
    text = "Name;Ticker;Market Value\nAlpha;AAA;1,234\nBeta;BBB;2,500\n"
    result = cli_import(runner, tmp_path, text, "--as-of", "2026-10-31")
    assert result.exit_code == 1
    assert "row 2, column Market Value: could be read with a decimal point or a decimal comma" in result.stderr
    assert "--decimal point|comma" in result.stderr
    result = cli_import(runner, tmp_path, text, "--as-of", "2026-10-31", "--decimal", "comma", fund="Comma")
    assert result.exit_code == 0, result.stderr
    assert db.session.scalar(sa.select(Holding.market_value).join(Company).where(Company.name == "Alpha")) == \
        Decimal("1.23")  # 1.234 stored with the column's two decimals
    result = cli_import(runner, tmp_path, text, "--as-of", "2026-10-31", "--decimal", "point", fund="Point")
    assert result.exit_code == 0
    fund = db.session.scalar(sa.select(Fund).where(Fund.name == "Point"))
    assert db.session.scalar(sa.select(Holding.market_value).where(Holding.fund_id == fund.id)
                             .order_by(Holding.market_value)) == Decimal("1234")
    record = db.session.scalar(sa.select(HoldingImport).where(HoldingImport.fund_id == fund.id))
    assert record.decimal == "point"


def test_other_columns_of_the_file_settle_an_ambiguous_one():
    text = "Name;Ticker;Market Value;Shares\nAlpha;AAA;1.234,56;1.234\nBeta;BBB;99,5;2.000\n"
    parsed = parsing.parse("x.csv", text.encode())
    assert parsed.ok, parsed.errors
    assert parsed.rows[0].shares == Decimal(1234) and parsed.decimals == {"Market Value": "comma", "Shares": "comma"}


def test_a_column_mixing_decimal_conventions_is_refused():
    text = 'Name,Ticker,Market Value\nAlpha,AAA,"1,234.50"\nBeta,BBB,"1.234,50"\n'
    parsed = parsing.parse("x.csv", text.encode())
    assert [str(e) for e in parsed.errors] == [
        "row 3, column Market Value: the column mixes decimal points (row 2: '1,234.50') and decimal commas "
        "(row 3: '1.234,50') ('1.234,50')"]


def test_the_web_preview_asks_for_the_decimal_separator(client, login_as, instance_dir):
    login_as("analyst")
    fund = Fund(name="Web Fund")
    db.session.add(fund)
    db.session.commit()
    data = b"Name;Ticker;Market Value\nAlpha;AAA;1,234\nBeta;BBB;2,500\n"
    refused = client.post("/holdings/import", data={"fund_id": fund.id, "as_of": "2026-10-31",
                                                    "file": (io.BytesIO(data), "eu.csv")},
                          content_type="multipart/form-data")
    page = refused.get_data(as_text=True)
    assert refused.status_code == 422 and "could be read with a decimal point or a decimal comma" in page
    assert "Decimal comma: 1.234,56" in page
    token = re.search(r"/holdings/import/([0-9a-f]{32})/read", page).group(1)
    preview = client.post(f"/holdings/import/{token}/read", data={"decimal": "point"})
    page = preview.get_data(as_text=True)
    assert preview.status_code == 200 and "Market Value: decimal point" in page and "as chosen" in page
    assert client.post(f"/holdings/import/{token}", data=factories.confirmation(page)).status_code == 302
    assert sorted(db.session.scalars(sa.select(Holding.market_value))) == [Decimal(1234), Decimal(2500)]


# --- 4. numbers within bounds --------------------------------------------------------------

def test_infinite_huge_and_negative_numbers_are_row_errors(runner, tmp_path):
    text = ("Name,Ticker,Market Value,Quantity,Weight (%),Price\n"
            "Alpha,AAA,inf,1,10,1\nBeta,BBB,nan,1,10,1\nGamma,CCC,1e400,1,10,1\n"
            "Delta,DDD,\"2,000,000,000,000,000\",1,10,1\nEpsilon,EEE,5,-3,10,1\nZeta,ZZZ,5,1,150,1\n"
            "Eta,HHH,5,1,10,1e12\nTheta,TTT,Infinity,1,10,1\n")
    result = cli_import(runner, tmp_path, text, "--as-of", "2026-10-31", "--partial")
    assert result.exit_code == 1
    for expected in ["row 2, column Market Value: not a number ('inf')",
                     "row 3, column Market Value: not a number ('nan')",
                     "row 4, column Market Value: a market value must be below 1,000,000,000,000,000 ('1e400')",
                     "row 5, column Market Value: a market value must be below 1,000,000,000,000,000",
                     "row 6, column Quantity: a number of shares cannot be negative",
                     "row 7, column Weight (%): a weight is 0 to 100 %",
                     "row 8, column Price: a price must be below 1,000,000,000",
                     "row 9, column Market Value: not a number ('Infinity')"]:
        assert expected in result.stderr, expected
    assert counts() == (0, 0)


def test_spreadsheet_infinities_and_percent_cells(runner, tmp_path):
    inf = patched_xlsx([("Alpha", "AAA", 12345), ("Beta", "BBB", 1)],
                       lambda d: d.replace(b"<v>12345</v>", b"<v>1e400</v>"))
    result = cli_import(runner, tmp_path, inf, "--as-of", "2026-10-31", name="inf.xlsx")
    assert result.exit_code == 1 and "row 2, column Market Value: not a finite number" in result.stderr
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["Name", "Ticker", "Weight"])
    for name, weight in (("Alpha", 0.6), ("Beta", 0.4)):
        sheet.append([name, name[:3].upper(), weight])
        sheet.cell(row=sheet.max_row, column=3).number_format = "0.00%"
    buffer = io.BytesIO()
    workbook.save(buffer)
    parsed = parsing.parse("pct.xlsx", buffer.getvalue())
    assert parsed.ok and [r.weight for r in parsed.rows] == [Decimal("60.0"), Decimal("40.0")]


def test_an_out_of_range_holdings_date_is_refused(runner, tmp_path, client, login_as):
    text = ishares().replace("Nov 20, 2026", "Nov 20, 1900")
    result = cli_import(runner, tmp_path, text)
    assert result.exit_code == 1 and "row 2: the holdings date 20 Nov 1900 is outside the dates Engage accepts" in result.stderr
    result = cli_import(runner, tmp_path, "Name,Ticker\nA,AAA\n", "--as-of", "2206-01-01")
    assert result.exit_code == 1 and "--as-of: 01 Jan 2206 is outside the dates Engage accepts" in result.stderr
    login_as("analyst")
    fund = Fund(name="Dated")
    db.session.add(fund)
    db.session.commit()
    response = client.post("/holdings/import", data={"fund_id": fund.id, "as_of": "0026-10-31",
                                                     "file": (io.BytesIO(b"Name,Ticker\nA,AAA\n"), "a.csv")},
                           content_type="multipart/form-data")
    assert response.status_code == 422 and "outside the dates Engage accepts" in response.get_data(as_text=True)


# --- 5. what a re-import replaces; ISINs learnt from files ---------------------------------

def test_a_re_import_says_which_import_it_replaces(runner, tmp_path, client, login_as, instance_dir):
    assert cli_import(runner, tmp_path, ishares(), name="em-nov.csv", fund="EM").exit_code == 0
    again = cli_import(runner, tmp_path, ishares(), name="em-nov-again.csv", fund="EM")
    assert again.exit_code == 0
    assert re.search(r"replaced: 5 positions of the import of 20 Nov 2026 from em-nov\.csv by cli at \d\d [A-Z][a-z]{2} "
                     r"\d{4}, \d\d:\d\d UTC", again.output), again.output
    analyst = login_as("analyst")
    fund = db.session.scalar(sa.select(Fund).where(Fund.name == "EM"))
    preview = client.post("/holdings/import", data={"fund_id": fund.id,
                                                    "file": (io.BytesIO(ishares().encode()), "web.csv")},
                          content_type="multipart/form-data")
    page = preview.get_data(as_text=True)
    assert preview.status_code == 200
    assert "5 positions of the import of 20 Nov 2026 from em-nov-again.csv by cli at" in page
    token = page.split("/holdings/import/")[1].split('"')[0]
    assert client.post(f"/holdings/import/{token}", data=factories.confirmation(page)).status_code == 302
    records = db.session.scalars(sa.select(HoldingImport).order_by(HoldingImport.id)).all()
    assert [(r.filename, r.actor_label, r.replaced) for r in records] == [
        ("em-nov.csv", "cli", 0), ("em-nov-again.csv", "cli", 5), ("web.csv", analyst.email, 5)]
    assert records[2].created_by_id == analyst.id and len(records[2].sha256) == 64


def test_a_row_matched_by_name_gives_its_isin_to_the_company(runner, tmp_path):
    alpha = Company(name="Alpha Industries Ltd")
    beta = Company(name="Beta Corp", isin=isin("US000000002"))
    gamma = Company(name="Gamma Holdings")
    db.session.add_all([alpha, beta, gamma])
    db.session.commit()
    text = ("Name,ISIN,Weight (%)\n"
            f"ALPHA INDUSTRIES LTD,{isin('CNE00000001')},40\n"
            f"Beta Corp,{isin('US000000003')},30\n"
            f"Gamma Holdings A,{isin('HK000000001')},15\n"
            f"Gamma Holdings H,{isin('HK000000002')},15\n")
    result = cli_import(runner, tmp_path, text, "--as-of", "2026-10-31")
    assert result.exit_code == 0, result.stderr
    assert "ISIN stored on 1 matched companies that had none" in result.output
    assert (f"for review: row 3: Beta Corp matched Beta Corp by name, but the file gives ISIN {isin('US000000003')} "
            f"and the company has {isin('US000000002')}") in result.output
    assert "for review: Gamma Holdings has no ISIN and the file gives several" in result.output
    db.session.expire_all()
    assert db.session.get(Company, alpha.id).isin == isin("CNE00000001")
    assert db.session.get(Company, beta.id).isin == isin("US000000002")
    assert db.session.get(Company, gamma.id).isin is None
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "update",
                                                          AuditEvent.object_type == "Company",
                                                          AuditEvent.object_id == alpha.id))
    assert event.changes["isin"] == [None, isin("CNE00000001")] and event.actor_label == "cli"


# --- 6. merging only what an import created, once, after confirming --------------------------

@pytest.fixture()
def created_and_target(runner, tmp_path, make_user):
    """A company created by an import (with a flag, an alias and an engagement) and a real one."""
    assert cli_import(runner, tmp_path, ishares(), fund="EM").exit_code == 0
    created = db.session.scalar(sa.select(Company).where(Company.name == "XINJIANG EXAMPLE COTTON TEXTILES LTD A"))
    created.aliases.append(CompanyAlias(alias="Xinjiang Example Cotton"))
    created.risk_flags.append(RiskFlag(source="us_entity_list", citation="89 FR 1", effective_date=dt.date(2024, 1, 1)))
    target = Company(name="Xinjiang Example Cotton Textiles Group", country="CN")
    campaign = Campaign(slug="xj", name="Xinjiang cotton")
    db.session.add_all([target, campaign])
    db.session.flush()
    owner = make_user("analyst")
    db.session.add(Engagement(company_id=created.id, campaign_id=campaign.id, owner_id=owner.id,
                              opened_on=dt.date(2026, 11, 21)))
    db.session.commit()
    return created, target


def merge_page(client, company_id, target):
    return client.post(f"/holdings/review/{company_id}", data={"action": "merge", "target": str(target)})


def plan_of(page) -> str:
    return re.search(r'name="plan" type="hidden" value="([0-9a-f]+)"', page.get_data(as_text=True)).group(1)


def test_a_merge_shows_what_moves_then_keeps_everything_in_the_audit_event(client, login_as, created_and_target):
    created, target = created_and_target
    created_id, state = created.id, {"name": created.name, "ticker": created.ticker, "origin": created.origin}
    login_as("analyst")
    shown = merge_page(client, created.id, target.id)
    page = shown.get_data(as_text=True)
    assert shown.status_code == 200 and db.session.get(Company, created.id) is not None
    for expected in ("EM 20 Nov 2026", "XINJIANG EXAMPLE COTTON TEXTILES LTD A, Xinjiang Example Cotton",
                     "1 moved (US Entity List: 89 FR 1)", "Xinjiang cotton", "ticker XTEC", "will be <strong>deleted"):
        assert expected.replace("US Entity List", RiskFlag(source="us_entity_list").source_label) in page, expected
    response = client.post(f"/holdings/review/{created.id}/merge", data={"target_id": target.id, "plan": plan_of(shown)})
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/companies/{target.id}")
    db.session.expire_all()
    assert db.session.get(Company, created_id) is None
    target = db.session.get(Company, target.id)
    assert target.ticker == "XTEC" and {"XINJIANG EXAMPLE COTTON TEXTILES LTD A", "Xinjiang Example Cotton"} <= \
        set(target.alias_names)
    assert [f.citation for f in target.risk_flags] == ["89 FR 1"]
    assert db.session.scalar(sa.select(Engagement.company_id)) == target.id
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "company_merge"))
    assert event.object_id == created_id and event.changes["into"] == {"id": target.id, "name": target.name}
    company = event.changes["company"]
    assert {k: company[k] for k in state} == state and {"created_at", "updated_at", "isin", "country"} <= set(company)
    assert [a["alias"] for a in event.changes["aliases"]] == ["Xinjiang Example Cotton"]
    assert event.changes["risk_flags"][0]["citation"] == "89 FR 1" and len(event.changes["holdings"]) == 1


def test_a_second_click_on_merge_gets_a_message_not_an_error(client, login_as, created_and_target):
    created, target = created_and_target
    login_as("analyst")
    plan = plan_of(merge_page(client, created.id, target.id))
    first = client.post(f"/holdings/review/{created.id}/merge", data={"target_id": target.id, "plan": plan})
    second = client.post(f"/holdings/review/{created.id}/merge", data={"target_id": target.id, "plan": plan},
                         follow_redirects=True)
    assert first.status_code == 302 and second.status_code == 200
    assert "was already merged into Xinjiang Example Cotton Textiles Group by analyst" in second.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count(AuditEvent.id)).where(AuditEvent.action == "company_merge")) == 1
    again = merge_page(client, created.id, target.id)
    assert again.status_code == 302  # the review form of a stale tab: same message


def test_a_merge_is_refused_when_what_moves_changed_since_the_page(client, login_as, created_and_target):
    created, target = created_and_target
    login_as("analyst")
    plan = plan_of(merge_page(client, created.id, target.id))
    created.aliases.append(CompanyAlias(alias="Another Name"))
    db.session.commit()
    response = client.post(f"/holdings/review/{created.id}/merge", data={"target_id": target.id, "plan": plan})
    page = response.get_data(as_text=True)
    assert response.status_code == 409 and "has changed since the page was shown" in page and "Another Name" in page
    assert db.session.get(Company, created.id) is not None


def test_only_unreviewed_companies_created_by_an_import_can_be_merged_or_kept(client, login_as, created_and_target):
    created, target = created_and_target
    login_as("analyst")
    for victim in (target, created):
        if victim is created:
            created.origin = None  # reviewed: "keep" was chosen
            db.session.commit()
        shown = merge_page(client, victim.id, target.id if victim is created else created.id)
        assert shown.status_code == 422 and "cannot be merged from the review page" in shown.get_data(as_text=True)
        forged = client.post(f"/holdings/review/{victim.id}/merge",
                             data={"target_id": created.id if victim is target else target.id, "plan": "0" * 32},
                             follow_redirects=True)
        assert forged.status_code == 200 and "Not merged" in forged.get_data(as_text=True)
        kept = client.post(f"/holdings/review/{victim.id}", data={"action": "keep"}, follow_redirects=True)
        assert "cannot be merged from the review page" in kept.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Company, target.id) is not None and db.session.get(Company, created.id) is not None
    assert db.session.scalar(sa.select(sa.func.count(AuditEvent.id)).where(AuditEvent.action == "company_merge")) == 0


def test_a_merge_claims_the_company_once_even_when_another_request_got_there_first(app, created_and_target):
    created, target = created_and_target
    with db.engine.begin() as other:  # another request reviews it between our page and our merge
        other.execute(sa.update(Company).where(Company.id == created.id).values(origin=None))
    with pytest.raises(service.MergeError, match="merged or reviewed meanwhile"):
        service.merge(created, target)
    db.session.rollback()
    assert db.session.get(Company, created.id) is not None


def test_a_double_click_on_import_imports_once(client, login_as, instance_dir):
    login_as("analyst")
    fund = Fund(name="Web Fund")
    db.session.add(fund)
    db.session.commit()
    page = client.post("/holdings/import", data={"fund_id": fund.id, "file": (io.BytesIO(ishares().encode()), "a.csv")},
                       content_type="multipart/form-data").get_data(as_text=True)
    token = page.split("/holdings/import/")[1].split('"')[0]
    assert client.post(f"/holdings/import/{token}", data=factories.confirmation(page)).status_code == 302
    second = client.post(f"/holdings/import/{token}", data=factories.confirmation(page), follow_redirects=True)
    assert "This import was confirmed already and saved once" in second.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count(HoldingImport.id))) == 1 and counts()[0] == 5


def test_a_stash_is_claimed_by_one_caller_only(app, instance_dir):
    winners = []
    for _ in range(20):
        token = service.stash_upload(b"data", {"fund_id": 1})
        barrier = threading.Barrier(4)

        def claim():
            with app.app_context():
                barrier.wait()
                if service.claim_upload(token) is not None:
                    winners.append(token)

        threads = [threading.Thread(target=claim) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(winners) == 20 and len(set(winners)) == 20


# --- 7. the fund page past 50 holdings -----------------------------------------------------

def test_a_fund_with_more_than_50_holdings_pages_and_the_import_lands_there(client, login_as, instance_dir):
    login_as("analyst")
    fund = Fund(name="Broad")
    db.session.add(fund)
    db.session.commit()
    text = "Name,Ticker,Market Value,Weight (%)\n" + "".join(
        f"Company {i:02d},T{i:02d},{1000 + i},{'2.0' if i == 0 else '1.96'}\n" for i in range(51))
    page = client.post("/holdings/import", data={"fund_id": fund.id, "as_of": "2026-10-31",
                                                 "file": (io.BytesIO(text.encode()), "broad.csv")},
                       content_type="multipart/form-data").get_data(as_text=True)
    token = page.split("/holdings/import/")[1].split('"')[0]
    landed = client.post(f"/holdings/import/{token}", data=factories.confirmation(page), follow_redirects=True)
    html = landed.get_data(as_text=True)
    assert landed.status_code == 200 and "Page 1 of 2 · 51 rows" in html
    assert f"/holdings/funds/{fund.id}?page=2" in html or f"/holdings/funds/{fund.id}?as_of=2026-10-31&amp;page=2" in html
    second = client.get(f"/holdings/funds/{fund.id}?page=2&fund_id=999")
    assert second.status_code == 200 and "Company 00" in second.get_data(as_text=True)
    for page_arg in ("3", "0", "-1", "99999999999999999999999", str(2**63 - 1)):
        assert client.get(f"/holdings/funds/{fund.id}?page={page_arg}").status_code == 404, page_arg
    assert client.get(f"/holdings/funds/{fund.id}?flagged=yes&page=2").status_code == 404


# --- 8. housekeeping -----------------------------------------------------------------------

def test_housekeeping_removes_old_previews_and_cache_files(app, runner, instance_dir):
    from engage.jobs import housekeeping, jobs

    assert any(j.id == "housekeeping" and j.trigger == "interval" for j in jobs(app))
    now = dt.datetime(2026, 11, 23, 12, 0)
    stamp = now.replace(tzinfo=dt.UTC).timestamp()
    token = service.stash_upload(b"x" * 100, {"fund_id": 1})
    fresh = service.stash_upload(b"y", {"fund_id": 1})
    cache = instance_dir / "cache" / "letters"
    cache.mkdir(parents=True)
    (cache / "old.pdf").write_bytes(b"%PDF")
    (cache / "new.pdf").write_bytes(b"%PDF")
    outside = instance_dir / "precious.txt"
    outside.write_text("keep me")
    (cache / "link.pdf").symlink_to(outside)
    for path, hours in [(instance_dir / "uploads" / f"{token}.bin", 25), (instance_dir / "uploads" / f"{token}.json", 25),
                        (instance_dir / "uploads" / f"{fresh}.bin", 23), (instance_dir / "uploads" / f"{fresh}.json", 23),
                        (cache / "old.pdf", 8 * 24), (cache / "new.pdf", 6 * 24), (outside, 30 * 24)]:
        os.utime(path, (stamp - hours * 3600, stamp - hours * 3600))
    os.utime(cache / "link.pdf", (stamp - 9 * 24 * 3600,) * 2, follow_symlinks=False)
    assert housekeeping(now)[:2] == ["2 expired import preview file(s) removed", "2 old cache file(s) removed"]
    assert service.load_upload(token) is None and service.load_upload(fresh) is not None
    assert sorted(p.name for p in cache.iterdir()) == ["new.pdf"] and outside.read_text() == "keep me"
    result = runner.invoke(args=["housekeeping", "--now", "2026-11-24T12:00"])
    assert result.exit_code == 0 and "2 expired import preview file(s) removed" in result.output
    assert housekeeping(now)[:2] == ["0 expired import preview file(s) removed", "0 old cache file(s) removed"]


def test_a_titled_custodian_file_needs_no_provider_trailer(runner, tmp_path):
    text = "Custodian export for Example Pension Fund\n\nName,Ticker,Weight (%)\nAlpha,AAA,60\nBeta,BBB,40\n"
    result = cli_import(runner, tmp_path, text, "--as-of", "2026-10-31")
    assert result.exit_code == 0, result.stderr
    assert db.session.scalar(sa.select(HoldingImport.layout)) == "plain-csv"


def test_excel_unicode_text_is_read():
    """Excel's "Unicode Text" export: UTF-16 with a byte-order mark, tab-separated."""
    text = "Name\tTicker\tWeight (%)\r\n海康威视\t002415\t60,5\r\n浙江大华\t002236\t39,5\r\n"
    parsed = parsing.parse("unicode.txt", text.encode("utf-16"))
    assert parsed.ok and parsed.delimiter == "\t"
    assert [(r.name, r.weight) for r in parsed.rows] == [("海康威视", Decimal("60.5")), ("浙江大华", Decimal("39.5"))]


def test_a_row_cut_after_its_first_value_is_not_taken_for_the_trailer(runner, tmp_path):
    lines = ishares().split("\n")
    text = "\n".join(lines[:9]) + '\n"USD",'
    result = cli_import(runner, tmp_path, text)
    assert result.exit_code == 1 and "row 10: the file ends in the middle of this row (2 of 10 columns)" in result.stderr
