"""Limits on input: dates within 1990-2100 and numbers finite and bounded, on every form and CLI option."""

from __future__ import annotations

import datetime as dt
import importlib
import io
import pkgutil
from decimal import Decimal

import pytest
import sqlalchemy as sa
from flask_wtf import FlaskForm
from icalendar import Calendar
from wtforms import DateField, DecimalField, FloatField, IntegerField

import engage
from engage.extensions import db
from engage.models import (
    Campaign,
    Criterion,
    Engagement,
    EngagementEvent,
    Fund,
    Holding,
    Interaction,
    Investor,
    Letter,
    Reminder,
    RiskFlag,
    Rubric,
    Score,
)
from engage.validators import DATE_MAX, DATE_MIN, FiniteDecimal, date_problem, decimal_problem, sane_date, whole_number
from tests import factories

OUTSIDE = "outside the dates Engage accepts"
BAD_DATES = ["9999-12-31", "0001-01-01", "1989-12-31", "2101-01-01"]


def all_form_classes() -> list[type]:
    """Every FlaskForm subclass defined in the engage package (forms modules and routes alike)."""
    for module in pkgutil.walk_packages(engage.__path__, "engage."):
        importlib.import_module(module.name)
    found, stack = set(), [FlaskForm]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub.__module__.startswith("engage."):
                found.add(sub)
            stack.append(sub)
    return sorted(found, key=lambda c: (c.__module__, c.__name__))


def unbound_fields(form_class):
    for name in dir(form_class):
        value = getattr(form_class, name, None)
        if hasattr(value, "field_class") and hasattr(value, "kwargs"):
            yield name, value


def test_every_date_field_uses_the_one_date_validator():
    checked = 0
    for form_class in all_form_classes():
        for name, field in unbound_fields(form_class):
            if issubclass(field.field_class, DateField):
                checked += 1
                assert sane_date in field.kwargs.get("validators", []), f"{form_class.__name__}.{name}"
    assert checked >= 9


def test_every_number_field_is_bounded():
    """DecimalField and FloatField carry FiniteDecimal; IntegerField a NumberRange."""
    from wtforms.validators import NumberRange

    checked = 0
    for form_class in all_form_classes():
        for name, field in unbound_fields(form_class):
            validators = field.kwargs.get("validators", [])
            if issubclass(field.field_class, (DecimalField, FloatField)):
                checked += 1
                assert any(isinstance(v, FiniteDecimal) for v in validators), f"{form_class.__name__}.{name}"
            elif issubclass(field.field_class, IntegerField):
                checked += 1
                assert any(isinstance(v, (NumberRange, FiniteDecimal)) for v in validators), \
                    f"{form_class.__name__}.{name}"
    assert checked >= 5


def test_date_range_edges():
    assert date_problem(DATE_MIN) is None and date_problem(DATE_MAX) is None
    assert date_problem(dt.datetime(2100, 12, 31, 23, 59)) is None
    for value in (dt.date(1989, 12, 31), dt.date(2101, 1, 1), dt.date.max, dt.date.min):
        assert OUTSIDE in date_problem(value)


# --- the calendar feed survives any stored date ---------------------------------------------------

def test_calendar_feed_survives_dates_at_the_ends_of_the_calendar(client, login_as, app):
    owner = login_as("analyst")
    engagement = factories.engagement(owner=owner)
    db.session.add_all([
        Reminder(engagement=engagement, due_on=dt.date(9999, 12, 31), reason="far future"),
        Reminder(engagement=engagement, due_on=dt.date(9999, 12, 31), reason="snoozed far", status="snoozed"),
        Reminder(engagement=engagement, due_on=dt.date(1, 1, 1), reason="far past"),
        Reminder(engagement=engagement, due_on=dt.date(2026, 7, 1), reason="ordinary"),
    ])
    db.session.commit()
    assert client.post("/account/calendar").status_code == 302
    db.session.expire_all()
    token = db.session.get(type(owner), owner.id).calendar_token
    feed = app.test_client().get(f"/reminders/calendar/{token}.ics")
    assert feed.status_code == 200
    events = {str(e["summary"]).split(": ", 1)[1]: e for e in Calendar.from_ical(feed.data).walk("VEVENT")}
    assert set(events) == {"far future", "snoozed far", "far past", "ordinary"}
    assert events["far future"].decoded("dtstart") == dt.date(9999, 12, 31) and "dtend" not in events["far future"]
    assert events["ordinary"].decoded("dtend") == dt.date(2026, 7, 2)
    for page in ("/reminders", f"/engagements/{engagement.id}", "/", "/engagements?sort=next_follow_up"):
        assert client.get(page).status_code == 200, page


