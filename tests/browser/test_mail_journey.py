"""Email out and back in, clicked in a real Chromium: a letter emailed, the company's reply filed by itself.

The served app delivers its outbox as .eml files (the file mail backend) and reads a real Dovecot
mailbox; the company's reply is put there with IMAP APPEND, and `flask mail fetch` runs against
the same database as the server.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
from email.message import EmailMessage
from email.utils import format_datetime

import pytest
from playwright.sync_api import expect

from engage import clock
from engage.core import outbox
from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.imap]

HIKVISION = "Hangzhou Hikvision Digital Technology Co., Ltd."
MAILBOX_ADDRESS = "engage-mailbox@stewardship.example"


@pytest.fixture()
def served_mailbox(live_app, dovecot, tmp_path):
    """The served app reading an empty INBOX on Dovecot and writing its outgoing mail to tmp_path."""
    dovecot.empty_inbox()
    app = live_app.app
    overrides = {**dovecot.settings, "ENGAGE_MAILBOX_ADDRESS": MAILBOX_ADDRESS, "MAIL_BACKEND": "file",
                 "MAIL_FILE_DIR": str(tmp_path / "mail"), "ENGAGE_BASE_URL": live_app.url}
    previous = {key: app.config.get(key) for key in overrides}
    app.config.update(overrides)
    try:
        yield dovecot
    finally:
        app.config.update(previous)


def drain(app) -> None:
    with app.app_context():
        outbox.drain(clock.utcnow())


def fetch(app) -> str:
    result = app.test_cli_runner().invoke(args=["mail", "fetch"])
    assert result.exit_code == 0, result.output
    return result.output


def test_8_email_the_initial_letter_and_the_reply_files_itself(page, live_app, served_mailbox, tmp_path):
    app = live_app.app
    sign_in(page, "analyst@example.org")
    page.get_by_role("link", name="Engagements").click()
    page.get_by_role("link", name=HIKVISION).click()
    reference = "ENG-" + re.search(r"/engagements/(\d+)", page.url).group(1)

    page.get_by_role("tab", name="Letter").click()
    template = page.get_by_label("Template")
    template.select_option(template.locator("option", has_text="Initial expectations letter").first.get_attribute("value"))
    addressee = page.get_by_label("Addressed to")
    addressee.select_option(addressee.locator("option", has_text="Investor Relations Office").first.get_attribute("value"))
    page.get_by_role("button", name="Generate draft letter").click()
    expect(page.get_by_role("heading", name=re.compile("Investor expectations on the Uyghur Region"))).to_be_visible()
    email_form = page.locator("#send-by-email")
    expect(email_form.get_by_role("group", name="To").get_by_role("checkbox", name=re.compile("ir@hikvision.example"))).to_be_checked()
    expect(email_form).to_contain_text(f"[{reference}]")
    email_form.get_by_role("button", name="Send by email").click()
    expect(page.get_by_text("Letter queued for ir@hikvision.example and recorded as sent")).to_be_visible()
    expect(page.locator("#emails-title + table")).to_contain_text("Queued")

    drain(app)  # the outbox job: the letter leaves as an .eml file
    page.reload()
    expect(page.locator("#emails-title + table")).to_contain_text("Sent")
    # other journeys may have queued mail before (a screening's notice to the admins): take the letter's
    sent_all = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                for p in sorted((tmp_path / "mail").glob("*.eml"))]
    [sent] = [m for m in sent_all if f"[{reference}]" in m["Subject"]]
    assert sent["To"] == "ir@hikvision.example" and sent["Reply-To"] == MAILBOX_ADDRESS
    assert sent["Subject"].startswith(f"[{reference}] Investor expectations")

    page.get_by_role("link", name=HIKVISION).first.click()
    expect(page.locator("#reminders + ul")).to_contain_text("Reply due to the letter")

    reply = EmailMessage()  # the company answers from its mail client: a reply to the letter's Message-ID
    reply["From"] = "Investor Relations Office <ir@hikvision.example>"
    reply["To"] = MAILBOX_ADDRESS
    reply["Subject"] = "Re: " + sent["Subject"]
    reply["Date"] = format_datetime(clock.utcnow().replace(tzinfo=dt.UTC))
    reply["Message-ID"] = "<reply-to-the-letter.1@hikvision.example>"
    reply["In-Reply-To"] = sent["Message-ID"]
    reply["References"] = sent["Message-ID"]
    reply.set_content("We have started mapping our suppliers in the region and will share the map by June.\n\n"
                      "On Monday, Stewardship wrote:\n> Dear Board,\n> we ask you to map your value chain.\n")
    served_mailbox.deliver(reply.as_bytes())
    assert "1 filed, 0 to triage" in fetch(app)

    page.reload()
    timeline = page.locator("ol.timeline > li", has_text="We have started mapping our suppliers")
    expect(timeline).to_be_visible()
    expect(timeline).to_contain_text(re.compile(r"Response\s+inbound"))
    expect(timeline).to_contain_text("ir@hikvision.example")
    expect(timeline).not_to_contain_text("we ask you to map your value chain")  # the quoted letter is stripped
    expect(page.locator("#reminders + p.empty")).to_have_text("No open reminder.")  # the reply reminder closed
    page.shot("reply-filed")

    page.get_by_role("button", name="Sign out").click()
    sign_in(page, "admin@example.org")
    page.goto("/admin/outbox")
    notification = page.get_by_role("row", name=re.compile("Hangzhou Hikvision.* replied to"))
    expect(notification).to_contain_text("analyst@example.org")
    notification.get_by_role("link").click()
    expect(page.locator("body")).to_contain_text("We have started mapping our suppliers")
