"""Search everywhere (issue 17) in a real Chromium: "/" from any page, Hikvision by its ISIN
(seeds/companies.yaml) and an engagement by a word of a demo interaction's summary; at 390 px
the box and the results fit the screen."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser


def test_10_search_from_the_header(page):
    sign_in(page, "viewer@example.org")
    box = page.get_by_role("searchbox", name="Search companies, engagements, contacts and interactions")
    page.locator("main").click()
    page.keyboard.press("/")
    expect(box).to_be_focused()
    page.keyboard.type("CNE100000PM8")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/search\?q=CNE100000PM8"))
    companies = page.get_by_role("region", name="Companies")
    expect(companies.get_by_text("identifier")).to_be_visible()
    page.shot("isin")
    companies.get_by_role("link", name="Hangzhou Hikvision Digital Technology Co., Ltd.").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Hikvision")

    # "/" typed in a field is a character, not a jump to the box.
    page.goto("/search?q=compliance")
    field = page.get_by_label("Companies (name, alias, ISIN, ticker, LEI), engagements, contacts and interactions")
    field.click()
    page.keyboard.press("End")
    page.keyboard.type("/x")
    expect(field).to_have_value("compliance/x")
    expect(box).not_to_be_focused()

    interactions = page.get_by_role("region", name="Interactions")
    expect(interactions.locator("mark").first).to_have_text(re.compile("compliance", re.I))
    link = interactions.get_by_role("link").first
    href = link.get_attribute("href")
    link.click()
    anchor = href.split("#", 1)[1]
    expect(page.locator(f"#{anchor}")).to_contain_text("compliance")


def test_11_search_at_390_px(page):
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, "analyst@example.org")
    page.goto("/search?q=Hikvision")
    expect(page.get_by_role("region", name="Companies")).to_be_visible()
    expect(page.get_by_role("searchbox", name="Search companies, engagements, contacts and interactions")).to_be_visible()
    page.shot("narrow")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
