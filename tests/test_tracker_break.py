"""Hostile, careless and faulty inputs to the tracker import (engage/tracker): each is refused with what
and where, or read as the README says; nothing partial is written on a refusal."""

from __future__ import annotations

import datetime as dt
import io
import re

import pytest
import sqlalchemy as sa
from openpyxl import Workbook

from engage.extensions import db
from engage.models import Company, Engagement
from engage.tracker import service
from tests import test_tracker
from tests.conftest import PASSWORD, csrf_token_from
from tests.test_tracker import TODAY, counts
from tests.test_tracker_web import upload

team = test_tracker.team


def plan(data: bytes, name: str = "t.csv", **options):
    return service.preview(data, name, service.Options(**options), today=TODAY)


def write(data: bytes, name: str = "t.csv", **options):
    saved = service.save(data, name, service.Options(**options), today=TODAY, actor_id=None)
    db.session.commit()
    return saved


def xlsx(rows) -> bytes:
    book = Workbook()
    for row in rows:
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def refused(data: bytes, name: str = "t.csv", **options) -> str:
    before = counts()
    with pytest.raises(service.TrackerError) as caught:
        write(data, name, **options)
    db.session.rollback()
    assert counts() == before
    return caught.value.message


def test_a_formula_without_a_saved_value_is_refused_not_a_crash(team):
    data = xlsx([["Company", "Campaign", "Notes"], ["Formula Co", "Tech", "=1+2"]])
    assert refused(data, "t.xlsx") == ("t.xlsx: C2 is a formula without a saved value; open and save the file in "
                                       "Excel, or export it as CSV")


@pytest.mark.parametrize("data", [b"PK\x03\x04" + b"garbage" * 100, b"\x00\x01\x02" * 100,
                                  b"Company,Campaign\nNul\x00Co,Tech\n"])
def test_files_that_are_not_what_they_claim_are_refused(team, data):
    message = refused(data, "t.xlsx" if data.startswith(b"PK") else "t.csv")
    assert message.startswith("t.") and ("not" in message or "damaged" in message)


def test_two_columns_with_one_header_are_refused_not_one_dropped(team):
    data = b"Company,Campaign,Status,Status\nDup Co,Tech,Letter sent,Replied\n"
    assert refused(data) == ("t.csv: row 1: columns C and D are both headed “Status” (read as status); rename one "
                             "of them, or delete the one not kept, and import again")
    # a doubled header nobody reads (two "Memo" columns) is no matter
    write(b"Company,Campaign,Memo,memo\nDup Co,Tech,a,b\n")
    assert db.session.scalar(sa.select(Company).where(Company.name == "Dup Co")) is not None


def test_a_name_two_companies_go_by_is_refused_not_guessed(team):
    db.session.add_all([Company(name="Twin Holdings"), Company(name="Twin Holdings Ltd")])
    db.session.commit()
    shown = plan(b"Company,Campaign\nTwin Holdings,Tech\n")
    assert shown.rows == []
    assert [str(e) for e in shown.errors] == [
        "row 2, column Company: 2 companies in Engage go by this name (Twin Holdings, Twin Holdings Ltd); give the "
        "row the company's ISIN or ticker ('Twin Holdings')"]
    refused(b"Company,Campaign\nTwin Holdings,Tech\n")
    # with its ISIN it is the one company
    twin = db.session.scalar(sa.select(Company).where(Company.name == "Twin Holdings Ltd"))
    twin.isin = "GB0002634946"
    db.session.commit()
    write(b"Company,ISIN,Campaign\nTwin Holdings,GB0002634946,Tech\n")
    assert db.session.scalar(sa.select(Engagement.company_id)) == twin.id


@pytest.mark.parametrize("cell, reason", [
    ("1900-01-01", "01 Jan 1900 is before 1990, which Engage does not record"),
    ("2099-01-01", "01 Jan 2099 is in the future; a tracker's dates are history"),
    ("00060", "a number that is not an Excel date (1990 to 2100)"),
    ("29/02/2023", "not a date (day/month/year)"),
])
def test_dates_out_of_range_are_refused_with_the_row(team, cell, reason):
    shown = plan(f"Company,Campaign,Letter sent\nDate Co,Tech,{cell}\n".encode())
    assert [str(e) for e in shown.errors] == [f"row 2, column Letter sent: {reason} ('{cell}')"]


@pytest.mark.parametrize("value", [0, 60, 1])
def test_excel_serials_of_1900_are_refused(team, value):
    shown = plan(xlsx([["Company", "Campaign", "Letter sent"], ["Serial Co", "Tech", value]]), "t.xlsx")
    assert [e.reason for e in shown.errors] == ["a number that is not an Excel date (1990 to 2100)"]


def test_a_date_with_a_late_time_is_its_own_day(team):
    shown = plan(xlsx([["Company", "Campaign", "Letter sent"], ["Late Co", "Tech", dt.datetime(2024, 2, 3, 23, 30)]]),
                 "t.xlsx")
    assert [r.opened_on for r in shown.rows] == [dt.date(2024, 2, 3)]


