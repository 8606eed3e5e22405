"""Marking every unsent letter of a batch as sent (issue 17): one date and channel, the rules of
one letter, all the letters or none, letters already sent left alone, a double submit recorded once."""

from __future__ import annotations

import datetime as dt
import html as htmllib
import re

import pytest
import sqlalchemy as sa

from engage.extensions import db
from engage.letters import service
from engage.models import Campaign, Engagement, Interaction, Letter, LetterTemplate, Reminder
from tests import factories
from tests.conftest import PASSWORD, csrf_token_from


@pytest.fixture()
def seeded(runner):
    assert runner.invoke(args=["seed"]).exit_code == 0
    return {t.kind: t for t in db.session.scalars(sa.select(LetterTemplate))}


def make_batch(seeded, sender, *names: str, address: str | None = None):
    """A batch of initial letters, one per (new) company; `address` replaces their contact's postal address."""
    campaign = db.session.scalar(sa.select(Campaign).where(Campaign.slug == "xuar"))
    engagements = []
    for name in names:
        company = factories.company(name)
        if address is not None:
            factories.contact(company, address=address)
        engagements.append(factories.engagement(company=company, campaign=campaign, opened_on=dt.date(2026, 3, 1)))
    batch = service.generate_many(engagements, seeded["initial"], sender)
    db.session.commit()
    return batch


def text_of(page: str) -> str:
    return htmllib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def sent_token(page: str) -> str:
    form = page.split('id="batch-sent-title"')[1]
    return re.search(r'name="form_token" type="hidden" value="([0-9a-f]{32})"', form).group(1)


def recorded() -> tuple[int, int, int]:
    """(letters sent, letter interactions, reply reminders)."""
    db.session.expire_all()
    return (db.session.scalar(sa.select(sa.func.count(Letter.id)).where(Letter.status == "sent")),
            db.session.scalar(sa.select(sa.func.count(Interaction.id)).where(Interaction.kind == "letter")),
            db.session.scalar(sa.select(sa.func.count(Reminder.id)).where(Reminder.kind == "reply")))


def test_mark_all_sent_skips_the_sent_and_records_each_like_one_letter(client, login_as, seeded, frozen_today,
                                                                       count_queries):
    me = login_as("analyst")
    batch = make_batch(seeded, me, "Alpha Co", "Beta Co", "Gamma Co")
    first, *others = sorted(batch.letters, key=lambda letter: letter.id)
    assert client.post(f"/letters/{first.id}/send", data={"sent_on": "2026-06-01", "channel": "email"}).status_code == 302
    page = client.get(f"/letters/batches/{batch.id}").get_data(as_text=True)
    assert "Mark 2 letters as sent" in page and 'value="2026-06-15"' in page.split('id="batch-sent-title"')[1]

    response = client.post(f"/letters/batches/{batch.id}/sent",
                           data={"sent_on": "2026-06-12", "channel": "post", "form_token": sent_token(page)})
    assert response.status_code == 303 and response.location.endswith(f"/letters/batches/{batch.id}")
    page = text_of(client.get(f"/letters/batches/{batch.id}").get_data(as_text=True))
    assert ("2 letters marked as sent on 12 Jun 2026 by post; a reply reminder was set for each. "
            "1 letter already sent before was left as it was.") in page
    assert "Mark all as sent" not in page  # nothing left to mark
    db.session.expire_all()
    assert db.session.get(Letter, first.id).sent_on == dt.date(2026, 6, 1)  # left as it was
    for letter in (db.session.get(Letter, other.id) for other in others):
        assert (letter.status, letter.sent_on, letter.channel) == ("sent", dt.date(2026, 6, 12), "post")
        engagement = db.session.get(Engagement, letter.engagement_id)
        assert engagement.stage == "mapping_requested"
        [reminder] = [r for r in engagement.reminders if r.kind == "reply" and r.status == "open"]
        assert reminder.due_on == dt.date(2026, 6, 12) + dt.timedelta(days=engagement.campaign.response_window_days)
        assert [i.occurred_on for i in engagement.interactions if i.kind == "letter"] == [dt.date(2026, 6, 12)]
    assert recorded() == (3, 3, 3)

    # the page's queries do not grow with the batch
    small = make_batch(seeded, me, "Delta Co")
    large = make_batch(seeded, me, *(f"Large Co {n}" for n in range(6)))
    counts = []
    for item in (small, large):
        with count_queries() as counter:
            assert client.get(f"/letters/batches/{item.id}").status_code == 200
        counts.append(counter.count)
    assert counts[0] == counts[1]


