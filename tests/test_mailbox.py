"""The engagement mailbox read from a real IMAP server (Dovecot): filing, matching, triage, hostile mail."""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
from email.message import EmailMessage
from email.utils import format_datetime

import pytest
import sqlalchemy as sa

from engage import clock
from engage.extensions import db
from engage.jobs import mail_fetch
from engage.mailbox import imap, service
from engage.models import (
    Attachment,
    AuditEvent,
    CompanyContact,
    InboundMessage,
    Interaction,
    OutboxEmail,
    Reminder,
    ReminderKind,
    ReminderStatus,
    Stage,
)
from engage.core.outbox import drain
from tests import factories
from tests.conftest import MAILBOX_ADDRESS, login

pytestmark = pytest.mark.imap

IR = "ir@hikvision.example"
LETTER_ID = "<letter-1.engage@stewardship.example>"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def mail(subject: str, body: str = "Thank you for your letter.", *, sender: str = f"Investor Relations <{IR}>",
         to: str = MAILBOX_ADDRESS, message_id: str | None = "auto", in_reply_to: str | None = None,
         charset: str = "utf-8", html: str | None = None, attachments=(), date: dt.datetime | None = None,
         headers: dict | None = None) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime((date or clock.utcnow()).replace(tzinfo=dt.UTC))
    if message_id == "auto":
        message_id = f"<{abs(hash((subject, body, sender)))}.{id(message)}@company.example>"
    if message_id:
        message["Message-ID"] = message_id
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    for name, value in (headers or {}).items():
        message[name] = value
    if html is not None:
        message.set_content(html, subtype="html", charset=charset)
    else:
        message.set_content(body, charset=charset)
    for filename, data, maintype, subtype in attachments:
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes()


@pytest.fixture()
def hikvision(app, make_user):
    """Hikvision's engagement (owned by an analyst) waiting for a reply to an emailed letter."""
    owner = make_user("analyst", email="owner@stewardship.example")
    company = factories.company("Hikvision")
    engagement = factories.engagement(company=company, owner=owner, stage=Stage.MAPPING_REQUESTED.value,
                                      with_contact=False)  # its one contact is the IR address below
    db.session.add(CompanyContact(company=company, name="IR team", email=IR))
    db.session.add(Reminder(engagement=engagement, due_on=clock.today() + dt.timedelta(days=20),
                            reason="Reply due", kind=ReminderKind.REPLY.value))
    # The letter as the outgoing side emails it: an outbox row carrying the engagement.
    db.session.add(OutboxEmail(recipient=IR, subject=f"[ENG-{engagement.id}] Investor expectations on the Uyghur Region",
                               body_text="Letter", message_id=LETTER_ID, status="sent", attempts=1,
                               engagement_id=engagement.id))
    db.session.commit()
    return engagement


def fetch(runner):
    result = runner.invoke(args=["mail", "fetch"])
    db.session.expire_all()
    return result


def rows():
    return db.session.scalars(sa.select(InboundMessage).order_by(InboundMessage.uid)).all()


def interactions(engagement_id=None):
    query = sa.select(Interaction).order_by(Interaction.id)
    if engagement_id is not None:
        query = query.where(Interaction.engagement_id == engagement_id)
    return db.session.scalars(query).all()


