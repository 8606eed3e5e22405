"""Saved views and narrow lists in a real Chromium (issue 17): filters apply on change, a view is saved,
opened from the menu and seen by a teammate; at 390 px no page scrolls sideways and rows are cards."""

import os
import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser
VIEW = "Open at collective escalation"


def shoot(page, name: str) -> None:
    page.shot(name)
    if os.environ.get("SHOTS_DIR"):
        page.screenshot(path=os.path.join(os.environ["SHOTS_DIR"], f"{name}.png"), full_page=True)


def no_sideways_scroll(page) -> None:
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"{page.url} is {width[0]} px wide in a {width[1]} px window"


def rows_fit(page) -> None:
    """Every list drawn as cards fits its box: nothing of a row is cut off at the right."""
    tables = page.evaluate("[...document.querySelectorAll('table.list-table')].map(t => [t.scrollWidth, t.clientWidth])")
    assert tables, f"{page.url} has no list drawn as cards"
    assert all(scroll <= client for scroll, client in tables), (page.url, tables)


def test_save_a_view_open_it_and_a_teammate_sees_it(page, browser, live_server):
    sign_in(page, "analyst@example.org")
    page.goto("/engagements")
    # Filters apply on change: no click on the Filter button.
    with page.expect_navigation():
        page.get_by_label("Stage").select_option("open")
    assert "stage=open" in page.url
    with page.expect_navigation():
        page.get_by_label("Escalation").select_option("collective")
    assert re.search(r"stage=open.*escalation=collective", page.url)
    expect(page.locator("summary", has_text="Filters")).to_be_hidden()  # wide: the panel has no handle
    rows = page.locator("table.list-table tbody tr")
    expect(rows.first).to_be_visible()
    shown = rows.count()

    page.locator("#views-menu > summary").click()
    menu = page.locator("#views-menu")
    menu.get_by_label("Save these filters as").fill(VIEW)
    menu.get_by_label("Share with the team").check()
    menu.get_by_role("button", name="Save this view").click()
    expect(page.get_by_text(f"View “{VIEW}” saved and shared with the team.")).to_be_visible()
    expect(page.locator("#views-menu .views-current")).to_have_text(VIEW)
    shoot(page, "views-engagements")

    page.goto("/engagements")
    expect(page.locator("#views-menu .views-current")).to_have_count(0)
    page.locator("#views-menu > summary").click()
    page.locator("#views-menu").get_by_role("link", name=VIEW).click()
    expect(page.locator("#views-menu .views-current")).to_have_text(VIEW)
    expect(page.get_by_label("Escalation")).to_have_value("collective")
    expect(rows).to_have_count(shown)
    page.locator("#views-menu > summary").click()
    shoot(page, "views-menu-open")
    page.keyboard.press("Escape")
    expect(page.locator("#views-menu")).not_to_have_attribute("open", "")
    expect(page.locator("#views-menu > summary")).to_be_focused()

    teammate = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 900})
    other = teammate.new_page()
    try:
        sign_in(other, "analyst2@example.org")
        other.goto("/engagements")
        other.locator("#views-menu > summary").click()
        team = other.locator("#views-menu li", has_text=VIEW)
        expect(team).to_contain_text("Sam Analyst")
        team.get_by_role("link", name=VIEW).click()
        expect(other.get_by_label("Stage")).to_have_value("open")
        expect(other.get_by_label("Escalation")).to_have_value("collective")
        other.goto("/views")
        expect(other.get_by_role("link", name=VIEW)).to_be_visible()
        expect(other.get_by_role("button", name=f"Delete {VIEW}")).to_have_count(0)
    finally:
        teammate.close()


def test_narrow_screens_fold_the_filters_and_show_rows_as_cards(page):
    sign_in(page, "analyst@example.org")
    page.set_viewport_size({"width": 390, "height": 844})
    for url in ("/", "/engagements", "/companies", "/engagements?stage=open&sort=score&dir=desc", "/views"):
        page.goto(url)
        no_sideways_scroll(page)
    for url in ("/engagements", "/companies", "/holdings/funds", "/lists/"):
        page.goto(url)
        rows_fit(page)
    for url, label in (("/engagements", "Company"), ("/companies", "ISIN")):
        page.goto(url)
        panel = page.locator("details.filter-panel")
        expect(panel).not_to_have_attribute("open", "")
        expect(page.get_by_label("Sector")).to_be_hidden()
        cell = page.locator(f"table.list-table tbody tr:first-child td[data-label='{label}']")
        before = cell.evaluate("td => getComputedStyle(td, '::before').content")
        assert before == f'"{label}"', before
        assert cell.evaluate("td => getComputedStyle(td).display") == "block"
        shoot(page, f"views-narrow-{url.strip('/')}")
        panel.locator("summary").click()
        expect(page.get_by_label("Sector")).to_be_visible()
        no_sideways_scroll(page)
        page.locator("#views-menu > summary").click()
        expect(page.locator("#views-menu").get_by_role("button", name="Save this view")).to_be_visible()
        no_sideways_scroll(page)
    # Filters still apply on change from the folded panel.
    with page.expect_navigation():
        page.get_by_label("Risk list").select_option(index=1)
    assert "source=" in page.url
    no_sideways_scroll(page)
    page.goto("/")
    shoot(page, "views-narrow-dashboard")
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, "admin@example.org")
    page.goto("/admin/users")
    rows_fit(page)
    no_sideways_scroll(page)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto("/companies")
    expect(page.get_by_label("Sector")).to_be_visible()
    shoot(page, "views-companies")
