"""The engagement page in a real Chromium (issue 17): the summary column beside the work tabs and
the timeline, the tabs by mouse and keyboard, the forms' defaults, errors listed at the top, a phone."""

import os
import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser
COMPANY = "Alphabet Inc."  # a demo engagement at Identified that no other journey changes


def shots(page, name: str) -> None:
    """The journey's screenshot, and a copy where SHOTS_DIR says (to look at them)."""
    page.shot(name)
    if os.environ.get("SHOTS_DIR"):
        page.screenshot(path=os.path.join(os.environ["SHOTS_DIR"], f"{name}.png"), full_page=True)


def no_sideways_scroll(page) -> None:
    width, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    wide = page.evaluate("""() => Array.from(document.querySelectorAll('body *'))
        .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 && e.getClientRects().length)
        .slice(0, 5).map(e => e.tagName + '.' + e.className + '#' + e.id + ' ' + Math.round(e.getBoundingClientRect().right))""")
    assert width <= inner, (width, inner, wide)


def test_the_engagement_page_tabs_defaults_errors_and_phone(page):
    page.expected_statuses.add(422)
    sign_in(page, "analyst@example.org")
    page.get_by_role("link", name="Engagements").click()
    page.get_by_role("link", name=COMPANY).click()
    url = page.url

    # the summary column: where it stands and what comes next
    summary = page.get_by_role("complementary", name="At a glance")
    for term in ("Stage", "Escalation", "Owner", "Next step", "Latest score", "Contacts"):
        expect(summary.locator("dt", has_text=re.compile(f"^{term}$"))).to_have_count(1)
    expect(summary.locator(".stage")).to_have_text("Identified")

    # the work tabs: ARIA tabs once the script runs, one panel shown, arrow keys move between them
    tabs = page.get_by_role("tablist")
    expect(tabs.get_by_role("tab")).to_have_text(["Log", "Letter", "Score", "Move", "Reminders"])
    log = tabs.get_by_role("tab", name="Log")
    expect(log).to_have_attribute("aria-selected", "true")
    expect(page.get_by_role("tabpanel")).to_have_count(1)
    expect(page.get_by_role("heading", name="Log an interaction")).to_be_visible()
    shots(page, "engagement")
    log.focus()
    page.keyboard.press("ArrowRight")
    letter = tabs.get_by_role("tab", name="Letter")
    expect(letter).to_be_focused()
    expect(letter).to_have_attribute("aria-selected", "true")
    expect(page.get_by_role("heading", name="Log an interaction")).to_be_hidden()
    expect(page.get_by_role("button", name="Generate draft letter")).to_be_visible()
    page.keyboard.press("End")
    expect(tabs.get_by_role("tab", name="Reminders")).to_be_focused()
    page.keyboard.press("ArrowRight")  # wraps round to the first
    expect(log).to_be_focused()
    expect(page).to_have_url(re.compile(r"\?tab=log$"))

    # Move: the next stage forward is proposed, not the first one back
    tabs.get_by_role("tab", name="Move").click()
    expect(page).to_have_url(re.compile(r"\?tab=move$"))
    stage_form = page.locator("form[action$='/stage']")
    expect(stage_form.get_by_label("Move to")).to_have_value("mapping_requested")
    expect(page.locator("form[action$='/escalation']").get_by_label("Move to")).to_have_value("follow_up")

    # a refused move: the errors at the top of the page, linked to the field, and the tab kept
    stage_form.get_by_label("Move to").select_option("closed")
    stage_form.get_by_role("button", name="Move stage").click()
    refusals = page.locator("#refusals")
    expect(refusals).to_be_visible()
    expect(refusals).to_contain_text("Closing needs an outcome")
    box = refusals.bounding_box()
    assert box is not None and box["y"] < 400, box  # near the top, not ~1,100 px down
    expect(tabs.get_by_role("tab", name="Move")).to_have_attribute("aria-selected", "true")
    expect(stage_form.get_by_label("Outcome")).to_be_visible()
    shots(page, "engagement-refused")
    refusals.get_by_role("link", name=re.compile("^Outcome:")).click()
    expect(page).to_have_url(re.compile(r"#stage-outcome$"))

    # Log: choosing the kind Response makes the direction Inbound (a note: internal)
    page.goto(url)
    form = page.locator("form[action$='/interactions']")
    expect(form.get_by_label("Direction")).to_have_value("outbound")
    form.get_by_label("Kind").select_option("response")
    expect(form.get_by_label("Direction")).to_have_value("inbound")
    form.get_by_label("Kind").select_option("note")
    expect(form.get_by_label("Direction")).to_have_value("internal")
    form.get_by_label("Kind").select_option("response")
    form.get_by_label("Subject").fill("Acknowledgement from investor relations")
    form.get_by_label("Summary").fill("They will reply in full:\n\n- supplier list\n- audit reports")
    form.get_by_label("Also move the stage to").select_option("mapping_requested")
    form.get_by_role("button", name="Log interaction").click()
    expect(page.get_by_text("Response logged.")).to_be_visible()
    first = page.locator("ol.timeline > li").first
    expect(first).to_contain_text("Acknowledgement from investor relations")
    expect(first).to_contain_text("inbound")
    expect(first).to_contain_text("Identified → Mapping requested")  # the move it made, in the same entry
    # a Markdown list inside an entry keeps list bullets, not the timeline's cards and dots
    item = first.locator(".prose-md li").first
    assert item.evaluate("e => getComputedStyle(e).borderTopStyle") == "none"
    assert item.evaluate("e => getComputedStyle(e, '::before').content") in ("none", "normal")
    shots(page, "engagement-logged")

    # a phone: one column, no sideways scroll of the page
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(url)
    no_sideways_scroll(page)
    tabs.get_by_role("tab", name="Score").click()
    no_sideways_scroll(page)
    tabs.get_by_role("tab", name="Letter").click()
    no_sideways_scroll(page)
    side = summary.bounding_box()
    work = page.locator("#work").bounding_box()
    assert work["y"] > side["y"] + side["height"] - 1  # stacked, not side by side
    shots(page, "engagement-narrow")

    # a long-running engagement (letters, scores, a chart, reminders) on the phone, every tab
    page.goto("/engagements")
    page.get_by_role("link", name="iFlytek Co., Ltd.").click()
    for name in ("Log", "Letter", "Score", "Move", "Reminders"):
        tabs.get_by_role("tab", name=name).click()
        expect(page.get_by_role("tabpanel")).to_be_visible()
        no_sideways_scroll(page)
    tabs.get_by_role("tab", name="Score").click()
    shots(page, "long-engagement-narrow")
    page.set_viewport_size({"width": 1280, "height": 900})
    tabs.get_by_role("tab", name="Letter").click()
    shots(page, "long-engagement")