# --- every date field refuses out-of-range dates with a clear message ------------------------------

def test_reminder_dates_are_bounded(client, login_as, frozen_today):
    login_as("analyst")
    engagement = factories.engagement()
    reminder = Reminder(engagement=engagement, due_on=dt.date(2026, 7, 1), reason="reply due")
    db.session.add(reminder)
    db.session.commit()
    for bad in BAD_DATES:
        added = client.post(f"/reminders/add/{engagement.id}", data={"due_on": bad, "reason": "x"},
                            follow_redirects=True)
        assert OUTSIDE in added.get_data(as_text=True), bad
        snoozed = client.post(f"/reminders/{reminder.id}/snooze", data={"until": bad}, follow_redirects=True)
        assert OUTSIDE in snoozed.get_data(as_text=True), bad
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count(Reminder.id))) == 1
    assert db.session.get(Reminder, reminder.id).due_on == dt.date(2026, 7, 1)
    ok = client.post(f"/reminders/add/{engagement.id}", data={"due_on": "2100-12-31", "reason": "late"})
    assert ok.status_code == 302
    assert db.session.scalar(sa.select(sa.func.count(Reminder.id))) == 2


def test_engagement_dates_are_bounded(client, login_as, frozen_today):
    analyst = login_as("analyst")
    engagement = factories.engagement(opened_on=dt.date(2026, 1, 5))
    eid, version = engagement.id, str(engagement.version)
    company, campaign = factories.company(), factories.campaign()
    db.session.commit()
    for bad in BAD_DATES:
        opened = client.post(f"/engagements/open/{company.id}", data={
            "campaign_id": campaign.id, "owner_id": analyst.id, "opened_on": bad})
        logged = client.post(f"/engagements/{eid}/interactions", data={
            "kind": "meeting", "direction": "outbound", "occurred_on": bad, "version": version})
        moved = client.post(f"/engagements/{eid}/stage", data={
            "target": "mapping_requested", "occurred_on": bad, "version": version})
        escalated = client.post(f"/engagements/{eid}/escalation", data={
            "target": "follow_up", "occurred_on": bad, "version": version})
        for response in (opened, logged, moved, escalated):
            assert response.status_code == 422, (bad, response.request.path)
            assert OUTSIDE in response.get_data(as_text=True), (bad, response.request.path)
    assert db.session.scalar(sa.select(sa.func.count(Engagement.id))) == 1
    assert db.session.scalar(sa.select(sa.func.count(Interaction.id))) == 0
    assert db.session.scalar(sa.select(sa.func.count(EngagementEvent.id))) == 0


