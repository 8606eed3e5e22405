"""A value-chain map from a PDF's tables (engage/valuechain/pdf.py): the command line reads the
solar supplier list published as a PDF annex (tests/fixtures/valuechain/solar_supplier_list.pdf,
rendered from the CSV by make_pdf.py) as it reads the CSV, each row's source its page; PDFs that
cannot be read as a map are refused with what and where, and nothing is written.

PDFs for the other cases are rendered here with WeasyPrint, as the fixture is.
"""

from __future__ import annotations

import base64
import io
from html import escape

import pytest
import sqlalchemy as sa
from pypdf import PdfReader, PdfWriter
from weasyprint import HTML

from engage.extensions import db
from engage.models import ValueChainMap
from engage.valuechain import parsing, pdf
from tests.fixtures.valuechain import make_pdf
from tests.test_valuechain import MAP, counts, load_lists, maker, run

PDF_MAP = MAP.with_suffix(".pdf")
HEAD = ["Supplier", "Tier", "Relationship", "Products", "Country", "Region"]
ROW = ["Acme Glass Co. (fictional)", "1", "supplier", "solar glass", "CN", "Anhui"]


def table(head: list[str] | None, rows: list[list[str]], style: str = "") -> str:
    thead = f"<thead><tr>{''.join(f'<th>{escape(c)}</th>' for c in head)}</tr></thead>" if head else ""
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table style='{style}'>{thead}<tbody>{body}</tbody></table>"


def render(body: str) -> bytes:
    css = "table{border-collapse:collapse} th,td{border:0.6pt solid black;padding:2mm} .next{break-before:page}"
    return HTML(string=f"<html><head><style>{css}</style></head><body>{body}</body></html>").write_pdf()


def rows_of(data: bytes, mapping=None) -> list[tuple]:
    return [(r.name, r.tier, r.kind, r.products, r.country, r.region, r.source_ref)
            for r in parsing.parse(data, mapping).rows]


def test_the_pdf_supplier_list_imports_like_the_csv_with_the_page_of_each_row(runner):
    load_lists(runner)
    company = maker()
    dry = run(runner, str(PDF_MAP), "--company", str(company.id), "--dry-run")
    assert dry.exit_code == 0, dry.output + str(dry.stderr)
    out = dry.output
    assert "12 relationships; 0 resolved to existing companies, 12 new" in out
    assert "Flagged: 5" in out
    # the table ran over two pages, its header repeated on the second: one table, no header read as a row
    assert "  Brightfield Module Glass Co. (fictional) [p. 1] → new company" in out
    assert ("  Xinjiang GCL New Energy Material Technology Co. Ltd. [p. 2] → new company\n"
            "    list: would be US Entity List (direct: entry “Xinjiang GCL New Energy Material Technology Co. Ltd.”") in out
    assert "  Tarim Fictional Quartz Mining Co. [p. 2] → new company\n    in the Uyghur Region: region names Hotan" in out
    assert "Supplier [" not in out

    saved = run(runner, str(PDF_MAP), "--company", str(company.id), "--source-kind", "report",
                "--source-ref", "Sustainability report 2025, annex 3")
    assert saved.exit_code == 0, saved.output + str(saved.stderr)
    vc_map = db.session.scalar(sa.select(ValueChainMap))
    assert (vc_map.file_name, vc_map.source_kind) == ("solar_supplier_list.pdf", "report")
    by_name = {r.counterparty.name: r for r in vc_map.relationships}
    assert len(by_name) == 12
    hoshine = by_name["Hoshine Silicon Industry Co. Ltd."]
    assert (hoshine.kind, hoshine.tier, hoshine.products, hoshine.region, hoshine.in_uyghur_region,
            hoshine.source_ref) == ("sub_supplier", 3, "metallurgical-grade silicon", "Shanshan, Turpan", True, "p. 2")
    # the same rows as the CSV (cells wrapped over two lines in the PDF read as one), but for the source
    csv_rows = [row[:-1] for row in rows_of(MAP.read_bytes())]
    assert [row[:-1] for row in rows_of(PDF_MAP.read_bytes())] == csv_rows
    assert sorted({r.source_ref for r in vc_map.relationships}) == ["p. 1", "p. 2"]


def test_the_committed_fixture_is_what_make_pdf_renders(tmp_path):
    again = make_pdf.render(tmp_path / "again.pdf").read_bytes()
    assert len(PdfReader(io.BytesIO(again)).pages) == len(PdfReader(PDF_MAP).pages) == 2
    assert rows_of(again) == rows_of(PDF_MAP.read_bytes())


