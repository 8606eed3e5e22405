"""Every main page, with the demo data, passes axe-core's WCAG 2.1 A/AA rules (issue 17).

Signed in as the demo admin, analyst and viewer, at 1280 px and at 390 px, the test opens each
page the app's menus lead to (and the detail pages one click further: a company, an engagement,
its value-chain tab, a letter, a fund, a list version, a score, a template...), unfolds every
<details> panel so folded forms are checked too, and runs axe-core on it. Any serious or critical
violation fails, listing the page, rule, impact, selectors and help; all pages are scanned before
failing, so one run shows everything left to fix. A page a role may not open is scanned as the
refusal page it gets. The last test seeds a low-contrast element to prove the scan can fail.

Run just this file to re-check after a template or CSS change:
`pytest tests/browser/test_accessibility.py` (axe-core from `npm ci`, Chromium from Debian).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser.axe import WIDTHS, check, require_axe, violations
from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.axe]
ROLES = {"admin": "admin@example.org", "analyst": "analyst@example.org", "viewer": "viewer@example.org"}
HIKVISION = "Hangzhou Hikvision Digital Technology Co., Ltd."
SOLAR = "Brightpeak Solar Modules Co. (demo)"


def demo_pages(live_app) -> list[str]:
    """The URLs to scan, their ids read from the served demo database."""
    import sqlalchemy as sa

    from engage.extensions import db
    from engage.models import (AuditEvent, Campaign, Company, CompanyContact, Engagement, Fund, InboundMessage,
                               Interaction, Investor, Letter, LetterBatch, LetterTemplate, ListVersion, OutboxEmail,
                               Score, User)

    def first(query):
        return db.session.scalar(query.limit(1))

    with live_app.app.app_context():
        company = {name: first(sa.select(Company.id).where(Company.name == name)) for name in (HIKVISION, SOLAR)}
        engagement = {name: first(sa.select(Engagement.id).where(Engagement.company_id == company[name])
                                  .order_by(Engagement.id)) for name in company}
        campaign = first(sa.select(Campaign.id).where(Campaign.slug == "xuar"))
        letter = first(sa.select(Letter.id).where(Letter.engagement_id == engagement[HIKVISION]).order_by(Letter.id))
        template = first(sa.select(LetterTemplate.id).order_by(LetterTemplate.id))
        fund = first(sa.select(Fund.id).order_by(Fund.id))
        version = first(sa.select(ListVersion.id).order_by(ListVersion.id.desc()))
        score = first(sa.select(Score.id).order_by(Score.id))
        email = first(sa.select(OutboxEmail.id).order_by(OutboxEmail.id))
        user = first(sa.select(User.id).where(User.email == ROLES["analyst"]))
        contact = first(sa.select(CompanyContact.id).where(CompanyContact.company_id == company[HIKVISION])
                        .order_by(CompanyContact.id))
        interaction = first(sa.select(Interaction.id).where(Interaction.kind == "response").order_by(Interaction.id))
        investor = first(sa.select(Investor.id).order_by(Investor.id))
        batch = first(sa.select(LetterBatch.id).order_by(LetterBatch.id))
        inbound = first(sa.select(InboundMessage.id).order_by(InboundMessage.id))
        assert all([*company.values(), *engagement.values(), campaign, letter, template, fund, version, score, user,
                    contact, interaction, investor]), \
            "the demo data is missing something the scan opens"
        assert db.session.scalar(sa.select(sa.func.count(AuditEvent.id))) > 0
        db.session.remove()
    pages = [
        "/", "/account", f"/search?q={HIKVISION.split()[0]}",
        "/companies", "/companies?flagged=1", f"/companies/{company[HIKVISION]}", f"/companies/{company[SOLAR]}",
        "/companies/new", f"/companies/{company[HIKVISION]}/edit", f"/companies/{company[HIKVISION]}/contacts/new",
        f"/companies/{company[HIKVISION]}/contacts/{contact}", f"/companies/{company[HIKVISION]}/contacts/{contact}/erase",
        "/engagements", f"/engagements/{engagement[HIKVISION]}", f"/engagements/{engagement[SOLAR]}",
        f"/engagements/open/{company[SOLAR]}",
        f"/value-chain/engagements/{engagement[SOLAR]}", f"/value-chain/engagements/{engagement[SOLAR]}/maps/1",
        f"/value-chain/companies/{company[SOLAR]}/import",
        "/reminders", "/reminders?who=all", "/mailbox/triage",
        "/holdings/funds", f"/holdings/funds/{fund}", "/holdings/funds/new", "/holdings/import",
        "/holdings/screening", f"/holdings/screening/{fund}?section=official", f"/holdings/screening/{fund}?section=noted",
        "/holdings/screening/held-again", "/holdings/review",
        "/lists/", "/lists/import", "/lists/review", "/lists/review/decided", "/lists/versions",
        f"/lists/versions/{version}",
        f"/letters/{letter}", "/letters/templates", f"/letters/templates/{template}", "/letters/templates/new",
        f"/letters/templates/{template}/versions/1", f"/letters/templates/{template}/languages/new",
        f"/scoring/campaigns/{campaign}", f"/scoring/campaigns/{campaign}/rubrics", f"/scoring/scores/{score}",
        f"/scoring/interactions/{interaction}",
        "/exports", f"/exports/campaigns/{campaign}/report",
        "/admin/", "/admin/audit", "/admin/users", "/admin/users/new", f"/admin/users/{user}/edit",
        "/admin/campaigns", f"/admin/campaigns/{campaign}", "/admin/investors", f"/admin/investors/{investor}", "/admin/investors/new", "/admin/outbox",
        "/background/", "/no-such-page",
    ]
    # made by the other journeys when they run first (the demo has none of its own)
    pages += [f"/admin/outbox/{email}"] * bool(email) + [f"/letters/batches/{batch}"] * bool(batch)
    pages += [f"/mailbox/triage/{inbound}"] * bool(inbound)
    return pages


def scan(page, url: str, label: str) -> str:
    """Open `url`, unfold every folded panel and return axe's report for it ('' when clean)."""
    response = page.goto(url)
    assert response is not None and response.status in (200, 403, 404), (url, response and response.status)
    page.evaluate("() => document.querySelectorAll('details').forEach((d) => { d.open = true; })")
    return check(page, f"{label} {url}")