def test_flag_letter_and_score_dates_are_bounded(client, login_as, runner, frozen_today):
    assert runner.invoke(args=["seed"]).exit_code == 0
    login_as("analyst")
    campaign = db.session.scalar(sa.select(Campaign).where(Campaign.slug == "xuar"))
    engagement = factories.engagement(campaign=campaign, opened_on=dt.date(2026, 1, 5))
    reply = Interaction(engagement=engagement, kind="response", direction="inbound", occurred_on=dt.date(2026, 6, 1))
    db.session.add(reply)
    db.session.commit()
    from engage.models import LetterTemplate

    template = db.session.scalar(sa.select(LetterTemplate).where(LetterTemplate.kind == "initial"))
    assert client.post(f"/letters/generate/{engagement.id}", data={"template_id": template.id}).status_code == 302
    letter = db.session.scalar(sa.select(Letter))
    rubric = campaign.rubrics[-1]
    flags_before = db.session.scalar(sa.select(sa.func.count(RiskFlag.id)))
    for bad in BAD_DATES:
        flag = client.post(f"/companies/{engagement.company_id}/flags", data={
            "source": "analyst", "citation": "note", "effective_date": bad})
        sent = client.post(f"/letters/{letter.id}/send", data={"sent_on": bad, "channel": "post"})
        levels = {f"level-{c.id}": "1" for c in rubric.criteria}
        scored = client.post(f"/scoring/interactions/{reply.id}", data={"scored_on": bad, **levels})
        for response in (flag, sent, scored):
            assert response.status_code == 422, (bad, response.request.path)
            assert OUTSIDE in response.get_data(as_text=True), (bad, response.request.path)
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count(RiskFlag.id))) == flags_before
    assert db.session.get(Letter, letter.id).status == "draft"
    assert db.session.scalar(sa.select(sa.func.count(Score.id))) == 0


CSV = "Name,ISIN,Market Value,Weight (%)\nApple Inc,US0378331005,1000,1.5\n"


def test_holdings_as_of_is_bounded_on_the_web_and_the_cli(client, login_as, runner, tmp_path):
    login_as("analyst")
    fund = Fund(name="Bounded Fund")
    db.session.add(fund)
    db.session.commit()
    path = tmp_path / "plain.csv"
    path.write_text(CSV, encoding="utf-8")
    for bad in BAD_DATES:
        response = client.post("/holdings/import", data={
            "fund_id": fund.id, "as_of": bad, "file": (io.BytesIO(CSV.encode()), "plain.csv")},
            content_type="multipart/form-data")
        assert response.status_code == 422 and OUTSIDE in response.get_data(as_text=True), bad
        result = runner.invoke(args=["holdings", "import", str(path), "--fund", "Bounded Fund", "--as-of", bad])
        assert result.exit_code == 1 and OUTSIDE in result.stderr and "--as-of" in result.stderr, bad
    assert db.session.scalar(sa.select(sa.func.count(Holding.id))) == 0
    ok = runner.invoke(args=["holdings", "import", str(path), "--fund", "Bounded Fund", "--as-of", "2026-05-31", "--partial"])
    assert ok.exit_code == 0, ok.output


def test_reminders_run_now_is_bounded(runner):
    for bad in ("9999-12-31T00:00", "0001-01-01T00:00", "2101-01-01T00:00+00:00", "2100-12-31T23:00-02:00",
                "0001-01-01T00:00+01:00"):
        result = runner.invoke(args=["reminders", "run", "--now", bad])
        assert result.exit_code == 1 and OUTSIDE in result.stderr and "--now" in result.stderr, bad
    assert runner.invoke(args=["reminders", "run", "--now", "nonsense"]).exit_code == 1
    ok = runner.invoke(args=["reminders", "run", "--now", "2100-12-31T23:00"])
    assert ok.exit_code == 0, ok.output


# --- numbers ----------------------------------------------------------------------------------



def test_decimal_problem_refuses_non_finite_and_out_of_bounds():
    bounds = {"minimum": 0, "maximum": 10**15, "places": 2}
    for bad in ["inf", "-inf", "nan", "sNaN", "1e400", "1e30", "-1", "0.001", "1e-400", "abc"]:
        assert decimal_problem(bad, **bounds), bad
    for good in ["0", "1e3", "48000000000.50", "1000000000000000"]:
        assert decimal_problem(good, **bounds) is None, good


