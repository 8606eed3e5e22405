"""The reminders page (issue 17): a Today group, counts that say whose they are, snoozing only
later than the due date, and bulk done / snooze / reassign — all of the ticked reminders or none."""

from __future__ import annotations

import datetime as dt
import html as htmllib
import re

import sqlalchemy as sa

from engage.extensions import db
from engage.models import AuditEvent, Engagement, Reminder
from engage.valuechain import service as valuechain
from tests import factories
from tests.conftest import PASSWORD, csrf_token_from, login
from tests.test_valuechain import load_lists, maker, relationship_to
from tests.test_valuechain_feeds import HOSHINE, import_map

D = dt.date


def add(owner, due: dt.date, company: str, reason: str = "Reply due", **kw) -> Reminder:
    engagement = kw.pop("engagement", None) or factories.engagement(owner=owner, company=factories.company(company))
    item = Reminder(engagement=engagement, due_on=due, reason=reason, kind=kw.pop("kind", "reply"), **kw)
    db.session.add(item)
    db.session.commit()
    return item


def text_of(page: str) -> str:
    return htmllib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def section(page: str, key: str) -> str:
    """The part of the page under the group heading `key` (up to the next group heading)."""
    after = page.split(f'<h2 id="{key}">')[1]
    return re.split(r'<h2 id="(?:overdue|today|week|later)">', after)[0]


def bulk_token(page: str) -> str:
    form = page.split('id="bulk"')[1]
    return re.search(r'name="form_token" type="hidden" value="([0-9a-f]{32})"', form).group(1)


def state(*reminders: Reminder) -> list[tuple]:
    db.session.expire_all()
    return [(r.status, r.due_on, db.session.get(Engagement, r.engagement_id).owner_id)
            for r in (db.session.get(Reminder, item.id) for item in reminders)]


def test_today_group_and_every_count_says_whose(client, login_as, make_user, frozen_today, count_queries):
    me = login_as("analyst")
    colleague = make_user("analyst")
    add(me, D(2026, 6, 10), "Mine Overdue Co")
    add(me, D(2026, 6, 15), "Mine Today Co")
    add(colleague, D(2026, 6, 15), "Their Today Co")
    add(colleague, D(2026, 6, 18), "Their Week Co")
    add(None, D(2026, 7, 30), "Nobody Later Co")
    add(me, D(2026, 6, 15), "Done Co", status="done")
    closed = factories.engagement(owner=me, company=factories.company("Closed Co"), stage="closed",
                                  closed_on=D(2026, 6, 1), outcome="dropped")
    add(me, D(2026, 6, 15), "Closed Co", engagement=closed)

    page = client.get("/reminders").get_data(as_text=True)
    assert [h for h in re.findall(r'<h2 id="(\w+)">', page)] == ["overdue", "today", "week", "later"]
    today = section(page, "today")
    assert "Mine Today Co" in today and "Their Today Co" not in today and "Done Co" not in page
    assert "Closed Co" not in page and "Mine Overdue Co" in section(page, "overdue")
    counts = text_of(page.split('id="reminder-counts"')[1].split("</table>")[0])
    assert "Mine 1 1 0 0" in counts and "Team 1 2 1 1" in counts
    assert "Today (mine 1 · team 2)" in text_of(page)
    assert "Due in the next 7 days (mine 0 · team 1)" in text_of(page)

    team = client.get("/reminders?who=all").get_data(as_text=True)
    assert "Mine Today Co" in section(team, "today") and "Their Today Co" in section(team, "today")
    assert "Their Week Co" in section(team, "week") and "Nobody Later Co" in section(team, "later")
    assert 'aria-current="page">Team</a>' in team

    dashboard = text_of(client.get("/").get_data(as_text=True))
    # the dashboard's tiles count as the page does (a closed engagement's reminder is not waiting), team and mine
    assert "1 overdue follow-ups, team (mine 1)" in dashboard
    assert "3 due today or in the next 7 days, team (mine 1)" in dashboard

    add(colleague, D(2026, 8, 1), "Their Later Co")  # every group has an owned engagement: one query per load
    with count_queries() as few:
        client.get("/reminders?who=all")
    for n in range(6):
        add(make_user("analyst") if n % 2 else me, D(2026, 6, 10 + n * 3), f"More Co {n}")
    with count_queries() as many:
        page = client.get("/reminders?who=all").get_data(as_text=True)
    assert "More Co 5" in page and many.count == few.count, many.statements