def test_a_table_continued_without_its_header_and_a_title_table_before_it_are_read_as_one_map():
    title = table(None, [["Annex 3", "Supplier list"]])  # a layout table above the map: skipped
    first = table(HEAD, [ROW])
    rest = table(None, [["Nordwind Frames GmbH (fictional)", "tier 2", "sub-supplier", "frames", "DE", "Bavaria"]],
                 ).replace("<table", "<table class='next'")
    rows = rows_of(render(title + first + rest))
    assert rows == [("Acme Glass Co. (fictional)", 1, "supplier", "solar glass", "CN", "Anhui", "p. 1"),
                    ("Nordwind Frames GmbH (fictional)", 2, "sub_supplier", "frames", "DE", "Bavaria", "p. 2")]


def test_the_page_is_the_source_unless_the_mapping_names_a_source_column():
    data = render(table([*HEAD, "Source"], [[*ROW, "annex 3, line 7"]]))
    assert rows_of(data)[0][-1] == "p. 1"
    assert rows_of(data, "source_ref=Source")[0][-1] == "annex 3, line 7"
    assert rows_of(render(table(["Vendor", "Level"], [["Acme Glass Co. (fictional)", "2"]])),
                   "name=Vendor,tier=Level") == [("Acme Glass Co. (fictional)", 2, "supplier", "", None, "", "p. 1")]


def png() -> bytes:
    """A tiny grey PNG (a 'scanned' page is an image and no text)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\x80" * 40 for _ in range(40))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 40, 40, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def encrypted(data: bytes) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def without_a_media_box(data: bytes) -> bytes:
    """A page without its size: pdfplumber fails on it, and again when the PDF is closed."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    del writer.pages[1]["/MediaBox"]
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _scanned() -> bytes:
    return render(f"<img src='data:image/png;base64,{base64.b64encode(png()).decode()}' style='width:150mm'>")


REFUSED = {
    "no table": (lambda: render("<h1>Modern slavery statement</h1><p>We map our supply chain.</p>"),
                 "no table in the PDF (1 page(s) of text): Engage reads tables drawn with rules"),
    "a list in columns without rules": (
        lambda: render(table(HEAD, [ROW, ["Xinjiang Daqo New Energy Co. Ltd.", "2", "sub-supplier", "polysilicon", "CN",
                                          "Shihezi, Xinjiang"]]).replace("<table", "<table class='bare'")
                       + "<style>.bare td, .bare th {border: none; width: 20mm}</style>"),
        "no table in the PDF (1 page(s) of text)"),
    "scanned": (_scanned, "the PDF has 1 image(s) and no text (scanned?)"),
    "encrypted": (lambda: encrypted(PDF_MAP.read_bytes()), "the PDF is encrypted with a password"),
    "broken": (lambda: b"%PDF-1.7\n" + bytes(range(256)) * 20, "the PDF is damaged or not a PDF"),
    "cut short": (lambda: PDF_MAP.read_bytes()[:1000], "the PDF is damaged or not a PDF"),
    "a page without its size": (lambda: without_a_media_box(PDF_MAP.read_bytes()),
                                "the PDF is damaged or not a PDF (TypeError"),
    "no header": (lambda: render(table(["Item", "Qty"], [["glass", "3"]])),
                  "1 table(s) in the PDF (p. 1), none with a header row naming the counterparty"),
    "a second table with other columns": (
        lambda: render(table(HEAD, [ROW]) + table(["Customer", "Country"], [["Acme Buyer (fictional)", "US"]])),
        "p. 1: a second table with other columns (Customer, Country)"),
    "a headerless table of other columns": (
        lambda: render(table(HEAD, [ROW]) + table(None, [["Total", "1"]]).replace("<table", "<table class='next'")),
        "p. 2: a table of 2 columns without a header follows the map's table of 6 columns (p. 1)"),
    "a bad tier": (lambda: render(table(HEAD, [ROW, ["Bad Tier Co. (fictional)", "two", "supplier", "", "CN", ""]])),
                   "row 3, column Tier: a tier is a positive whole number (1 = direct supplier, 2, 3 or 3+) [p. 1] ('two')"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_pdfs_that_are_not_maps_are_refused_with_what_and_where(runner, tmp_path, case):
    company = maker()
    make, message = REFUSED[case]
    path = tmp_path / "annex.pdf"
    path.write_bytes(make())
    before = counts()
    result = run(runner, str(path), "--company", str(company.id))
    assert result.exit_code == 1, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert counts() == before


def test_a_huge_pdf_is_refused_by_pages_rows_or_time_without_reading_it_whole(monkeypatch):
    data = PDF_MAP.read_bytes()
    monkeypatch.setattr(pdf, "MAX_PAGES", 1)
    with pytest.raises(parsing.MapRefused, match="the PDF has 2 pages, more than the 1 read for a map"):
        parsing.parse(data)
    monkeypatch.setattr(pdf, "MAX_PAGES", 500)
    with pytest.raises(parsing.MapRefused, match="more than 5 rows, the limit for one map"):
        parsing.parse(data, max_rows=5)
    monkeypatch.setattr(pdf, "MAX_SECONDS", -1)
    with pytest.raises(parsing.MapRefused, match=r"reading the PDF's tables took more than -1 s \(stopped at p. 1\)"):
        parsing.parse(data)

