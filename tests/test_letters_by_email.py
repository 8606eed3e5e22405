"""Contacts, addressees, language versions and letters sent by email through the outbox.

The email tests talk to a real SMTP server (aiosmtpd, tests/smtp.py); the double click is two
real requests in threads held together at their first write (tests/test_letter_sending.py).
"""

from __future__ import annotations

import datetime as dt
import io
import re

import pytest
import sqlalchemy as sa
from docx import Document
from docx.oxml.ns import qn
from pypdf import PdfReader

from engage import clock
from engage.extensions import db
from engage.letters import documents, service
from engage.models import (
    AuditEvent,
    Campaign,
    CompanyContact,
    Engagement,
    Interaction,
    Letter,
    LetterTemplate,
    LetterTemplateLanguage,
    OutboxEmail,
    Reminder,
)
from engage.core import outbox as mail
from tests import factories
from tests.test_letter_sending import _clients, _together

NOW = dt.datetime(2026, 6, 15, 9, 0)


@pytest.fixture()
def seeded(runner):
    assert runner.invoke(args=["seed"]).exit_code == 0
    return {t.kind: t for t in db.session.scalars(sa.select(LetterTemplate))}


@pytest.fixture()
def xuar(seeded):
    campaign = db.session.scalar(sa.select(Campaign).where(Campaign.slug == "xuar"))
    campaign.sender_email = "stewardship@fund.example"
    db.session.commit()
    return campaign


@pytest.fixture()
def frozen():
    with clock.frozen(NOW):
        yield NOW


@pytest.fixture()
def mailbox(app):
    app.config["ENGAGE_MAILBOX_ADDRESS"] = "engagement@fund.example"
    yield "engagement@fund.example"
    app.config["ENGAGE_MAILBOX_ADDRESS"] = "engagement@localhost"


def hikvision(xuar, **contact):
    company = factories.company("Hangzhou Hikvision Digital Technology Co., Ltd.", address="555 Qianmo Road\nHangzhou")
    contact.setdefault("name", "Investor Relations Office")
    ir = factories.contact(company, email="ir@hikvision.example", title="IR Director", **contact)
    engagement = factories.engagement(campaign=xuar, company=company, opened_on=dt.date(2026, 3, 1))
    return engagement, ir


# --- contacts -------------------------------------------------------------------------------

def test_analysts_add_edit_and_deactivate_contacts_audited_with_a_valid_email(client, login_as, frozen):
    login_as("analyst")
    company = factories.company("Contact Test Ltd")
    db.session.commit()
    bad = client.post(f"/companies/{company.id}/contacts/new", data={
        "name": "Pat Example", "role": "investor_relations", "email": "not an address", "language": "en"})
    assert bad.status_code == 422 and "Not a valid email address" in bad.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count(CompanyContact.id))) == 0
    assert client.post(f"/companies/{company.id}/contacts/new", data={
        "name": "Pat Example", "role": "investor_relations", "email": "IR@Contact.Example", "language": "zh-Hans",
        "title": "Head of IR", "source": "Annual report 2025, p. 3"}).status_code == 302
    contact = db.session.scalar(sa.select(CompanyContact))
    assert contact.email == "ir@contact.example" and contact.language == "zh-Hans"
    duplicate = client.post(f"/companies/{company.id}/contacts/new", data={
        "name": "Someone Else", "role": "other", "email": "ir@contact.example", "language": "en"})
    assert duplicate.status_code == 422 and "already the address of Pat Example" in duplicate.get_data(as_text=True)
    unknown_language = client.post(f"/companies/{company.id}/contacts/{contact.id}", data={
        "name": "Pat Example", "role": "investor_relations", "language": "xx"})
    assert unknown_language.status_code == 422
    assert client.post(f"/companies/{company.id}/contacts/{contact.id}", data={
        "name": "Pat Example", "role": "company_secretary", "email": "pat@contact.example",
        "language": "en"}).status_code == 302
    assert client.post(f"/companies/{company.id}/contacts/{contact.id}/active").status_code == 302
    db.session.expire_all()
    assert not db.session.get(CompanyContact, contact.id).active
    page = client.get(f"/companies/{company.id}").get_data(as_text=True)
    assert "Pat Example" in page and "(inactive)" in page
    actions = db.session.execute(sa.select(AuditEvent.action, AuditEvent.changes).where(
        AuditEvent.object_type == "CompanyContact").order_by(AuditEvent.id)).all()
    assert [a for a, _ in actions] == ["create", "update", "update"]
    assert actions[1].changes["role"] == ["investor_relations", "company_secretary"]
    assert actions[2].changes["active"] == [True, False]