def test_snooze_goes_only_after_the_current_due_date(client, login_as, frozen_today):
    me = login_as("analyst")
    ahead = add(me, D(2026, 6, 25), "Ahead Co")
    overdue = add(me, D(2026, 6, 1), "Behind Co")
    page = client.get("/reminders").get_data(as_text=True)
    assert f'id="until-{ahead.id}" min="2026-06-26"' in page and f'id="until-{overdue.id}" min="2026-06-16"' in page
    for earlier in ("2026-06-20", "2026-06-25"):
        refused = client.post(f"/reminders/{ahead.id}/snooze", data={"until": earlier}, follow_redirects=True)
        assert "Snooze to a date after the current due date (25 Jun 2026)" in refused.get_data(as_text=True)
        assert state(ahead) == [("open", D(2026, 6, 25), me.id)]
    client.post(f"/reminders/{ahead.id}/snooze", data={"until": "2026-06-26"})
    assert state(ahead) == [("snoozed", D(2026, 6, 26), me.id)]
    client.post(f"/reminders/{overdue.id}/snooze", data={"until": "2026-06-16"})  # overdue: any day after today
    assert state(overdue) == [("snoozed", D(2026, 6, 16), me.id)]


def post_bulk(client, ids, action, token=None, **fields):
    data = {"reminder_ids": [str(i) for i in ids], "action": action, "who": fields.pop("who", "mine"), **fields}
    if token:
        data["form_token"] = token
    return client.post("/reminders/bulk", data=data)


def test_bulk_done_snooze_and_reassign(client, login_as, make_user, frozen_today):
    me = login_as("analyst")
    colleague = make_user("analyst")
    a = add(me, D(2026, 6, 10), "Alpha Co")
    b = add(me, D(2026, 6, 15), "Beta Co", kind="manual")
    c = add(colleague, D(2026, 6, 20), "Gamma Co", kind="escalation")

    response = post_bulk(client, [a.id, b.id, c.id], "snooze", until="2026-06-30", who="all")
    assert response.status_code == 303 and response.location.endswith("/reminders?who=all")
    assert "3 reminders snoozed until 30 Jun 2026." in client.get("/reminders").get_data(as_text=True)
    assert state(a, b, c) == [("snoozed", D(2026, 6, 30), me.id)] * 2 + [("snoozed", D(2026, 6, 30), colleague.id)]

    assert post_bulk(client, [a.id, c.id], "reassign", assignee_id=str(colleague.id)).status_code == 303
    assert "2 reminders: 1 engagement given to" in text_of(client.get("/reminders").get_data(as_text=True))
    assert [owner for *_, owner in state(a, b, c)] == [colleague.id, me.id, colleague.id]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent).where(
        AuditEvent.object_type == "Engagement", AuditEvent.object_id == a.engagement_id,
        AuditEvent.action == "update")) == 1

    assert post_bulk(client, [a.id, b.id], "done").status_code == 303
    assert [s for s, *_ in state(a, b, c)] == ["done", "done", "snoozed"]
    mine = client.get("/reminders").get_data(as_text=True)
    assert "Alpha Co" not in mine and "Beta Co" not in mine


