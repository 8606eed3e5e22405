"""An analyst imports a solar-module maker's disclosed supplier list and tracks a listed supplier to its exit (issue 16).

The map is tests/fixtures/valuechain/solar_supplier_list.pdf: a supplier-list annex written for the
tests (see its README), with real listed names (Hoshine Silicon, Xinjiang Daqo, Xinjiang GCL,
Xinjiang East Hope: US Entity List, 86 FR 33119; Hoshine also under CBP's Withhold Release Order of
24 June 2021) among fictional ordinary suppliers; the lists are the seeded ones. The company is made
through the UI (the demo's solar maker already has a map), an engagement opened for it, and from
there everything is what the analyst clicks in a real Chromium: the import with its preview and a
double-clicked confirmation, the tab, an exit plan then an exit, and what they feed (stage hints,
the exit reminder, the score evidence, the monthly export's columns, the public report's
aggregates without counterparty names). The tab is also walked at a phone's width.
"""

import csv
import datetime as dt
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from engage.formatting import format_date
from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "valuechain"
PDF_MAP = FIXTURES / "solar_supplier_list.pdf"
MAKER = "Sunridge Photovoltaic Modules Co. (fictional)"
HOSHINE = "Hoshine Silicon Industry Co. Ltd."
DAQO = "Xinjiang Daqo New Energy Co. Ltd."
#: The flagged rows of the list: four listed names (and in the region), one in the region only.
FLAGGED = [HOSHINE, DAQO, "Xinjiang GCL New Energy Material Technology Co. Ltd.",
           "Xinjiang East Hope Nonferrous Metals Co. Ltd.", "Tarim Fictional Quartz Mining Co."]
COUNTERPARTIES = [row["Supplier"] for row in csv.DictReader((FIXTURES / "solar_supplier_list.csv").open(encoding="utf-8"))]
VC_COLUMNS = ("Relationships disclosed", "Relationships flagged", "Relationships exited", "Overdue exits")
REPORT = re.compile(r"(\d+) of (\d+) companies have disclosed a map of their value chain to us\. Their latest maps list "
                    r"(\d+) relationships \(suppliers, customers, joint ventures\); (\d+) were flagged, with a listed "
                    r"counterparty or in the Uyghur Region, and (\d+) of those (?:has|have) been exited\.")


def report_figures(page) -> tuple[int, ...]:
    """The public report of the XUAR campaign: its value-chain sentence's numbers (the page's main text)."""
    page.get_by_role("link", name="Exports").click()
    page.get_by_role("link", name="XUAR forced labour and surveillance", exact=True).click()  # not another journey's campaign
    text = page.locator("main").inner_text()
    found = REPORT.search(re.sub(r"\s+", " ", text))
    assert found, text
    return tuple(int(n) for n in found.groups())


def maps_of(live_app, name: str) -> list[int]:
    """The numbers of the maps recorded for the company named `name` (what the double click left behind)."""
    import sqlalchemy as sa

    from engage.extensions import db
    from engage.models import Company, ValueChainMap

    with live_app.app.app_context():
        numbers = db.session.scalars(sa.select(ValueChainMap.number).join(Company, Company.id == ValueChainMap.company_id)
                                     .where(Company.name == name).order_by(ValueChainMap.number)).all()
        db.session.remove()
    return list(numbers)


def fact(page, term: str):
    """The value of `term` in the page's first list of facts (dl.facts: dt, dd)."""
    return page.locator("dl.facts").first.locator(f"dt:text-is('{term}') + dd")


def no_horizontal_scroll(page) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], f"the page scrolls sideways: {widths}"


