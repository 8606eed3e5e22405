"""Exactly once for buttons a double click repeats: moves, escalations, logging contact, scoring.

Two requests run at the same time in two processes (see concurrent_requests.py), on SQLite and
on PostgreSQL: the same form sent twice is acted on once and the second is told so; two tabs
with the same engagement version cannot both apply (the UPDATE is conditional on the version).
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import re

import pytest
import sqlalchemy as sa

from engage import idempotency
from engage.extensions import db
from engage.models import Campaign, Engagement, EngagementEvent, FormSubmission, Interaction, Score
from tests import factories
from tests.conftest import PASSWORD

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def race(app, database_url: str, requests: list[tuple[str, str, dict, bool]], processes: bool = False) -> list[dict]:
    """Send the requests (email, url, data, multipart) together; their answers.

    In threads of the test's app, or (processes=True) one process each, like separate web workers.
    """
    from tests.concurrent_requests import post_in_process, post_in_threads

    if not processes:
        outcomes = post_in_threads(app, [(email, PASSWORD, url, data, multipart) for email, url, data, multipart
                                         in requests])
    else:
        context = multiprocessing.get_context("spawn")
        barrier, results = context.Barrier(len(requests)), context.Queue()
        workers = [context.Process(target=post_in_process,
                                   args=(database_url, email, PASSWORD, url, data, multipart, barrier, results))
                   for email, url, data, multipart in requests]
        for worker in workers:
            worker.start()
        outcomes = [results.get(timeout=90) for _ in workers]
        for worker in workers:
            worker.join(timeout=30)
            assert worker.exitcode == 0
    assert len(outcomes) == len(requests)
    assert all(outcome["held"] for outcome in outcomes), "a request never wrote: the race did not happen"
    return outcomes


def form_token_of(page: str, action: str) -> str:
    form = page.split(f'action="{action}"')[1].split("</form>")[0]
    return re.search(r'name="form_token" type="hidden" value="([0-9a-f]{32})"', form).group(1)


def fresh():
    db.session.expire_all()


@pytest.fixture()
def analyst(make_user):
    return make_user("analyst")


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
def test_a_stage_move_sent_twice_at_once_moves_once(app, client, analyst, database_url, processes):
    from tests.conftest import login

    engagement = factories.engagement()
    login(client, analyst.email)
    token = form_token_of(client.get(f"/engagements/{engagement.id}").get_data(as_text=True),
                          f"/engagements/{engagement.id}/stage")
    data = {"target": "mapping_requested", "occurred_on": "2026-01-20", "version": str(engagement.version),
            "form_token": token}
    outcomes = race(app, database_url, [(analyst.email, f"/engagements/{engagement.id}/stage", data, False)] * 2,
                    processes=processes)
    assert sorted(o["status"] for o in outcomes) == [302, 303]
    duplicate = next(o for o in outcomes if o["status"] == 303)
    assert idempotency.DUPLICATE_MESSAGE in duplicate["page"]
    assert duplicate["location"].endswith(f"/engagements/{engagement.id}")
    fresh()
    assert db.session.get(Engagement, engagement.id).stage == "mapping_requested"
    assert db.session.get(Engagement, engagement.id).version == 2
    assert db.session.scalar(sa.select(sa.func.count(EngagementEvent.id))) == 1


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
def test_two_tabs_with_the_same_version_cannot_both_escalate(app, analyst, make_user, database_url, processes):
    """Different forms (tokens), same version: the conditional UPDATE lets exactly one through."""
    other = make_user("analyst")
    engagement = factories.engagement()
    requests = [(user.email, f"/engagements/{engagement.id}/escalation",
                 {"target": target, "occurred_on": "2026-01-20", "version": str(engagement.version),
                  "form_token": idempotency.new_token()}, False)
                for user, target in ((analyst, "follow_up"), (other, "call_to_action"))]
    outcomes = race(app, database_url, requests, processes=processes)
    assert sorted(o["status"] for o in outcomes) == [302, 409]
    refused = next(o for o in outcomes if o["status"] == 409)
    assert "someone else changed this engagement" in refused["page"]
    assert "Escalation is now" not in refused["page"]  # no success announced for the refused one
    fresh()
    events = db.session.scalars(sa.select(EngagementEvent)).all()
    assert len(events) == 1
    assert db.session.get(Engagement, engagement.id).escalation == events[0].to_value
    assert db.session.get(Engagement, engagement.id).version == 2
    # the refused request's token was rolled back with it: that form can be sent again
    assert db.session.scalar(sa.select(sa.func.count(FormSubmission.id))) == 1


def test_logging_an_interaction_twice_at_once_logs_it_once(app, client, analyst, database_url):
    from tests.conftest import login

    engagement = factories.engagement()
    login(client, analyst.email)
    token = form_token_of(client.get(f"/engagements/{engagement.id}").get_data(as_text=True),
                          f"/engagements/{engagement.id}/interactions")
    data = {"kind": "call", "direction": "outbound", "occurred_on": "2026-01-20", "subject": "Call",
            "summary": "Spoke to the CFO.", "participants": "", "move_to": "", "version": str(engagement.version),
            "form_token": token}
    outcomes = race(app, database_url, [(analyst.email, f"/engagements/{engagement.id}/interactions", data, True)] * 2)
    assert sorted(o["status"] for o in outcomes) == [302, 303]
    assert idempotency.DUPLICATE_MESSAGE in next(o for o in outcomes if o["status"] == 303)["page"]
    fresh()
    assert db.session.scalar(sa.select(sa.func.count(Interaction.id))) == 1


def test_scoring_a_response_twice_at_once_scores_once(app, client, analyst, runner, database_url):
    from tests.conftest import login

    assert runner.invoke(args=["seed"]).exit_code == 0
    campaign = db.session.scalar(sa.select(Campaign).where(Campaign.slug == "xuar"))
    engagement = factories.engagement(campaign=campaign)
    reply = Interaction(engagement=engagement, kind="response", direction="inbound", occurred_on=dt.date(2026, 1, 20))
    db.session.add(reply)
    db.session.commit()
    login(client, analyst.email)
    page = client.get(f"/scoring/interactions/{reply.id}").get_data(as_text=True)
    token = re.search(r'name="form_token" type="hidden" value="([0-9a-f]{32})"', page).group(1)
    data = {"scored_on": "2026-01-21", "form_token": token,
            **{f"level-{c.id}": "1" for c in campaign.rubrics[-1].criteria}}
    outcomes = race(app, database_url, [(analyst.email, f"/scoring/interactions/{reply.id}", data, False)] * 2)
    assert sorted(o["status"] for o in outcomes) == [302, 303]
    fresh()
    score = db.session.scalar(sa.select(Score))
    assert db.session.scalar(sa.select(sa.func.count(Score.id))) == 1
    locations = {o["location"].split("?")[0].rsplit("/", 1)[-1] for o in outcomes}
    assert locations == {str(score.id)}  # the second click is taken to the score the first one made


def test_a_second_click_after_the_first_finished(client, login_as):
    """Not concurrent: the second submission arrives after the first committed."""
    login_as("analyst")
    engagement = factories.engagement()
    page = client.get(f"/engagements/{engagement.id}").get_data(as_text=True)
    token = form_token_of(page, f"/engagements/{engagement.id}/interactions")
    data = {"kind": "email", "direction": "outbound", "occurred_on": "2026-01-20", "subject": "Hello",
            "version": str(engagement.version), "form_token": token}
    first = client.post(f"/engagements/{engagement.id}/interactions", data=data)
    second = client.post(f"/engagements/{engagement.id}/interactions", data=data, follow_redirects=True)
    assert first.status_code == 302 and second.status_code == 200
    assert idempotency.DUPLICATE_MESSAGE in second.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count(Interaction.id))) == 1
    # a refused form keeps its token and can be sent again once corrected
    token = form_token_of(client.get(f"/engagements/{engagement.id}").get_data(as_text=True),
                          f"/engagements/{engagement.id}/stage")
    move = {"target": "mapping_requested", "occurred_on": "2099-01-01", "version": str(engagement.version),
            "form_token": token}
    refused = client.post(f"/engagements/{engagement.id}/stage", data=move)
    assert refused.status_code == 422 and f'value="{token}"' in refused.get_data(as_text=True)
    assert client.post(f"/engagements/{engagement.id}/stage", data={**move, "occurred_on": "2026-01-20"}).status_code == 302
    fresh()
    assert db.session.get(Engagement, engagement.id).stage == "mapping_requested"


def test_the_version_check_is_in_the_update_statement(app, count_queries):
    """The optimistic lock is enforced by the database, not only by comparing in Python."""
    engagement = factories.engagement()
    with db.engine.begin() as conn:  # another request moves it meanwhile
        conn.execute(sa.update(Engagement.__table__).where(Engagement.id == engagement.id)
                     .values(escalation="follow_up", version=Engagement.version + 1))
    engagement.escalation = "collective"  # this session still holds version 1
    from sqlalchemy.orm.exc import StaleDataError

    with count_queries() as queries, pytest.raises(StaleDataError):
        db.session.commit()
    db.session.rollback()
    update = next(s for s in queries.statements if s.startswith("UPDATE engagements"))
    assert re.search(r"WHERE engagements\.id = \S+ AND engagements\.version = \S+", update), update
    fresh()
    assert db.session.get(Engagement, engagement.id).escalation == "follow_up"


def test_the_scheduler_forgets_old_tokens(app):
    from engage import clock
    from engage.jobs import housekeeping

    now = dt.datetime(2026, 6, 15, 3, 30)
    with clock.frozen(now - dt.timedelta(days=3)):
        idempotency.claim(idempotency.new_token(), "test", None)
    with clock.frozen(now - dt.timedelta(hours=12)):
        recent = idempotency.new_token()
        idempotency.claim(recent, "test", None)
    db.session.commit()
    assert "1 form token(s) forgotten" in housekeeping(now)
    assert db.session.scalars(sa.select(FormSubmission.token)).all() == [recent]