def test_the_tabs_work_without_javascript(browser, live_server):
    """Each tab is a link the server answers with that tab open; a refused form comes back in its tab."""
    context = browser.new_context(base_url=live_server, java_script_enabled=False,
                                  viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        sign_in(page, "analyst@example.org")
        page.goto("/engagements")
        page.get_by_role("link", name=COMPANY).click()
        expect(page.get_by_role("tab")).to_have_count(0)  # links, not ARIA tabs, without the script
        page.locator("[data-tabs]").get_by_role("link", name="Move").click()
        expect(page).to_have_url(re.compile(r"\?tab=move#work$"))
        stage_form = page.locator("form[action$='/stage']")
        expect(stage_form).to_be_visible()
        expect(page.get_by_role("heading", name="Log an interaction")).to_be_hidden()
        stage_form.get_by_label("Date").fill("")
        stage_form.get_by_role("button", name="Move stage").click()
        expect(page.locator("#refusals")).to_contain_text("Date:")
        expect(stage_form).to_be_visible()  # the refused form's tab, drawn open by the server
        page.locator("[data-tabs]").get_by_role("link", name="Reminders").click()
        expect(page.get_by_role("heading", name="Reminders")).to_be_visible()
        expect(stage_form).to_be_hidden()
    finally:
        context.close()
