"""Reminders and email, against a real SMTP server (aiosmtpd) and with time passed in, never slept."""

import datetime as dt
import multiprocessing

import sqlalchemy as sa
from icalendar import Calendar

from engage.extensions import db
from engage.models import Letter, OutboxEmail, Reminder
from engage.core import outbox
from engage.reminders.service import apply_rules, tick
from tests import factories

NOW = dt.datetime(2026, 6, 15, 8, 0)
TODAY = NOW.date()


def reminder(owner, due: dt.date, reason="Reply due", **kw) -> Reminder:
    engagement = kw.pop("engagement", None) or factories.engagement(
        owner=owner, company=factories.company(kw.pop("company", None)))
    item = Reminder(engagement=engagement, due_on=due, reason=reason, kind=kw.pop("kind", "reply"), **kw)
    db.session.add(item)
    db.session.commit()
    return item


def test_due_reminders_are_emailed_once_with_links(app, smtp, make_user):
    owner = make_user("analyst", email="owner@example.org")
    other = make_user("analyst", email="other@example.org")
    due = reminder(owner, TODAY - dt.timedelta(days=2), "Reply due to our initial letter", company="Overdue Co")
    soon = reminder(owner, TODAY + dt.timedelta(days=2), "Check the annual report", company="Soon Co")  # within 3-day warning
    later = reminder(owner, TODAY + dt.timedelta(days=10), company="Later Co")
    reminder(other, TODAY, company="Other Co")
    result = tick(NOW)
    assert (result.reminders_notified, result.emails_queued, len(result.drain.sent)) == (3, 2, 2)
    assert sorted(r for _, rcpts in smtp.inbox.envelopes for r in rcpts) == ["other@example.org", "owner@example.org"]
    message = next(m for m in smtp.inbox.messages if m["To"] == "owner@example.org")
    body = smtp.inbox.body(message)
    assert "Overdue Co" in body and "Soon Co" in body and "Later Co" not in body
    assert f"http://127.0.0.1:5000/engagements/{due.engagement_id}" in body
    assert "(1 overdue)" in message["Subject"]
    assert message["Message-ID"]

    again = tick(NOW + dt.timedelta(minutes=5))
    assert again.reminders_notified == 0 and len(smtp.inbox.messages) == 2
    db.session.expire_all()
    assert db.session.get(Reminder, later.id).notified_at is None
    assert db.session.get(Reminder, soon.id).notified_at == NOW


def test_each_campaign_warns_by_its_own_number_of_days(app, smtp, make_user):
    """The tick bounds its search by the longest warning of any campaign; each reminder is still
    notified by its own campaign's warning (3 days here, 10 for the other)."""
    owner = make_user("analyst", email="owner@example.org")
    short, long = factories.campaign(), factories.campaign()
    short.warn_days_before, long.warn_days_before = 3, 10
    in_five = [reminder(owner, TODAY + dt.timedelta(days=5), engagement=factories.engagement(owner=owner, campaign=campaign))
               for campaign in (short, long)]
    in_thirteen = reminder(owner, TODAY + dt.timedelta(days=13),
                         engagement=factories.engagement(owner=owner, campaign=long))
    assert tick(NOW).reminders_notified == 1
    db.session.expire_all()
    assert [db.session.get(Reminder, r.id).notified_at for r in (*in_five, in_thirteen)] == [None, NOW, None]
    assert tick(NOW + dt.timedelta(days=2)).reminders_notified == 1  # now within the 3-day campaign's warning
    assert tick(NOW + dt.timedelta(days=2)).reminders_notified == 0


def test_unowned_and_closed_engagements_are_not_notified(app, smtp, make_user):
    reminder(None, TODAY)
    inactive = make_user("analyst", active=False)
    reminder(inactive, TODAY)
    closed = factories.engagement(owner=make_user("analyst"), stage="closed", closed_on=TODAY, outcome="dropped")
    reminder(None, TODAY, engagement=closed)
    result = tick(NOW)
    assert result.reminders_notified == 0 and result.skipped_unowned == 2
    assert smtp.inbox.messages == []