def test_viewers_read_contacts_and_change_none(client, login_as):
    login_as("viewer")
    company = factories.company("Viewer Test Ltd")
    contact = factories.contact(company, "Read Only Person")
    db.session.commit()
    assert "Read Only Person" in client.get(f"/companies/{company.id}").get_data(as_text=True)
    assert client.post(f"/companies/{company.id}/contacts/new", data={"name": "X", "role": "other",
                                                                      "language": "en"}).status_code == 403
    assert client.post(f"/companies/{company.id}/contacts/{contact.id}/active").status_code == 403
    assert client.post(f"/companies/{company.id}/contacts/{contact.id}/erase").status_code == 403


def test_contacts_are_not_shown_without_sign_in(client):
    company = factories.company("Anonymous Test Ltd")
    factories.contact(company, "Hidden Person")
    db.session.commit()
    response = client.get(f"/companies/{company.id}")
    assert response.status_code == 302 and "Hidden Person" not in response.get_data(as_text=True)


# --- addressees and languages -----------------------------------------------------------------

def test_a_letter_is_addressed_to_the_chosen_contact_and_keeps_its_block(client, login_as, xuar, seeded, frozen):
    login_as("analyst")
    engagement, ir = hikvision(xuar, address="")
    other = factories.contact(engagement.company, "Board Office", role="company_secretary", address="1 Board Street")
    db.session.commit()
    page = client.get(f"/engagements/{engagement.id}").get_data(as_text=True)
    assert f'<option selected value="{ir.id}">' in page or f'value="{ir.id}"' in page
    response = client.post(f"/letters/generate/{engagement.id}",
                           data={"template_id": seeded["initial"].id, "contact_id": other.id})
    assert response.status_code == 302
    letter = db.session.scalar(sa.select(Letter))
    assert letter.contact_id == other.id
    assert letter.addressee_lines == ["Board Office", "Company secretary", engagement.company.name, "1 Board Street"]
    # the primary (investor relations) contact has no address of its own: the company's is used
    client.post(f"/letters/generate/{engagement.id}", data={"template_id": seeded["initial"].id})
    second = db.session.scalars(sa.select(Letter).order_by(Letter.id)).all()[1]
    assert second.contact_id == ir.id and second.addressee["address"] == "555 Qianmo Road\nHangzhou"
    # editing the contact later does not change the letter
    other.name = "Renamed Office"
    db.session.commit()
    assert "Board Office" in client.get(f"/letters/{letter.id}").get_data(as_text=True)
    text = PdfReader(io.BytesIO(documents.document(db.session.get(Letter, letter.id), "pdf"))).pages[0].extract_text()
    assert "Board Office" in text and "1 Board Street" in text