def test_tbc_is_no_date(team):
    shown = plan(b"Company,Campaign,Letter sent,Reply\nTbc Co,Tech,2024-02-03,TBC\n")
    assert shown.errors == [] and shown.rows[0].item.dates == {"letter_on": dt.date(2024, 2, 3)}


# --- on the web ---------------------------------------------------------------------------------

def test_a_formula_file_is_refused_on_the_upload_page_not_an_error(client, login_as, team):
    login_as("analyst")
    data = xlsx([["Company", "Campaign", "Notes"], ["Formula Co", "Tech", "=1+2"]])
    before = counts()
    refused_page = upload(client, data, "t.xlsx")
    assert refused_page.status_code == 422
    assert "C2 is a formula without a saved value" in refused_page.get_data(as_text=True)
    assert counts() == before


def test_the_mapping_step_refuses_a_hand_made_target_and_a_field_twice(client, login_as, team):
    login_as("analyst")
    data = b"Company,Campaign,State,Phase\nForm Co,Tech,Letter sent,x\n"
    token = upload(client, data, "t.csv").headers["Location"].rsplit("/", 1)[1]
    assert re.fullmatch(r"[0-9a-f]{32}", token)
    base = {"campaign_id": "0", "date_order": "day", "columns": "4", "header-0": "Company", "column-0": "company",
            "header-1": "Campaign", "column-1": "campaign", "header-2": "State", "column-2": "status",
            "header-3": "Phase", "column-3": "status"}
    twice = client.post(f"/tracker/import/{token}", data=base)
    assert twice.status_code == 422
    assert "two columns are mapped to status: “State” and “Phase”" in twice.get_data(as_text=True)
    bad = client.post(f"/tracker/import/{token}", data={**base, "column-3": "ignore", "status-count": "1",
                                                          "status-word-0": "Letter sent", "status-0": "closed"})
    assert bad.status_code == 422
    assert "status &#39;Letter sent&#39; cannot mean &#39;closed&#39;" in bad.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Engagement)) == 0


def test_the_tracker_forms_are_csrf_protected(make_app, make_user, team):
    protected = make_app(WTF_CSRF_ENABLED=True)
    user = make_user("analyst")
    client = protected.test_client()
    token = csrf_token_from(client.get("/auth/login").get_data(as_text=True))
    client.post("/auth/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token})
    data = b"Company,Campaign,Letter sent\nCsrf Co,Tech,2024-03-04\n"
    assert upload(client, data, "t.csv").status_code == 400  # no token: the form is not taken
    page = client.get("/tracker/import").get_data(as_text=True)
    sent = upload(client, data, "t.csv", csrf_token=csrf_token_from(page))
    assert sent.status_code == 302
    text = client.get(sent.headers["Location"]).get_data(as_text=True)
    token = re.search(r'action="/tracker/import/([0-9a-f]{32})/confirm"', text).group(1)
    digest = re.search(r'name="preview" value="([0-9a-f]{64})"', text).group(1)
    assert client.post(f"/tracker/import/{token}/confirm", data={"preview": digest}).status_code == 400
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Engagement)) == 0
    done = client.post(f"/tracker/import/{token}/confirm", data={"preview": digest,
                                                                  "csrf_token": csrf_token_from(text)})
    assert done.status_code == 302
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Engagement)) == 1


def test_a_header_of_two_rows_merged_down_is_read_as_one(team):
    book = Workbook()
    sheet = book.active
    sheet.append(["Company", "Campaign", "Dates", None])
    sheet.append([None, None, "Letter sent", "Reply"])
    sheet.append(["Two Rows Co", "Tech", "2024-02-03", "2024-03-01"])
    sheet.merge_cells("A1:A2")
    sheet.merge_cells("B1:B2")
    sheet.merge_cells("C1:D1")
    out = io.BytesIO()
    book.save(out)
    shown = plan(out.getvalue(), "t.xlsx")
    # not a row of a company called "Company", and the dates under "Dates" are read
    assert shown.errors == []
    assert [(r.item.row, r.company_name, r.item.dates) for r in shown.rows] == [
        (3, "Two Rows Co", {"letter_on": dt.date(2024, 2, 3), "reply_on": dt.date(2024, 3, 1)})]
    assert shown.parsed.table.header == ["Company", "Campaign", "Letter sent", "Reply"]


def test_names_that_normalize_to_nothing_are_two_companies_and_found_again(team):
    data = b"Company,Campaign,Letter sent\nA Co,Tech,2024-02-03\nC Co,Tech,2024-02-04\n"
    shown = plan(data)
    assert shown.errors == [] and [r.company_name for r in shown.rows] == ["A Co", "C Co"]
    before = counts()
    write(data)
    assert counts()["Company"] == before["Company"] + 2 and counts()["Engagement"] == before["Engagement"] + 2
    again = plan(data)
    assert [(r.company_how, r.action) for r in again.rows] == [("name", "unchanged")] * 2
    write(data)
    assert counts()["Company"] == before["Company"] + 2 and counts()["Engagement"] == before["Engagement"] + 2