def test_10_import_a_supplier_list_and_track_a_listed_supplier_to_its_exit(page, live_app, tmp_path):
    today = dt.date.today()
    disclosed, target = today - dt.timedelta(days=10), today + dt.timedelta(days=90)
    page.set_default_timeout(10_000)
    sign_in(page, "analyst@example.org")
    before = report_figures(page)

    # a solar-module maker, new to Engage, and an engagement with it
    page.get_by_role("link", name="Companies").click()
    page.get_by_role("link", name="New company").click()
    page.get_by_label("Name", exact=True).fill(MAKER)
    page.get_by_label("Country", exact=True).fill("CN")
    page.get_by_label("Sector", exact=True).fill("Solar modules")
    page.get_by_role("button", name="Save company").click()
    page.get_by_role("link", name="Open engagement").click()
    page.locator("#campaign_id").select_option(label="XUAR forced labour and surveillance")  # another journey adds a campaign
    page.get_by_role("button", name="Open engagement").click()
    expect(page.get_by_text(f"Engagement with {MAKER} opened.")).to_be_visible()
    engagement_url = page.url
    expect(page.locator("div.hint-box")).to_have_count(0)

    # the import, from the engagement page: the PDF annex as the company published it
    page.get_by_role("link", name="Import a value-chain map").click()
    expect(page.get_by_text("This will be the company's first map.")).to_be_visible()
    page.get_by_label("Map file").set_input_files(str(PDF_MAP))
    page.get_by_label("Disclosed in").select_option(label="A reply to our letter")
    page.get_by_label("Where exactly").fill("Reply to our letter: supplier-list annex")
    page.get_by_label("Disclosed on").fill(disclosed.isoformat())
    page.get_by_role("button", name="Check the map").click()

    # the preview: nothing saved; the listed and in-region links first, each with its reasons
    expect(page.get_by_role("heading", name="solar_supplier_list.pdf")).to_be_visible()
    expect(page.get_by_text("Nothing is imported yet.")).to_be_visible()
    expect(fact(page, "Map")).to_have_text("the first map of the company")
    expect(fact(page, "Disclosed in")).to_have_text(
        re.compile(r"^Letter reply: Reply to our letter: supplier-list annex, \d{2} \w{3} \d{4}$"))
    expect(fact(page, "Relationships")).to_have_text("12: 12 resolved to existing companies, 0 new")  # the demo's
    expect(fact(page, "Flagged")).to_have_text("5: 4 on a list, 5 in the Uyghur Region")
    rows = page.locator("#rows tbody tr")
    expect(rows).to_have_count(12)
    first_five = [rows.nth(i).locator("td").nth(1).inner_text() for i in range(5)]
    assert sorted(first_five) == sorted(FLAGGED), first_five
    for i in range(5, 12):
        expect(rows.nth(i).locator("td").last).to_have_text("none")
    hoshine = rows.filter(has_text=HOSHINE)
    expect(hoshine).to_have_class("flagged")
    expect(hoshine.locator("td").first).to_have_text("p. 2")  # the PDF's page is each row's source
    expect(hoshine).to_contain_text("Flagged: Uyghur Region")
    expect(hoshine).to_contain_text("Turpan")
    expect(hoshine).to_contain_text(re.compile(r"Flagged: .*Withhold Release Order", re.I))
    expect(rows.filter(has_text=DAQO)).to_contain_text(re.compile(r"Flagged: .*Entity List"))
    expect(rows.filter(has_text="Tarim Fictional Quartz")).to_contain_text("Flagged: Uyghur Region")
    expect(rows.filter(has_text="Tarim Fictional Quartz")).not_to_contain_text("List")
    page.shot("preview")
    # on a phone each row of the preview is a card: the reasons are on the screen, not off to the right
    page.set_viewport_size({"width": 390, "height": 844})
    no_horizontal_scroll(page)
    table = page.locator("#rows")
    widths = table.evaluate("t => [t.scrollWidth, t.clientWidth]")
    assert widths[0] <= widths[1], f"the preview's table scrolls sideways: {widths}"
    caption = page.locator("#rows caption").bounding_box()
    assert caption["width"] > 300 and caption["height"] < 40, caption  # one line, not a narrow column
    box = hoshine.locator("td").last.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    page.shot("preview-390")
    page.set_viewport_size({"width": 1280, "height": 900})

    # a double click on the confirmation (the browser's own, each click held as long as a person does): the map is
    # imported once. Whether the second click is sent depends on how fast the first import answers: when it is, the
    # browser shows the second click's answer, which waited for the first and says what it imported.
    confirmations: list[str] = []
    page.on("request", lambda r: confirmations.append(r.url) if r.method == "POST" and "/import/" in r.url else None)
    page.get_by_role("button", name="Import this map (12 relationships)").dblclick(delay=120)
    # (the first click's navigation is aborted by the second: wait on the URL, not on a navigation)
    expect(page).to_have_url(re.compile(r"/value-chain/engagements/\d+"), timeout=15_000)
    page.wait_for_load_state()
    assert len(confirmations) in (1, 2), confirmations
    expect(page.get_by_role("heading", name=f"Value chain of {MAKER}")).to_be_visible()
    status = page.get_by_role("status").filter(has_text=f"Map 1 of {MAKER} imported")
    if len(confirmations) == 2:
        status = status.filter(has_text="This map was confirmed already and imported once")
    expect(status).to_contain_text(
        f"Map 1 of {MAKER} imported from solar_supplier_list.pdf: 12 relationships, 12 resolved to existing "
        "companies, 0 new companies; 5 flagged (4 on a list, 5 in the Uyghur Region).")
    assert maps_of(live_app, MAKER) == [1]

    # the tab: the figures, then the flagged links first, each with its reasons
    expect(fact(page, "Relationships disclosed")).to_have_text("12")
    expect(fact(page, "By tier")).to_have_text("tier 1: 5 · tier 2: 4 · tier 3+: 3")
    expect(fact(page, "Flagged")).to_have_text("5 (4 on a list, 5 in the Uyghur Region)")
    expect(fact(page, "Exited")).to_have_text("0")
    links = page.locator("article.vc-link")
    expect(links).to_have_count(5)
    assert sorted(links.locator("h3").all_inner_texts()) == sorted(f"! {name}" for name in FLAGGED)
    flagged_top = links.first.bounding_box()["y"]
    others_top = page.get_by_role("heading", name=re.compile("^Other relationships")).bounding_box()["y"]
    assert flagged_top < others_top
    expect(page.locator("table.stack tbody tr")).to_have_count(7)
    expect(page.locator("figure.vc-network svg")).to_be_visible()
    page.shot("tab-1280")

    # the tab on a phone: no sideways scroll of the page; the drawing's frame within the screen, the drawing in it
    # kept at a readable size (its labels at least 8 px), scrolling sideways in its frame
    for width in (390, 320):  # a phone, and the narrowest still about
        page.set_viewport_size({"width": width, "height": 844})
        no_horizontal_scroll(page)
        box = page.locator("figure.vc-network .vc-network-frame").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, (width, box)
        label_px = page.locator("figure.vc-network g.vc-node text").last.bounding_box()["height"]
        assert label_px >= 8, (width, label_px)
        for link in links.all():
            card = link.bounding_box()
            assert card["x"] >= 0 and card["x"] + card["width"] <= width, (width, card)
        if width == 390:
            page.shot("tab-390")
    page.set_viewport_size({"width": 1280, "height": 900})

    # the engagement page suggests the next stage: value chain mapped
    page.goto(engagement_url)
    hint = page.locator("div.hint-box")
    expect(hint).to_contain_text("The value chain: map 1 recorded")
    expect(hint).to_contain_text("12 relationships. Consider moving the stage to Value chain mapped")
    expect(hint).not_to_contain_text("Disengaging")

    # an exit plan for Hoshine, with a target date
    page.get_by_role("link", name="Value chain: flagged links, status, network").click()
    card = page.locator("article.vc-link").filter(has=page.get_by_role("heading", name=HOSHINE))
    card.get_by_text(f"Change the status of {HOSHINE}").click()
    card.get_by_label("New status").select_option("exit_planned")
    card.get_by_label("Target date of the exit").fill(target.isoformat())
    card.get_by_role("button", name="Change status").click()
    expect(page.get_by_text(f"{HOSHINE}: the status is now exit planned (target {format_date(target)}).")).to_be_visible()
    card = page.locator("article.vc-link").filter(has=page.get_by_role("heading", name=HOSHINE))
    expect(card.locator("dd.vc-status")).to_have_text("Exit planned")
    expect(card).to_contain_text("exit by")

    # the engagement page now suggests disengaging; the reminder is on the Reminders page
    page.goto(engagement_url)
    expect(page.locator("div.hint-box")).to_contain_text(re.compile(
        rf"exit of {re.escape(HOSHINE)} planned on .* Consider moving the stage to Disengaging"))
    page.shot("engagement-hints")
    page.locator("div.hint-box").get_by_role("link", name="the Move tab").last.click()  # opens Move, Disengaging chosen
    expect(page.get_by_role("tab", name="Move")).to_have_attribute("aria-selected", "true")
    expect(page.locator("form[action$='/stage']").get_by_label("Move to")).to_have_value("disengaging")
    page.get_by_role("link", name="Reminders").click()
    reminder = page.get_by_role("row").filter(has_text=f"Exit of {HOSHINE} due")
    expect(reminder).to_have_count(1)
    expect(reminder).to_contain_text(MAKER)
    page.shot("reminders")
    reminder.get_by_role("link", name=HOSHINE).click()
    expect(page.get_by_role("heading", name=f"Value chain of {MAKER}")).to_be_visible()

    # later, the exit, with its evidence
    card = page.locator("article.vc-link").filter(has=page.get_by_role("heading", name=HOSHINE))
    card.get_by_text(f"Change the status of {HOSHINE}").click()
    expect(card.get_by_label("New status")).to_have_value("exited")  # the next step is proposed
    card.get_by_label("Evidence").fill("Supplier list 2027 without Hoshine; letter of the company: contract ended")
    card.get_by_role("button", name="Change status").click()
    expect(page.get_by_text(f"{HOSHINE}: the status is now exited.")).to_be_visible()
    card = page.locator("article.vc-link").filter(has=page.get_by_role("heading", name=HOSHINE))
    expect(card.locator("dd.vc-status")).to_have_text("Exited")
    expect(card).to_contain_text("Supplier list 2027 without Hoshine")
    expect(fact(page, "Exited")).to_have_text("1")
    page.shot("tab-after-exit")
    page.get_by_role("link", name="Reminders").click()
    expect(page.get_by_role("row").filter(has_text=f"Exit of {HOSHINE} due")).to_have_count(0)

    # the score form shows the figures beside the mapping and disengagement criteria
    page.goto(engagement_url)
    page.get_by_role("tab", name="Log").click()
    page.get_by_label("Kind").select_option("response")
    page.get_by_label("Direction").select_option("inbound")
    page.get_by_label("Subject").fill("Supplier list and exit from Hoshine")
    page.get_by_role("button", name="Log interaction").click()
    page.get_by_role("link", name="Score this response").first.click()
    evidence = page.locator("fieldset.criterion .value-chain-evidence")
    expect(evidence).to_have_count(2)
    for line in evidence.all():
        expect(line).to_contain_text("12 relationships, 5 flagged, 0 exit planned, 1 exited, 0 overdue")
    for fieldset in page.locator("fieldset.criterion").all():
        legend = fieldset.locator("legend").inner_text()
        shown = fieldset.locator(".value-chain-evidence").count()
        assert shown == (1 if legend.startswith(("Value-chain mapping", "Steps to disengage")) else 0), legend
    page.shot("score-form")

    # the monthly export: this company's row has the value-chain columns
    page.get_by_role("link", name="Exports").click()
    page.get_by_label("Month").fill(today.strftime("%Y-%m"))
    with page.expect_download() as download:
        page.get_by_role("button", name="Download").click()
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    from openpyxl import load_workbook

    sheet = load_workbook(path)["Engagements"]
    header = [c.value for c in sheet[2]]  # row 1 is the export's title
    row = next(r for r in sheet.iter_rows(min_row=3, values_only=True) if r[0] == MAKER)
    assert [row[header.index(c)] for c in VC_COLUMNS] == [12, 5, 1, 0]

    # the public report: the totals grew by this map, and no counterparty is named
    after = report_figures(page)
    assert [a - b for a, b in zip(after, before)] == [1, 1, 12, 5, 1], (before, after)
    body = page.locator("main").inner_text()
    for name in COUNTERPARTIES + ["Hoshine", "Daqo", "Tarim"]:
        assert name not in body, name
    page.shot("public-report")
