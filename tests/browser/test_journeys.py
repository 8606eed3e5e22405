"""The daily journeys of a stewardship analyst, clicked and typed in a real Chromium."""

import datetime as dt
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_1_sign_in_dashboard_sign_out(page):
    sign_in(page, "analyst@example.org")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.get_by_role("heading", name="Engagements by stage")).to_be_visible()
    page.shot("dashboard")
    page.keyboard.press("Tab")  # the first Tab reaches the skip link, visibly focused
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.set_viewport_size({"width": 390, "height": 800})  # a phone: the navigation folds away
    expect(page.get_by_role("link", name="Companies")).to_be_hidden()
    page.get_by_role("button", name="Menu").click()
    expect(page.get_by_role("link", name="Companies")).to_be_visible()
    page.shot("dashboard-narrow")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/auth/login\?next="))


def test_2_open_an_engagement_and_send_the_initial_letter(page, tmp_path):
    sign_in(page, "analyst@example.org")
    page.get_by_role("link", name="Companies").click()
    page.get_by_label("Search", exact=True).fill("megvii")
    page.get_by_role("button", name="Filter").click()
    page.get_by_role("link", name="Megvii Technology Ltd").click()
    expect(page.get_by_text("US Entity List").first).to_be_visible()
    page.get_by_role("link", name="Open engagement").click()
    page.get_by_label("Objectives").fill("Ask for a value-chain map and a disengagement plan.")
    page.get_by_role("button", name="Open engagement").click()
    expect(page.get_by_text("Engagement with Megvii Technology Ltd opened.")).to_be_visible()
    page.get_by_role("button", name="Generate draft letter").click()
    expect(page.get_by_role("heading", name=re.compile("Investor expectations on the Uyghur Region"))).to_be_visible()
    page.shot("draft-letter")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download PDF").click()
    path = tmp_path / "letter.pdf"
    download.value.save_as(path)
    assert path.read_bytes().startswith(b"%PDF")
    page.locator("form[action$='/send']").get_by_role("button", name="Mark as sent").click()
    expect(page.get_by_text(re.compile("Letter marked as sent. A reply is due by"))).to_be_visible()
    expect(page.locator("#reminders + ul")).to_contain_text("Reply due to the letter")
    expect(page.locator(".stage").first).to_have_text("Mapping requested")
    page.shot("after-sending")


def test_3_log_a_response_score_it_and_move_the_stage(page):
    sign_in(page, "analyst2@example.org")
    page.get_by_role("link", name="Engagements").click()
    page.get_by_role("link", name="iFlytek Co., Ltd.").click()
    page.get_by_role("tab", name="Log").click()
    page.get_by_label("Kind").select_option("response")
    page.get_by_label("Direction").select_option("inbound")
    page.get_by_label("Subject").fill("Supplier list received")
    page.get_by_label("Summary").fill("The company sent a list of its **tier-1** suppliers.")
    page.get_by_role("button", name="Log interaction").click()
    expect(page.get_by_text("Response logged.")).to_be_visible()
    page.get_by_role("link", name="Score this response").first.click()
    for fieldset in page.locator("fieldset.criterion").all():
        fieldset.get_by_role("radio").nth(1).check()
    mapping = page.locator("fieldset.criterion").first
    mapping.get_by_role("radio").nth(3).check()
    mapping.get_by_label(re.compile("^Evidence")).first.fill("Tier-1 supplier list of 1 June.")
    page.get_by_role("button", name="Save score").click()
    expect(page.locator("h1", has_text="/ 100")).to_be_visible()
    page.get_by_role("link", name="iFlytek Co., Ltd.").click()
    expect(page.get_by_text(re.compile("consider moving the stage to"))).to_be_visible()
    page.get_by_role("tab", name="Move").click()
    stage_form = page.locator("form[action$='/stage']")
    stage_form.get_by_label("Move to").select_option("value_chain_mapped")
    stage_form.get_by_label("Note").fill("Mapping of direct suppliers received.")
    page.get_by_role("button", name="Move stage").click()
    expect(page.get_by_text("Stage is now Value chain mapped.")).to_be_visible()
    expect(page.locator("ol.timeline")).to_contain_text("Acknowledged → Value chain mapped")
    page.get_by_role("tab", name="Score").click()
    expect(page.locator("svg.score-chart")).to_be_visible()
    page.shot("engagement-with-score")