def test_a_letter_without_an_addressee_is_refused_naming_what_to_add(client, login_as, xuar, seeded, frozen):
    login_as("analyst")
    company = factories.company("Nobody Home Ltd")
    engagement = factories.engagement(campaign=xuar, company=company, opened_on=dt.date(2026, 3, 1),
                                      with_contact=False)
    response = client.post(f"/letters/generate/{engagement.id}", data={"template_id": seeded["initial"].id},
                           follow_redirects=True)
    assert "Nobody Home Ltd has no active contact to address the letter to; add one under Contacts" in \
        response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count(Letter.id))) == 0
    stranger = factories.contact(factories.company("Other Co"), "Not Theirs")
    db.session.commit()
    response = client.post(f"/letters/generate/{engagement.id}",
                           data={"template_id": seeded["initial"].id, "contact_id": stranger.id}, follow_redirects=True)
    assert "Choose an active contact of Nobody Home Ltd" in response.get_data(as_text=True)
    # a contact without any postal address (nor the company): the letter can go by email, not by post
    factories.contact(company, "Email Only", address="")
    db.session.commit()
    assert client.post(f"/letters/generate/{engagement.id}",
                       data={"template_id": seeded["initial"].id}).status_code == 302
    letter = db.session.scalar(sa.select(Letter))
    refused = client.post(f"/letters/{letter.id}/send", data={"sent_on": "2026-06-10", "channel": "post"})
    assert refused.status_code == 422
    assert "No postal address for Email Only: add one to the contact or to Nobody Home Ltd" in \
        refused.get_data(as_text=True)
    assert db.session.get(Letter, letter.id).status == "draft"
    assert db.session.scalar(sa.select(sa.func.count(Interaction.id))) == 0
    bulk = client.post("/letters/bulk", data={"template_id": seeded["initial"].id, "scope": "selected",
                                              "engagement_ids": [str(factories.engagement(
                                                  campaign=xuar, with_contact=False, opened_on=dt.date(2026, 3, 1)).id)]},
                       follow_redirects=True)
    assert "has no active contact to address the letter to" in bulk.get_data(as_text=True)


def test_an_admin_writes_a_chinese_version_used_for_a_chinese_reader(client, login_as, xuar, seeded, frozen):
    login_as("admin")
    template = seeded["initial"]
    broken = client.post(f"/letters/templates/{template.id}/languages/new", data={
        "language": "zh-Hans", "subject": "致{{ company.nmae }}", "body": "正文"})
    assert broken.status_code == 422 and "company.nmae is not a variable" in broken.get_data(as_text=True)
    assert client.post(f"/letters/templates/{template.id}/languages/new", data={
        "language": "zh-Hans", "subject": "关于维吾尔地区的投资者期望：致{{ company.name }}",
        "body": "{{ addressee.name }}：\n\n我们请海康威视绘制其价值链。\n\n此致\n敬礼"}).status_code == 302
    assert db.session.scalar(sa.select(LetterTemplateLanguage.language)) == "zh-Hans"
    engagement, ir = hikvision(xuar, language="zh-Hans", name="投资者关系部")
    english = factories.contact(engagement.company, "English Reader", role="other")
    db.session.commit()
    response = client.post(f"/letters/generate/{engagement.id}",
                           data={"template_id": template.id, "contact_id": ir.id}, follow_redirects=True)
    assert "no Chinese" not in response.get_data(as_text=True)
    letter = db.session.scalar(sa.select(Letter))
    assert letter.language == "zh-Hans" and letter.subject.startswith("关于维吾尔地区")
    assert "我们请海康威视绘制其价值链" in letter.body
    # PDF: the project's CJK font is embedded and the Chinese text reads back
    pdf = PdfReader(io.BytesIO(documents.document(letter, "pdf")))
    text = "".join(page.extract_text() for page in pdf.pages)
    assert "海康威视" in text and "投资者关系部" in text
    fonts = {str(font.get("/BaseFont")) for page in pdf.pages
             for font in (page["/Resources"].get("/Font") or {}).values() if hasattr(font, "get")}
    fonts |= {str(f.get_object().get("/BaseFont")) for page in pdf.pages
              for f in (page["/Resources"].get("/Font") or {}).values()}
    assert any("NotoSerifSC" in name or "Noto" in name for name in fonts), fonts
    # DOCX: the Chinese run reads back, with an East Asian font set
    docx = Document(io.BytesIO(documents.document(letter, "docx")))
    runs = [run for paragraph in docx.paragraphs for run in paragraph.runs if "海康威视" in run.text]
    assert runs, [p.text for p in docx.paragraphs]
    assert runs[0]._element.rPr.rFonts.get(qn("w:eastAsia")) == documents.CJK_FONT_NAME
    # a reader of a language without a version gets the default text, with a note
    japanese = factories.contact(engagement.company, "Japanese Reader", role="other", language="ja")
    db.session.commit()
    response = client.post(f"/letters/generate/{engagement.id}",
                           data={"template_id": template.id, "contact_id": japanese.id}, follow_redirects=True)
    assert "has no Japanese (日本語) version, so the letter was written from the default text" in \
        response.get_data(as_text=True)
    latest = db.session.scalars(sa.select(Letter).order_by(Letter.id.desc())).first()
    assert latest.language == "en" and latest.subject.startswith("Investor expectations")
    assert english.language == "en"