def test_a_row_edited_and_imported_again_adds_no_second_letter_reply_or_note(team):
    first = b"Ref,Company,Campaign,Letter sent,Reply,Notes\n9,Edit Co,Tech,2024-02-03,2024-03-01,Asked for the map\n"
    write(first)
    engagement = db.session.scalar(sa.select(Engagement).join(Company).where(Company.name == "Edit Co"))
    before = counts()
    # the letter's date corrected, the reply's too, a meeting added (so the row's latest date, the notes' date, moves)
    edited = (b"Ref,Company,Campaign,Letter sent,Reply,Meeting,Notes\n"
              b"9,Edit Co,Tech,2024-02-10,2024-03-05,2024-04-02,Asked for the map\n")
    shown = plan(edited)
    row = shown.rows[0]
    assert [s.describe() for s in row.steps] == ["Meeting 2024-04-02"]
    assert row.notes == [
        "Engage has the letter from the tracker on 2024-02-03; the tracker now says 2024-02-10: left as Engage has it",
        "Engage has the reply from the tracker on 2024-03-01; the tracker now says 2024-03-05: left as Engage has it"]
    write(edited)
    assert counts()["Interaction"] == before["Interaction"] + 1 and counts()["Letter"] == before["Letter"]
    db.session.expire_all()
    assert sorted((i.kind, i.occurred_on) for i in engagement.interactions) == [
        ("letter", dt.date(2024, 2, 3)), ("meeting", dt.date(2024, 4, 2)), ("note", dt.date(2024, 3, 1)),
        ("response", dt.date(2024, 3, 1))]
    # new notes are a new note
    write(edited.replace(b"Asked for the map", b"Map received"))
    assert counts()["Interaction"] == before["Interaction"] + 2


def test_a_status_written_as_its_target_code_needs_no_mapping(team):
    write(b"Company,Campaign,Status,Letter sent,Closed\nCode Co,Tech,closed:dropped,2024-02-03,2024-05-06\n")
    engagement = db.session.scalar(sa.select(Engagement).join(Company).where(Company.name == "Code Co"))
    assert (engagement.stage, engagement.outcome, engagement.closed_on) == ("closed", "dropped", dt.date(2024, 5, 6))


def test_the_preview_escapes_the_files_text(client, login_as, team):
    login_as("analyst")
    data = b"Company,Campaign,Owner,Status\n<script>alert(1)</script>,Tech,<b>Boss</b>,<i>Sent</i>\n"
    text = client.get(upload(client, data, "t.csv").headers["Location"]).get_data(as_text=True)
    assert "<script>alert(1)</script>" not in text and "<b>Boss</b>" not in text and "<i>Sent</i>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&lt;b&gt;Boss&lt;/b&gt;" in text


def test_a_preview_made_stale_by_another_import_is_not_written(client, login_as, team):
    login_as("analyst")
    data = b"Company,Campaign,Letter sent\nRace Co,Tech,2024-03-04\n"
    text = client.get(upload(client, data, "mine.csv").headers["Location"]).get_data(as_text=True)
    token = re.search(r'action="/tracker/import/([0-9a-f]{32})/confirm"', text).group(1)
    digest = re.search(r'name="preview" value="([0-9a-f]{64})"', text).group(1)
    write(b"Company,Campaign,Letter sent,Reply\nRace Co,Tech,2024-03-04,2024-04-01\n", "theirs.csv")
    before = counts()
    stale = client.post(f"/tracker/import/{token}/confirm", data={"csrf_token": csrf_token_from(text)
                                                                  if 'name="csrf_token"' in text else "",
                                                                  "preview": digest}, follow_redirects=True)
    assert "Not imported: what the tracker would write changed since the preview" in stale.get_data(as_text=True)
    assert counts() == before
    assert "0 new engagement(s), 0 to update, 1 unchanged" in stale.get_data(as_text=True)


def test_an_unchanged_score_is_not_scored_again_when_the_row_gains_a_date(team):
    head = b"Ref,Company,Campaign,Letter sent,Reply,Score\n"
    write(head + b"5,Score Again Co,XUAR forced labour and surveillance,2024-02-03,,40\n")
    before = counts()
    write(head + b"5,Score Again Co,XUAR forced labour and surveillance,2024-02-03,2024-03-01,40\n")
    assert counts()["Score"] == before["Score"] and counts()["Interaction"] == before["Interaction"] + 1
    write(head + b"5,Score Again Co,XUAR forced labour and surveillance,2024-02-03,2024-03-01,55\n")
    assert counts()["Score"] == before["Score"] + 1
