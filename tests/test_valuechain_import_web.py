"""Importing a value-chain map on the web (engage/valuechain/routes.py, "Importing a map"): upload ->
preview (resolved, possible, new, flagged first with reasons, the diff) -> confirm once -> result;
refusals say what and where and write nothing; a stale preview is shown again, never applied.

The lists are the seeded files and the map the solar supplier list (CSV and PDF), as in
tests/test_valuechain.py (see tests/fixtures/valuechain/README.md).
"""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import current_app
from flask_wtf import FlaskForm
from werkzeug.exceptions import HTTPException

from engage import clock
from engage.extensions import db
from engage.models import Relationship, ValueChainMap
from engage.valuechain import importing
from engage.valuechain.import_forms import MapConfirmForm, MapImportForm
from tests import factories
from tests.conftest import csrf_token_from, login
from tests.test_valuechain import MAP, counts, load_lists, maker, run

PDF_MAP = MAP.with_suffix(".pdf")
HEADER = "Supplier,Tier,Relationship,Products,Country,Region,Page\n"


def upload(client, company_id: int, content: bytes | Path, name: str | None = None, engagement: int | None = None,
           **fields):
    data = content.read_bytes() if isinstance(content, Path) else content
    form = {"file": (io.BytesIO(data), name or getattr(content, "name", "map.csv")), "source_kind": "attachment",
            **fields}
    query = f"?engagement={engagement}" if engagement else ""
    return client.post(f"/value-chain/companies/{company_id}/import{query}", data=form,
                       content_type="multipart/form-data")


def confirm_data(page: str) -> tuple[str, dict]:
    token = re.search(r'action="/value-chain/companies/\d+/import/([0-9a-f]{32})"', page).group(1)
    digest = re.search(r'name="preview" value="([0-9a-f]{64})"', page).group(1)
    return token, {"preview": digest}


def confirm(client, company_id: int, page: str, **kw):
    token, form = confirm_data(page)
    return client.post(f"/value-chain/companies/{company_id}/import/{token}", data=form, **kw)


def stashed_files() -> list[str]:
    folder = Path(current_app.instance_path) / "uploads"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def result_url(company_id: int, engagement_id: int) -> str:
    """The engagement's value-chain page where the app has it (another branch builds it), else the company page."""
    path = f"/value-chain/engagements/{engagement_id}"
    try:
        current_app.url_map.bind("").match(path, method="GET")
    except HTTPException:
        return f"/companies/{company_id}"
    return path


