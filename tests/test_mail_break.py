"""Letters by email broken on purpose: hostile input, careless users, a faulty mail server."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from engage import clock
from engage.companies import contacts
from engage.core import outbox as mail
from engage.extensions import db
from engage.letters import service
from engage.models import CompanyContact, Letter, LetterTemplate, OutboxEmail
from tests import factories
from tests.imap import free_port
from tests.test_letters_by_email import frozen, hikvision, mailbox, seeded, xuar  # noqa: F401 (fixtures)


def _drain():
    return mail.drain(clock.utcnow())


def test_a_contact_email_with_a_header_injection_is_refused(client, login_as, frozen):  # noqa: F811
    login_as("analyst")
    company = factories.company("Injected Co")
    db.session.commit()
    for bad in ("ir@injected.example\r\nBcc: victim@elsewhere.example", "ir@injected.example, other@x.example",
                '"a" <ir@injected.example>', "ir@injected.example\nBcc: x@y.example"):
        response = client.post(f"/companies/{company.id}/contacts/new", data={
            "name": "IR", "role": "investor_relations", "email": bad, "language": "en"})
        assert response.status_code == 422, bad
    assert db.session.scalar(sa.select(sa.func.count(CompanyContact.id))) == 0
    # a name with quotes, a comma and Chinese is kept as written; only the address goes in To
    response = client.post(f"/companies/{company.id}/contacts/new", data={
        "name": 'Wang, "Li" 王丽', "role": "investor_relations", "email": " IR@Injected.Example\n", "language": "en"})
    assert response.status_code == 302
    contact = db.session.scalar(sa.select(CompanyContact))
    assert (contact.name, contact.email) == ('Wang, "Li" 王丽', "ir@injected.example")


def test_a_subject_with_newlines_or_1000_characters_goes_out_as_one_safe_line(client, login_as, xuar, seeded, smtp,  # noqa: F811
                                                                              mailbox, frozen):
    analyst = login_as("analyst")
    engagement, ir = hikvision(xuar)
    letter = service.generate(engagement, seeded["initial"], analyst, ir)
    db.session.commit()
    response = client.post(f"/letters/{letter.id}/edit", data={
        "subject": "Our letter\r\nBcc: victim@elsewhere.example\r\n\r\nforged body", "body": letter.body})
    assert response.status_code in (302, 303, 422)
    db.session.expire_all()
    letter = db.session.get(Letter, letter.id)
    assert "\n" not in letter.subject and "\r" not in letter.subject
    too_long = client.post(f"/letters/{letter.id}/edit", data={"subject": "Long " * 200, "body": letter.body})
    assert too_long.status_code == 422 and "300" in too_long.get_data(as_text=True)
    letter.subject = "L" * 300  # the longest a letter's subject can be; the [ENG-n] prefix must still fit
    db.session.commit()
    assert client.post(f"/letters/{letter.id}/email", data={"to": [str(ir.id)]}).status_code == 302
    queued = db.session.scalar(sa.select(OutboxEmail))
    assert len(queued.subject) <= 300 and "\n" not in queued.subject
    assert _drain().sent == [queued.id]
    [(_sender, recipients)] = smtp.inbox.envelopes
    assert recipients == ["ir@hikvision.example"]


def test_an_email_that_cannot_be_built_fails_by_itself_and_the_next_one_is_sent(app, client, login_as, smtp, frozen):  # noqa: F811
    """A bad row (an invalid sender, a newline in a header) must not stop the drain for everyone."""
    bad_sender = mail.enqueue("ir@company.example", "Letter", "Text", sender="Stewardship team (no address)")
    bad_header = mail.enqueue("ir@company.example", "Letter", "Text")
    good = mail.enqueue("owner@fund.example", "Reminder", "Text")
    db.session.commit()
    db.session.execute(sa.update(OutboxEmail).where(OutboxEmail.id == bad_header.id)
                       .values(recipient="ir@company.example\r\nBcc: victim@elsewhere.example"))
    db.session.commit()
    result = _drain()
    assert result.sent == [good.id]
    assert sorted(result.failed) == sorted([bad_sender.id, bad_header.id])
    db.session.expire_all()
    login_as("admin")
    for email_id in (bad_sender.id, bad_header.id):
        row = db.session.get(OutboxEmail, email_id)
        assert row.status == "failed" and "cannot be sent as written" in row.last_error
        page = client.get(f"/admin/outbox/{email_id}")
        assert page.status_code == 200 and "cannot be built" in page.get_data(as_text=True)
        assert client.get(f"/admin/outbox/{email_id}.eml").status_code == 410
    [(_sender, recipients)] = smtp.inbox.envelopes
    assert recipients == ["owner@fund.example"]


def test_the_campaign_sender_address_is_checked_and_empty_means_the_default(client, login_as, xuar, seeded, app,  # noqa: F811
                                                                          mailbox, frozen):
    login_as("admin")
    form = {"name": xuar.name, "summary": xuar.summary or "", "letterhead": xuar.letterhead or "",
            "call_to_action": xuar.call_to_action or "", "response_window_days": str(xuar.response_window_days),
            "follow_up_interval_days": str(xuar.follow_up_interval_days),
            "follow_ups_before_escalation": str(xuar.follow_ups_before_escalation),
            "warn_days_before": str(xuar.warn_days_before), "cover_note": xuar.cover_note or ""}
    for bad in ("not an address", "a@b.example\r\nBcc: c@d.example", "a@b.example, c@d.example", '"x" <a@b.example>'):
        assert client.post(f"/admin/campaigns/{xuar.id}", data={**form, "sender_email": bad}).status_code == 422, bad
    assert client.post(f"/admin/campaigns/{xuar.id}", data={**form, "sender_email": ""}).status_code == 302
    db.session.expire_all()
    assert db.session.get(type(xuar), xuar.id).sender_email is None
    analyst = login_as("analyst")
    engagement, ir = hikvision(xuar)
    letter = service.generate(engagement, seeded["initial"], analyst, ir)
    db.session.commit()
    assert client.post(f"/letters/{letter.id}/email", data={"to": [str(ir.id)]}).status_code == 302
    queued = db.session.scalar(sa.select(OutboxEmail))
    assert mail.build_message(queued)["From"] == app.config["MAIL_DEFAULT_SENDER"]


def test_a_company_with_only_erased_or_inactive_contacts_cannot_be_emailed(client, login_as, xuar, seeded, frozen):  # noqa: F811
    analyst = login_as("analyst")
    engagement, ir = hikvision(xuar)
    letter = service.generate(engagement, seeded["initial"], analyst, ir)
    other = factories.contact(engagement.company, "Former IR", email="former@hikvision.example")
    db.session.flush()
    other.active = False
    db.session.commit()
    contacts.erase(ir)
    db.session.commit()
    page = client.get(f"/letters/{letter.id}").get_data(as_text=True)
    assert "has an email address" in page
    response = client.post(f"/letters/{letter.id}/email", data={"to": [str(ir.id), str(other.id)]})
    assert response.status_code == 422
    assert db.session.scalar(sa.select(sa.func.count(OutboxEmail.id))) == 0
    assert db.session.get(Letter, letter.id).status != "sent"


def test_erasing_a_contact_while_their_letter_email_is_queued_stops_it(client, login_as, xuar, seeded, smtp,  # noqa: F811
                                                                       mailbox, frozen):
    analyst = login_as("analyst")
    engagement, ir = hikvision(xuar)
    cc = factories.contact(engagement.company, "Company Secretary", email="secretary@hikvision.example")
    letter = service.generate(engagement, seeded["initial"], analyst, ir)
    dahua = factories.company("Dahua")
    other_letter = service.generate(factories.engagement(campaign=xuar, company=dahua), seeded["initial"], analyst,
                                    factories.contact(dahua, "Dahua IR", email="ir@dahua.example"))
    db.session.commit()
    assert client.post(f"/letters/{letter.id}/email", data={"to": [str(ir.id)], "cc": [str(cc.id)]}).status_code == 302
    assert client.post(f"/letters/{other_letter.id}/email",
                       data={"to": [str(other_letter.contact_id)]}).status_code == 302
    to_erase = db.session.get(CompanyContact, ir.id)
    contacts.erase(to_erase)
    db.session.commit()
    _drain()
    [(_sender, recipients), (_s2, others)] = smtp.inbox.envelopes
    assert recipients == ["secretary@hikvision.example"]  # the erased address is gone, the Cc still gets it
    assert others == ["ir@dahua.example"]
    only = factories.contact(engagement.company, "Sole IR", email="sole@hikvision.example")
    third = service.generate(engagement, seeded["initial"], analyst, only)
    db.session.commit()
    assert client.post(f"/letters/{third.id}/email", data={"to": [str(only.id)]}).status_code == 302
    contacts.erase(db.session.get(CompanyContact, only.id))
    db.session.commit()
    result = _drain()
    assert result.sent == []
    db.session.expire_all()
    stopped = db.session.scalar(sa.select(OutboxEmail).where(OutboxEmail.letter_id == third.id))
    assert stopped.status == "failed" and "erased" in stopped.last_error and "sole@" not in stopped.recipient
    with pytest.raises(ValueError, match="no recipient"):
        mail.retry(stopped, clock.utcnow())
    assert len(smtp.inbox.envelopes) == 2


def test_smtp_down_while_draining_keeps_the_letter_sent_and_the_email_retrying(client, login_as, xuar, seeded, app,  # noqa: F811
                                                                              mailbox, frozen):
    analyst = login_as("analyst")
    engagement, ir = hikvision(xuar)
    letter = service.generate(engagement, seeded["initial"], analyst, ir)
    db.session.commit()
    assert client.post(f"/letters/{letter.id}/email", data={"to": [str(ir.id)]}).status_code == 302
    app.config["MAIL_PORT"] = free_port()  # nothing listens there
    app.config["MAIL_TIMEOUT_SECONDS"] = 2
    result = _drain()
    assert result.retrying and not result.sent
    db.session.expire_all()
    email = db.session.scalar(sa.select(OutboxEmail))
    assert email.status == "queued" and "could not connect" in email.last_error
    assert db.session.get(Letter, letter.id).status == "sent"
    page = client.get(f"/letters/{letter.id}").get_data(as_text=True)
    assert "could not connect" in page and "Sent on" in page
    email.attempts = app.config["MAIL_MAX_ATTEMPTS"] - 1
    email.next_attempt_at = clock.utcnow()
    db.session.commit()
    assert _drain().failed == [email.id]
    login_as("admin")
    outbox_page = client.get("/admin/outbox?status=failed").get_data(as_text=True)
    assert "Retry" in outbox_page and "could not connect" in outbox_page


def test_a_language_version_with_a_sandbox_escape_is_refused(client, login_as, seeded):  # noqa: F811
    login_as("admin")
    template = seeded["initial"]
    for body in ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "{{ cycler.__init__.__globals__.os }}",
                 "{% for x in range(10**9) %}x{% endfor %}", "{{ config }}"):
        response = client.post(f"/letters/templates/{template.id}/languages/new",
                               data={"language": "zh-Hans", "subject": "主题", "body": body})
        assert response.status_code == 422, body
    assert db.session.get(LetterTemplate, template.id).languages == []