def test_smtp_outage_keeps_emails_and_delivers_each_once_later(app, smtp, make_user):
    owner = make_user("analyst")
    reminder(owner, TODAY)
    smtp.stop()
    result = tick(NOW)
    assert result.drain.retrying and not result.drain.sent
    email = db.session.scalar(sa.select(OutboxEmail))
    assert email.status == "queued" and email.attempts == 1
    assert "could not connect to the SMTP server" in email.last_error
    assert email.next_attempt_at == NOW + dt.timedelta(minutes=1)

    smtp.start()
    assert outbox.drain(NOW + dt.timedelta(seconds=30)).sent == []  # backoff not over yet
    assert len(outbox.drain(NOW + dt.timedelta(minutes=2)).sent) == 1
    assert outbox.drain(NOW + dt.timedelta(minutes=10)).sent == []
    assert len(smtp.inbox.messages) == 1
    db.session.expire_all()
    email = db.session.get(OutboxEmail, email.id)
    assert email.status == "sent" and email.last_error is None and email.attempts == 2


def test_failed_after_max_attempts_then_retried_by_an_admin(app, smtp, make_user, client, login_as):
    app.config["MAIL_MAX_ATTEMPTS"] = 2
    try:
        outbox.enqueue("someone@example.org", "Subject", "Body", now=NOW)
        db.session.commit()
        smtp.stop()
        outbox.drain(NOW)
        outbox.drain(NOW + dt.timedelta(hours=1))
        email = db.session.scalar(sa.select(OutboxEmail))
        assert email.status == "failed" and email.attempts == 2
        login_as("admin")
        page = client.get("/admin/outbox?status=failed").get_data(as_text=True)
        assert "someone@example.org" in page and "could not connect" in page
        from engage import clock

        with clock.frozen(NOW + dt.timedelta(hours=1)):
            assert client.post(f"/admin/outbox/{email.id}/retry").status_code == 302
        smtp.start()
        assert len(outbox.drain(NOW + dt.timedelta(hours=2)).sent) == 1
        assert len(smtp.inbox.messages) == 1
    finally:
        app.config["MAIL_MAX_ATTEMPTS"] = 8


def test_a_crash_mid_send_is_retried_after_the_lease(app, smtp):
    outbox.enqueue("someone@example.org", "Subject", "Body", now=NOW)
    db.session.commit()
    assert outbox.claim(NOW, 10)  # claimed, then the process "dies" before sending
    assert outbox.drain(NOW + dt.timedelta(minutes=1)).sent == []  # still leased to the dead sender
    assert len(outbox.drain(NOW + dt.timedelta(minutes=6)).sent) == 1
    assert len(smtp.inbox.messages) == 1


def test_concurrent_ticks_in_several_processes_notify_each_reminder_once(app, smtp, make_user, database_url):
    owners = [make_user("analyst", email=f"owner{i}@example.org") for i in range(3)]
    for i in range(12):
        reminder(owners[i % 3], TODAY - dt.timedelta(days=i % 4), f"Reminder {i:02d}", company=f"Company {i:02d}")
    from tests.concurrent_tick import run_tick

    context = multiprocessing.get_context("spawn")
    workers = 4
    barrier, results = context.Barrier(workers), context.Queue()
    processes = [context.Process(target=run_tick, args=(database_url, smtp.port, NOW.isoformat(), barrier, results))
                 for _ in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    outcomes = [results.get(timeout=5) for _ in range(workers)]
    assert sum(notified for notified, _ in outcomes) == 12
    assert sum(sent for _, sent in outcomes) == 3
    bodies = [smtp.inbox.body(m) for m in smtp.inbox.messages]
    assert len(bodies) == 3
    for i in range(12):
        assert sum(f"Reminder {i:02d}" in body for body in bodies) == 1
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count(Reminder.id)).where(Reminder.notified_at.is_(None))) == 0


def test_escalation_is_suggested_after_unanswered_follow_ups(app):
    engagement = factories.engagement(stage="mapping_requested", opened_on=dt.date(2026, 1, 1))
    for sent_on in (dt.date(2026, 2, 1), dt.date(2026, 3, 1)):
        db.session.add(Letter(engagement=engagement, kind="follow_up", subject="f", body="b", status="sent",
                              sent_on=sent_on))
    overdue = Reminder(engagement=engagement, due_on=dt.date(2026, 3, 15), reason="Reply due", kind="reply")
    db.session.add(overdue)
    db.session.commit()
    assert apply_rules(TODAY) == 1
    assert apply_rules(TODAY) == 0  # one open suggestion per engagement
    suggestion = db.session.scalar(sa.select(Reminder).where(Reminder.kind == "escalation"))
    assert "No reply after 2 follow-up letter(s)" in suggestion.reason
    # a done suggestion no longer counts: the reply still overdue, escalation is suggested again
    suggestion.status = "done"
    db.session.commit()
    assert apply_rules(TODAY) == 1


