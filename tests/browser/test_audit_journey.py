"""An admin reads the audit trail in Chromium: changes in words, filters, a refused range, a phone."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser
HIKVISION = "Hangzhou Hikvision Digital Technology Co., Ltd."


def test_admin_reads_the_audit_trail(page):
    sign_in(page, "admin@example.org")
    page.goto("/admin/")
    page.get_by_role("link", name="Audit trail").click()
    entries = page.locator("table.audit > tbody > tr")
    expect(entries.first).to_contain_text("admin@example.org — user: Signed in")

    page.get_by_label("Object type").select_option("Engagement")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"object_type=Engagement"))
    demo = entries.filter(has_text="seed").first
    expect(demo).to_contain_text(f"{HIKVISION} — engagement: created")
    demo.locator("details.audit-group > summary").click()
    expect(demo).to_contain_text("stage Identified → Mapping requested")  # labels, not codes
    expect(demo).not_to_contain_text("mapping_requested")
    page.shot("audit-engagements")

    page.set_viewport_size({"width": 390, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    page.shot("audit-narrow")
    page.set_viewport_size({"width": 1280, "height": 900})

    demo.get_by_role("link", name=HIKVISION).first.click()
    expect(page.get_by_role("heading", name=re.compile("Hikvision"))).to_be_visible()

    page.expected_statuses = {400}
    page.goto("/admin/audit?from=2026-06-10&to=2026-06-01")
    expect(page.get_by_role("alert")).to_contain_text("The range ends (01 Jun 2026) before it starts (10 Jun 2026)")
    expect(page.get_by_label("To (UTC)", exact=True)).to_have_attribute("aria-invalid", "true")
