"""The JSON API end to end: a token made on the account page in Chromium, the API reference page,
and scripts/api_example.py run against the live server with that token."""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "api_example.py"


@pytest.fixture(scope="module")
def own_engagement(live_app) -> tuple[int, int]:
    """A flagged company of this journey's own, with an engagement at Identified for the script to move
    (the demo's engagements belong to other journeys, which expect their stages)."""
    import sqlalchemy as sa

    from engage import audit, clock
    from engage.extensions import db
    from engage.models import Campaign, Company, Engagement, RiskFlag

    with live_app.app.app_context(), audit.acting_as("browser test"):
        xuar = db.session.scalar(sa.select(Campaign).where(Campaign.slug == "xuar"))
        company = Company(name="API Journey Optics Co. (fictional)", country="CN")
        company.risk_flags.append(RiskFlag(source="analyst", citation="browser test note"))
        engagement = Engagement(company=company, campaign=xuar, stage="identified",
                                opened_on=clock.today() - dt.timedelta(days=3))
        db.session.add(engagement)
        db.session.commit()
        ids = company.id, engagement.id
        db.session.remove()
    return ids


def test_token_from_the_account_page_drives_the_example_script(page, live_server, own_engagement):
    sign_in(page, "analyst@example.org")
    page.goto("/account")
    form = page.locator("form", has=page.get_by_role("button", name="Create token"))
    form.get_by_label("Name").fill("Example script")
    form.get_by_label("Scope").select_option("read_write")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-token").inner_text().strip()
    assert secret.startswith("engage_")
    expect(page.get_by_role("cell", name="Example script")).to_be_visible()
    page.shot("account-token")
    page.reload()  # sends the form again: no second token, and the secret is not shown again
    expect(page.locator("#new-token")).to_have_count(0)
    expect(page.get_by_role("cell", name="Example script")).to_have_count(1)

    page.goto("/api/v1/docs")  # Swagger UI from the app's own files, under the app's CSP
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    expect(page.get_by_text("/api/v1/engagements/{engagement_id}/stage").first).to_be_visible()
    page.shot("api-docs")

    month = (dt.date.today().replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")
    company_id, engagement_id = own_engagement
    run = subprocess.run([sys.executable, str(SCRIPT), "--url", live_server, "--month", month,
                          "--company", str(company_id)],
                         env={**os.environ, "ENGAGE_TOKEN": secret}, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "flagged: " in run.stderr
    assert f"moved: engagement {engagement_id} of API Journey Optics Co. (fictional) to mapping_requested" \
        in run.stderr, run.stderr
    assert run.stdout.startswith("Company,ISIN,")
    assert f"for {month}" in run.stderr

    page.goto("/account")
    expect(page.get_by_role("row", name="Example script")).not_to_contain_text("never")
    page.get_by_role("row", name="Example script").get_by_role("button", name="Revoke").click()
    expect(page.get_by_text("revoked", exact=False).first).to_be_visible()
    again = subprocess.run([sys.executable, str(SCRIPT), "--url", live_server, "--no-move"],
                           env={**os.environ, "ENGAGE_TOKEN": secret}, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "revoked" in again.stderr


def test_docs_page_loads_nothing_from_elsewhere_and_the_session_does_not_open_the_api(page, live_server):
    """Swagger UI runs from the app's own files (no CDN, no validator badge), and the signed-in
    browser's cookie does not make the API answer: a page script's fetch gets a 401."""
    sign_in(page, "analyst@example.org")
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto("/api/v1/docs")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    page.locator(".swagger-ui .opblock-summary").first.click()  # an operation opened: its details render
    expect(page.locator(".swagger-ui .opblock-body").first).to_be_visible()
    elsewhere = [url for url in requested if not (url.startswith(live_server) or url.startswith("data:"))]
    assert requested and elsewhere == [], elsewhere
    page.expected_statuses = {401}
    answer = page.evaluate("""async () => {
        const response = await fetch('/api/v1/engagements', {credentials: 'include'});
        return {status: response.status, cookie: response.headers.get('set-cookie')};
    }""")
    assert answer == {"status": 401, "cookie": None}
