"""An analyst loads a list as its publisher gives it, screens, and decides a possible match — in a real Chromium.

The file is tests/fixtures/lists/uflpa_2024-11-25.html: the DHS UFLPA Entity List page's tables
(additions effective 25 Nov 2024; Xinjiang Daqo New Energy Co., Ltd. under section
2(d)(2)(B)(v); see tests/fixtures/lists/README.md for the notices). The fund holding the
company in a data provider's spelling, and the US-listed look-alike, are set up in the served
database (as the mail journey sets up its mailbox): the journey is what the analyst clicks.
"""

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser
UFLPA_PAGE = Path(__file__).resolve().parents[1] / "fixtures" / "lists" / "uflpa_2024-11-25.html"
FUND = "Solar Supply Chain Fund"
HELD = "XINJIANG DAQO NEW ENERGY CO LTD-A"  # a provider's spelling of the listed company
LOOKALIKE = "Daqo New Energy Corp."  # the NYSE-listed group: a name close enough to ask, not to flag


@pytest.fixture()
def solar_fund(live_app):
    from engage import audit
    from engage.extensions import db
    from engage.models import Company, Fund, Holding

    with live_app.app.app_context(), audit.acting_as("seed"):
        fund = Fund(name=FUND, provider="Journey Asset Management", base_currency="USD")
        held = Company(name=HELD, country="CN", sector="Polysilicon")
        db.session.add_all([fund, held, Company(name=LOOKALIKE, country="US", sector="Polysilicon")])
        db.session.add(Holding(fund=fund, company=held, as_of=dt.date.today(), shares=Decimal(100_000),
                               market_value=Decimal(2_500_000), weight=Decimal("2.5")))
        db.session.commit()
        db.session.remove()


def test_9_load_a_list_screen_and_decide_a_possible_match(page, solar_fund):
    sign_in(page, "analyst@example.org")
    page.get_by_role("link", name="Lists").click()
    page.get_by_role("link", name="Import a list file").click()
    page.get_by_label("List file").set_input_files(str(UFLPA_PAGE))
    expect(page.get_by_label("Format")).to_have_value("")  # told from the file
    page.get_by_role("button", name="Check the file").click()

    # the preview: what the file would change, nothing saved yet
    expect(page.get_by_role("heading", name="uflpa_2024-11-25.html")).to_be_visible()
    expect(page.get_by_text("Nothing is saved yet.")).to_be_visible()
    summary = "UFLPA Entity List: 6 entries, 6 added, 0 removed, 0 changed (first version)"
    expect(page.get_by_role("heading", name=summary)).to_be_visible()
    expect(page.get_by_role("listitem").filter(has_text="Xinjiang Daqo New Energy Co., Ltd.")).to_be_visible()
    page.shot("list-preview")
    page.get_by_role("button", name="Save this version").click()
    expect(page.get_by_text(re.compile(r"^Version \d+: " + re.escape(summary)))).to_be_visible()
    expect(page.get_by_text(re.compile(r"Screened \d+ companies: \d+ new risk flag\(s\)"))).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile(r"UFLPA Entity List, version \d+"))).to_be_visible()

    # the screening: the held company flagged, with the list's citation and why it matched
    page.get_by_role("link", name="screening page").click()
    section = page.locator("section", has=page.get_by_role("heading", name=FUND))
    row = section.get_by_role("row").filter(has_text=HELD)
    expect(row).to_contain_text("UFLPA Entity List")
    expect(row).to_contain_text("UFLPA Entity List, section 2(d)(2)(B)(v)")
    expect(row).to_contain_text(re.compile(r"Matched: .*Xinjiang Daqo New Energy Co\., Ltd\."))
    expect(section).to_contain_text(re.compile(r"New since the last screening: .*" + re.escape(HELD)))
    page.shot("screening-with-reason")

    # the match review, on a phone: each possible match a card, its buttons on the screen
    page.set_viewport_size({"width": 390, "height": 800})
    page.get_by_role("link", name=re.compile(r"possible match(es)? to review")).click()
    candidate = page.get_by_role("row").filter(has_text=LOOKALIKE).filter(has_text="UFLPA Entity List")
    expect(candidate).to_contain_text("Xinjiang Daqo New Energy Co., Ltd.")
    expect(candidate).to_contain_text("entry name adds \"xinjiang\"")
    accept = candidate.get_by_role("button", name=f"Accept {LOOKALIKE}")
    box = accept.bounding_box()
    assert box["x"] + box["width"] <= 390, box
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.shot("review-narrow")
    candidate.get_by_label(f"Note on {LOOKALIKE}").fill("Same group as the listed Xinjiang company?")
    accept.click()
    expect(page.get_by_text(f"Accepted: {LOOKALIKE} flagged on UFLPA Entity List.")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text=LOOKALIKE).filter(has_text="UFLPA Entity List")).to_have_count(0)
    page.set_viewport_size({"width": 1280, "height": 900})

    # second thoughts: undo it from the decided matches; it is asked again
    tabs = page.get_by_role("navigation", name="Match review")
    tabs.get_by_role("link", name="Decided").click()
    decided = page.get_by_role("row").filter(has_text=LOOKALIKE).filter(has_text="UFLPA Entity List")
    expect(decided).to_contain_text("Accepted by Sam Analyst")
    expect(decided).to_contain_text("Same group as the listed Xinjiang company?")
    decided.get_by_label(f"Why undo, {LOOKALIKE}").fill("The NYSE-listed group, not the listed company")
    dialogs = []
    page.once("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    decided.get_by_role("button", name=f"Undo {LOOKALIKE}").click()
    expect(page.get_by_text(f"Decision undone: {LOOKALIKE} is back in the review; 1 flag(s) it made deleted.")).to_be_visible()
    assert dialogs == ["Undo this decision and delete the flags it made?"]
    tabs.get_by_role("link", name="To review").click()
    expect(page.get_by_role("row").filter(has_text=LOOKALIKE).filter(has_text="UFLPA Entity List")).to_have_count(1)
    page.shot("review-after-undo")
