"""The engagement mailbox broken on purpose: forged and odd mail, stale tabs, viewers, a huge triage list."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from engage import clock
from engage.extensions import db
from engage.models import Attachment, CompanyContact, InboundMessage, Interaction, OutboxEmail, Stage
from tests import factories
from tests.conftest import login
from tests.test_mailbox import IR, LETTER_ID, PDF, fetch, hikvision, interactions, mail, rows  # noqa: F401

pytestmark = pytest.mark.imap


def test_a_date_header_in_1970_or_2999_is_not_believed(app, mailbox, hikvision, runner):  # noqa: F811
    for year in (1970, 2999):
        mailbox.deliver(mail(f"Re: [ENG-{hikvision.id}] Reply dated {year}", f"Dated {year}.",
                             date=dt.datetime(year, 1, 1, 12, 0)))
    assert "2 filed" in fetch(runner).output
    for inbound in rows():
        assert inbound.sent_at is None and inbound.received_at is not None
    assert [i.occurred_on for i in interactions(hikvision.id)] == [clock.today(), clock.today()]


def test_in_reply_to_wins_over_a_subject_naming_another_engagement(app, mailbox, hikvision, runner):  # noqa: F811
    """Matching rule 1 (the thread) comes before rule 2 (the subject): the first rule that matches decides."""
    other = factories.engagement(company=hikvision.company, stage=Stage.MAPPING_REQUESTED.value)
    db.session.commit()
    mailbox.deliver(mail(f"Re: [ENG-{other.id}] Investor expectations", "Answer.", in_reply_to=LETTER_ID))
    fetch(runner)
    [inbound] = rows()
    assert inbound.status == "filed" and inbound.engagement_id == hikvision.id
    assert "replies to a letter emailed" in inbound.reason


def test_a_contact_naming_an_engagement_of_another_company_goes_to_triage(app, mailbox, hikvision, runner):  # noqa: F811
    """A From header is easily forged: a known contact of Hikvision cannot file on Dahua's engagement by subject."""
    dahua = factories.engagement(company=factories.company("Dahua"), stage=Stage.MAPPING_REQUESTED.value)
    db.session.commit()
    mailbox.deliver(mail(f"Re: [ENG-{dahua.id}] Our answer", "Please file me on Dahua."),
                    mail(f"Re: [ENG-{dahua.id}] From someone new", "Hello.", sender="new.person@dahua.example"))
    assert "1 filed, 1 to triage" in fetch(runner).output
    forged, unknown = rows()
    assert forged.status == "triage" and forged.engagement_id is None
    assert f"ENG-{dahua.id}" in forged.reason and "contact of Hikvision" in forged.reason
    assert unknown.status == "filed" and unknown.engagement_id == dahua.id  # an unknown sender: the reference decides
    assert interactions(dahua.id)[0].subject.endswith("From someone new")


def test_hostile_attachment_names_and_types_are_never_saved_as_given(app, mailbox, hikvision, runner):  # noqa: F811
    mailbox.deliver(mail(f"Re: [ENG-{hikvision.id}] Files", "See attached.", attachments=[
        ("../../etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n", "text", "plain"),
        ("setup.exe", b"MZ\x90\x00" + b"\x00" * 100, "application", "octet-stream"),
        ("report.html", b"<script>alert(1)</script>", "text", "html"),
        ("report.pdf", PDF, "application", "pdf"),
    ]))
    fetch(runner)
    [response] = interactions(hikvision.id)
    names = sorted(a.filename for a in response.attachments)
    assert "report.pdf" in names
    assert not any("/" in n or "\\" in n or n.startswith(".") for n in names)
    assert not any(n.endswith((".exe", ".html")) for n in names)
    for attachment in response.attachments:
        stored = (app.config["ATTACHMENT_DIR"] + "/" + attachment.stored_name)
        assert "/.." not in stored and attachment.stored_name.count("/") <= 2
    assert "setup.exe" in response.summary and "report.html" in response.summary  # listed as not saved
    assert db.session.scalar(sa.select(sa.func.count(Attachment.id))) == len(names)


def test_a_stale_tab_cannot_file_a_discarded_message_and_viewers_change_nothing(app, mailbox, runner, client,  # noqa: F811
                                                                               make_user, hikvision):
    mailbox.deliver(mail("Hello", "Who are you?", sender="stranger@nowhere.example"))
    fetch(runner)
    [inbound] = rows()
    viewer = make_user("viewer")
    login(client, viewer.email)
    assert client.post(f"/mailbox/triage/{inbound.id}/file", data={"engagement_id": hikvision.id}).status_code == 403
    assert client.post(f"/mailbox/triage/{inbound.id}/contact", data={
        "company_id": hikvision.company_id, "email": "stranger@nowhere.example", "role": "other",
        "form_token": "c" * 32}).status_code == 403
    assert client.post("/auth/logout").status_code == 302
    analyst = make_user("analyst")
    login(client, analyst.email)
    stale = client.get(f"/mailbox/triage/{inbound.id}").get_data(as_text=True)  # tab 1 open
    assert "Discard" in stale
    assert client.post(f"/mailbox/triage/{inbound.id}/discard").status_code == 303  # tab 2 discards
    late = client.post(f"/mailbox/triage/{inbound.id}/file", data={"engagement_id": hikvision.id},
                       follow_redirects=True)
    assert "already discarded" in late.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(InboundMessage, inbound.id).status == "discarded"
    assert interactions(hikvision.id) == []
    assert db.session.scalar(sa.select(sa.func.count(CompanyContact.id)).where(
        CompanyContact.email == "stranger@nowhere.example")) == 0


@pytest.mark.parametrize("total", [10_000])
def test_a_triage_page_of_10000_messages_is_paginated_without_n_plus_1(app, client, make_user, count_queries, total):
    engagements = [factories.engagement(company=factories.company(f"Company {i}")) for i in range(5)]
    db.session.flush()
    now = clock.utcnow()
    base = {"folder": "INBOX", "uidvalidity": 1, "from_name": "", "to_addresses": "", "cc_addresses": "",
            "sent_at": now, "received_at": now, "size_bytes": 100, "direction": "inbound", "reason": "no match",
            "snippet": "text", "raw_name": None, "created_at": now, "updated_at": now}
    db.session.execute(sa.insert(InboundMessage), [
        {**base, "message_key": f"k{i}", "message_id": f"<{i}@x.example>", "uid": i + 1,
         "from_address": f"sender{i}@x.example", "subject": f"Message {i}",
         "status": "filed" if i % 2 else "triage", "engagement_id": engagements[i % 5].id if i % 2 else None}
        for i in range(total)])
    db.session.commit()
    login(client, make_user("viewer").email)
    counts = {}
    for status in ("triage", "filed"):
        with count_queries() as counter:
            page = client.get(f"/mailbox/triage?status={status}")
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert html.count("sender") < 200  # one page, not ten thousand rows
        counts[status] = counter.count
    with count_queries() as counter:
        assert client.get("/mailbox/triage?status=filed&page=40").status_code == 200
    assert counter.count == counts["filed"]
    assert max(counts.values()) <= 12, counts  # the page's queries do not grow with its rows