def test_reply_to_a_letter_is_filed_closes_the_reminder_and_notifies_the_owner(app, mailbox, hikvision, runner, smtp):
    mailbox.deliver(mail(f"Re: [ENG-{hikvision.id}] Investor expectations on the Uyghur Region",
                         "We have mapped our suppliers; see the attached report.\n\n"
                         "On Mon, 5 Jan 2026, Engage wrote:\n> Dear Board,\n> we ask you to map your value chain.\n",
                         in_reply_to=LETTER_ID,
                         attachments=[("Supplier map.pdf", PDF, "application", "pdf")]))
    result = fetch(runner)
    assert result.exit_code == 0, result.output
    assert "1 filed, 0 to triage" in result.output

    [inbound] = rows()
    assert inbound.status == "filed" and inbound.engagement_id == hikvision.id
    assert "replies to a letter emailed" in inbound.reason
    [response] = interactions(hikvision.id)
    assert (response.kind, response.direction) == ("response", "inbound")
    assert response.occurred_on == clock.today()
    assert response.summary.startswith("We have mapped our suppliers")
    assert "map your value chain" not in response.summary  # the quoted letter is stripped
    names = sorted(a.filename for a in response.attachments)
    assert names == ["Re: [ENG-1] Investor expectations on the Uyghur Region.eml".replace("1", str(hikvision.id)),
                     "Supplier map.pdf"]
    eml = next(a for a in response.attachments if a.filename.endswith(".eml"))
    assert b"In-Reply-To: " + LETTER_ID.encode() in (mailbox_dir(app) / eml.stored_name).read_bytes()
    reminder = db.session.scalar(sa.select(Reminder).where(Reminder.engagement_id == hikvision.id))
    assert reminder.status == ReminderStatus.DONE.value

    [note] = db.session.scalars(sa.select(OutboxEmail).where(OutboxEmail.recipient == "owner@stewardship.example")).all()
    assert note.subject == "Hikvision replied to Investor expectations on the Uyghur Region"
    drain(clock.utcnow())
    [delivered] = smtp.inbox.messages
    assert delivered["To"] == "owner@stewardship.example"
    assert f"/engagements/{hikvision.id}" in smtp.inbox.body(delivered)

    flags = mailbox.flags()
    assert all(imap.FILED_KEYWORD in f and imap.SEEN in f for f in flags.values())
    again = fetch(runner)  # a second fetch finds nothing new
    assert "0 filed, 0 to triage, 0 already in Engage" in again.output
    assert len(interactions()) == 1 and len(rows()) == 1


def mailbox_dir(app):
    from pathlib import Path

    return Path(app.config["ATTACHMENT_DIR"])


def test_subject_reference_files_on_that_engagement_and_a_closed_one_goes_to_triage(app, mailbox, runner):
    open_one = factories.engagement()
    closed = factories.engagement(stage=Stage.CLOSED.value, closed_on=dt.date(2026, 3, 1), outcome="dropped")
    mailbox.deliver(mail(f"Re: [ENG-{open_one.id}] Follow-up", sender="someone@unknown.example"),
                    mail(f"Re: [ENG-{closed.id}] Old letter", sender="someone@unknown.example"),
                    mail("[ENG-999999] No such engagement", sender="someone@unknown.example"))
    fetch(runner)
    filed, closed_row, missing = rows()
    assert filed.status == "filed" and filed.engagement_id == open_one.id
    assert "subject names ENG-" in filed.reason
    assert closed_row.status == "triage" and "was closed on 01 Mar 2026" in closed_row.reason
    assert missing.status == "triage" and "ENG-999999, which does not exist" in missing.reason


def test_sender_matches_a_contact_of_one_company_with_one_open_engagement(app, mailbox, runner):
    single = factories.engagement()
    db.session.add(CompanyContact(company=single.company, name="Ms Li", email="li@dahua.example"))
    double = factories.engagement()
    factories.engagement(company=double.company)
    db.session.add(CompanyContact(company=double.company, name="Mr Wu", email="wu@two.example"))
    db.session.commit()
    mailbox.deliver(mail("Our answer", sender="Li <LI@Dahua.example>"), mail("Hello", sender="wu@two.example"),
                    mail("Hello", sender="stranger@nowhere.example"))
    fetch(runner)
    first, second, third = rows()
    assert first.status == "filed" and first.engagement_id == single.id and "contact of" in first.reason
    assert second.status == "triage" and "2 open engagements" in second.reason
    assert third.status == "triage" and "not an active contact" in third.reason


