"""The read pages render the demo data, escape what they show, and keep a flat query count."""

import datetime as dt

import sqlalchemy as sa

from engage.extensions import db
from engage.models import Campaign, Company, Engagement, Interaction, Reminder, RiskFlag


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
    assert "Initial expectations letter" in page and "Timeline" in page
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
    assert "No reminder to show" in client.get("/reminders").get_data(as_text=True)


def add_engagements(n: int, start: int) -> None:
    campaign = db.session.scalar(sa.select(Campaign)) or Campaign(slug="c", name="C")
    today = dt.date(2026, 11, 1)
    for i in range(start, start + n):
        company = Company(name=f"Company {i:04d}", ticker=f"T{i}")
        company.risk_flags.append(RiskFlag(source="analyst", citation=f"note {i}"))
        engagement = Engagement(company=company, campaign=campaign, opened_on=today)
        db.session.add(Interaction(engagement=engagement, kind="letter", direction="outbound", occurred_on=today))
        db.session.add(Reminder(engagement=engagement, due_on=today, reason="reply due"))
    db.session.commit()


LIST_PAGES = ["/", "/companies", "/companies?q=company", "/engagements", "/engagements?stage=identified",
              "/reminders", "/reminders?show=all", "/admin/audit"]


def test_list_pages_query_count_does_not_grow_with_rows(client, login_as, count_queries):
    login_as("admin")
    add_engagements(3, 0)
    small = {}
    for url in LIST_PAGES:
        with count_queries() as counter:
            assert client.get(url).status_code == 200
        small[url] = counter.count
    add_engagements(30, 3)
    for url in LIST_PAGES:
        with count_queries() as counter:
            assert client.get(url).status_code == 200
        assert counter.count == small[url], (url, counter.statements)


def test_pagination_keeps_filters(client, login_as, app):
    login_as("viewer")
    add_engagements(app.config["PAGE_SIZE"] + 5, 0)
    page = client.get("/companies?q=company").get_data(as_text=True)
    assert "page=2" in page and "q=company" in page
    second = client.get("/companies?q=company&page=2").get_data(as_text=True)
    assert "Page 2 of 2" in second