def test_investor_aum_is_finite_and_bounded(client, login_as):
    login_as("admin")
    investor = Investor(name="Bounded Pension Fund", aum_usd=Decimal("1000000"))
    db.session.add(investor)
    db.session.commit()
    for bad in ["inf", "-inf", "nan", "sNaN", "1e400", "1e30", "-1", "1000000000000000.01", "1.005", "1e-400"]:
        edited = client.post(f"/admin/investors/{investor.id}", data={"name": investor.name, "kind": "investor",
                                                                       "aum_usd": bad})
        created = client.post("/admin/investors/new", data={"name": f"New {bad}", "kind": "investor", "aum_usd": bad})
        for response in (edited, created):
            assert response.status_code == 422, bad
            page = response.get_data(as_text=True)
            assert "Give a" in page, bad  # "Give a finite number", "Give a number from 0 to ...", "Give at most 2 ..."
            assert 'role="alert"' in page or "flash-error" in page or 'class="error"' in page
    db.session.expire_all()
    assert db.session.get(Investor, investor.id).aum_usd == Decimal("1000000")
    assert db.session.scalar(sa.select(sa.func.count(Investor.id))) == 1
    ok = client.post(f"/admin/investors/{investor.id}", data={"name": investor.name, "kind": "investor",
                                                               "aum_usd": "130000000000000"})
    assert ok.status_code == 302
    assert client.get(f"/admin/investors/{investor.id}").status_code == 200
    assert "US$130.00 trillion" in client.get("/admin/investors").get_data(as_text=True)


def test_a_stored_non_finite_amount_does_not_break_pages(client, login_as, app):
    """Defensive: a value stored before the validator existed still draws (SQLite kept such values)."""
    from engage.formatting import AmountError, format_money, money_on_page

    # pages say so; a letter refuses (it must never print a made-up amount)
    assert "not a finite amount" in money_on_page(Decimal("Infinity")) and "not a finite amount" in money_on_page(float("nan"))
    with pytest.raises(AmountError):
        format_money(Decimal("Infinity"))
    if db.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's NUMERIC(20, 2) cannot hold infinity")
    login_as("admin")
    with db.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO investors (name, kind, aum_usd, created_at, updated_at) "
                             "VALUES ('Broken', 'investor', 1e999, '2026-01-01', '2026-01-01')"))
    investor_id = db.session.scalar(sa.select(Investor.id))
    assert client.get(f"/admin/investors/{investor_id}").status_code == 200
    assert "Infinity trillion" not in client.get("/admin/investors").get_data(as_text=True)


def test_rubric_weights_are_finite_bounded_and_storable(client, login_as, runner):
    assert runner.invoke(args=["seed"]).exit_code == 0
    login_as("admin")
    campaign = db.session.scalar(sa.select(Campaign).where(Campaign.slug == "xuar"))
    assert client.post(f"/scoring/campaigns/{campaign.id}/rubrics/new").status_code == 302
    draft = db.session.scalar(sa.select(Rubric).where(Rubric.published_at.is_(None)))
    row = {"count": "1", "key-1": "only", "title-1": "Only one", **{f"level{n}-1": f"level {n}" for n in range(5)}}
    for bad in ["inf", "-inf", "nan", "sNaN", "1e400", "1e30", "-1", "0", "0.001", "1e-30", "1000.01", "", "abc"]:
        response = client.post(f"/scoring/rubrics/{draft.id}", data={**row, "weight-1": bad})
        assert response.status_code == 422, bad
        assert "weight must be a positive number" in response.get_data(as_text=True), bad
    db.session.expire_all()
    assert [c.key for c in db.session.get(Rubric, draft.id).criteria] != ["only"]
    ok = client.post(f"/scoring/rubrics/{draft.id}", data={**row, "weight-1": "2.5"})
    assert ok.status_code == 302
    db.session.expire_all()
    assert [(c.key, c.weight) for c in db.session.get(Rubric, draft.id).criteria] == [("only", Decimal("2.50"))]