def test_an_analyst_imports_a_map_from_the_engagement_page_then_a_second_with_its_changes(client, login_as, runner):
    load_lists(runner)
    company = maker()
    engagement = factories.engagement(company=company)
    user = login_as("analyst")
    page = client.get(f"/engagements/{engagement.id}").get_data(as_text=True)
    link = f'/value-chain/companies/{company.id}/import?engagement={engagement.id}'
    assert f'href="{link}">Import a value-chain map</a>' in page
    assert "Import a value-chain map" in client.get(f"/companies/{company.id}").get_data(as_text=True)
    form = client.get(link)
    assert form.status_code == 200 and "This will be the company's first map." in form.get_data(as_text=True)
    before = counts()

    shown = upload(client, company.id, MAP, engagement=engagement.id, source_kind="report",
                   source_ref="Supplier list 2025, annex 2", disclosed_on="2026-05-20")
    text = shown.get_data(as_text=True)
    assert shown.status_code == 200, text
    assert "Nothing is imported yet." in text and counts() == before
    assert "12: 0 resolved to existing companies, 12 new" in text
    assert "5: 4 on a list, 5 in the Uyghur Region" in text
    # flagged first, each with its reason
    assert text.index("Tarim Fictional Quartz Mining Co.") < text.index("Brightfield Module Glass Co. (fictional)")
    assert "<strong>Flagged:</strong> would be US Entity List (direct: entry “Xinjiang GCL New Energy Material" in text
    assert "<strong>Flagged: Uyghur Region</strong> (region names Hotan" in text
    assert "First map of the company: 12 relationships" in text
    assert "supplier ← “Supplier”" not in text and "name ← “Supplier”" in text

    saved = confirm(client, company.id, text)
    assert saved.status_code == 302
    assert saved.headers["Location"] == result_url(company.id, engagement.id)
    vc_map = db.session.scalar(sa.select(ValueChainMap))
    assert (vc_map.number, vc_map.source_kind, vc_map.source_ref, vc_map.disclosed_on, vc_map.imported_by_id,
            vc_map.file_name) == (1, "report", "Supplier list 2025, annex 2", dt.date(2026, 5, 20), user.id,
                                  "solar_supplier_list.csv")
    assert len(vc_map.relationships) == 12
    flashed = client.get(f"/companies/{company.id}").get_data(as_text=True)
    assert ("Map 1 of Fictional Solar Modules Co. imported from solar_supplier_list.csv: 12 relationships, "
            "0 resolved to existing companies, 12 new companies; 5 flagged (4 on a list, 5 in the Uyghur Region)."
            in flashed)
    token = confirm_data(text)[0]
    assert [name for name in stashed_files() if name.startswith(token)] == [f"{token}.done"]  # the file is dropped

    # map 2: one row removed, one tier changed, one added; the preview says so before anything is saved
    lines = MAP.read_text().splitlines(keepends=True)
    second = [line for line in lines if not line.startswith("Pacific Backsheet")]
    second = [line.replace("Lumenpath Cell Technology Co. (fictional),1,", "Lumenpath Cell Technology Co. (fictional),2,")
              for line in second] + ["Solvane Silver Paste Co. (fictional),1,supplier,silver paste,JP,Osaka,p. 44\n"]
    text = upload(client, company.id, "".join(second).encode(), "supplier_list_2026.csv",
                  engagement=engagement.id).get_data(as_text=True)
    assert "map 2, after map 1" in text and "Changes against map 1: 1 added, 1 removed, 1 changed" in text
    assert "Solvane Silver Paste Co. (fictional) (supplier, tier 1)" in text
    assert "Pacific Backsheet Polymers Inc. (fictional) (sub-supplier, tier 2)" in text
    assert "Lumenpath Cell Technology Co. (fictional) (supplier, tier 2): tier 1 → 2" in text
    assert "12: 11 resolved to existing companies, 1 new" in text  # the counterparties made by map 1
    assert confirm(client, company.id, text).status_code == 302
    assert db.session.scalar(sa.select(sa.func.max(ValueChainMap.number))) == 2


def test_a_double_clicked_confirmation_imports_once(client, login_as):
    company = maker()
    login_as("analyst")
    text = upload(client, company.id, MAP).get_data(as_text=True)
    first = confirm(client, company.id, text)
    again = confirm(client, company.id, text, follow_redirects=True)
    assert first.status_code == 302
    assert "This map was confirmed already and imported once: Map 1 of Fictional Solar Modules Co." in \
        again.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ValueChainMap)) == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Relationship)) == 12
    same = upload(client, company.id, MAP, "again.csv")
    assert same.status_code == 422
    assert ("again.csv: this file is identical to map 1 of Fictional Solar Modules Co. (solar_supplier_list.csv); "
            "nothing to import") in same.get_data(as_text=True)


def test_a_pdf_map_on_the_web_keeps_the_page_of_each_row(client, login_as):
    company = maker()
    login_as("analyst")
    text = upload(client, company.id, PDF_MAP).get_data(as_text=True)
    assert "12: 0 resolved to existing companies, 12 new" in text
    assert "<td data-label=\"Source\">p. 2</td>\n    <td data-label=\"Disclosed\">Hoshine Silicon Industry Co. Ltd." in text
    assert confirm(client, company.id, text).status_code == 302
    refs = dict(db.session.execute(sa.select(Relationship.products, Relationship.source_ref)).all())
    assert (refs["solar glass"], refs["metallurgical-grade silicon"]) == ("p. 1", "p. 2")


