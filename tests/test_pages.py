"""The read pages render the demo data, escape what they show, and keep a flat query count."""

import datetime as dt
import re

import sqlalchemy as sa

from engage.extensions import db
from engage.models import (
    Campaign,
    Company,
    CompanyAlias,
    Engagement,
    EngagementEvent,
    Fund,
    Holding,
    Interaction,
    Reminder,
    RiskFlag,
    Rubric,
    Score,
    Stage,
)


def seed_demo(runner, monkeypatch):
    monkeypatch.setenv("ENGAGE_DEMO_PASSWORD", "demo password for tests")
    assert runner.invoke(args=["seed", "--demo"]).exit_code == 0


def test_demo_pages_render_for_a_viewer(client, runner, login_as, monkeypatch):
    seed_demo(runner, monkeypatch)
    login_as("viewer")
    dashboard = client.get("/").get_data(as_text=True)
    assert "Engagements by stage" in dashboard and "Mapping requested" in dashboard
    companies = client.get("/companies?q=hikvision").get_data(as_text=True)
    assert "Hangzhou Hikvision" in companies and "Zhejiang Dahua" not in companies
    assert "CNE100000PM8" in client.get("/companies?q=CNE100000PM8").get_data(as_text=True)
    assert "Alphabet" in client.get("/companies?q=google").get_data(as_text=True)  # alias search
    assert "US Entity List" in client.get("/companies?source=us_entity_list").get_data(as_text=True)
    hik = db.session.scalar(sa.select(Company).where(Company.isin == "CNE100000PM8"))
    page = client.get(f"/companies/{hik.id}").get_data(as_text=True)
    assert "84 FR 54002" in page and "09 Oct 2019" in page
    engagement = db.session.scalar(sa.select(Engagement).where(Engagement.company_id == hik.id))
    page = client.get(f"/engagements/{engagement.id}").get_data(as_text=True)
    assert "Investor expectations on the Uyghur Region" in page and "Timeline" in page
    assert "Reminders" in client.get("/reminders?show=all").get_data(as_text=True)
    # a viewer sees no admin navigation
    assert "/admin/" not in dashboard


def test_user_text_is_escaped(client, login_as):
    login_as("viewer")
    db.session.add(Company(name="<script>alert('x')</script> Ltd"))
    db.session.commit()
    page = client.get("/companies").get_data(as_text=True)
    assert "<script>alert" not in page and "&lt;script&gt;" in page


def test_empty_states_say_what_to_do(client, login_as):
    login_as("viewer")
    assert "No company matches" in client.get("/companies?q=zzz").get_data(as_text=True)
    assert "Nothing overdue." in client.get("/reminders").get_data(as_text=True)


def add_engagements(n: int, start: int, owner=None) -> None:
    """n companies, each flagged, held by a fund, engaged, contacted, reminded and scored."""
    campaign = db.session.scalar(sa.select(Campaign)) or Campaign(slug="c", name="C")
    fund = db.session.scalar(sa.select(Fund)) or Fund(name="Index fund")
    rubric = db.session.scalar(sa.select(Rubric)) or Rubric(campaign=campaign, name="R", version=1)
    today = dt.date(2026, 1, 1)
    for i in range(start, start + n):
        company = Company(name=f"Company {i:04d}", ticker=f"T{i}", sector="Solar", country="CN")
        company.risk_flags.append(RiskFlag(source="analyst", citation=f"note {i}"))
        company.aliases.append(CompanyAlias(alias=f"Alias {i}"))
        db.session.add(Holding(fund=fund, company=company, as_of=today, market_value=1000 + i))
        engagement = Engagement(company=company, campaign=campaign, opened_on=today, owner=owner)
        db.session.add(Interaction(engagement=engagement, kind="letter", direction="outbound", occurred_on=today))
        db.session.add(Reminder(engagement=engagement, due_on=today, reason="reply due"))
        db.session.add(Score(engagement=engagement, rubric=rubric, scored_on=today, total=40))
        engagement.events.append(EngagementEvent(kind="stage", from_value="identified", to_value="identified",
                                                 occurred_on=today))
    db.session.commit()


