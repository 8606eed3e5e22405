"""Reminders in a real Chromium (issue 17): the Today group, counts that say whose, a bulk snooze."""

import datetime as dt
import os
import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser


def test_tick_two_reminders_and_snooze_them_together(page):
    sign_in(page, "analyst@example.org")
    page.goto("/reminders?who=all")
    expect(page.get_by_role("heading", name=re.compile(r"^Today \(mine \d+ · team \d+\)"))).to_be_visible()
    expect(page.locator("#reminder-counts")).to_contain_text("Team")
    page.shot("reminders")
    boxes = page.locator("input[name='reminder_ids']")
    assert boxes.count() >= 2
    companies = [boxes.nth(i).locator("xpath=ancestor::tr/td[3]").inner_text() for i in range(2)]
    boxes.nth(0).check()
    boxes.nth(1).check()
    page.get_by_label("Do").select_option(label="Snooze until")
    until = dt.date.today() + dt.timedelta(days=400)
    page.locator("#bulk").get_by_label("Snooze until").fill(until.isoformat())
    page.get_by_role("button", name="Apply to the ticked reminders").click()
    expect(page.get_by_text(f"2 reminders snoozed until {until.strftime('%d %b %Y')}.")).to_be_visible()
    later = page.locator("h2#later + table")
    for company in companies:
        expect(later).to_contain_text(company)
    page.set_viewport_size({"width": 390, "height": 800})
    page.shot("reminders-narrow")
    if os.environ.get("SHOTS_DIR"):
        page.screenshot(path=os.path.join(os.environ["SHOTS_DIR"], "reminders-narrow.png"), full_page=True)
        page.set_viewport_size({"width": 1280, "height": 900})
        page.screenshot(path=os.path.join(os.environ["SHOTS_DIR"], "reminders.png"), full_page=True)