@pytest.mark.parametrize("width", list(WIDTHS))
@pytest.mark.parametrize("role", list(ROLES))
def test_every_page_passes_axe(browser, live_app, role, width):
    """All main pages for one role at one width; fails with the full list of what is wrong."""
    require_axe()
    w, h = WIDTHS[width]
    context = browser.new_context(base_url=live_app.url, viewport={"width": w, "height": h})
    page = context.new_page()
    page.expected_statuses = set()
    try:
        label = f"[{role} {w}px]"
        page.goto("/auth/login")
        reports = [check(page, f"{label} /auth/login (signed out)")]
        sign_in(page, ROLES[role])
        for url in demo_pages(live_app):
            reports.append(scan(page, url, label))
        if width == "phone":  # the folded main menu, opened
            page.goto("/")
            page.locator(".nav-toggle").click()
            reports.append(check(page, f"{label} / with the menu open"))
    finally:
        context.close()
    found = [report for report in reports if report]
    assert not found, "axe-core found serious or critical WCAG 2.1 A/AA violations:\n" + "\n".join(found)


def test_the_scan_reports_a_seeded_violation(page):
    """A light-grey-on-white line and a link inside a button are caught, named and located."""
    require_axe()
    sign_in(page, ROLES["analyst"])
    page.goto("/companies")
    assert violations(page) == []
    page.evaluate("""() => {
      const p = document.createElement("p");
      p.id = "seeded-low-contrast"; p.textContent = "Hard to read";
      p.style.cssText = "color: #c8c8c8; background: #ffffff;";
      document.querySelector("main").append(p);
      const b = document.createElement("button");
      b.id = "seeded-nested"; b.innerHTML = '<a href="/">inside</a>';
      document.querySelector("main").append(b);
    }""")
    found = {v["id"]: v for v in violations(page)}
    assert set(found) >= {"color-contrast", "nested-interactive"}, found
    assert found["color-contrast"]["impact"] == "serious"
    assert ["#seeded-low-contrast"] in [n["target"] for n in found["color-contrast"]["nodes"]]
    assert ["#seeded-nested"] in [n["target"] for n in found["nested-interactive"]["nodes"]]
    report = check(page, "seeded")
    assert "seeded: color-contrast (serious)" in report and "#seeded-low-contrast" in report
    assert "https://dequeuniversity.com/rules/axe/" in report


@pytest.mark.parametrize("required", [True, False])
def test_a_missing_axe_core_fails_when_required_and_skips_saying_why_otherwise(tmp_path, required):
    """Without node_modules/axe-core: a usage error under ENGAGE_REQUIRE_BROWSER=1, else a skip with the reason."""
    env = {**os.environ, "ENGAGE_AXE_JS": str(tmp_path / "axe.min.js")}
    env.pop("ENGAGE_REQUIRE_BROWSER", None)
    if required:
        env["ENGAGE_REQUIRE_BROWSER"] = "1"
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                          "tests/browser/test_accessibility.py", "-k", "seeded"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=300)
    output = run.stdout + run.stderr
    assert "axe-core is not installed" in output and "npm ci" in output, output
    if required:
        assert run.returncode == pytest.ExitCode.USAGE_ERROR, output
        assert "required" in output
    else:
        assert run.returncode == pytest.ExitCode.OK and "1 skipped" in output, output


def test_a_table_that_scrolls_sideways_is_a_focus_stop_only_while_it_does(page, live_app):
    """The score's table on a phone: reachable and scrollable by keyboard; back to normal when wide."""
    import sqlalchemy as sa

    from engage.extensions import db
    from engage.models import Score

    with live_app.app.app_context():
        score = db.session.scalar(sa.select(Score.id).order_by(Score.id).limit(1))
        db.session.remove()
    sign_in(page, ROLES["viewer"])
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"/scoring/scores/{score}")
    table = page.locator("main table[data-scroll-stop]").first
    assert table.get_attribute("tabindex") == "0"
    assert table.evaluate("(t) => t.scrollWidth > t.clientWidth && !t.querySelector('a, button, input, select, textarea')")
    table.focus()
    assert table.evaluate("(t) => document.activeElement === t && t.scrollLeft === 0")
    page.keyboard.press("ArrowRight")
    page.wait_for_function("(t) => t.scrollLeft > 0", arg=table.element_handle())
    page.set_viewport_size({"width": 1280, "height": 900})
    page.wait_for_function("() => !document.querySelector('main [data-scroll-stop]')")
    assert page.locator("main table[tabindex]").count() == 0
