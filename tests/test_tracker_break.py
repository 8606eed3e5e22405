"""Hostile, careless and faulty inputs to the tracker import (engage/tracker): each is refused with what
and where, or read as the README says; nothing partial is written on a refusal."""

from __future__ import annotations

import datetime as dt
import io

import pytest
import sqlalchemy as sa
from openpyxl import Workbook

from engage.extensions import db
from engage.models import Company, Engagement
from engage.tracker import service
from tests import test_tracker
from tests.test_tracker import TODAY, counts

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
