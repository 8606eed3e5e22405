"""The dashboard's stored figures (issue 20, engage.main.figures): counted by the scheduler, read by the page.

The rest of the suite runs with DASHBOARD_MAX_AGE_SECONDS = 0 (always counted in the request);
these tests switch the stored figures on, as in production.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
import sqlalchemy as sa

from engage import clock
from engage.engagements import cycle
from engage.extensions import db
from engage.jobs import jobs, run_job
from engage.main import figures
from engage.models import DashboardFigures, Fund, Holding, Interaction, Reminder, RiskFlag
from tests import factories
from tests.concurrent_requests import post_in_threads
from tests.conftest import FROZEN_AT, PASSWORD, csrf_token_from

TODAY = FROZEN_AT.date()


@pytest.fixture()
def stored_figures(app, freeze_clock):
    """Production's settings: figures kept by the scheduler, at most 15 minutes old on the page."""
    saved = {key: app.config[key] for key in ("DASHBOARD_MAX_AGE_SECONDS", "DASHBOARD_COUNT_AGAIN_SECONDS")}
    app.config.update(DASHBOARD_MAX_AGE_SECONDS=900, DASHBOARD_COUNT_AGAIN_SECONDS=30)
    freeze_clock(FROZEN_AT)
    yield app
    app.config.update(saved)


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def scheduler_job(app):
    """The scheduler's own job, run as the scheduler runs it (app context, clock, errors logged)."""
    run_job(app, next(job for job in jobs(app) if job.id == "dashboard-figures"))


def row() -> DashboardFigures | None:
    db.session.expire_all()
    return db.session.get(DashboardFigures, figures.KIND)


def whole_table_counts(statements: list[str]) -> list[str]:
    """Statements of a request that count over whole tables (what the stored figures replace)."""
    return [s for s in statements if re.search(r"count\(", s, re.I) and "dashboard_figures" not in s]


def test_the_scheduler_counts_and_the_page_reads_the_stored_figures(client, login_as, make_user, stored_figures,
                                                                     count_queries):
    me = login_as("analyst")
    me_id = me.id
    mine = factories.engagement(owner=me, opened_on=dt.date(2026, 4, 1))
    db.session.add(Reminder(engagement=mine, due_on=dt.date(2026, 6, 1), reason="late"))
    db.session.commit()
    scheduler_job(stored_figures)
    stored = row()
    assert stored.day == TODAY and stored.computed_at == FROZEN_AT and stored.seconds >= 0
    assert stored.data["reminders"][str(me_id)]["overdue"] == 1

    client.get("/")
    with count_queries() as counted:
        page = client.get("/").get_data(as_text=True)
    assert whole_table_counts(counted.statements) == []  # nothing counted: read from the stored row
    assert "Figures as of 15 Jun 2026, 09:00 UTC (just now); they are counted again every 2 minutes." in text_of(page)
    assert "1 overdue follow-ups, team (mine 1)" in text_of(page)

    # a change shows in the live lists at once, in the counts after the next refresh
    other = factories.engagement(owner=make_user("analyst"), opened_on=dt.date(2026, 4, 1))
    db.session.add(Reminder(engagement=other, due_on=dt.date(2026, 6, 2), reason="also late"))
    db.session.commit()
    assert "1 overdue follow-ups, team (mine 1)" in text_of(client.get("/").get_data(as_text=True))
    with clock.frozen(FROZEN_AT + dt.timedelta(minutes=2)):
        scheduler_job(stored_figures)
        page = text_of(client.get("/").get_data(as_text=True))
    assert "2 overdue follow-ups, team (mine 1)" in page and "Figures as of 15 Jun 2026, 09:02 UTC (just now)" in page


def test_the_page_says_how_old_the_figures_are_and_counts_again_past_the_maximum_age(client, login_as,
                                                                                       stored_figures):
    login_as("viewer")
    scheduler_job(stored_figures)
    with clock.frozen(FROZEN_AT + dt.timedelta(minutes=14, seconds=59)):
        page = text_of(client.get("/").get_data(as_text=True))
    assert "Figures as of 15 Jun 2026, 09:00 UTC (14 minutes ago)" in page
    assert row().computed_at == FROZEN_AT  # young enough: not counted again

    engagement = factories.engagement(opened_on=dt.date(2026, 4, 1))
    db.session.add(Reminder(engagement=engagement, due_on=dt.date(2026, 6, 1), reason="late"))
    db.session.commit()
    later = FROZEN_AT + dt.timedelta(minutes=15, seconds=1)  # the scheduler stopped: too old, counted by the page
    with clock.frozen(later):
        page = text_of(client.get("/").get_data(as_text=True))
    assert "Figures as of 15 Jun 2026, 09:15 UTC (just now)" in page and "1 overdue follow-ups, team" in page
    assert row().computed_at == later  # stored: the next request reads them

    # a new day: yesterday's figures (overdue, this month) are not shown, even when young
    midnight = dt.datetime(2026, 6, 16, 0, 0, 30)
    with clock.frozen(dt.datetime(2026, 6, 15, 23, 59, 50)):
        scheduler_job(stored_figures)
    with clock.frozen(midnight):
        page = text_of(client.get("/").get_data(as_text=True))
    assert "Figures as of 16 Jun 2026, 00:00 UTC" in page and row().day == dt.date(2026, 6, 16)