def test_bulk_refusals_name_what_failed_and_write_nothing(client, app, login_as, make_user, frozen_today):
    me = login_as("analyst")
    colleague = make_user("analyst", email="colleague@example.org")
    a = add(me, D(2026, 6, 10), "Alpha Co")
    b = add(me, D(2026, 6, 28), "Beta Co")
    before = state(a, b)

    # a date before one reminder's due date: that reminder is named, neither moves
    refused = post_bulk(client, [a.id, b.id], "snooze", until="2026-06-20")
    page = text_of(refused.get_data(as_text=True))
    assert refused.status_code == 422 and "Beta Co (Reply due, due 28 Jun 2026) cannot be snoozed" in page
    assert "Alpha Co (Reply" not in page.split("Nothing was changed")[1].split(".")[0]
    assert f'value="{a.id}" id="tick-{a.id}" checked' in refused.get_data(as_text=True)  # the ticks are kept
    assert state(a, b) == before
    assert "after today" in text_of(post_bulk(client, [a.id], "snooze", until="2026-06-15").get_data(as_text=True))
    assert "Give the date" in text_of(post_bulk(client, [a.id], "snooze").get_data(as_text=True))
    assert "Tick at least one" in text_of(post_bulk(client, [], "done").get_data(as_text=True))

    # done meanwhile by someone else (another session, the single "Done" button)
    other = app.test_client()
    login(other, colleague.email, PASSWORD)
    assert other.post(f"/reminders/{b.id}/complete").status_code == 302
    refused = post_bulk(client, [a.id, b.id], "done")
    assert refused.status_code == 422 and "Beta Co (Reply due, due 28 Jun 2026) was done meanwhile" in text_of(
        refused.get_data(as_text=True))
    assert state(a)[0][0] == "open"

    # a reminder that no longer exists, or whose engagement was closed since
    closing = add(me, D(2026, 6, 12), "Closing Co")
    closing.engagement.stage, closing.engagement.closed_on, closing.engagement.outcome = "closed", D(2026, 6, 14), "dropped"
    gone = add(me, D(2026, 6, 12), "Gone Co")
    gone_id = gone.id  # the last id: not taken again by SQLite
    db.session.delete(gone)
    db.session.commit()
    page = text_of(post_bulk(client, [a.id, gone_id, closing.id], "done").get_data(as_text=True))
    assert f"reminder #{gone_id} no longer exists" in page and "Closing Co (Reply due" in page
    assert "belongs to a closed engagement" in page and state(a)[0][0] == "open"

    # reassigning to a deactivated user, a viewer or nobody: the engagement keeps its owner
    retired = make_user("analyst", email="retired@example.org", active=False)
    viewer = make_user("viewer", email="reader@example.org")
    for assignee, message in ((retired, "Retired is deactivated"), (viewer, "Reader is a viewer")):
        refused = post_bulk(client, [a.id], "reassign", assignee_id=str(assignee.id))
        assert refused.status_code == 422 and message in text_of(refused.get_data(as_text=True))
    assert "Choose who takes" in text_of(post_bulk(client, [a.id], "reassign", assignee_id="").get_data(as_text=True))
    assert "Choose who takes" in text_of(post_bulk(client, [a.id], "reassign",
                                                   assignee_id="999999").get_data(as_text=True))
    assert state(a) == [("open", D(2026, 6, 10), me.id)]
    page = client.get("/reminders").get_data(as_text=True)
    choices = page.split('name="assignee_id"')[1].split("</select>")[0]
    assert "Colleague" in choices and "Retired" not in choices and "Reader" not in choices


def test_bulk_is_for_analysts_with_a_csrf_token(client, make_app, login_as, make_user, frozen_today):
    owner = make_user("analyst", email="owner@example.org")
    item = add(owner, D(2026, 6, 10), "Alpha Co")
    login_as("viewer")
    page = client.get("/reminders?who=all").get_data(as_text=True)
    assert "Alpha Co" in page and 'id="bulk"' not in page and 'name="reminder_ids"' not in page
    assert "Mine 0 0 0 0" in text_of(page)
    assert post_bulk(client, [item.id], "done").status_code == 403
    assert state(item)[0][0] == "open"

    protected = make_app(WTF_CSRF_ENABLED=True).test_client()
    token = csrf_token_from(protected.get("/auth/login").get_data(as_text=True))
    protected.post("/auth/login", data={"email": owner.email, "password": PASSWORD, "csrf_token": token})
    assert post_bulk(protected, [item.id], "done").status_code == 400
    assert state(item)[0][0] == "open"
    page = protected.get("/reminders").get_data(as_text=True)
    done = protected.post("/reminders/bulk", data={"reminder_ids": [str(item.id)], "action": "done", "who": "mine",
                                                   "csrf_token": csrf_token_from(page.split('id="bulk"')[1]),
                                                   "form_token": bulk_token(page)})
    assert done.status_code == 303 and state(item)[0][0] == "done"