def test_score_levels_are_whole_numbers_from_0_to_4(client, login_as, runner, frozen_today):
    assert runner.invoke(args=["seed"]).exit_code == 0
    login_as("analyst")
    campaign = db.session.scalar(sa.select(Campaign).where(Campaign.slug == "xuar"))
    engagement = factories.engagement(campaign=campaign, opened_on=dt.date(2026, 1, 5))
    reply = Interaction(engagement=engagement, kind="response", direction="inbound", occurred_on=dt.date(2026, 6, 1))
    db.session.add(reply)
    db.session.commit()
    rubric = campaign.rubrics[-1]
    first = rubric.criteria[0]
    for bad in ["²", "٣", "1e400", "-1", "5", "99999999999999999999", "1.0", "inf", "nan"]:
        data = {"scored_on": "2026-06-10", **{f"level-{c.id}": "1" for c in rubric.criteria}, f"level-{first.id}": bad}
        response = client.post(f"/scoring/interactions/{reply.id}", data=data)
        assert response.status_code == 422, bad
        assert "levels run from 0 to 4" in response.get_data(as_text=True), bad
    assert db.session.scalar(sa.select(sa.func.count(Score.id))) == 0


def test_campaign_numbers_are_bounded(client, login_as, runner):
    assert runner.invoke(args=["seed"]).exit_code == 0
    login_as("admin")
    campaign = db.session.scalar(sa.select(Campaign).where(Campaign.slug == "xuar"))
    base = {"name": campaign.name, "response_window_days": "30", "follow_up_interval_days": "14",
            "follow_ups_before_escalation": "2", "warn_days_before": "3"}
    for field in ("response_window_days", "follow_up_interval_days", "follow_ups_before_escalation", "warn_days_before"):
        for bad in ["inf", "nan", "1e400", "-1", "99999999999999999999999", "9" * 5000, "²"]:
            response = client.post(f"/admin/campaigns/{campaign.id}", data={**base, field: bad})
            assert response.status_code == 422, (field, bad)
    db.session.expire_all()
    assert db.session.get(Campaign, campaign.id).response_window_days == 30


# --- property-based: the shared parsers never raise anything but their refusal -----------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

HOSTILE_TEXT = st.one_of(st.text(max_size=40), st.from_regex(r"-?[0-9٠-٩²]{0,30}([.eE][-+]?[0-9]{0,5})?", fullmatch=True),
                         st.sampled_from(["inf", "-Infinity", "nan", "sNaN", "1e999999", "9" * 5000, "0x1F", "1_000"]))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(HOSTILE_TEXT)
def test_whole_number_is_ascii_digits_within_bounds_or_none(text):
    value = whole_number(text, minimum=1, maximum=10**6)
    assert value is None or (1 <= value <= 10**6 and text.isascii() and text == str(int(text)).zfill(len(text)))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(HOSTILE_TEXT)
def test_decimal_problem_accepts_only_finite_bounded_numbers(text):
    problem = decimal_problem(text, minimum=0, maximum=10**15, places=2)
    if problem is None and text.strip():
        number = Decimal(text.strip())
        assert number.is_finite() and 0 <= number <= 10**15 and number.as_tuple().exponent >= -2


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.one_of(st.text(max_size=30), st.dates().map(dt.date.isoformat),
                 st.datetimes().map(dt.datetime.isoformat),
                 st.datetimes(timezones=st.timezones()).map(dt.datetime.isoformat),
                 st.sampled_from(["0001-01-01T00:00+01:00", "9999-12-31T23:59-01:00", "2100-12-31T23:00-02:00"])))
def test_cli_dates_parse_within_the_range_or_are_refused(text):
    from engage.validators import parse_date, parse_datetime

    for parse in (parse_date, parse_datetime):
        try:
            value = parse(text, "--x")
        except ValueError as exc:
            assert str(exc).startswith("--x")
        else:
            day = value.date() if isinstance(value, dt.datetime) else value
            assert DATE_MIN <= day <= DATE_MAX