def test_a_missing_row_is_counted_by_the_first_request_and_stored(client, login_as, stored_figures):
    login_as("viewer")
    assert row() is None
    page = text_of(client.get("/").get_data(as_text=True))
    assert "Figures as of 15 Jun 2026, 09:00 UTC (just now)" in page
    assert row() is not None and row().computed_at == FROZEN_AT


def test_count_again_counts_for_analysts_once_per_interval_and_never_for_viewers(client, login_as, make_user,
                                                                                  stored_figures):
    viewer = make_user("viewer")
    analyst = login_as("analyst")
    scheduler_job(stored_figures)
    assert "Count again now" in client.get("/").get_data(as_text=True)
    engagement = factories.engagement(owner=analyst, opened_on=dt.date(2026, 4, 1))
    db.session.add(Reminder(engagement=engagement, due_on=dt.date(2026, 6, 1), reason="late"))
    db.session.commit()

    # moments after the last count: not counted again, and the page says why
    with clock.frozen(FROZEN_AT + dt.timedelta(seconds=20)):
        answer = client.post("/main/count-again", follow_redirects=True)
    assert row().computed_at == FROZEN_AT
    assert "The figures were counted at 09:00 UTC, just now: they already include changes made before then." \
        in text_of(answer.get_data(as_text=True))

    later = FROZEN_AT + dt.timedelta(minutes=1)
    with clock.frozen(later):
        answer = client.post("/main/count-again")
        assert answer.status_code == 302 and answer.headers["Location"] == "/"
        page = text_of(client.get("/").get_data(as_text=True))
    assert row().computed_at == later
    assert "Figures counted again: as of 09:01 UTC." in page and "1 overdue follow-ups, team (mine 1)" in page

    # a viewer sees no button and cannot count
    client.post("/auth/logout")
    assert client.post("/auth/login", data={"email": viewer.email, "password": PASSWORD}).status_code == 302
    assert "Count again now" not in client.get("/").get_data(as_text=True)
    with clock.frozen(FROZEN_AT + dt.timedelta(minutes=5)):
        assert client.post("/main/count-again").status_code == 403
    assert row().computed_at == later


def test_count_again_needs_the_forms_csrf_token(make_app, make_user, app, stored_figures):
    protected = make_app(WTF_CSRF_ENABLED=True, DASHBOARD_MAX_AGE_SECONDS=900)
    analyst = make_user("analyst")
    client = protected.test_client()
    token = csrf_token_from(client.get("/auth/login").get_data(as_text=True))
    client.post("/auth/login", data={"email": analyst.email, "password": PASSWORD, "csrf_token": token})
    page = client.get("/").get_data(as_text=True)  # counted (missing) at 09:00
    with clock.frozen(FROZEN_AT + dt.timedelta(minutes=1)):
        assert client.post("/main/count-again").status_code == 400
        assert row().computed_at == FROZEN_AT
        assert client.post("/main/count-again", data={"csrf_token": csrf_token_from(page)}).status_code == 302
    assert row().computed_at == FROZEN_AT + dt.timedelta(minutes=1)


def test_mine_is_each_users_own_from_the_one_stored_row(client, login_as, make_user, stored_figures):
    ada, bo = make_user("analyst"), make_user("analyst")
    for owner, overdue, this_week in ((ada, 2, 1), (bo, 1, 3), (None, 4, 0)):
        engagement = factories.engagement(owner=owner, opened_on=dt.date(2026, 4, 1))
        for _ in range(overdue):
            db.session.add(Reminder(engagement=engagement, due_on=dt.date(2026, 6, 1), reason="late"))
        for _ in range(this_week):
            db.session.add(Reminder(engagement=engagement, due_on=dt.date(2026, 6, 18), reason="soon"))
    db.session.commit()
    scheduler_job(stored_figures)
    for user, mine_overdue, mine_week in ((ada, 2, 1), (bo, 1, 3)):
        client.post("/auth/logout")
        assert client.post("/auth/login", data={"email": user.email, "password": PASSWORD}).status_code == 302
        page = text_of(client.get("/").get_data(as_text=True))
        assert f"7 overdue follow-ups, team (mine {mine_overdue})" in page
        assert f"4 due today or in the next 7 days, team (mine {mine_week})" in page
    viewer = login_as("viewer")  # owns nothing
    assert viewer.id not in (ada.id, bo.id)
    assert "7 overdue follow-ups, team (mine 0)" in text_of(client.get("/").get_data(as_text=True))
    assert row().computed_at == FROZEN_AT  # all read from one row, counted once


