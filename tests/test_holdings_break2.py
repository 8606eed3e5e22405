"""Holdings import, second round of breaking (issue 13): cut first values, zip bombs, encodings,
stale confirmation claims, confirmations that differ from their preview, hidden sheets, formulas
without saved values, symlinked stashes, conflicting dates, invisible characters, double-counted
weights, one issuer in several rows, merged cells, password-protected workbooks, and one import
service shared by the CLI and the web (issue 18).
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
from engage.models import Company, Fund, Holding
from engage.models.holdings import HoldingImport


def isin(first11: str) -> str:
    return first11 + str(isin_check_digit(first11))


A, B, C = isin("US000000001"), isin("US000000002"), isin("KYG01719114")


def cli_import(runner, tmp_path, content, *args, name="file.csv", fund="F"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return runner.invoke(args=["holdings", "import", str(path), "--fund", fund, "--create-fund", *args])


def workbook_bytes(build) -> bytes:
    from openpyxl import Workbook

    workbook = Workbook()
    build(workbook)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def table(sheet, rows=(("Alpha", "AAA", 60), ("Beta", "BBB", 40)), header=("Name", "Ticker", "Weight (%)")):
    sheet.append(list(header))
    for row in rows:
        sheet.append(list(row))


def rezip(data: bytes, edit, add=()) -> bytes:
    """The same workbook with its parts changed by `edit(name, bytes) -> bytes | None` (None drops it),
    and the parts named in `add` added (their bytes come from `edit(name, b"")`)."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for name in [info.filename for info in source.infolist()] + list(add):
            part = edit(name, source.read(name) if name in source.namelist() else b"")
            if part is not None:
                target.writestr(name, part)
    return out.getvalue()


@pytest.fixture()
def instance_dir(app, tmp_path):
    previous = app.instance_path
    app.instance_path = str(tmp_path / "instance")
    os.makedirs(app.instance_path)
    try:
        yield tmp_path / "instance"
    finally:
        app.instance_path = previous


@pytest.fixture()
def web_fund(client, login_as, instance_dir):
    login_as("analyst")
    fund = Fund(name="Web Fund")
    db.session.add(fund)
    db.session.commit()
    return fund


def upload(client, fund, content, name="file.csv", **fields):
    data = {"fund_id": fund.id, "file": (io.BytesIO(content if isinstance(content, bytes) else content.encode()), name),
            **fields}
    return client.post("/holdings/import", data=data, content_type="multipart/form-data")


def token_and_digest(page: str) -> tuple[str, str]:
    token = re.search(r"/holdings/import/([0-9a-f]{32})", page).group(1)
    digest = re.search(r'name="preview" value="([0-9a-f]{64})"', page)
    return token, digest.group(1) if digest else ""


def holdings_count() -> int:
    return db.session.scalar(sa.select(sa.func.count(Holding.id)))


# --- 1. a file cut inside the first value of its last row ------------------------------------

def test_a_last_line_cut_inside_its_first_value_is_refused(runner, tmp_path):
    text = f"ISIN,Name,Weight (%)\n{A},Alpha,60\n{B},Beta,40\nUS12"
    result = cli_import(runner, tmp_path, text, "--as-of", "2026-10-31")
    assert result.exit_code == 1
    assert "row 4: the file ends in the middle of this row (1 of 3 columns)" in result.stderr, result.stderr
    assert holdings_count() == 0
    # --partial says rows are missing, not that a row is cut: still refused
    assert cli_import(runner, tmp_path, text, "--as-of", "2026-10-31", "--partial").exit_code == 1
    # a note below the table, after an empty line, is not a cut row
    noted = f"ISIN,Name,Weight (%)\n{A},Alpha,60\n{B},Beta,40\n\nSource: custodian\n"
    assert cli_import(runner, tmp_path, noted, "--as-of", "2026-10-31").exit_code == 0


# --- 2. the web flow reads the file once per request -----------------------------------------

