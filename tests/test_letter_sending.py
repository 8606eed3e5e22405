"""Exactly once: two simultaneous "Mark as sent" or bulk submissions record one result.

Each request runs in its own thread with its own app context, session and database connection;
a hook holds both at the first write until both have passed every check, so the race is real.
"""

import datetime as dt
import re
import threading

import pytest
import sqlalchemy as sa

from engage import clock
from engage.extensions import db
from engage.letters import service
from engage.models import Campaign, Interaction, Letter, LetterBatch, LetterTemplate, Reminder
from tests import factories
from tests.conftest import login


@pytest.fixture()
def seeded(runner):
    assert runner.invoke(args=["seed"]).exit_code == 0
    return {t.kind: t for t in db.session.scalars(sa.select(LetterTemplate))}


@pytest.fixture()
def xuar(seeded):
    return db.session.scalar(sa.select(Campaign).where(Campaign.slug == "xuar"))


def _clients(app, make_user, count=2):
    clients = []
    for _ in range(count):
        client = app.test_client()
        assert login(client, make_user("analyst").email).status_code == 302
        clients.append(client)
    return clients


def _together(app, statement_prefix: str, requests):
    """Run the requests in threads, each held before its first `statement_prefix` until all are there."""
    barrier = threading.Barrier(len(requests))
    waited = threading.local()

    def hold(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith(statement_prefix) and not getattr(waited, "done", False):
            waited.done = True
            try:
                barrier.wait(timeout=10)
            except threading.BrokenBarrierError:
                pass

    results = [None] * len(requests)

    def run(index, request):
        try:
            results[index] = request()
        except Exception as exc:  # noqa: BLE001 (shown by the test's assertion)
            results[index] = exc

    sa.event.listen(db.engine, "before_cursor_execute", hold)
    try:
        threads = [threading.Thread(target=run, args=(i, r)) for i, r in enumerate(requests)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", hold)
    return results


@pytest.mark.parametrize("kind", ["initial", "call_to_action"])  # with and without a cycle move
def test_two_simultaneous_mark_as_sent_record_one_interaction_and_one_reminder(app, seeded, xuar, make_user, kind):
    with clock.frozen(dt.datetime(2026, 6, 15, 9, 0)):
        engagement = factories.engagement(campaign=xuar, opened_on=dt.date(2026, 3, 1))
        letter = service.generate(engagement, seeded[kind], make_user("analyst"))
        db.session.commit()
        url, eid = f"/letters/{letter.id}/send", engagement.id
        clients = _clients(app, make_user)
        responses = _together(app, "UPDATE LETTERS", [
            lambda c=c: c.post(url, data={"sent_on": "2026-06-10", "channel": "post"}) for c in clients])
    statuses = sorted(str(getattr(r, "status_code", repr(r))) for r in responses)
    assert statuses == ["302", "409"], statuses
    refused = next(r for r in responses if r.status_code == 409).get_data(as_text=True)
    assert "already sent on 10 Jun 2026" in refused and "nothing was recorded twice" in refused
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count(Interaction.id)).where(Interaction.engagement_id == eid)) == 1
    assert db.session.scalar(sa.select(sa.func.count(Reminder.id)).where(Reminder.engagement_id == eid)) == 1
    assert db.session.get(Letter, letter.id).status == "sent"


def test_a_second_click_on_mark_as_sent_is_answered_with_a_message(client, login_as, seeded, xuar):
    analyst = login_as("analyst")
    with clock.frozen(dt.datetime(2026, 6, 15, 9, 0)):
        engagement = factories.engagement(campaign=xuar, opened_on=dt.date(2026, 3, 1))
        letter = service.generate(engagement, seeded["initial"], analyst)
        db.session.commit()
        assert client.post(f"/letters/{letter.id}/send", data={"sent_on": "2026-06-10", "channel": "post"}
                           ).status_code == 302
        again = client.post(f"/letters/{letter.id}/send", data={"sent_on": "2026-06-10", "channel": "post"})
    assert again.status_code == 409 and "already sent" in again.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count(Interaction.id))) == 1


def _bulk_form(client) -> dict:
    """The bulk form as the engagements list draws it, with its one-time token."""
    page = client.get("/engagements").get_data(as_text=True)
    token = re.search(r'name="token" type="hidden" value="([^"]+)"|id="token" name="token" type="hidden" '
                      r'value="([^"]+)"', page)
    assert token, "no token in the bulk form"
    return {"token": token.group(1) or token.group(2)}


def test_a_double_submitted_bulk_form_makes_one_batch(app, seeded, xuar, make_user):
    with clock.frozen(dt.datetime(2026, 6, 15, 9, 0)):
        engagements = [factories.engagement(campaign=xuar, opened_on=dt.date(2026, 3, 1)) for _ in range(5)]
        clients = _clients(app, make_user)
        form = _bulk_form(clients[0]) | {"template_id": seeded["initial"].id, "scope": "selected",
                                         "engagement_ids": [str(e.id) for e in engagements]}
        responses = _together(app, "INSERT INTO LETTER_BATCHES",
                              [lambda c=c: c.post("/letters/bulk", data=form) for c in clients])
        assert [r.status_code for r in responses] == [302, 302]
        assert responses[0].headers["Location"] == responses[1].headers["Location"]
        pages = [c.get(r.headers["Location"]).get_data(as_text=True) for c, r in zip(clients, responses)]
    assert sum("nothing was generated twice" in page for page in pages) == 1
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count(LetterBatch.id))) == 1
    assert db.session.scalar(sa.select(sa.func.count(Letter.id))) == 5


def test_a_bulk_form_submitted_again_later_finds_its_batch(client, login_as, seeded, xuar):
    login_as("analyst")
    engagements = [factories.engagement(campaign=xuar, opened_on=dt.date(2026, 3, 1)) for _ in range(3)]
    form = _bulk_form(client) | {"template_id": seeded["initial"].id, "scope": "selected",
                                 "engagement_ids": [str(e.id) for e in engagements]}
    first = client.post("/letters/bulk", data=form)
    second = client.post("/letters/bulk", data=form)
    assert first.headers["Location"] == second.headers["Location"]
    assert "nothing was generated twice" in client.get(second.headers["Location"]).get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count(Letter.id))) == 3
    fresh = _bulk_form(client) | {"template_id": seeded["initial"].id, "scope": "selected",
                                  "engagement_ids": [str(engagements[0].id)]}
    assert client.post("/letters/bulk", data=fresh).headers["Location"] != first.headers["Location"]
    assert db.session.scalar(sa.select(sa.func.count(LetterBatch.id))) == 2
    bad = client.post("/letters/bulk", data=form | {"token": "<script>"})
    assert bad.status_code == 302 and db.session.scalar(sa.select(sa.func.count(LetterBatch.id))) == 2