def test_a_reply_resets_the_follow_up_count(app):
    engagement = factories.engagement(stage="mapping_requested", opened_on=dt.date(2026, 1, 1))
    for sent_on in (dt.date(2026, 2, 1), dt.date(2026, 3, 1)):
        db.session.add(Letter(engagement=engagement, kind="follow_up", subject="f", body="b", status="sent",
                              sent_on=sent_on))
    from engage.models import Interaction

    db.session.add(Interaction(engagement=engagement, kind="response", direction="inbound",
                               occurred_on=dt.date(2026, 3, 5)))
    db.session.add(Reminder(engagement=engagement, due_on=dt.date(2026, 4, 1), reason="Reply due", kind="reply"))
    db.session.commit()
    assert apply_rules(TODAY) == 0


def test_logging_a_response_closes_reply_and_escalation_reminders(client, login_as):
    analyst = login_as("analyst")
    engagement = factories.engagement(owner=analyst, stage="mapping_requested", opened_on=dt.date(2026, 1, 1))
    db.session.add_all([Reminder(engagement=engagement, due_on=TODAY, reason="Reply due", kind="reply"),
                        Reminder(engagement=engagement, due_on=TODAY, reason="Consider escalation", kind="escalation"),
                        Reminder(engagement=engagement, due_on=TODAY, reason="Call the IR team", kind="manual")])
    db.session.commit()
    response = client.post(f"/engagements/{engagement.id}/interactions", data={
        "kind": "response", "direction": "inbound", "occurred_on": "2026-06-10", "subject": "Reply",
        "version": str(engagement.version)})
    assert response.status_code == 302
    db.session.expire_all()
    statuses = {r.kind: r.status for r in db.session.scalars(sa.select(Reminder))}
    assert statuses == {"reply": "done", "escalation": "done", "manual": "open"}


def test_reminders_page_snooze_complete_and_manual(client, login_as):
    from engage import clock

    analyst = login_as("analyst")
    engagement = factories.engagement(owner=analyst, company=factories.company("Snooze Co"))
    with clock.frozen(NOW):
        item = reminder(analyst, TODAY - dt.timedelta(days=1), engagement=engagement)
        item.notified_at = NOW
        db.session.commit()
        page = client.get("/reminders").get_data(as_text=True)
        assert "Snooze Co" in page.split('id="overdue"')[1].split('id="week"')[0]
        assert client.post(f"/reminders/{item.id}/snooze", data={"until": "2026-06-10"}).status_code == 302
        db.session.expire_all()
        assert db.session.get(Reminder, item.id).status == "open"  # a past date was refused
        assert "after today" in client.get("/reminders").get_data(as_text=True)
        client.post(f"/reminders/{item.id}/snooze", data={"until": "2026-06-25"})
        db.session.expire_all()
        snoozed = db.session.get(Reminder, item.id)
        assert (snoozed.status, snoozed.due_on, snoozed.notified_at) == ("snoozed", dt.date(2026, 6, 25), None)
        assert "Snooze Co" in client.get("/reminders").get_data(as_text=True).split('id="later"')[1]
        client.post(f"/reminders/{item.id}/complete")
        db.session.expire_all()
        assert db.session.get(Reminder, item.id).status == "done"
        assert client.post(f"/reminders/add/{engagement.id}",
                           data={"due_on": "2026-06-01", "reason": "too late"}).status_code == 302
        assert db.session.scalar(sa.select(sa.func.count(Reminder.id))) == 1  # past date refused
        client.post(f"/reminders/add/{engagement.id}", data={"due_on": "2026-07-01", "reason": "AGM question"})
        assert db.session.scalar(sa.select(Reminder).where(Reminder.reason == "AGM question")).kind == "manual"


def test_viewers_cannot_change_reminders(client, login_as, make_user):
    login_as("viewer")
    item = reminder(make_user("analyst"), TODAY)
    assert client.post(f"/reminders/{item.id}/snooze", data={"until": "2026-12-01"}).status_code == 403
    assert client.post(f"/reminders/{item.id}/complete").status_code == 403
    assert client.post(f"/reminders/add/{item.engagement_id}", data={}).status_code == 403
    assert client.get("/admin/outbox").status_code == 403