def pdf_without_tables() -> bytes:
    from weasyprint import HTML

    return HTML(string="<h1>Modern slavery statement</h1><p>We map our supply chain.</p>").write_pdf()


REFUSED = {
    "bad mapping": (lambda: MAP.read_bytes(), "map.csv", {"mapping": "name=Supplier,colour=Red"},
                    "unknown field(s) in the column mapping: colour"),
    "mapped column missing": (lambda: MAP.read_bytes(), "map.csv", {"mapping": "name=Vendor"},
                              "no header row naming the counterparty"),
    "bad tier": (lambda: (HEADER + "Acme Glass (fictional),two,supplier,glass,CN,Anhui,p. 1\n").encode(), "map.csv", {},
                 "<td class=\"num\">2</td><td>Tier</td><td><code>two</code></td><td>a tier is a positive whole number"),
    "a Word file": (lambda: b"PK\x03\x04 not really", "letter.docx", {}, "letter.docx: a .docx file is not a map"),
    "an image named .csv": (lambda: b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64), "map.csv", {},
                            "not a CSV, XLSX or PDF file"),
    "a PDF without tables": (pdf_without_tables, "statement.pdf", {}, "no table in the PDF (1 page(s) of text)"),
    "a broken PDF": (lambda: b"%PDF-1.7\n" + bytes(range(256)) * 4, "annex.pdf", {}, "the PDF is damaged or not a PDF"),
    "too many rows": (lambda: (HEADER + "".join(f"Supplier {i} (fictional),1,supplier,glass,CN,Anhui,p. 1\n"
                                                for i in range(25_001))).encode(), "big.csv", {},
                      "more than 25,000 rows, the limit for one map"),
    "disclosed in the future": (lambda: MAP.read_bytes(), "map.csv",
                                {"disclosed_on": (clock.today() + dt.timedelta(days=30)).isoformat()},
                                "the disclosure date is in the future"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_uploads_say_what_and_where_and_write_nothing(client, login_as, case):
    company = maker()
    login_as("analyst")
    make, name, fields, message = REFUSED[case]
    before, stash = counts(), stashed_files()
    response = upload(client, company.id, make(), name, **fields)
    text = response.get_data(as_text=True)
    assert response.status_code == 422, text
    assert message in text
    assert "Import this map" not in text  # no preview, nothing to confirm
    assert counts() == before and stashed_files() == stash


def test_a_file_too_large_is_refused_by_its_size(client, login_as, monkeypatch):
    company = maker()
    login_as("analyst")
    monkeypatch.setattr(importing, "MAX_UPLOAD_BYTES", 1024 * 1024)
    stash = stashed_files()
    text = upload(client, company.id, b"Supplier\n" + b"A very long supplier name (fictional)\n" * 50_000,
                  "big.csv").get_data(as_text=True)
    assert "big.csv: 1.8 MB, larger than the 1 MB limit for a map on the web" in text
    assert counts()[0] == 0 and stashed_files() == stash


def test_a_stale_preview_is_shown_again_against_the_new_map_not_applied(client, login_as, runner):
    company = maker()
    login_as("analyst")
    text = upload(client, company.id, MAP).get_data(as_text=True)
    assert "the first map of the company" in text
    # meanwhile someone imports another map of the company from the command line
    other = (HEADER + "Brightfield Module Glass Co. (fictional),1,supplier,solar glass,CN,Anhui,p. 1\n").encode()
    path = Path(current_app.instance_path) / "other.csv"
    path.write_bytes(other)
    assert run(runner, str(path), "--company", str(company.id)).exit_code == 0
    before = counts()
    stale = confirm(client, company.id, text)
    page = stale.get_data(as_text=True)
    assert stale.status_code == 409
    assert ("Not imported: map 1 of Fictional Solar Modules Co. (other.csv) was imported by the command line after "
            "this preview was made.") in page
    assert "map 2, after map 1" in page and "Changes against map 1: 11 added, 0 removed, 1 changed" in page
    assert counts() == before
    # the first preview's token is gone; the new one imports
    again = confirm(client, company.id, text, follow_redirects=True)
    assert "That import is no longer waiting; upload the map again." in again.get_data(as_text=True)
    assert counts() == before
    assert confirm(client, company.id, page).status_code == 302
    assert db.session.scalar(sa.select(sa.func.max(ValueChainMap.number))) == 2


def test_an_altered_preview_is_not_applied(client, login_as):
    company = maker()
    login_as("analyst")
    text = upload(client, company.id, MAP).get_data(as_text=True)
    token, _ = confirm_data(text)
    response = client.post(f"/value-chain/companies/{company.id}/import/{token}", data={"preview": "0" * 64})
    assert response.status_code == 409
    assert "what this map resolves to or flags changed since the preview" in response.get_data(as_text=True)
    assert counts()[0] == 0


def test_viewers_get_403_and_see_no_link_and_others_cannot_confirm_an_upload(client, login_as, make_user):
    company = maker()
    login_as("viewer")
    assert "Import a value-chain map" not in client.get(f"/companies/{company.id}").get_data(as_text=True)
    assert client.get(f"/value-chain/companies/{company.id}/import").status_code == 403
    assert upload(client, company.id, MAP).status_code == 403
    assert client.post(f"/value-chain/companies/{company.id}/import/{'a' * 32}", data={"preview": "0"}).status_code == 403
    client.post("/auth/logout")
    login_as("analyst")
    text = upload(client, company.id, MAP).get_data(as_text=True)
    client.post("/auth/logout")
    login_as("analyst")  # another analyst
    response = confirm(client, company.id, text, follow_redirects=True)
    assert "That import is no longer waiting" in response.get_data(as_text=True)
    assert counts()[0] == 0
    assert client.get("/value-chain/companies/999999/import").status_code == 404


def test_the_forms_are_csrf_protected(make_app, make_user, app):
    assert issubclass(MapImportForm, FlaskForm) and issubclass(MapConfirmForm, FlaskForm)
    company = maker()
    protected = make_app(WTF_CSRF_ENABLED=True)
    user = make_user("analyst")
    client = protected.test_client()
    token = csrf_token_from(client.get("/auth/login").get_data(as_text=True))
    assert login(client, user.email).status_code == 400
    client.post("/auth/login", data={"email": user.email, "password": "correct horse battery staple",
                                     "csrf_token": token})
    assert upload(client, company.id, MAP).status_code == 400  # no token
    page = client.get(f"/value-chain/companies/{company.id}/import").get_data(as_text=True)
    shown = upload(client, company.id, MAP, csrf_token=csrf_token_from(page))
    text = shown.get_data(as_text=True)
    assert shown.status_code == 200 and "Import this map" in text
    assert confirm(client, company.id, text).status_code == 400  # the confirmation needs its token too
    assert counts()[0] == 0
    token, form = confirm_data(text)
    saved = client.post(f"/value-chain/companies/{company.id}/import/{token}",
                        data={**form, "csrf_token": csrf_token_from(text)})
    assert saved.status_code == 302 and counts()[0] == 1


def test_the_preview_page_takes_the_same_queries_for_more_rows(client, login_as, count_queries):
    company = maker()
    login_as("analyst")
    few = (HEADER + "".join(f"Supplier {i} (fictional),1,supplier,glass,CN,Anhui,p. 1\n" for i in range(3))).encode()
    many = (HEADER + "".join(f"Supplier {i} (fictional),1,supplier,glass,CN,Anhui,p. 1\n" for i in range(60))).encode()
    upload(client, company.id, few)  # warm up
    with count_queries() as small:
        assert upload(client, company.id, few, "few.csv").status_code == 200
    with count_queries() as large:
        assert upload(client, company.id, many, "many.csv").status_code == 200
    assert large.count == small.count


def test_a_counterparty_name_is_escaped_in_the_preview(client, login_as):
    company = maker()
    login_as("analyst")
    text = upload(client, company.id, (HEADER + "<script>alert(1)</script> Co (fictional),1,supplier,<b>glass</b>,"
                                                "CN,Anhui,p. 1\n").encode()).get_data(as_text=True)
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt; Co" in text
    assert "<b>glass</b>" not in text


def test_a_possible_match_is_shown_and_taken_only_when_asked(client, login_as):
    company = maker()
    existing = factories.company("Brightfield Module Glass Holdings Group Co., Ltd.")
    db.session.commit()
    login_as("analyst")
    data = (HEADER + "Brightfield Module Glass,1,supplier,solar glass,CN,Anhui,p. 1\n").encode()
    text = upload(client, company.id, data).get_data(as_text=True)
    assert "1: 0 resolved to existing companies, 1 new (1 with a possible match, not taken)" in text
    assert (f'<strong>New company</strong>; possible match: <a href="/companies/{existing.id}">Brightfield Module '
            f'Glass Holdings Group Co., Ltd.</a>') in text
    taken = upload(client, company.id, data, accept_possible="y").get_data(as_text=True)
    assert "1: 1 resolved to existing companies, 0 new" in taken
    assert confirm(client, company.id, taken).status_code == 302
    assert db.session.scalar(sa.select(Relationship.counterparty_id)) == existing.id


def test_the_preview_says_where_and_when_the_map_was_disclosed_as_the_form_asked(client, login_as):
    """The preview names the source and the date as the value-chain tab does ("Letter reply", a date as the app
    writes dates), not as stored ("letter reply", 2026-05-02)."""
    from engage.formatting import format_date

    company = maker()
    login_as("analyst")
    page = upload(client, company.id, MAP, source_kind="letter_reply", source_ref="Supplier-list annex",
                  disclosed_on="2026-05-02").get_data(as_text=True)
    shown = re.search(r"<dt>Disclosed in</dt><dd>(.*?)</dd>", page).group(1)
    assert shown == f"Letter reply: Supplier-list annex, {format_date(dt.date(2026, 5, 2))}"
    page = upload(client, company.id, MAP, source_kind="report").get_data(as_text=True)
    assert re.search(r"<dt>Disclosed in</dt><dd>(.*?)</dd>", page).group(1) == "Report"


def test_a_second_click_while_the_first_imports_waits_for_it_and_reports_its_result(client, login_as, monkeypatch):
    """A browser's double click sends the second confirmation while the first is importing, and shows only the
    second's answer: it waits (a few seconds at most) for the first to finish, so the analyst reads what was
    imported and the tab it leads to has the map, instead of 'being imported' over a tab without it."""
    from engage.valuechain import routes

    company = maker()
    analyst = login_as("analyst")
    page = upload(client, company.id, MAP).get_data(as_text=True)
    token, form = confirm_data(page)
    assert importing.claim_upload(token, routes.KIND) is not None  # the first click holds it
    waits = []

    def first_click_finishes(seconds):
        waits.append(seconds)
        if len(waits) == 3:
            importing.finish(token, ["Map 1 of Fictional Solar Modules Co. imported (by the first click)."],
                             {"user": analyst.id, "company": company.id})

    monkeypatch.setattr(routes.time, "sleep", first_click_finishes)
    answer = client.post(f"/value-chain/companies/{company.id}/import/{token}", data=form, follow_redirects=True)
    assert len(waits) == 3
    assert ("This map was confirmed already and imported once: Map 1 of Fictional Solar Modules Co. imported (by the "
            "first click).") in answer.get_data(as_text=True)

    # a first click that does not finish in time: the second says so, and waited a bounded time
    page = upload(client, company.id, MAP, "other.csv").get_data(as_text=True)
    token, form = confirm_data(page)
    assert importing.claim_upload(token, routes.KIND) is not None
    waits.clear()
    monkeypatch.setattr(routes.time, "sleep", waits.append)
    answer = client.post(f"/value-chain/companies/{company.id}/import/{token}", data=form, follow_redirects=True)
    assert "This map is being imported by an earlier click; it is imported once." in answer.get_data(as_text=True)
    assert 0 < sum(waits) <= routes.WAIT_FOR_FIRST_CLICK + 1