def test_two_counts_at_once_both_succeed_and_leave_one_row(app, make_user, stored_figures):
    """Two workers counting at the same moment (the row missing): each is held at its first write until
    both have counted, then both upsert the one row keyed by kind; neither fails, no second row."""
    first, second = make_user("analyst"), make_user("analyst")
    engagement = factories.engagement(owner=first, opened_on=dt.date(2026, 4, 1))
    db.session.add(Reminder(engagement=engagement, due_on=dt.date(2026, 6, 1), reason="late"))
    db.session.commit()
    answers = post_in_threads(app, [(user.email, PASSWORD, "/main/count-again", {}, False)
                                    for user in (first, second)])
    assert [a["status"] for a in answers] == [302, 302] and all(a["held"] for a in answers)
    assert all("Figures counted again: as of 09:00 UTC." in text_of(a["page"]) for a in answers)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(DashboardFigures)) == 1
    assert row().data["reminders"][str(first.id)]["overdue"] == 1


def test_an_older_count_never_replaces_a_newer_one(app, stored_figures):
    newer = figures.count(FROZEN_AT + dt.timedelta(minutes=5))
    older = figures.count(FROZEN_AT)
    figures.store(newer)
    figures.store(older)  # finished last, counted first: ignored
    assert row().computed_at == FROZEN_AT + dt.timedelta(minutes=5)


def build_everything(make_user) -> dict:
    """Owners, stages, reminders, contacts, next steps, a fund with listed holdings, a divested company held again."""
    ada, bo = make_user("analyst"), make_user("analyst")
    made = {"ada": ada, "bo": bo}
    listed = factories.company("Listed Co")
    listed.risk_flags.append(RiskFlag(source="us_entity_list", citation="entity list"))
    noted = factories.company("Noted Co")
    noted.risk_flags.append(RiskFlag(source="analyst", citation="analyst note"))
    a1 = factories.engagement(owner=ada, company=listed, opened_on=dt.date(2026, 1, 5))
    a2 = factories.engagement(owner=ada, opened_on=dt.date(2026, 4, 1))
    b1 = factories.engagement(owner=bo, company=noted, opened_on=dt.date(2026, 4, 1))
    loose = factories.engagement(opened_on=dt.date(2026, 4, 1))
    sold = factories.engagement(owner=bo, company=factories.company("Sold Co"), opened_on=dt.date(2026, 1, 5))
    cycle.move_stage(a1, "mapping_requested", on=dt.date(2026, 5, 10), today=TODAY, actor_id=None)
    cycle.move_stage(a2, "mapping_requested", on=dt.date(2026, 6, 3), today=TODAY, actor_id=None)
    cycle.move_stage(sold, "closed", on=dt.date(2026, 3, 10), today=TODAY, actor_id=None, outcome="divested",
                     note="Sold.")
    a2.next_step, a2.next_step_on = "Write", dt.date(2026, 6, 20)
    b1.escalation = "follow_up"
    db.session.add_all([
        Reminder(engagement=a1, due_on=dt.date(2026, 6, 1), reason="late"),
        Reminder(engagement=b1, due_on=dt.date(2026, 6, 15), reason="today"),
        Reminder(engagement=loose, due_on=dt.date(2026, 7, 1), reason="later"),
        Interaction(engagement=b1, kind="email", direction="outbound", occurred_on=dt.date(2026, 6, 2)),
        Interaction(engagement=a1, kind="call", direction="outbound", occurred_on=dt.date(2026, 5, 2)),
    ])
    fund = Fund(name="Figures Fund", base_currency="USD")
    db.session.add(fund)
    db.session.flush()
    for company, value in ((listed, Decimal("1000000.50")), (noted, Decimal(2_000_000)), (sold.company, None),
                           (factories.company("Plain Co"), Decimal(7_000_000))):
        db.session.add(Holding(fund_id=fund.id, company_id=company.id, as_of=dt.date(2026, 5, 31), market_value=value))
    db.session.commit()
    made.update(a1=a1, a2=a2, b1=b1, loose=loose, sold=sold, fund=fund)
    return made


