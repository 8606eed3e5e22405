"""The value chain's web side under hostile, careless and faulty use (issue 16, breaking it on purpose):
tampered tokens, closed engagements, invisible characters, cells cut short, files that are not what
they say. Each refusal says what and where, and nothing partial is written.

The map is the solar maker's supplier list (tests/fixtures/valuechain, see its README), as in
tests/test_valuechain_import_web.py and tests/test_valuechain_tab.py.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import re
import zipfile

import pytest
import sqlalchemy as sa

from engage.extensions import db
from engage.models import Company, Relationship
from engage.valuechain import parsing
from tests import factories
from tests.test_valuechain import MAP, counts, maker
from tests.test_valuechain_import_web import HEADER, confirm, confirm_data, stashed_files, upload
from tests.test_valuechain_tab import (  # noqa: F401 - mapped is a fixture
    HOSHINE,
    add_url,
    changes,
    mapped,
    relationship_to,
    squash,
    status_post,
    status_url,
    tab_url,
)


def text_of_page(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def flashes(response) -> str:
    return " ".join(re.findall(r'<p class="flash[^"]*">(.*?)</p>', response.get_data(as_text=True), re.S))


# --- the confirmation token ------------------------------------------------------------------


def test_a_token_of_another_companys_import_tells_nothing_of_it_and_imports_nothing(client, login_as):
    ours, theirs = maker(), factories.company("Other Glass Holdings (fictional)")
    db.session.commit()
    login_as("analyst")
    page = upload(client, theirs.id, MAP).get_data(as_text=True)
    token, form = confirm_data(page)
    tampered = client.post(f"/value-chain/companies/{ours.id}/import/{token}", data=form, follow_redirects=True)
    assert "That import is no longer waiting; upload the map again." in flashes(tampered)
    assert counts()[0] == 0
    assert "Map 1 of Other Glass" in flashes(confirm(client, theirs.id, page, follow_redirects=True))
    # once it is done, the token under our company's URL says nothing of their import
    tampered = client.post(f"/value-chain/companies/{ours.id}/import/{token}", data=form, follow_redirects=True)
    text = flashes(tampered)
    assert "Other Glass" not in text and "confirmed already" not in text
    assert "That import is no longer waiting; upload the map again." in text
    assert counts()[0] == 1


# --- a closed engagement ---------------------------------------------------------------------
# Decision: the tab of a closed engagement is read-only. A status change is dated and goes on the
# timeline and into the reminders of the engagement it is recorded under; a closed engagement takes
# no new entries (as it takes no new contact), so the change is refused with how to make it: reopen
# the engagement, or use the company's open engagement, named with its link. The map import is the
# company's, not the engagement's, and stays open.


def close(engagement, on=dt.date(2026, 6, 1)) -> None:
    engagement.stage, engagement.closed_on, engagement.outcome = "closed", on, "dropped"
    db.session.commit()


def test_a_closed_engagements_tab_is_read_only_and_its_posts_are_refused(client, login_as, mapped, frozen_today):
    hoshine = relationship_to(HOSHINE)
    login_as("analyst")
    data, _ = status_post(client, mapped, hoshine, status="under_review", date=frozen_today.isoformat())
    token = re.search(r'name="form_token" type="hidden" value="([^"]*)"',
                      client.get(tab_url(mapped)).get_data(as_text=True)).group(1)
    close(mapped)
    page = client.get(tab_url(mapped)).get_data(as_text=True)
    assert status_url(mapped, hoshine) not in page and add_url(mapped) not in page
    assert "This engagement was closed on 01 Jun 2026: its value chain is read-only here" in squash(text_of_page(page))
    before = (changes(), counts())

    refused = client.post(status_url(mapped, hoshine), data=data)  # a tab opened before it was closed
    assert refused.status_code == 409
    assert ("the engagement with Fictional Solar Modules Co. was closed on 01 Jun 2026; reopen it to change its "
            "value chain") in html.unescape(refused.get_data(as_text=True))
    added = client.post(add_url(mapped), data={"form_token": token, "name": "Late Supplier (fictional)",
                                               "kind": "supplier", "tier": "1"})
    assert added.status_code == 409 and "was closed on 01 Jun 2026" in html.unescape(added.get_data(as_text=True))
    db.session.expire_all()
    assert (changes(), counts()) == before


def test_a_closed_engagement_names_the_companys_open_one(client, login_as, mapped, frozen_today):
    hoshine = relationship_to(HOSHINE)
    login_as("analyst")
    data, _ = status_post(client, mapped, hoshine, status="under_review", date=frozen_today.isoformat())
    close(mapped)
    later = factories.engagement(company=mapped.company, opened_on=dt.date(2026, 6, 2))
    db.session.commit()
    refused = client.post(status_url(mapped, hoshine), data=data)
    text = html.unescape(refused.get_data(as_text=True))
    assert refused.status_code == 409 and f'href="{tab_url(later)}"' in text
    assert "or change it from the company's open engagement" in text
    assert changes() == 0
    # there it is accepted
    data, _ = status_post(client, later, hoshine, status="under_review", date=frozen_today.isoformat())
    assert client.post(status_url(later, hoshine), data=data).status_code == 303
    assert changes() == 1


# --- cells too long: refused on their row, never cut ---------------------------------------------
# A region cut at 200 characters lost the "Hotan" written after them, and with it the region flag.

FAR_HOTAN = "Building 7, Industrial Park Road, " * 6 + "Hotan, Xinjiang"
LONG_CELLS = {
    "region": (f'Acme Quartz (fictional),1,supplier,quartz,CN,"{FAR_HOTAN}",p. 1\n', "Region",
               f"at most 200 characters (this one has {len(FAR_HOTAN)})"),
    "products": ("Acme Glass (fictional),1,supplier," + "glass " * 200 + ",CN,Anhui,p. 1\n", "Products",
                 "at most 1,000 characters (this one has 1,199)"),
    "source": ("Acme Glass (fictional),1,supplier,glass,CN,Anhui," + "p. 1 " * 50 + "\n", "Page",
               "at most 200 characters (this one has 249)"),
}


@pytest.mark.parametrize("case", list(LONG_CELLS))
def test_a_cell_too_long_for_its_field_is_refused_on_its_row_not_cut(client, login_as, case):
    company = maker()
    login_as("analyst")
    line, column, message = LONG_CELLS[case]
    before, stash = counts(), stashed_files()
    response = upload(client, company.id, (HEADER + "Brightfield Glass (fictional),1,supplier,glass,CN,Anhui,p. 1\n"
                                           + line).encode())
    text = html.unescape(response.get_data(as_text=True))
    assert response.status_code == 422, text[text.find("<h1>"):][:800]
    assert re.search(rf'<td class="num">3</td><td>{column}</td><td><code>[^<]*</code></td><td>[^<]*{re.escape(message)}',
                     text), text[text.find("Rows with errors"):][:800]
    assert counts() == before and stashed_files() == stash


def test_an_alias_too_long_is_refused_on_its_row(runner, tmp_path):
    company = maker()
    path = tmp_path / "aliases.csv"
    path.write_text("Supplier,Aliases\nAcme Glass (fictional),Acme|" + "A" * 250 + "\n")
    result = runner.invoke(args=["valuechain", "import", str(path), "--company", str(company.id)])
    assert result.exit_code == 1
    assert "row 2" in result.stderr and "an alias is at most 200 characters (this one has 250)" in result.stderr
    assert counts()[0] == 0


# --- invisible characters --------------------------------------------------------------------
# An import's cells are read without invisible characters (zero-width spaces, direction marks and
# overrides); a relationship added by hand was not: "Ho<ZWSP>tan" escaped the region flag, and a
# name carried a right-to-left override that shows it reversed on every page.


def test_a_relationship_added_by_hand_is_read_without_invisible_characters(client, login_as, mapped):
    login_as("analyst")
    page = client.get(tab_url(mapped)).get_data(as_text=True)
    token = re.search(r'name="form_token" type="hidden" value="([^"]*)"', page).group(1)
    response = client.post(add_url(mapped), data={
        "form_token": token, "name": "\u202eEvening\u200b Quartz (fictional)\u200f", "kind": "supplier", "tier": "1",
        "region": "Ho\u200btan\u00a0Prefecture", "products": "quartz\u2060 sand", "source_ref": "letter\u202c reply"})
    assert response.status_code == 303
    relationship = db.session.scalar(sa.select(Relationship).join(Company, Company.id == Relationship.counterparty_id)
                                     .where(Company.name == "Evening Quartz (fictional)"))
    assert relationship is not None, list(db.session.scalars(sa.select(Company.name)))
    assert (relationship.region, relationship.products, relationship.source_ref) == (
        "Hotan Prefecture", "quartz sand", "letter reply")
    assert relationship.in_uyghur_region


def test_a_nul_character_deep_in_a_csv_is_refused_with_its_line(client, login_as):
    company = maker()
    login_as("analyst")
    rows = "".join(f"Supplier {i} (fictional),1,supplier,glass,CN,Anhui,p. 1\n" for i in range(200))
    response = upload(client, company.id, (HEADER + rows + "Bad\x00 Co (fictional),1,supplier,glass,CN,Anhui,p. 1\n"
                                           ).encode(), "damaged.csv")
    assert response.status_code == 422
    assert ("damaged.csv: line 202 holds a NUL character, which no text file has: the file is damaged or not a "
            "CSV; save it again as CSV (or XLSX)") in html.unescape(response.get_data(as_text=True))
    assert counts()[0] == 0


# --- a sheet of a million empty rows -----------------------------------------------------------
# Empty rows are skipped, not counted: a workbook of one supplier and a million empty rows (2 MB
# zipped) kept a web request reading for about 25 s before it was taken. The sheet may run to
# MAX_SHEET_ROWS rows, empty ones included; past that it is refused, saying where.


def sheet_with_empty_rows(empty: int) -> bytes:
    """A workbook written by hand: a header, one supplier, then `empty` empty rows (<row r="n"/>)."""
    ns = "http://schemas.openxmlformats.org"
    rows = ('<row r="1"><c r="A1" t="inlineStr"><is><t>Supplier</t></is></c></row>'
            '<row r="2"><c r="A2" t="inlineStr"><is><t>Acme Glass (fictional)</t></is></c></row>'
            + "".join(f'<row r="{i}"/>' for i in range(3, empty + 3)))
    parts = {
        "[Content_Types].xml": f'<?xml version="1.0"?><Types xmlns="{ns}/package/2006/content-types"><Default '
                               f'Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
                               f'<Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/'
                               f'workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.'
                               f'sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/'
                               f'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>',
        "_rels/.rels": f'<?xml version="1.0"?><Relationships xmlns="{ns}/package/2006/relationships"><Relationship '
                       f'Id="rId1" Type="{ns}/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>'
                       f'</Relationships>',
        "xl/workbook.xml": f'<?xml version="1.0"?><workbook xmlns="{ns}/spreadsheetml/2006/main" xmlns:r="{ns}/'
                           f'officeDocument/2006/relationships"><sheets><sheet name="Suppliers" sheetId="1" r:id="rId1"/>'
                           f'</sheets></workbook>',
        "xl/_rels/workbook.xml.rels": f'<?xml version="1.0"?><Relationships xmlns="{ns}/package/2006/relationships">'
                                      f'<Relationship Id="rId1" Type="{ns}/officeDocument/2006/relationships/worksheet" '
                                      f'Target="worksheets/sheet1.xml"/></Relationships>',
        "xl/worksheets/sheet1.xml": f'<?xml version="1.0"?><worksheet xmlns="{ns}/spreadsheetml/2006/main"><sheetData>'
                                    f'{rows}</sheetData></worksheet>',
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in parts.items():
            archive.writestr(name, text)
    return out.getvalue()


def test_a_sheet_running_past_the_row_limit_in_empty_rows_is_refused_where_it_does(client, login_as, monkeypatch):
    company = maker()
    login_as("analyst")
    assert "Acme Glass" in upload(client, company.id, sheet_with_empty_rows(1_000), "few.xlsx").get_data(as_text=True)
    monkeypatch.setattr(parsing, "MAX_SHEET_ROWS", 5_000)  # 100,000 in use: the same refusal, 20 times the rows
    response = upload(client, company.id, sheet_with_empty_rows(10_000), "empty.xlsx")
    assert response.status_code == 422
    assert ("empty.xlsx: row 5,001: the sheet goes on past row 5,000 (empty rows included), more than a map of at "
            "most 25,000 rows needs; delete the empty rows below the map (or export it to CSV) and import it again"
            ) in html.unescape(response.get_data(as_text=True))
    assert counts()[0] == 0


# --- the command line ------------------------------------------------------------------------


@pytest.mark.parametrize("reference", ["99999999999999999999999", str(2**63), "2147483648"])
def test_a_company_id_past_any_column_is_refused_with_a_message(runner, reference):
    maker()
    result = runner.invoke(args=["valuechain", "import", str(MAP), "--company", reference, "--dry-run"])
    assert result.exit_code == 1, result.exception
    assert f"no company with ISIN or id '{reference}'" in result.stderr


# --- status dates ----------------------------------------------------------------------------


def test_a_status_change_dated_before_the_last_one_is_refused(client, login_as, mapped, frozen_today):
    login_as("analyst")
    hoshine = relationship_to(HOSHINE)
    data, _ = status_post(client, mapped, hoshine, status="exit_planned", date="2026-06-01", target_date="2026-12-31")
    assert client.post(status_url(mapped, hoshine), data=data).status_code == 303
    data, _ = status_post(client, mapped, hoshine, status="exited", date="2024-01-01", evidence="The company's letter")
    refused = client.post(status_url(mapped, hoshine), data=data)
    assert refused.status_code == 422
    error = re.search(rf'<p class="error" id="rel{hoshine.id}-date-error">([^<]*)</p>', refused.get_data(as_text=True))
    assert error and html.unescape(error.group(1)) == (
        "the change is dated 01 Jan 2024, before the last one (exit planned on 01 Jun 2026); a status follows the "
        "one before it in time")
    assert changes() == 1
    data, _ = status_post(client, mapped, hoshine, status="exited", date="2026-06-01", evidence="The company's letter")
    assert client.post(status_url(mapped, hoshine), data=data).status_code == 303  # the same day is fine
    assert changes() == 2


# --- a PDF slower to read than a web request may take ----------------------------------------
# pdf.MAX_SECONDS (120 s) bounds the command line; a web worker is killed long before (gunicorn's
# default timeout is 30 s) and the analyst gets a bare gateway error. The web reads a PDF for at most
# VALUECHAIN_WEB_PDF_SECONDS and then refuses it with what to do.


def test_a_pdf_slower_than_the_web_allows_is_refused_with_what_to_do(app, client, login_as, monkeypatch):
    company = maker()
    login_as("analyst")
    monkeypatch.setitem(app.config, "VALUECHAIN_WEB_PDF_SECONDS", 0)
    response = upload(client, company.id, MAP.with_suffix(".pdf"))
    assert response.status_code == 422
    assert ("solar_supplier_list.pdf: reading the PDF's tables took more than 0 s (stopped at p. 1); extract the "
            "pages of the supplier list and import those, or import it with `flask valuechain import`"
            ) in html.unescape(response.get_data(as_text=True))
    assert counts()[0] == 0
    monkeypatch.setitem(app.config, "VALUECHAIN_WEB_PDF_SECONDS", 30)
    assert upload(client, company.id, MAP.with_suffix(".pdf")).status_code == 200


# --- a counterparty created by an import, merged into the company it is --------------------------
# The companies an import creates wait for review, where one is merged into an existing company.
# The merge moved holdings, flags and engagements, then deleted the created company: its value-chain
# relationships (ON DELETE CASCADE), their status history and exit evidence went with it.


def merge(client, source_id: int, target_id: int):
    shown = client.post(f"/holdings/review/{source_id}", data={"action": "merge", "target": str(target_id)})
    match = re.search(r'name="plan" type="hidden" value="([0-9a-f]+)"', shown.get_data(as_text=True))
    if match is None:
        return shown
    return client.post(f"/holdings/review/{source_id}/merge", data={"target_id": target_id, "plan": match.group(1)})


def test_merging_an_imported_counterparty_keeps_its_relationships_and_their_history(client, login_as, mapped,
                                                                                   frozen_today):
    login_as("analyst")
    hoshine = relationship_to(HOSHINE)
    data, _ = status_post(client, mapped, hoshine, status="exit_planned", date="2026-06-01", target_date="2026-12-31")
    assert client.post(status_url(mapped, hoshine), data=data).status_code == 303
    created_id, relationship_id = hoshine.counterparty_id, hoshine.id
    target = factories.company("Hoshine Silicon Industry (Shanshan) Co., Ltd.")
    db.session.commit()
    target_id, before = target.id, counts()

    shown = client.post(f"/holdings/review/{created_id}", data={"action": "merge", "target": str(target_id)})
    assert "1 relationship in other companies' maps now names the target" in shown.get_data(as_text=True)
    merged = merge(client, created_id, target_id)
    assert merged.status_code == 302, merged.get_data(as_text=True)[:2000]
    db.session.expire_all()
    assert db.session.get(Company, created_id) is None
    relationship = db.session.get(Relationship, relationship_id)
    assert relationship is not None and relationship.counterparty_id == target_id
    assert (relationship.status, relationship.target_date) == ("exit_planned", dt.date(2026, 12, 31))
    assert changes() == 1 and counts()[:2] == before[:2]
    assert "1 value-chain relationship, 0 value-chain maps" in flashes(client.get(f"/companies/{target_id}"))


def test_a_merge_that_would_list_a_counterparty_twice_in_one_map_is_refused(client, login_as, mapped):
    login_as("analyst")
    daqo = relationship_to("Xinjiang Daqo New Energy Co. Ltd.")  # both sub-suppliers in map 1
    gcl = relationship_to("Xinjiang GCL New Energy Material Technology Co. Ltd.")
    db.session.execute(sa.update(Company).where(Company.id == gcl.counterparty_id).values(origin=None))
    db.session.commit()
    before = counts()
    refused = merge(client, daqo.counterparty_id, gcl.counterparty_id)
    assert refused.status_code == 422
    assert ("Xinjiang Daqo New Energy Co. Ltd. and Xinjiang GCL New Energy Material Technology Co. Ltd. are both in "
            "value-chain map 1 of Fictional Solar Modules Co. as sub-supplier") in html.unescape(
        refused.get_data(as_text=True))
    db.session.expire_all()
    assert counts() == before


def test_a_csv_mixing_utf8_and_windows_1252_lines_is_refused_not_read_garbled(client, login_as):
    company = maker()
    login_as("analyst")
    data = ((HEADER + "Café Glass (fictional),1,supplier,glass,CN,Anhui,p. 1\n").encode("utf-8")
            + "Société Frames (fictional),1,supplier,frames,FR,Lyon,p. 1\n".encode("cp1252"))
    response = upload(client, company.id, data, "mixed.csv")
    assert response.status_code == 422
    assert ("mixed.csv: the file mixes two encodings: line 2 is UTF-8 text, line 3 is not (Windows-1252?); save "
            "it again as UTF-8") in html.unescape(response.get_data(as_text=True))
    assert counts()[0] == 0
    western = (HEADER + "Société Frames (fictional),1,supplier,frames,FR,Lyon,p. 1\n").encode("cp1252")
    assert "Société Frames" in html.unescape(upload(client, company.id, western, "w.csv").get_data(as_text=True))