LIST_PAGES = ["/", "/companies", "/companies?q=company", "/companies?engaged=yes&sort=country&dir=desc",
              "/companies?source=analyst&sector=Solar", "/companies?sort=score&dir=desc&trend=down&score_below=90", "/engagements", "/engagements?stage=identified",
              "/engagements?owner=me&sort=score&dir=desc", "/engagements?overdue=yes&sort=next_follow_up",
              "/engagements?stale=yes&sort=last_contact", "/reminders", "/reminders?who=all", "/admin/audit", "/admin/outbox", "/holdings/funds", "/holdings/screening", "/holdings/review", "/exports",
              "/admin/users"]


def test_list_pages_query_count_does_not_grow_with_rows(client, login_as, count_queries):
    admin = login_as("admin")
    add_engagements(3, 0, owner=admin)
    small = {}
    for url in LIST_PAGES:
        with count_queries() as counter:
            assert client.get(url).status_code == 200
        small[url] = counter.count
    add_engagements(30, 3, owner=admin)
    for url in LIST_PAGES:
        with count_queries() as counter:
            assert client.get(url).status_code == 200
        assert counter.count == small[url], (url, counter.statements)


def test_pagination_keeps_filters(client, login_as, app):
    login_as("viewer")
    add_engagements(app.config["PAGE_SIZE"] + 5, 0)
    page = client.get("/companies?q=company").get_data(as_text=True)
    link = re.search(r'href="([^"]*)" rel="next"', page).group(1).replace("&amp;", "&")
    assert "after=" in link and "q=company" in link and "55 rows, 50 a page" in page
    second = client.get(link).get_data(as_text=True)
    assert second.count('data-label="Company"><a href="/companies/') == 5 and 'rel="next"' not in second
    assert 'rel="prev"' in second and "q=company" in re.search(r'href="([^"]*)" rel="prev"', second).group(1)


def test_engagement_page_query_count_does_not_grow_with_the_timeline(client, login_as, count_queries):
    login_as("analyst")
    add_engagements(1, 0)
    engagement = db.session.scalar(sa.select(Engagement))

    def grow(n):
        for i in range(n):
            db.session.add(Interaction(engagement=engagement, kind="call", direction="outbound",
                                       occurred_on=dt.date(2026, 1, 2), subject=f"call {i}"))
            engagement.events.append(EngagementEvent(kind="escalation", from_value="none", to_value="none",
                                                     occurred_on=dt.date(2026, 1, 2)))
        db.session.commit()

    grow(2)
    with count_queries() as small:
        assert client.get(f"/engagements/{engagement.id}").status_code == 200
    grow(25)
    with count_queries() as large:
        assert client.get(f"/engagements/{engagement.id}").status_code == 200
    assert large.count == small.count, large.statements


def test_dashboard_funnel_is_a_bar_chart_told_in_words(client, login_as):
    from tests import factories

    factories.engagement(stage=Stage.IDENTIFIED.value)
    factories.engagement(stage=Stage.IDENTIFIED.value)
    factories.engagement(stage=Stage.CLOSED.value, closed_on=dt.date(2026, 3, 1), outcome="dropped")
    db.session.commit()
    login_as("viewer")
    page = client.get("/").get_data(as_text=True)
    assert '<desc id="funnel-desc">Identified: 2. Mapping requested: 0.' in page and "Closed: 1. </desc>" in page
    assert 'href="/engagements?stage=identified" aria-label="Identified: 2"' in page
    # bars that link make a group of named links, not an image (whose links would go unannounced)
    assert 'role="group" aria-labelledby="funnel-title" aria-describedby="funnel-desc"' in page
    assert 'width="300.0"' in page and 'width="150.0" height="20" rx="3" class="muted"' in page  # closed: muted, half
    assert 'width="1" height="20"' in page  # an empty stage still shows a sliver