def test_one_letter_that_cannot_go_stops_the_batch_and_is_named(client, login_as, seeded, frozen_today):
    me = login_as("analyst")
    batch = make_batch(seeded, me, "Alpha Co", "Nowhere Co", address="")
    alpha = next(letter for letter in batch.letters if letter.engagement.company.name == "Alpha Co")
    alpha.addressee = {**alpha.addressee, "address": "1 Example Road"}
    db.session.commit()
    before = recorded()

    refused = client.post(f"/letters/batches/{batch.id}/sent", data={"sent_on": "2026-06-12", "channel": "post"})
    page = text_of(refused.get_data(as_text=True))
    assert refused.status_code == 422 and "No letter was marked as sent." in page
    assert "Nowhere Co (letter #" in page and "No postal address" in page and "Alpha Co (letter #" not in page
    assert recorded() == before

    future = client.post(f"/letters/batches/{batch.id}/sent", data={"sent_on": "2026-06-16", "channel": "email"})
    assert future.status_code == 422 and "cannot be in the future" in text_of(future.get_data(as_text=True))
    early = client.post(f"/letters/batches/{batch.id}/sent", data={"sent_on": "2026-02-01", "channel": "email"})
    assert early.status_code == 422 and "opened on 01 Mar 2026" in text_of(early.get_data(as_text=True))
    bad = client.post(f"/letters/batches/{batch.id}/sent", data={"sent_on": "2026-06-12", "channel": "pigeon"})
    assert bad.status_code == 422 and recorded() == before

    closed = next(letter for letter in batch.letters if letter.engagement.company.name == "Nowhere Co").engagement
    closed.stage, closed.closed_on, closed.outcome = "closed", dt.date(2026, 6, 14), "dropped"
    db.session.commit()
    refused = client.post(f"/letters/batches/{batch.id}/sent", data={"sent_on": "2026-06-12", "channel": "email"})
    assert refused.status_code == 422 and "Nowhere Co (letter #" in text_of(refused.get_data(as_text=True))
    assert "The engagement is closed" in text_of(refused.get_data(as_text=True)) and recorded() == before

    # by email (no postal address needed) once the engagement is open again: both go
    closed.stage, closed.closed_on, closed.outcome = "identified", None, None
    db.session.commit()
    done = client.post(f"/letters/batches/{batch.id}/sent", data={"sent_on": "2026-06-12", "channel": "email"})
    assert done.status_code == 303 and recorded() == (2, 2, 2)


def test_a_double_submit_records_once(client, login_as, seeded, frozen_today):
    me = login_as("analyst")
    batch = make_batch(seeded, me, "Alpha Co", "Beta Co")
    token = sent_token(client.get(f"/letters/batches/{batch.id}").get_data(as_text=True))
    form = {"sent_on": "2026-06-12", "channel": "courier", "form_token": token}
    assert client.post(f"/letters/batches/{batch.id}/sent", data=form).status_code == 303
    client.get(f"/letters/batches/{batch.id}")
    again = client.post(f"/letters/batches/{batch.id}/sent", data=form | {"sent_on": "2026-06-13"})
    assert again.status_code == 303
    assert "sent twice" in client.get(f"/letters/batches/{batch.id}").get_data(as_text=True)
    assert recorded() == (2, 2, 2)
    assert {letter.sent_on for letter in db.session.scalars(sa.select(Letter))} == {dt.date(2026, 6, 12)}
    # the same request without a form token (an old page, a script): nothing left to mark, nothing twice
    plain = client.post(f"/letters/batches/{batch.id}/sent", data={"sent_on": "2026-06-13", "channel": "courier"})
    assert plain.status_code == 303
    assert "Nothing to mark" in client.get(f"/letters/batches/{batch.id}").get_data(as_text=True)
    assert recorded() == (2, 2, 2)


def test_viewers_cannot_and_the_form_needs_its_csrf_token(client, make_app, login_as, make_user, seeded,
                                                          frozen_today):
    analyst = make_user("analyst", email="sender@example.org")
    batch = make_batch(seeded, analyst, "Alpha Co")
    login_as("viewer")
    page = client.get(f"/letters/batches/{batch.id}").get_data(as_text=True)
    assert "Mark all as sent" not in page
    assert client.post(f"/letters/batches/{batch.id}/sent",
                       data={"sent_on": "2026-06-12", "channel": "email"}).status_code == 403
    protected = make_app(WTF_CSRF_ENABLED=True).test_client()
    token = csrf_token_from(protected.get("/auth/login").get_data(as_text=True))
    protected.post("/auth/login", data={"email": analyst.email, "password": PASSWORD, "csrf_token": token})
    assert protected.post(f"/letters/batches/{batch.id}/sent",
                          data={"sent_on": "2026-06-12", "channel": "email"}).status_code == 400
    assert recorded() == (0, 0, 0)