def test_message_sent_by_an_analyst_with_the_mailbox_in_bcc_is_filed_as_outbound(app, mailbox, hikvision, runner):
    analyst = hikvision.owner
    mailbox.deliver(mail("Call next week", "Dear IR team, can we talk on Tuesday?", sender=f"Owner <{analyst.email.upper()}>",
                         to=f"IR <{IR}>"))  # the mailbox was in Bcc: no header names it
    fetch(runner)
    [inbound] = rows()
    assert inbound.status == "filed" and inbound.direction == "outbound"
    [email] = interactions(hikvision.id)
    assert (email.kind, email.direction) == ("email", "outbound")
    assert IR in email.participants
    reminder = db.session.scalar(sa.select(Reminder).where(Reminder.engagement_id == hikvision.id))
    assert reminder.status == ReminderStatus.OPEN.value  # our own email is not a reply
    assert not db.session.scalars(sa.select(OutboxEmail).where(OutboxEmail.recipient == analyst.email)).all()


def test_triage_page_and_its_actions(app, mailbox, hikvision, runner, client, make_user):
    mailbox.deliver(mail("<b>Question</b> about <script>alert(1)</script>", "Who do we write to?",
                         sender="Mr New <new.person@hikvision.example>"),
                    mail("Win a prize", "Spam", sender="spam@spam.example"))
    fetch(runner)
    question, spam = rows()
    assert question.status == spam.status == "triage"

    viewer = make_user("viewer")
    login(client, viewer.email)
    page = client.get("/mailbox/triage").get_data(as_text=True)
    assert "new.person@hikvision.example" in page and "&lt;script&gt;" in page and "<script>alert" not in page
    assert client.post(f"/mailbox/triage/{spam.id}/discard").status_code == 403
    assert client.post("/auth/logout").status_code == 302

    analyst = make_user("analyst")
    login(client, analyst.email)
    found = client.get(f"/mailbox/triage/{question.id}?cq=hikv").get_data(as_text=True)
    assert "Hikvision" in found and "Who do we write to?" in found
    token = "a" * 32
    form = {"company_id": hikvision.company_id, "email": "new.person@hikvision.example", "name": "Mr New",
            "role": "investor_relations", "form_token": token}
    assert client.post(f"/mailbox/triage/{question.id}/contact", data=form).status_code == 303
    assert client.post(f"/mailbox/triage/{question.id}/contact", data=form).status_code == 303  # double click
    contacts = db.session.scalars(sa.select(CompanyContact).where(
        CompanyContact.email == "new.person@hikvision.example")).all()
    assert len(contacts) == 1 and contacts[0].company_id == hikvision.company_id
    refused = client.post(f"/mailbox/triage/{question.id}/contact",
                          data={**form, "email": "someone.else@example.org", "form_token": "b" * 32})
    assert refused.status_code == 422  # only an address of the message

    suggested = client.get(f"/mailbox/triage/{question.id}").get_data(as_text=True)
    assert f'value="{hikvision.id}"' in suggested  # the new contact's company's open engagement is offered
    first = client.post(f"/mailbox/triage/{question.id}/file", data={"engagement_id": hikvision.id})
    assert first.status_code == 303 and first.headers["Location"].endswith(f"/engagements/{hikvision.id}")
    second = client.post(f"/mailbox/triage/{question.id}/file", data={"engagement_id": hikvision.id},
                         follow_redirects=True)
    assert "already filed" in second.get_data(as_text=True)
    db.session.expire_all()
    [response] = interactions(hikvision.id)
    assert response.kind == "response" and response.created_by_id == analyst.id
    assert db.session.get(InboundMessage, question.id).status == "filed"

    filed_tab = client.get("/mailbox/triage?status=filed").get_data(as_text=True)
    assert f"ENG-{hikvision.id} Hikvision" in filed_tab and "&lt;b&gt;Question" in filed_tab
    assert client.get("/mailbox/triage?status=bogus").status_code == 400

    assert client.post(f"/mailbox/triage/{spam.id}/discard").status_code == 303
    assert "already discarded" in client.post(f"/mailbox/triage/{spam.id}/discard",
                                              follow_redirects=True).get_data(as_text=True)
    actions = set(db.session.scalars(sa.select(AuditEvent.action)))
    assert {"mail_received", "mail_filed", "mail_discarded"} <= actions
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent).where(
        AuditEvent.object_type == "CompanyContact", AuditEvent.object_id == contacts[0].id,
        AuditEvent.action == "create")) == 1  # the contact added from triage, once despite the double click