# --- letters by email -----------------------------------------------------------------------

def _drain():
    return mail.drain(clock.utcnow())


def test_send_by_email_goes_through_the_outbox_to_a_real_smtp_server(client, login_as, xuar, seeded, smtp, mailbox,
                                                                     frozen):
    analyst = login_as("analyst")
    engagement, ir = hikvision(xuar)
    cc = factories.contact(engagement.company, "Company Secretary", role="company_secretary",
                           email="secretary@hikvision.example")
    no_email = factories.contact(engagement.company, "Phone Only", role="other", email=None)
    elsewhere = factories.contact(factories.company("Dahua"), "Not Hikvision", email="ir@dahua.example")
    xuar.cover_note = "Dear {{ addressee.name }},\n\nPlease find our letter attached ({{ letter.reference }}).\n"
    db.session.commit()
    letter = service.generate(engagement, seeded["initial"], analyst, ir)
    db.session.commit()
    page = client.get(f"/letters/{letter.id}").get_data(as_text=True)
    assert "Send by email" in page and "Phone Only" not in page.split("send-by-email")[1].split("</details>")[0]
    for bad in ({"to": [str(elsewhere.id)]}, {"to": [str(no_email.id)]}, {}):
        refused = client.post(f"/letters/{letter.id}/email", data=bad)
        assert refused.status_code == 422, bad
    assert db.session.scalar(sa.select(sa.func.count(OutboxEmail.id))) == 0
    response = client.post(f"/letters/{letter.id}/email", data={"to": [str(ir.id)], "cc": [str(cc.id)]})
    assert response.status_code == 302
    db.session.expire_all()
    letter = db.session.get(Letter, letter.id)
    email = db.session.scalar(sa.select(OutboxEmail))
    assert letter.status == "sent" and letter.channel == "email" and letter.message_id == email.message_id
    assert email.engagement_id == engagement.id and email.letter_id == letter.id
    assert db.session.get(Engagement, engagement.id).stage == "mapping_requested"
    assert db.session.scalar(sa.select(sa.func.count(Reminder.id))) == 1
    interaction = db.session.scalar(sa.select(Interaction))
    assert interaction.summary == "Letter sent by email." and "ir@hikvision.example" in interaction.participants
    assert "Queued" in client.get(f"/letters/{letter.id}").get_data(as_text=True)

    assert _drain().sent == [email.id]
    [message] = smtp.inbox.messages
    [(envelope_from, recipients)] = smtp.inbox.envelopes
    assert sorted(recipients) == ["ir@hikvision.example", "secretary@hikvision.example"]
    assert message["From"] == "stewardship@fund.example" and envelope_from == "stewardship@fund.example"
    assert message["To"] == "ir@hikvision.example" and message["Cc"] == "secretary@hikvision.example"
    assert message["Reply-To"] == "engagement@fund.example"
    assert " ".join(str(message["Subject"]).split()) == " ".join(f"[ENG-{engagement.id}] {letter.subject}".split())
    assert message["Message-ID"] == letter.message_id
    assert "Please find our letter attached (ENG-" in smtp.inbox.body(message)
    [attachment] = [part for part in message.walk() if part.get_content_disposition() == "attachment"]
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename().endswith(".pdf")
    text = PdfReader(io.BytesIO(attachment.get_payload(decode=True))).pages[0].extract_text()
    assert "Investor Relations Office" in text and "Hikvision" in text
    db.session.expire_all()
    assert db.session.get(OutboxEmail, email.id).status == "sent"
    assert "Sent" in client.get(f"/letters/{letter.id}").get_data(as_text=True)