def page_without_age(client) -> str:
    """The dashboard without the line saying how old its figures are (and its button)."""
    html = client.get("/").get_data(as_text=True)
    return re.sub(r'<div class="figures-age">.*?</div>', "", html, flags=re.S)


def test_stored_figures_equal_the_live_count_after_a_series_of_writes(client, login_as, make_user, stored_figures):
    viewer = login_as("viewer")
    made = build_everything(make_user)
    ada, a1, b1, loose = made["ada"], made["a1"], made["b1"], made["loose"]

    def writes():
        yield "a stage move", lambda: cycle.move_stage(b1, "mapping_requested", on=TODAY, today=TODAY, actor_id=None)
        yield "a reminder done", lambda: setattr(db.session.scalar(
            sa.select(Reminder).where(Reminder.engagement_id == a1.id)), "status", "done")
        yield "a new owner", lambda: setattr(loose, "owner_id", ada.id)
        yield "a contact", lambda: db.session.add(Interaction(engagement=loose, kind="call", direction="outbound",
                                                              occurred_on=TODAY))
        yield "a closing", lambda: cycle.move_stage(a1, "closed", on=TODAY, today=TODAY, actor_id=None,
                                                    outcome="dropped")
        yield "new holdings", lambda: db.session.add_all([
            Holding(fund_id=made["fund"].id, company_id=company_id, as_of=dt.date(2026, 6, 12), market_value=value)
            for company_id, value in ((b1.company_id, Decimal(5)), (made["sold"].company_id, Decimal(7)))])

    at, seen = FROZEN_AT, []
    for what, write in [("the start", lambda: None), *writes()]:
        write()
        db.session.commit()
        at += dt.timedelta(minutes=1)
        with clock.frozen(at):
            scheduler_job(stored_figures)
            assert row().data == figures.compute(TODAY), what  # JSON as stored, read back
            assert not seen or row().data != seen[-1], f"{what} changed no stored figure"
            seen.append(row().data)
            stored_page = page_without_age(client)
            stored_figures.config["DASHBOARD_MAX_AGE_SECONDS"] = 0
            try:
                live_page = page_without_age(client)
            finally:
                stored_figures.config["DASHBOARD_MAX_AGE_SECONDS"] = 900
        assert stored_page == live_page, what
    # the series did change the figures the page shows
    page = text_of(stored_page)
    assert viewer.name and "Divested companies held again" in page and "Sold Co" in page
    assert "Figures Fund" in page and "12 Jun 2026" in page


def test_dashboard_queries_stay_flat_with_stored_figures(client, login_as, make_user, stored_figures, count_queries):
    login_as("viewer")
    build_everything(make_user)
    scheduler_job(stored_figures)
    client.get("/")
    with count_queries() as few:
        assert client.get("/").status_code == 200
    for n in range(5):
        engagement = factories.engagement(owner=make_user("analyst"), opened_on=dt.date(2026, 4, 1))
        engagement.next_step, engagement.next_step_on = "Call", dt.date(2026, 6, 16)
        db.session.add(Reminder(engagement=engagement, due_on=dt.date(2026, 6, 1), reason="late"))
        db.session.add(Fund(name=f"Another Fund {n}", base_currency="EUR"))
    db.session.commit()
    with clock.frozen(FROZEN_AT + dt.timedelta(minutes=1)):
        scheduler_job(stored_figures)
        with count_queries() as many:
            assert client.get("/").status_code == 200
    assert many.count == few.count
    assert whole_table_counts(many.statements) == []


def test_the_cli_counts_like_the_scheduler_and_a_zero_interval_registers_no_job(app, runner, stored_figures):
    result = runner.invoke(args=["dashboard-figures", "--now", "2026-06-15T10:30"])
    assert result.exit_code == 0 and result.output.startswith("dashboard figures counted in ")
    assert row().computed_at == dt.datetime(2026, 6, 15, 10, 30) and row().day == TODAY
    assert runner.invoke(args=["dashboard-figures", "--now", "soon"]).exit_code == 1  # said, nothing stored
    assert row().computed_at == dt.datetime(2026, 6, 15, 10, 30)
    saved = app.config["DASHBOARD_REFRESH_SECONDS"]
    app.config["DASHBOARD_REFRESH_SECONDS"] = 0
    try:
        assert "dashboard-figures" not in {job.id for job in jobs(app)}
    finally:
        app.config["DASHBOARD_REFRESH_SECONDS"] = saved
    assert "dashboard-figures" in {job.id for job in jobs(app)}