def test_4_import_holdings_and_engage_flagged_companies(page, tmp_path):
    holdings = tmp_path / "solar-fund.csv"
    holdings.write_text(
        # dated today, so that it is the fund's latest snapshot whatever day the demo data was seeded
        f"Example Solar Fund\nFund Holdings as of,\"{dt.date.today():%b %d, %Y}\"\n\n"
        "Ticker,Name,Sector,Asset Class,Market Value,Weight (%),Quantity,Location,Exchange\n"
        "\"688303\",\"Xinjiang Daqo New Energy Co Ltd A\",\"Energy\",\"Equity\",\"2,500,000.00\",\"2.50\",\"100,000\",\"China\",\"Shanghai Stock Exchange\"\n"
        "\"002415\",\"Hangzhou Hikvision Digital Technology Ltd A\",\"IT\",\"Equity\",\"1,000,000.00\",\"1.00\",\"200,000\",\"China\",\"Shenzhen Stock Exchange\"\n"
        "\"USD\",\"USD CASH\",\"Cash\",\"Cash\",\"50,000.00\",\"0.05\",\"50,000\",\"United States\",\"-\"\n")
    sign_in(page, "analyst@example.org")
    page.get_by_role("link", name="Holdings").click()
    page.get_by_role("link", name="Import holdings").click()
    page.get_by_label("Fund").select_option(label="Demo Global Equity Fund")
    page.get_by_label("Holdings file (CSV or XLSX)").set_input_files(str(holdings))
    page.get_by_label("Partial file: only some of the holdings are listed").check()  # two holdings of a whole fund
    page.get_by_role("button", name="Check the file").click()
    expect(page.get_by_text("1 Cash")).to_be_visible()
    page.shot("import-preview")
    page.get_by_role("button", name="Import 2 holdings").click()
    expect(page.get_by_text(re.compile("2 rows → 2 positions"))).to_be_visible()
    page.get_by_role("link", name="Screening").click()
    page.get_by_role("button", name="Screen all companies against the lists").click()
    expect(page.get_by_text(re.compile(r"new risk flag"))).to_be_visible()
    section = page.locator("section", has=page.get_by_role("heading", name="Demo Global Equity Fund"))
    # the demo's value-chain map already made Daqo a company: the holding resolves to it
    expect(section).to_contain_text("Xinjiang Daqo New Energy Co. Ltd.")
    page.shot("screening")
    section.get_by_role("button", name=re.compile("Open engagements for the")).click()
    expect(page.get_by_text(re.compile(r"engagement\(s\) opened for flagged holdings"))).to_be_visible()
    expect(page.get_by_role("link", name="Xinjiang Daqo New Energy Co. Ltd.")).to_be_visible()


def test_5_download_the_monthly_export(page, tmp_path):
    sign_in(page, "viewer@example.org")
    page.get_by_role("link", name="Exports").click()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download").click()
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    assert path.name.startswith("engage-status-") and path.suffix == ".xlsx"
    from openpyxl import load_workbook

    book = load_workbook(path)
    assert book.sheetnames == ["Engagements", "Summary", "Activity"]
    sheet = book["Engagements"]
    assert sheet["A1"].value.startswith("Engage monthly status export, ") and "Filters: none" in sheet["A1"].value
    header = [c.value for c in sheet[2]]
    assert header[0] == "Company" and {"Days overdue", "Next step", "Latest note"} <= set(header)
    stages = {row[header.index("Stage at month end")] for row in sheet.iter_rows(min_row=3, values_only=True)}
    assert stages and not any("_" in stage for stage in stages)  # labels, not codes
    opened = [row[header.index("Opened")] for row in sheet.iter_rows(min_row=3)]
    assert {cell.number_format for cell in opened} == {"dd mmm yyyy"}


def test_6_a_viewer_sees_everything_and_can_change_nothing(page):
    sign_in(page, "viewer@example.org")
    pages = ["/", "/companies", "/engagements", "/reminders?who=all", "/holdings/funds", "/holdings/screening", "/exports"]
    page.goto("/engagements")
    pages.append(page.get_by_role("link", name="Hangzhou Hikvision Digital Technology Co., Ltd.").get_attribute("href"))
    page.goto(pages[-1])
    pages.append(page.locator("a[href^='/letters/']").first.get_attribute("href"))
    pages.append(page.locator("a[href^='/companies/']").first.get_attribute("href"))
    for url in pages:
        page.goto(url)
        forms = page.locator("form[method='post']")
        actions = [forms.nth(i).get_attribute("action") for i in range(forms.count())]
        # Saving a view of a list is a viewer's own menu, not a change to the data (README, Saved views).
        assert [a for a in actions if a != "/views"] == ["/auth/logout"], (url, actions)
        for text in ("New company", "Edit company", "Open engagement", "Import holdings", "New fund",
                     "Generate draft letter", "Score this response"):
            expect(page.get_by_role("link", name=text, exact=True)).to_have_count(0)
            expect(page.get_by_role("button", name=text, exact=True)).to_have_count(0)
        expect(page.get_by_text("Log an interaction", exact=True)).to_have_count(0)
    expect(page.get_by_role("link", name="Admin", exact=True)).to_have_count(0)
    page.shot("viewer-letter")


def test_7_admin_edits_a_template_with_preview_and_a_clear_error(page):
    page.expected_statuses.add(422)
    sign_in(page, "admin@example.org")
    page.get_by_role("link", name="Admin", exact=True).click()
    page.get_by_role("link", name="Letter templates").click()
    page.get_by_role("link", name="Follow-up letter").click()
    body = page.get_by_label("Body")
    original = body.input_value()
    body.fill(original + "\nPS: {{ company.nmae }}")
    expect(page.locator("#preview-error")).to_contain_text("company.nmae is not a variable letters can use")
    expect(page.locator("#preview-error")).to_contain_text("line")
    page.shot("editor-error")
    page.get_by_role("button", name="Save template").click()
    expect(page.locator("#body-error")).to_contain_text("company.nmae is not a variable letters can use")
    page.get_by_label("Body").fill(original + "\nPS: we would welcome a call with {{ company.name }}.")
    expect(page.locator("#preview-body")).to_contain_text("we would welcome a call with Example Holdings Ltd")
    page.get_by_label("Preview with").select_option(label="Alphabet Inc.")
    expect(page.locator("#preview-body")).to_contain_text("we would welcome a call with Alphabet Inc.")
    page.get_by_role("button", name="Save template").click()
    expect(page.get_by_text("Saved as version 2.")).to_be_visible()
    expect(page.get_by_role("link", name="Version 1")).to_be_visible()
    page.shot("editor-saved")