def test_two_simultaneous_send_by_email_clicks_queue_one_email(app, xuar, seeded, make_user, frozen):
    engagement, ir = hikvision(xuar)
    letter = service.generate(engagement, seeded["initial"], make_user("analyst"), ir)
    db.session.commit()
    documents.document(letter, "pdf")  # both requests find it cached; the race is at the claim
    url, lid, to = f"/letters/{letter.id}/email", letter.id, str(ir.id)
    clients = _clients(app, make_user)
    responses = _together(app, "UPDATE LETTERS", [lambda c=c: c.post(url, data={"to": [to]}) for c in clients])
    statuses = sorted(str(getattr(r, "status_code", repr(r))) for r in responses)
    assert statuses == ["302", "409"], statuses
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count(OutboxEmail.id))) == 1
    assert db.session.scalar(sa.select(sa.func.count(Interaction.id))) == 1
    assert db.session.scalar(sa.select(sa.func.count(Reminder.id))) == 1
    assert db.session.get(Letter, lid).message_id == db.session.scalar(sa.select(OutboxEmail.message_id))


def test_a_batch_of_drafts_is_emailed_in_one_action_counting_the_skipped(client, login_as, xuar, seeded, smtp,
                                                                         mailbox, frozen):
    analyst = login_as("analyst")
    engagements = []
    for i in range(3):
        company = factories.company(f"Batch Mail {i} Ltd")
        factories.contact(company, f"IR {i}", email=f"ir{i}@batch{i}.example")
        engagements.append(factories.engagement(campaign=xuar, company=company, opened_on=dt.date(2026, 3, 1)))
    postal_only = factories.company("Postal Only Ltd", address="1 Post Road")
    factories.contact(postal_only, "No Email", email=None)
    engagements.append(factories.engagement(campaign=xuar, company=postal_only, opened_on=dt.date(2026, 3, 1)))
    batch = service.generate_many(engagements, seeded["initial"], analyst)
    db.session.commit()
    page = client.get(f"/letters/batches/{batch.id}").get_data(as_text=True)
    token = re.search(r'name="form_token" type="hidden" value="([0-9a-f]{32})"', page).group(1)
    response = client.post(f"/letters/batches/{batch.id}/email", data={"form_token": token}, follow_redirects=True)
    text = response.get_data(as_text=True)
    assert "3 letters queued by email and recorded as sent. 1 skipped for lack of a contact with an email " \
           "address: Postal Only Ltd." in text
    again = client.post(f"/letters/batches/{batch.id}/email", data={"form_token": token}, follow_redirects=True)
    assert "Already saved" in again.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count(OutboxEmail.id))) == 3
    assert db.session.scalar(sa.select(sa.func.count(Interaction.id))) == 3
    # a fresh form: the sent letters are not emailed twice, the skipped one still waits
    page = client.get(f"/letters/batches/{batch.id}").get_data(as_text=True)
    token = re.search(r'name="form_token" type="hidden" value="([0-9a-f]{32})"', page).group(1)
    later = client.post(f"/letters/batches/{batch.id}/email", data={"form_token": token}, follow_redirects=True)
    assert "0 letters queued" in later.get_data(as_text=True) and "3 already sent before" in later.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count(OutboxEmail.id))) == 3
    assert len(_drain().sent) == 3
    subjects = sorted(m["Subject"] for m in smtp.inbox.messages)
    assert all(re.match(r"\[ENG-\d+\] Investor expectations", s) for s in subjects)
    assert sorted(r for _, rs in smtp.inbox.envelopes for r in rs) == \
        ["ir0@batch0.example", "ir1@batch1.example", "ir2@batch2.example"]


def test_the_file_backend_writes_eml_files_an_admin_reads_in_the_outbox(app, client, login_as, xuar, seeded, tmp_path,
                                                                        frozen):
    app.config.update(MAIL_BACKEND="file", MAIL_FILE_DIR=str(tmp_path / "mail"))
    try:
        admin = login_as("admin")
        engagement, ir = hikvision(xuar)
        letter = service.generate(engagement, seeded["initial"], admin, ir)
        db.session.commit()
        assert client.post(f"/letters/{letter.id}/email", data={"to": [str(ir.id)]}).status_code == 302
        email = db.session.scalar(sa.select(OutboxEmail))
        assert _drain().sent == [email.id]
        [path] = list((tmp_path / "mail").glob("*.eml"))
        assert f"Message-ID: {email.message_id}" in path.read_text()
        page = client.get(f"/admin/outbox/{email.id}").get_data(as_text=True)
        assert "ir@hikvision.example" in page and "application/pdf" in page and str(path) in page
        eml = client.get(f"/admin/outbox/{email.id}.eml")
        assert eml.status_code == 200 and email.message_id.encode() in eml.data
    finally:
        app.config.update(MAIL_BACKEND="smtp", MAIL_FILE_DIR=None)