def test_each_web_request_reads_the_file_once(client, web_fund, monkeypatch):
    calls = []
    real = parsing.parse

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(parsing, "parse", counting)
    page = upload(client, web_fund, f"ISIN,Name,Weight (%)\n{A},Alpha,60\n{B},Beta,40\n", as_of="2026-10-31")
    assert page.status_code == 200 and len(calls) == 1
    token, digest = token_and_digest(page.get_data(as_text=True))
    calls.clear()
    assert client.post(f"/holdings/import/{token}/read", data={"as_of": "2026-10-31"}).status_code == 200
    assert len(calls) == 1
    calls.clear()
    page = client.post(f"/holdings/import/{token}/read", data={"as_of": "2026-10-31"}).get_data(as_text=True)
    calls.clear()
    assert client.post(f"/holdings/import/{token}", data={"preview": token_and_digest(page)[1]}).status_code == 302
    assert len(calls) == 1 and holdings_count() == 2


# --- 3. zip bombs and huge shared strings ----------------------------------------------------

def bomb(part: str, size: int, unit: bytes) -> bytes:
    """A real workbook with `part` replaced by `size` bytes of `unit` repeated (it compresses ~1000:1)."""
    data = workbook_bytes(lambda wb: table(wb.active))
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if info.filename != part:
                target.writestr(info.filename, source.read(info.filename))
        with target.open(part, "w", force_zip64=True) as stream:
            chunk = unit * (1024 * 1024 // len(unit))
            for _ in range(size // len(chunk)):
                stream.write(chunk)
    return out.getvalue()


@pytest.mark.parametrize("part, unit", [("xl/sharedStrings.xml", b"<si><t>x</t></si>"),
                                        ("xl/worksheets/sheet1.xml", b"<row><c><v>1</v></c></row>")])
def test_a_zip_bomb_is_refused_before_openpyxl_reads_it(part, unit):
    data = bomb(part, 200 * 1024 * 1024, unit)
    assert len(data) < 2 * 1024 * 1024
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(parsing.FileRefused, match=re.escape(part) + r" unpacks to 200 MB .*compressed \d+:1\): a zip bomb"):
        parsing.parse("bomb.xlsx", data, limits=parsing.Limits(max_unzipped_bytes=1024 ** 3))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert time.perf_counter() - started < 2 and peak < 20 * 1024 * 1024


def test_too_many_shared_strings_are_refused_before_they_are_loaded():
    strings = b"".join(b"<si><t>s%d</t></si>" % i for i in range(300_000))

    def edit(name, part):
        if name == "xl/sharedStrings.xml":
            return b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">' + strings + b"</sst>"
        return part

    data = rezip(workbook_bytes(lambda wb: table(wb.active)), edit, add=["xl/sharedStrings.xml"])
    tracemalloc.start()
    with pytest.raises(parsing.FileRefused, match="more than 100,000 shared strings"):
        parsing.parse("strings.xlsx", data, limits=parsing.Limits(max_shared_strings=100_000))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 * 1024 * 1024
    with pytest.raises(parsing.FileRefused, match=r"xl/sharedStrings.xml unpacks to \d+\.\d MB, more than the 1 MB"):
        parsing.parse("strings.xlsx", data, limits=parsing.Limits(max_shared_strings_bytes=1024 * 1024))


# --- 4. encodings ----------------------------------------------------------------------------

GB = "ISIN,Name,Weight (%)\nCNE100000PM8,海康威视,60\nCNE100000BJ4,浙江大华技术,40\n"


def test_a_gb18030_file_reads_its_chinese_names(runner, tmp_path):
    parsed = parsing.parse("gb.csv", GB.encode("gb18030"))
    assert parsed.ok and parsed.encoding == "gb18030"
    assert [r.name for r in parsed.rows] == ["海康威视", "浙江大华技术"]
    result = cli_import(runner, tmp_path, GB.encode("gbk"), "--as-of", "2026-10-31")
    assert result.exit_code == 0, result.stderr
    assert {c.name for c in db.session.scalars(sa.select(Company))} == {"海康威视", "浙江大华技术"}


def test_utf8_utf16_and_western_files_keep_their_encoding():
    western = "ISIN,Name,Weight (%)\nFR0000130809,Société Générale,60\nCH0038863350,Nestlé,40\n"
    assert parsing.parse("w.csv", western.encode("cp1252")).encoding == "cp1252"
    assert [r.name for r in parsing.parse("w.csv", western.encode("cp1252")).rows] == ["Société Générale", "Nestlé"]
    assert parsing.parse("u.csv", ("\ufeff" + GB).encode("utf-8")).encoding == "utf-8"
    assert parsing.parse("u.csv", GB.encode("utf-16")).encoding == "utf-16"


def test_an_ambiguous_encoding_is_refused_naming_the_choice(runner, tmp_path, client, web_fund):
    # "Müller" in Windows-1252 is also valid GB18030 (two rare Chinese characters)
    text = "ISIN,Name,Weight (%)\nDE0007164600,Müller Holding,100\n".encode("cp1252")
    with pytest.raises(parsing.FileRefused, match=r"GB18030 .*Windows-1252.*--encoding"):
        parsing.parse("m.csv", text)
    result = cli_import(runner, tmp_path, text, "--as-of", "2026-10-31")
    assert result.exit_code == 1 and "--encoding" in result.stderr and "Müller Holding" in result.stderr
    result = cli_import(runner, tmp_path, text, "--as-of", "2026-10-31", "--encoding", "cp1252")
    assert result.exit_code == 0, result.stderr
    assert db.session.scalar(sa.select(Company.name)) == "Müller Holding"
    page = upload(client, web_fund, text, as_of="2026-10-31")
    html = page.get_data(as_text=True)
    assert page.status_code == 422 and "Encoding" in html and "Windows-1252" in html
    token = re.search(r"/holdings/import/([0-9a-f]{32})/read", html).group(1)
    again = client.post(f"/holdings/import/{token}/read", data={"as_of": "2026-10-31", "encoding": "cp1252"})
    assert again.status_code == 200 and "Müller Holding" in again.get_data(as_text=True)


# --- 5. a stale claim of a stash -------------------------------------------------------------

def test_a_claim_left_by_a_crashed_confirmation_expires(app, instance_dir):
    token = service.stash_upload(b"data", {"fund_id": 1})
    assert service.claim_upload(token) is not None  # the confirmation that then crashed
    assert service.claim_upload(token) is None and service.upload_state(token)[0] == "importing"
    claimed = instance_dir / "uploads" / f"{token}.claimed"
    old = time.time() - app.config["HOLDINGS_CONFIRM_LEASE_SECONDS"] - 5
    os.utime(claimed, (old, old))
    assert service.claim_upload(token) == (b"data", {"fund_id": 1})
    assert service.claim_upload(token) is None  # claimed afresh: not stale any more


# --- 6. the confirmation imports what the preview showed ---------------------------------------

def test_a_confirmation_with_other_options_than_its_preview_is_shown_again(client, web_fund):
    text = f"ISIN;Name;Market Value;Weight (%)\n{A};Alpha;1.234;60\n{B};Beta;2.345;40\n"
    first = upload(client, web_fund, text, as_of="2026-10-31", decimal="comma")
    token, digest = token_and_digest(first.get_data(as_text=True))
    assert digest
    # another tab reads the same stash with other options
    client.post(f"/holdings/import/{token}/read", data={"as_of": "2026-10-31", "decimal": "point"})
    stale = client.post(f"/holdings/import/{token}", data={"preview": digest})
    html = stale.get_data(as_text=True)
    assert stale.status_code == 409 and "changed since" in html and holdings_count() == 0
    assert client.post(f"/holdings/import/{token}", data={}).status_code == 409  # no preview named: not imported
    assert holdings_count() == 0
    _, current = token_and_digest(html)
    assert client.post(f"/holdings/import/{token}", data={"preview": current}).status_code == 302
    values = sorted(h.market_value for h in db.session.scalars(sa.select(Holding)))
    assert values == [Decimal("1.23"), Decimal("2.35")]  # the options of the preview confirmed: decimal point
    record = db.session.scalar(sa.select(HoldingImport))
    assert record.decimal == "point"


# --- 7. hidden sheets ------------------------------------------------------------------------

def test_the_first_visible_sheet_is_read_and_named(client, web_fund):
    def build(workbook):
        hidden = workbook.active
        hidden.title = "Old"
        table(hidden, rows=(("Stale", "OLD", 100),))
        hidden.sheet_state = "hidden"
        table(workbook.create_sheet("Holdings"))
        table(workbook.create_sheet("Other"), rows=(("Gamma", "GGG", 100),))
        workbook.active = 0

    data = workbook_bytes(build)
    parsed = parsing.parse("h.xlsx", data)
    assert parsed.sheet == "Holdings" and [r.name for r in parsed.rows] == ["Alpha", "Beta"]
    assert parsing.parse("h.xlsx", data, sheet="Other").rows[0].name == "Gamma"
    with pytest.raises(parsing.FileRefused, match=r"no sheet called 'Nope'.*Old \(hidden\), Holdings, Other"):
        parsing.parse("h.xlsx", data, sheet="Nope")
    page = upload(client, web_fund, data, name="h.xlsx", as_of="2026-10-31").get_data(as_text=True)
    assert "Holdings" in page and "Old" in page and "hidden" in page


# --- 8. formulas without saved values --------------------------------------------------------

def test_a_formula_without_a_saved_value_is_refused_with_its_cell():
    def build(workbook):
        table(workbook.active, rows=(("Alpha", "AAA", 60), ("Beta", "BBB", "=100-C2")))

    with pytest.raises(parsing.FileRefused, match="C3 is a formula without a saved value; open and save the file "
                                                  "in Excel, or export it as CSV"):
        parsing.parse("f.xlsx", workbook_bytes(build))

    def saved(name, part):  # the same formula with the value Excel saves beside it
        return part.replace(b"<f>100-C2</f><v></v>", b"<f>100-C2</f><v>40</v>").replace(
            b"<f>100-C2</f>", b"<f>100-C2</f><v>40</v>") if name == "xl/worksheets/sheet1.xml" else part

    parsed = parsing.parse("f.xlsx", rezip(workbook_bytes(build), saved))
    assert parsed.ok and parsed.rows[1].weight == Decimal(40)


# --- 9. concurrent imports through the web ---------------------------------------------------

def test_two_web_confirmations_of_one_fund_and_date_at_once_never_fail(app, client, web_fund, login_as):
    """Both previews said "replaces nothing": the first to get the import turn imports; the other
    waits for it, then is shown its preview again (409) saying what it would now replace."""
    text = f"ISIN,Name,Weight (%)\n{A},Alpha,60\n{B},Beta,40\n"
    previews = [token_and_digest(upload(client, web_fund, text, as_of="2026-10-31").get_data(as_text=True))
                for _ in range(2)]
    cookie = client.get_cookie("session")
    barrier = threading.Barrier(2)
    answers = {}

    def confirm(token, digest):
        with app.app_context():
            other = app.test_client()
            other.set_cookie("session", cookie.value)
            barrier.wait()
            response = other.post(f"/holdings/import/{token}", data={"preview": digest}, follow_redirects=True)
            answers[token] = (response.status_code, response.get_data(as_text=True))
            db.session.remove()

    threads = [threading.Thread(target=confirm, args=preview) for preview in previews]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(code for code, _ in answers.values()) == [200, 409], [a[1][:3000] for a in answers.values()]
    (late, (_, html)), = [(token, answer) for token, answer in answers.items() if answer[0] == 409]
    assert "changed since its preview" in html and "2 positions of the import of 31 Oct 2026 from file.csv" in html
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count(HoldingImport.id))) == 1
    again = client.post(f"/holdings/import/{late}", data={"preview": token_and_digest(html)[1]}, follow_redirects=True)
    assert again.status_code == 200 and "replaced: 2 positions of the import of 31 Oct 2026" in again.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count(HoldingImport.id))) == 2 and holdings_count() == 2


