"""A messy tracker as teams keep them, generated with openpyxl for the tracker import's tests.

`messy_tracker()` writes a 300-row XLSX: a merged title above the header, a note row, blank rows,
a heading row merged across the sheet between two waves, a company merged down over its two
campaigns' rows, dates as Excel dates, Excel serial numbers in General cells, "03/02/2024" and
"2 Feb 2024" text, owners by name and by email and one nobody knows, the team's own words for the
status and the escalation, notes and scores. Company names of the seed data are used where they fit;
the rest are fictional ("Tracker Co 17").

`expected` describes every data row as the import should read it, for the tests to compare with.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass, field

from openpyxl import Workbook

#: Real companies of seeds/companies.yaml (name, ISIN or "", ticker).
SEED_COMPANIES = [
    ("Hangzhou Hikvision Digital Technology Co., Ltd.", "CNE100000PM8", "002415"),
    ("Zhejiang Dahua Technology Co., Ltd.", "CNE100000BJ4", "002236"),
    ("iFlytek Co., Ltd.", "", "002230"),
    ("Thermo Fisher Scientific Inc.", "US8835561023", "TMO"),
    ("Apple Inc.", "US0378331005", "AAPL"),
    ("Alphabet Inc.", "US02079K3059", "GOOGL"),
    ("Amazon.com, Inc.", "US0231351067", "AMZN"),
]
HEADER = ["Ref", "Company", "ISIN", "Ticker", "Campaign", "Owner", "Status", "Escalation", "Letter sent",
          "2nd letter", "Reply received", "Notes", "Score"]
#: The team's words -> what they mean in Engage (the mapping step's answers).
STATUS_WORDS = {"Not contacted": "identified", "Letter sent": "mapping_requested", "Replied": "acknowledged",
                "Mapped VC": "value_chain_mapped", "Excluded": "closed:divested"}
ESCALATION_WORDS = {"": "none", "No reply \u2014 2nd letter": "follow_up", "CTA asked": "call_to_action"}
EXCEL_EPOCH = dt.date(1899, 12, 30)


@dataclass
class Expected:
    row: int
    ref: str
    company: str
    campaign: str
    owner: str | None
    stage: str
    outcome: str | None
    escalation: str
    letter_on: dt.date | None = None
    follow_up_on: dt.date | None = None
    reply_on: dt.date | None = None
    notes: str = ""
    score: int | None = None
    extra: dict = field(default_factory=dict)


def _date_cell(on: dt.date, style: int):
    """The same date written four ways, as a team's tracker mixes them."""
    if style == 0:
        return on  # an Excel date
    if style == 1:
        return (on - EXCEL_EPOCH).days  # a serial number in a General cell
    if style == 2:
        return on.strftime("%d/%m/%Y")  # day first, as text
    return f"{on.day} {on.strftime('%b %Y')}"  # "2 Feb 2024"


def messy_tracker(rows: int = 300, campaigns: tuple[str, str] = ("XUAR forced labour and surveillance", "Tech"),
                  owners: tuple[str, str] = ("Anna Analyst", "bob@example.org"), seed_companies: bool = True,
                  prefix: str = "Tracker Co") -> tuple[bytes, list[Expected]]:
    """The XLSX bytes and what each data row should become."""
    book = Workbook()
    sheet = book.active
    sheet.title = "Tracker"
    sheet.append(["Stewardship engagement tracker (internal)"])
    sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(HEADER))
    sheet.append(["Kept by the team since 2023; last tidied by hand"])
    sheet.append([])
    sheet.append(HEADER)
    expected: list[Expected] = []
    start = dt.date(2023, 1, 9)
    number = 4
    statuses = list(STATUS_WORDS)
    for index in range(rows):
        if index == rows // 2:  # a heading between two waves, merged across the sheet, and a blank row
            sheet.append([])
            number += 1
            sheet.append(["Wave 2 (2024)"])
            number += 1
            sheet.merge_cells(start_row=number, start_column=1, end_row=number, end_column=len(HEADER))
        if index % 37 == 5:
            sheet.append([])  # blank rows here and there
            number += 1
        if seed_companies and index < len(SEED_COMPANIES):
            name, isin, ticker = SEED_COMPANIES[index]
        else:
            name, isin, ticker = f"{prefix} {index}", "", ""
        status = statuses[index % len(statuses)]
        stage = STATUS_WORDS[status]
        outcome = None
        if stage.startswith("closed:"):
            stage, outcome = "closed", stage.split(":")[1]
        letter_on = start + dt.timedelta(days=index * 2)
        follow_up_on = letter_on + dt.timedelta(days=30) if index % 3 == 0 and stage != "identified" else None
        reply_on = letter_on + dt.timedelta(days=45) if stage in ("acknowledged", "value_chain_mapped") else None
        if stage == "identified":
            letter_on = None
        escalation_word = "No reply \u2014 2nd letter" if follow_up_on else ("CTA asked" if index % 11 == 4
                                                                           and stage != "identified" else "")
        escalation = ESCALATION_WORDS[escalation_word]
        if escalation_word == "CTA asked":
            follow_up_on = None
        owner: str | None = owners[index % 2]
        owner_cell = owner
        if index % 50 == 7:
            owner_cell, owner = "Someone Who Left", None
        style = index % 4
        notes = f"Row {index}: see shared drive" if index % 5 == 0 else ""
        campaign = campaigns[0] if index % 4 else campaigns[1]
        score = (index * 7) % 101 if index % 6 == 0 and campaign == campaigns[0] else None
        row = [f"T-{index:04d}", name, isin or None, ticker or None, campaign, owner_cell, status, escalation_word or None,
               _date_cell(letter_on, style) if letter_on else None,
               _date_cell(follow_up_on, (style + 1) % 4) if follow_up_on else None,
               _date_cell(reply_on, (style + 2) % 4) if reply_on else None, notes or None, score]
        sheet.append(row)
        number += 1
        if style == 0 and letter_on:
            sheet.cell(number, 9).number_format = "yyyy-mm-dd"
        if outcome == "divested":
            escalation = "divested"  # closing as divested puts the escalation at divested
        expected.append(Expected(number, f"T-{index:04d}", name, campaign, owner, stage, outcome, escalation,
                                 letter_on, follow_up_on, reply_on, notes, score))
    # one company merged down over its two campaigns' rows (the cell below the merge is empty)
    sheet.append(["T-9999", f"{prefix} merged", None, None, campaigns[1], owners[0],
                  "Letter sent", None, "05/02/2024", None, None, None, None])
    number += 1
    sheet.append(["T-9998", None, None, None, campaigns[0], owners[0], "Letter sent", None, "2 Feb 2024", None, None,
                  None, None])
    number += 1
    sheet.merge_cells(start_row=number - 1, start_column=2, end_row=number, end_column=2)
    expected.append(Expected(number - 1, "T-9999", f"{prefix} merged", campaigns[1], owners[0],
                             "mapping_requested", None, "none", dt.date(2024, 2, 5)))
    expected.append(Expected(number, "T-9998", f"{prefix} merged", campaigns[0], owners[0],
                             "mapping_requested", None, "none", dt.date(2024, 2, 2)))
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue(), expected