# --- erasure --------------------------------------------------------------------------------

def test_an_admin_erases_a_contact_everywhere_and_the_audit_keeps_only_that(client, login_as, xuar, seeded, frozen):
    admin = login_as("admin")
    company = factories.company("Erasure Test Ltd", address="9 Company Street")
    engagement = factories.engagement(campaign=xuar, company=company, opened_on=dt.date(2026, 3, 1),
                                      with_contact=False)
    assert client.post(f"/companies/{company.id}/contacts/new", data={
        "name": "Jordan Privacy", "role": "investor_relations", "email": "jordan@erasure.example",
        "phone": "+1 555 0100", "address": "42 Private Lane", "language": "en"}).status_code == 302
    contact = db.session.scalar(sa.select(CompanyContact))
    assert client.post(f"/companies/{company.id}/contacts/{contact.id}", data={
        "name": "Jordan Privacy", "role": "investor_relations", "email": "jordan.p@erasure.example",
        "address": "42 Private Lane", "language": "en"}).status_code == 302
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(service, "_pdfs", lambda letters: {letter.id: b"%PDF-1.4 test" for letter in letters})
        letter = service.generate(engagement, seeded["initial"], admin, db.session.get(CompanyContact, contact.id))
        db.session.commit()
        assert client.post(f"/letters/{letter.id}/email", data={"to": [str(contact.id)]}).status_code == 302
    confirm = client.get(f"/companies/{company.id}/contacts/{contact.id}/erase")
    assert confirm.status_code == 200 and "cannot be undone" in confirm.get_data(as_text=True)
    unconfirmed = client.post(f"/companies/{company.id}/contacts/{contact.id}/erase")
    assert unconfirmed.status_code == 422 and db.session.get(CompanyContact, contact.id).erased_at is None
    assert client.post(f"/companies/{company.id}/contacts/{contact.id}/erase",
                       data={"confirm": "erase"}).status_code == 302
    db.session.expire_all()
    contact = db.session.get(CompanyContact, contact.id)
    assert contact.erased_at is not None and not contact.active
    assert (contact.name, contact.email, contact.phone, contact.address) == ("", None, "", "")
    letter = db.session.get(Letter, letter.id)
    assert letter.addressee["name"] == "erased contact" and letter.addressee["address"] == "erased contact"
    assert "Jordan" not in letter.body
    interaction = db.session.scalar(sa.select(Interaction))
    assert "jordan" not in interaction.participants.lower() and "erased contact" in interaction.participants
    email = db.session.scalar(sa.select(OutboxEmail))
    assert "jordan" not in (email.recipient + email.body_text).lower()
    events = db.session.execute(sa.select(AuditEvent.action, AuditEvent.summary, AuditEvent.changes)).all()
    dump = repr([tuple(e) for e in events]).lower()
    for secret in ("jordan", "privacy", "555 0100", "42 private lane"):
        assert secret not in dump, secret
    assert [e.action for e in events if e.action == "contact_erased"] == ["contact_erased"]
    page = client.get(f"/companies/{company.id}").get_data(as_text=True)
    assert "erased contact" in page and "Jordan" not in page
    assert "erased contact" in client.get(f"/letters/{letter.id}").get_data(as_text=True)
    again = client.post(f"/companies/{company.id}/contacts/{contact.id}/erase", data={"confirm": "erase"},
                        follow_redirects=True)
    assert "already erased" in again.get_data(as_text=True)


def test_only_admins_erase(client, login_as):
    login_as("analyst")
    company = factories.company("Analyst Erase Ltd")
    contact = factories.contact(company, "Kept Person")
    db.session.commit()
    assert client.post(f"/companies/{company.id}/contacts/{contact.id}/erase",
                       data={"confirm": "erase"}).status_code == 403
    assert db.session.get(CompanyContact, contact.id).erased_at is None