def test_two_fetchers_at_once_file_each_message_once(app, mailbox, hikvision, database_url):
    messages = [mail(f"Re: [ENG-{hikvision.id}] Part {i}", f"Answer {i}") for i in range(8)]
    messages.append(mail("no id", message_id=None, sender="x@nowhere.example"))
    mailbox.deliver(*messages)
    from tests.mail_fetcher import run_fetch

    settings = {**mailbox.settings, "ENGAGE_MAILBOX_ADDRESS": MAILBOX_ADDRESS,
                "ATTACHMENT_DIR": app.config["ATTACHMENT_DIR"]}
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    processes = [context.Process(target=run_fetch, args=(database_url, settings, barrier, results)) for _ in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    outcomes = [results.get(timeout=5) for _ in range(2)]
    assert sum(filed for filed, *_ in outcomes) == 8
    assert sum(triaged for _, triaged, *_ in outcomes) == 1
    assert all(not errors for *_, errors in outcomes)
    db.session.expire_all()
    assert len(interactions(hikvision.id)) == 8 and len(rows()) == 9
    assert len(db.session.scalars(sa.select(Attachment)).all()) == 8  # one .eml each, no orphan rows
    assert len(list(mailbox_dir(app).iterdir())) == 9  # the losing fetcher's files were removed
    assert all(imap.FILED_KEYWORD in f for f in mailbox.flags().values())


def test_a_crash_between_commit_and_flag_files_the_message_once(app, mailbox, hikvision, runner):
    mailbox.deliver(mail(f"[ENG-{hikvision.id}] Answer", "Our answer"))
    with imap.connect(app.config) as box:  # a fetcher that commits and dies before flagging
        [uid] = box.unfiled()
        status, _ = service.receive(box, uid, 100, clock.utcnow())
    assert status == "filed"
    assert imap.FILED_KEYWORD not in mailbox.flags()[uid]
    result = fetch(runner)
    assert "0 filed, 0 to triage, 1 already in Engage" in result.output
    assert len(interactions()) == 1 and imap.FILED_KEYWORD in mailbox.flags()[uid]


def test_chinese_reply_in_gb18030_with_a_pdf_attachment(app, mailbox, hikvision, runner):
    mailbox.deliver(mail("回复：投资者期望函", "尊敬的投资者：\n我公司已完成供应链梳理，详见附件。\n\n> 原函内容\n",
                         in_reply_to=LETTER_ID, charset="gb18030",
                         attachments=[("回复函.pdf", PDF, "application", "pdf")]))
    fetch(runner)
    [inbound] = rows()
    assert inbound.status == "filed" and inbound.subject == "回复：投资者期望函"
    [response] = interactions(hikvision.id)
    assert "我公司已完成供应链梳理" in response.summary and "原函内容" not in response.summary
    assert "回复函.pdf" in [a.filename for a in response.attachments]
    note = db.session.scalar(sa.select(OutboxEmail).where(OutboxEmail.recipient == "owner@stewardship.example"))
    assert note.subject == "Hikvision replied to Investor expectations on the Uyghur Region"


def test_undeclared_big5_and_gb2312_labelled_gb18030_text_is_read(app, mailbox, hikvision, runner):
    big5 = (b"From: " + IR.encode() + b"\r\nTo: " + MAILBOX_ADDRESS.encode() + b"\r\nSubject: [ENG-"
            + str(hikvision.id).encode() + b"] reply\r\nMessage-ID: <big5@company.example>\r\n"
            + b"Content-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + "謝謝您的來信".encode("big5") + b"\r\n")
    gb = (b"From: " + IR.encode() + b"\r\nTo: " + MAILBOX_ADDRESS.encode() + b"\r\nSubject: [ENG-"
          + str(hikvision.id).encode() + b"] reply 2\r\nMessage-ID: <gb@company.example>\r\n"
          + b"Content-Type: text/plain; charset=gb2312\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
          + "供应链：镕".encode("gb18030") + b"\r\n")  # 镕 is GBK/GB18030, not GB2312
    mailbox.deliver(big5, gb)
    fetch(runner)
    summaries = [i.summary for i in interactions(hikvision.id)]
    assert summaries == ["謝謝您的來信", "供应链：镕"]


def test_html_only_message_with_a_script_and_a_remote_image_is_kept_as_text(app, mailbox, runner, client, login_as):
    html = ("<html><head><style>p{color:red}</style></head><body><p>Dear team,</p><p>We &amp; our suppliers "
            "comply.</p><script>document.location='http://evil.example/steal'</script>"
            "<img src=\"http://tracker.example/pixel.png\"><a href=\"javascript:alert(1)\">click</a></body></html>")
    mailbox.deliver(mail("HTML only", html=html, sender="unknown@company.example"))
    fetch(runner)
    [inbound] = rows()
    assert inbound.status == "triage"
    assert inbound.snippet.startswith("Dear team, We & our suppliers comply.")
    login_as("analyst")
    page = client.get(f"/mailbox/triage/{inbound.id}").get_data(as_text=True)
    assert "We &amp; our suppliers comply." in page
    for bad in ("evil.example", "tracker.example", "<script>document", "javascript:", "color:red"):
        assert bad not in page


def test_a_20_mb_attachment_goes_to_triage_without_its_attachments_and_the_next_message_is_filed(
        app, mailbox, hikvision, runner):
    big = bytes(range(256)) * (20 * 1024 * 1024 // 256)
    mailbox.deliver(mail(f"[ENG-{hikvision.id}] Our full report", in_reply_to=LETTER_ID,
                         attachments=[("report.pdf", b"%PDF-1.4\n" + big, "application", "pdf")]),
                    mail(f"[ENG-{hikvision.id}] Short answer", "Short answer"))
    result = fetch(runner)
    assert result.exit_code == 0, result.output
    large, small = rows()
    assert large.status == "triage" and "larger than MAIL_MAX_BYTES" in large.reason
    assert large.size_bytes > 20 * 1024 * 1024
    assert small.status == "filed"
    assert len(list(mailbox_dir(app).iterdir())) == 2  # two .eml files, the large one header only
    assert all(f.stat().st_size < 1024 * 1024 for f in mailbox_dir(app).iterdir())


def test_an_attachment_over_the_upload_limit_is_listed_not_saved(app, mailbox, hikvision, runner):
    app.config["ATTACHMENT_MAX_BYTES"] = 1024 * 1024
    try:
        mailbox.deliver(mail(f"[ENG-{hikvision.id}] Answer", "See attached", attachments=[
            ("big.pdf", b"%PDF-1.4\n" + b"0" * (2 * 1024 * 1024), "application", "pdf"),
            ("tool.exe", b"MZ", "application", "octet-stream")]))
        fetch(runner)
    finally:
        app.config["ATTACHMENT_MAX_BYTES"] = 10 * 1024 * 1024
    [response] = interactions(hikvision.id)
    assert [a.filename.endswith(".eml") for a in response.attachments] == [True]
    assert "big.pdf: larger than the 1 MB limit" in response.summary and "tool.exe" in response.summary


def test_broken_messages_go_to_triage_and_never_block_the_next_ones(app, mailbox, hikvision, runner):
    no_id = mail(f"[ENG-{hikvision.id}] No id", message_id=None)
    bad_mime = (b"From: " + IR.encode() + b"\r\nSubject: [ENG-" + str(hikvision.id).encode()
                + b"] broken\r\nMessage-ID: <broken@company.example>\r\nMIME-Version: 1.0\r\n"
                + b"Content-Type: multipart/mixed\r\n\r\nno boundary at all\r\n")
    undecodable = (b"From: " + IR.encode() + b"\r\nSubject: [ENG-" + str(hikvision.id).encode()
                   + b"] bytes\r\nMessage-ID: <bytes@company.example>\r\nContent-Type: text/plain; charset=utf-8\r\n"
                   + b"Content-Transfer-Encoding: 8bit\r\n\r\n\xff\xfe\x80\x80 broken\r\n")
    auto = mail(f"Automatic reply: [ENG-{hikvision.id}]", "I am out of office", headers={"Auto-Submitted": "auto-replied"})
    good = mail(f"[ENG-{hikvision.id}] Fine", "A fine answer")
    mailbox.deliver(no_id, bad_mime, undecodable, auto, good)
    result = fetch(runner)
    assert result.exit_code == 0, result.output
    reasons = [(r.status, r.reason) for r in rows()]
    assert reasons[0][0] == "triage" and "no Message-ID header" in reasons[0][1]
    assert reasons[1][0] == "triage" and "broken MIME structure" in reasons[1][1]
    assert reasons[2][0] == "triage" and "undecodable bytes" in reasons[2][1]
    assert reasons[3][0] == "triage" and "automatic reply" in reasons[3][1]
    assert reasons[4][0] == "filed"
    assert "would match engagement" in reasons[0][1]
    again = fetch(runner)
    assert "0 filed, 0 to triage" in again.output and len(rows()) == 5


def test_imap_server_down_is_a_clear_error_and_the_next_run_catches_up(app, mailbox, hikvision, runner, caplog):
    mailbox.deliver(mail(f"[ENG-{hikvision.id}] While down", "Written while the server was down"))
    mailbox.stop()
    try:
        result = runner.invoke(args=["mail", "fetch"])
        assert result.exit_code == 2
        assert "mailbox unavailable" in result.output and "Nothing was lost" in result.output
        with caplog.at_level(logging.ERROR, logger="engage.jobs"):
            assert mail_fetch(clock.utcnow()) == []
        assert "mail-fetch: mailbox unavailable" in caplog.text
    finally:
        mailbox.start()
    assert not rows()
    result = fetch(runner)
    assert "1 filed" in result.output and len(interactions(hikvision.id)) == 1


def test_wrong_password_is_a_clear_error(app, mailbox, runner):
    app.config["IMAP_PASSWORD"] = "wrong"
    result = runner.invoke(args=["mail", "fetch"])
    assert result.exit_code == 2 and "refused the login" in result.output


def test_a_filed_reply_never_puts_remote_content_or_html_on_the_engagement_page(app, mailbox, hikvision, runner,
                                                                                 client, login_as):
    mailbox.deliver(mail(f"Re: [ENG-{hikvision.id}] Q3/Q4 <b>report</b>",
                         "See ![chart](http://tracker.example/p.png) and <img src=\"http://tracker.example/q.png\">"
                         "<script>alert(1)</script>", in_reply_to=LETTER_ID))
    fetch(runner)
    [response] = interactions(hikvision.id)
    assert [a.filename for a in response.attachments] == [f"Re: [ENG-{hikvision.id}] Q3-Q4 <b>report<-b>.eml"]
    login_as("viewer")
    page = client.get(f"/engagements/{hikvision.id}").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)" in page and "<script>alert" not in page
    assert '<img src="http://tracker' not in page and "&lt;b&gt;report" in page


def test_filing_from_triage_on_a_closed_engagement_is_refused_and_the_message_stays(app, mailbox, runner, client,
                                                                                    login_as):
    closed = factories.engagement(stage=Stage.CLOSED.value, closed_on=dt.date(2026, 3, 1), outcome="dropped")
    mailbox.deliver(mail("Late answer", sender="late@company.example"))
    fetch(runner)
    [inbound] = rows()
    login_as("analyst")
    refused = client.post(f"/mailbox/triage/{inbound.id}/file", data={"engagement_id": closed.id})
    assert refused.status_code == 422 and "closed" in refused.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(InboundMessage, inbound.id).status == "triage" and not interactions()
    assert client.post(f"/mailbox/triage/{inbound.id}/file", data={"engagement_id": 999999}).status_code == 422