def test_calendar_feed(client, login_as, app):
    user = login_as("analyst")
    reminder(user, dt.date(2026, 7, 1), "Chase the supplier list", company="Calendar Co")
    assert client.post("/account/calendar").status_code == 302
    db.session.expire_all()
    token = db.session.get(type(user), user.id).calendar_token
    anonymous = app.test_client()
    feed = anonymous.get(f"/reminders/calendar/{token}.ics")
    assert feed.status_code == 200 and feed.mimetype == "text/calendar"
    events = [c for c in Calendar.from_ical(feed.data).walk("VEVENT")]
    assert len(events) == 1 and str(events[0]["summary"]) == "Calendar Co: Chase the supplier list"
    assert events[0].decoded("dtstart") == dt.date(2026, 7, 1)
    assert anonymous.get(f"/reminders/calendar/{'x' * 43}.ics").status_code == 404
    client.post("/account/calendar")  # a new link replaces the old one
    assert anonymous.get(f"/reminders/calendar/{token}.ics").status_code == 404


def test_calendar_links_handed_out_before_the_move_still_work(client, login_as, app):
    """A feed subscribed at /calendar/<token>.ics is sent on, permanently, to /reminders/calendar/<token>.ics."""
    user = login_as("analyst")
    reminder(user, dt.date(2026, 7, 1), "Chase the supplier list", company="Calendar Co")
    client.post("/account/calendar")
    db.session.expire_all()
    token = db.session.get(type(user), user.id).calendar_token
    anonymous = app.test_client()
    old = anonymous.get(f"/calendar/{token}.ics")
    assert old.status_code == 301 and old.headers["Location"] == f"/reminders/calendar/{token}.ics"
    feed = anonymous.get(f"/calendar/{token}.ics", follow_redirects=True)
    assert feed.status_code == 200 and feed.mimetype == "text/calendar"
    assert "Calendar Co: Chase the supplier list" in feed.get_data(as_text=True)


def test_cli_tick_and_bad_now(runner, smtp, make_user):
    reminder(make_user("analyst"), TODAY)
    result = runner.invoke(args=["reminders", "run", "--now", "2026-06-15T08:00:00+02:00"])
    assert result.exit_code == 0, result.output
    assert "Reminders tick at 15 Jun 2026, 06:00 UTC" in result.output
    assert "1 reminder(s) in 1 email(s)" in result.output and "1 sent" in result.output
    bad = runner.invoke(args=["reminders", "run", "--now", "next tuesday"])
    assert bad.exit_code == 1 and "--now must be an ISO date-time" in bad.stderr


def test_scheduler_jobs_have_fixed_ids_and_run_alone(app, smtp, make_user):
    from engage.jobs import build_scheduler, jobs, run_job

    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = build_scheduler(app, BackgroundScheduler)
    scheduler.start(paused=True)
    try:
        assert {j.id for j in scheduler.get_jobs()} == {"reminders-tick", "outbox-drain", "monthly-export", "housekeeping",
                                                        "dashboard-figures"}
        assert all(j.coalesce and j.max_instances == 1 for j in scheduler.get_jobs())
    finally:
        scheduler.shutdown(wait=False)
    reminder(make_user("analyst"), dt.date.today())
    by_id = {job.id: job for job in jobs(app)}
    run_job(app, by_id["reminders-tick"])
    run_job(app, by_id["outbox-drain"])
    assert len(smtp.inbox.messages) == 1


def test_cli_runs_the_schedulers_tick_job(app, runner, smtp, make_user):
    """`flask reminders run` and the scheduler's reminders-tick job are one function: same steps, same report."""
    from engage.jobs import jobs

    reminder(make_user("analyst"), TODAY)
    by_id = {job.id: job for job in jobs(app)}
    lines = by_id["reminders-tick"].func(NOW)  # rules, notify and the drain: the email is sent by the tick itself
    assert len(smtp.inbox.messages) == 1
    assert lines == ["rules: 0 'consider escalation' reminder(s) created",
                     "notify: 1 reminder(s) in 1 email(s)", lines[2]] and "1 sent" in lines[2]
    reminder(make_user("analyst"), TODAY)
    result = runner.invoke(args=["reminders", "run", "--now", (NOW + dt.timedelta(minutes=5)).isoformat()])
    assert result.exit_code == 0, result.output
    assert [line.strip() for line in result.output.splitlines()[1:3]] == lines[:2]
    assert len(smtp.inbox.messages) == 2