def test_a_double_submit_changes_nothing_twice(client, login_as, frozen_today):
    me = login_as("analyst")
    a = add(me, D(2026, 6, 10), "Alpha Co")
    b = add(me, D(2026, 6, 12), "Beta Co")
    token = bulk_token(client.get("/reminders").get_data(as_text=True))
    assert post_bulk(client, [a.id, b.id], "snooze", token, until="2026-07-01").status_code == 303
    client.get("/reminders")  # the first answer's message
    again = post_bulk(client, [a.id, b.id], "snooze", token, until="2026-07-01")
    assert again.status_code == 303 and again.location.endswith("/reminders?who=mine")
    assert "sent twice" in client.get("/reminders").get_data(as_text=True)
    assert state(a, b) == [("snoozed", D(2026, 7, 1), me.id)] * 2
    token = bulk_token(client.get("/reminders").get_data(as_text=True))
    assert post_bulk(client, [a.id, b.id], "done", token).status_code == 303
    client.get("/reminders")
    assert post_bulk(client, [a.id, b.id], "done", token).status_code == 303  # not "done meanwhile": a duplicate
    assert "sent twice" in client.get("/reminders").get_data(as_text=True)
    # a refused submission keeps nothing, its token included: the corrected form goes through
    c = add(me, D(2026, 6, 30), "Gamma Co")
    token = bulk_token(client.get("/reminders").get_data(as_text=True))
    assert post_bulk(client, [c.id], "snooze", token, until="2026-06-20").status_code == 422
    assert post_bulk(client, [c.id], "snooze", token, until="2026-07-20").status_code == 303
    assert state(c) == [("snoozed", D(2026, 7, 20), me.id)]


def test_exit_reminders_take_bulk_actions_and_keep_following_the_plan(client, runner, login_as, frozen_today):
    me = login_as("analyst")
    load_lists(runner)
    engagement = factories.engagement(company=maker(), owner=me)
    import_map(runner, engagement.company)
    link = relationship_to(HOSHINE)
    valuechain.change_status(link, "exit_planned", frozen_today, target_date=D(2026, 6, 20), actor_id=me.id)
    db.session.commit()
    exit_reminder = db.session.scalar(sa.select(Reminder).where(Reminder.kind == "exit"))
    page = client.get("/reminders").get_data(as_text=True)
    assert f'name="reminder_ids" value="{exit_reminder.id}"' in section(page, "week")

    assert post_bulk(client, [exit_reminder.id], "snooze", until="2026-07-10").status_code == 303
    assert state(exit_reminder) == [("snoozed", D(2026, 7, 10), me.id)]
    # a new target date still moves the same (snoozed) reminder
    valuechain.change_status(link, "exit_planned", frozen_today, target_date=D(2026, 9, 30), actor_id=me.id)
    db.session.commit()
    assert db.session.scalars(sa.select(Reminder.id).where(Reminder.kind == "exit")).all() == [exit_reminder.id]
    assert state(exit_reminder)[0][1] == D(2026, 9, 30)
    assert post_bulk(client, [exit_reminder.id], "done").status_code == 303
    assert state(exit_reminder)[0][0] == "done"


def test_a_bulk_action_costs_the_same_queries_for_few_or_many_reminders(client, login_as, make_user, frozen_today,
                                                                        count_queries):
    """Done and snooze: the same statements for 2 or 7 reminders. Reassigning adds only one versioned
    UPDATE per engagement (the optimistic lock that catches an edit made meanwhile)."""
    me = login_as("analyst")
    colleague = make_user("analyst")
    for action, extra in (("done", {}), ("snooze", {"until": "2026-07-31"}),
                          ("reassign", {"assignee_id": str(colleague.id)})):
        runs = []
        for size in (2, 7):
            ids = [add(me, D(2026, 6, 10 + n), f"{action} {size} Co {n}").id for n in range(size)]
            with count_queries() as counter:
                assert post_bulk(client, ids, action, **extra).status_code == 303
            runs.append(counter.statements)
        few, many = runs
        updates = [sum(s.startswith("UPDATE engagements SET owner_id") for s in run) for run in runs]
        if action == "reassign":
            assert updates == [2, 7] and len(many) - len(few) == 5, many
        else:
            assert updates == [0, 0] and len(many) == len(few), (action, many)