# --- 10. symlinks in the stash ---------------------------------------------------------------

def test_a_symlinked_upload_folder_or_stash_file_is_not_used(app, instance_dir, tmp_path):
    token = service.stash_upload(b"data", {"fund_id": 1})
    uploads = instance_dir / "uploads"
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    (uploads / f"{token}.bin").unlink()
    (uploads / f"{token}.bin").symlink_to(secret)
    assert service.load_upload(token) is None and service.claim_upload(token) is None
    assert secret.read_text() == "not yours"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for path in uploads.iterdir():
        path.unlink()
    uploads.rmdir()
    uploads.symlink_to(elsewhere)
    with pytest.raises(service.StashUnsafe, match="symbolic link"):
        service.stash_upload(b"data", {"fund_id": 1})
    assert list(elsewhere.iterdir()) == []


def test_the_web_says_so_when_the_upload_folder_is_a_symlink(client, web_fund, instance_dir, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (instance_dir / "uploads").symlink_to(elsewhere)
    page = upload(client, web_fund, f"ISIN,Name,Weight (%)\n{A},Alpha,100\n", as_of="2026-10-31")
    assert page.status_code == 503 and "symbolic link" in page.get_data(as_text=True)
    assert list(elsewhere.iterdir()) == []


# --- 11. the file's date against the date given ----------------------------------------------

def test_a_file_date_that_disagrees_with_the_date_given_is_refused(runner, tmp_path, client, web_fund):
    text = 'Fund Holdings as of,"Nov 20, 2026"\n\nName,Ticker,Weight (%)\nAlpha,AAA,60\nBeta,BBB,40\n\n"Disclaimer"\n'
    result = cli_import(runner, tmp_path, text, "--as-of", "2026-10-31")
    assert result.exit_code == 1
    assert "the file says its holdings are as of 20 Nov 2026 but --as-of gives 31 Oct 2026" in result.stderr
    assert cli_import(runner, tmp_path, text, "--as-of", "2026-11-20").exit_code == 0
    page = upload(client, web_fund, text, as_of="2026-10-31")
    assert page.status_code == 422 and "as of 20 Nov 2026 but the form gives 31 Oct 2026" in page.get_data(as_text=True)


# --- 12. invisible characters ----------------------------------------------------------------

def test_headers_and_identifiers_with_invisible_characters_are_read():
    text = (f"\ufeff\ufeffISIN ,Name\u200b,Market\u00a0Value,Weight\u2060 (%)\n"
            f"{A}\u200b,Alpha,100,60\n\u200e{B[:5]}\u200d{B[5:]},Beta,200,40\n")
    parsed = parsing.parse("z.csv", text.encode())
    assert parsed.ok, parsed.errors
    assert set(parsed.columns) == {"isin", "name", "market_value", "weight"}
    assert [r.isin for r in parsed.rows] == [A, B]
    sheet = workbook_bytes(lambda wb: table(wb.active, header=("\ufeffName", "Ticker\u00a0", "Weight\u200b (%)")))
    assert parsing.parse("z.xlsx", sheet).ok
    bad = parsing.parse("z.csv", "ISIN,Name,Weight (%)\nUS03\u0410783310,Alpha,100\n".encode())
    assert not bad.ok and "'US03\u0410783310'" in str(bad.errors[0])


# --- 13. double-counted weights --------------------------------------------------------------

def test_weights_over_101_percent_are_refused_with_the_total(runner, tmp_path):
    text = "Name,Ticker,Weight (%)\nAlpha,AAA,60\nBeta,BBB,40\nGamma,GGG,60\nDelta,DDD,40\n"
    for extra in ((), ("--partial",)):
        result = cli_import(runner, tmp_path, text, "--as-of", "2026-10-31", *extra)
        assert result.exit_code == 1 and "the weights add up to 200.00 %, more than 101 %" in result.stderr
    assert cli_import(runner, tmp_path, text.replace("Delta,DDD,40", "Delta,DDD,0.5").replace("Gamma,GGG,60",
                                                                                             "Gamma,GGG,0.5"),
                      "--as-of", "2026-10-31").exit_code == 0


# --- 14. one issuer in several rows ----------------------------------------------------------

def test_share_classes_of_one_new_issuer_make_one_company_and_say_so(runner, tmp_path):
    text = (f"ISIN,Name,Market Value,Weight (%)\n{A},Alibaba Group Holding,100,50\n"
            f"{C},Alibaba Group Holding,50,30\n,Alibaba Group Holding,5,10\n{B},Other Co,10,10\n")
    result = cli_import(runner, tmp_path, text, "--as-of", "2026-10-31")
    assert result.exit_code == 0, result.stderr
    companies = {c.name: c for c in db.session.scalars(sa.select(Company))}
    assert sorted(companies) == ["Alibaba Group Holding", "Other Co"]
    assert companies["Alibaba Group Holding"].isin == A
    held = {h.company.name: h for h in db.session.scalars(sa.select(Holding))}
    assert held["Alibaba Group Holding"].market_value == Decimal(155)
    assert "one position from rows 2, 3, 4: Alibaba Group Holding" in result.output
    assert f"ISIN {C} (row 3)" in result.output
    twice = f"ISIN,Name,Weight (%)\n{A},Alpha,50\n{A},Alpha again,50\n"
    result = cli_import(runner, tmp_path, twice, "--as-of", "2026-10-31")
    assert result.exit_code == 1 and f"row 3: ISIN {A} is also in row 2" in result.stderr


# --- 15. merged cells ------------------------------------------------------------------------

def test_merged_cells_in_the_table_are_refused_with_their_range():
    def merged(workbook):
        sheet = workbook.active
        sheet.append(["Example Fund holdings"])
        sheet.merge_cells("A1:C1")  # a merged title above the table is fine
        table(sheet)
        sheet.merge_cells("B3:B4")

    with pytest.raises(parsing.FileRefused, match="merged cells in the holdings table: B3:B4; unmerge them"):
        parsing.parse("m.xlsx", workbook_bytes(merged))

    def title_only(workbook):
        sheet = workbook.active
        sheet.append(["Example Fund holdings"])
        sheet.merge_cells("A1:C1")
        table(sheet)

    assert parsing.parse("m.xlsx", workbook_bytes(title_only)).ok


# --- 16. password-protected and legacy workbooks ---------------------------------------------

def ole(streams: list[str]) -> bytes:
    """The start of an OLE compound file with directory entries named `streams` (as Office writes them)."""
    entries = b"".join(name.encode("utf-16-le").ljust(64, b"\0") + b"\0" * 64 for name in streams)
    return b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 504 + entries


def test_a_password_protected_workbook_and_an_old_xls_are_refused_clearly(runner, tmp_path):
    result = cli_import(runner, tmp_path, ole(["Root Entry", "EncryptionInfo", "EncryptedPackage"]), name="p.xlsx")
    assert result.exit_code == 1
    assert "this workbook is password-protected; save it without a password" in result.stderr
    result = cli_import(runner, tmp_path, ole(["Root Entry", "Workbook"]), name="old.xls")
    assert result.exit_code == 1 and "save it as .xlsx or CSV" in result.stderr


# --- issue 18: one import service ------------------------------------------------------------

def test_the_cli_and_the_web_import_through_one_service(runner, tmp_path, client, web_fund, monkeypatch):
    calls = []
    real = service.import_file

    def spy(*args, **kwargs):
        calls.append(kwargs.get("options") or args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(service, "import_file", spy)
    text = f"ISIN,Name,Weight (%)\n{A},Alpha,60\n{B},Beta,40\n"
    assert cli_import(runner, tmp_path, text, "--as-of", "2026-10-31", fund="Web Fund").exit_code == 0
    token, digest = token_and_digest(upload(client, web_fund, text, as_of="2026-11-30").get_data(as_text=True))
    assert client.post(f"/holdings/import/{token}", data={"preview": digest}).status_code == 302
    assert [o.as_of for o in calls] == [dt.date(2026, 10, 31), dt.date(2026, 11, 30)]
