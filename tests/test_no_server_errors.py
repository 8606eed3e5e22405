"""No 500s: walk the URL map with hostile page numbers and with empty form posts.

The routes are read from the app, not from a list kept by hand, so a new list or a new form
is covered the day it is added.
"""

from __future__ import annotations

import datetime as dt
import secrets

import pytest
import sqlalchemy as sa
from flask import url_for

from engage.api import tokens
from engage.extensions import db
from engage.models import (
    ApiToken,
    Attachment,
    BackgroundJob,
    Campaign,
    Company,
    CompanyContact,
    Engagement,
    ExportRun,
    Fund,
    InboundMessage,
    MatchCandidate,
    Interaction,
    Investor,
    Letter,
    LetterBatch,
    LetterTemplate,
    LetterTemplateLanguage,
    OutboxEmail,
    Relationship,
    Reminder,
    RiskFlag,
    Rubric,
    SavedView,
    Score,
    User,
    ValueChainMap,
)

HOSTILE_PAGES = ["99999999999999999999999", str(2**63 - 1), str(2**63), str(2**31), "-1", "0", "abc", "1e3",
                 "٣", " 2", "2.0", ""]
#: Routes left out of the walks, and why.
SKIPPED = {
    "static": "files, not a page",
    "auth.logout": "would end the session the walk uses",
}


def get_routes(app):
    return sorted((r for r in app.url_map.iter_rules()
                   if "GET" in r.methods and not r.arguments and r.endpoint not in SKIPPED),
                  key=lambda r: r.rule)


def test_every_list_refuses_out_of_range_pages_with_404(app, client, login_as):
    """A page number the database cannot hold, or that is not a number, is a 404 on every list."""
    login_as("admin")
    db.session.add(Company(name="Only Company"))
    db.session.commit()
    with app.test_request_context():
        urls = [(rule.endpoint, url_for(rule.endpoint)) for rule in get_routes(app)]
    assert len(urls) > 15
    paginated = set()
    for endpoint, url in urls:
        plain = client.get(url).status_code
        assert plain < 500, (url, plain)
        for page in HOSTILE_PAGES:
            response = client.get(url, query_string={"page": page})
            assert response.status_code < 500, (url, page, response.status_code)
            # A page either does not page (same answer as without ?page=) or refuses a bad page with 404.
            if response.status_code == 404:
                paginated.add(endpoint)
            elif page != "":
                assert response.status_code == plain, (url, page, response.status_code)
    assert {"admin.audit_events", "admin.outbox", "holdings.review"} <= paginated
    # The companies and engagements lists page by cursor (engage.keyset): any page number, and
    # any cursor, gives the first page with a message instead of a 404
    for url in ("/companies", "/engagements"):
        for page in HOSTILE_PAGES:
            for key in ("page", "after", "before"):
                response = client.get(url, query_string={key: page})
                assert response.status_code == 200, (url, key, page, response.status_code)
    for endpoint, url in urls:
        if endpoint in paginated:
            for page in HOSTILE_PAGES[:-1]:
                assert client.get(url, query_string={"page": page}).status_code == 404, (url, page)


def test_ids_and_numbers_in_urls_past_any_column_are_404_or_400(app, client, login_as):
    """Path ids too large for the column, and query-string numbers in other scripts or sizes."""
    login_as("admin")
    with app.test_request_context():
        rules = [r for r in app.url_map.iter_rules() if "GET" in r.methods and r.arguments
                 and r.endpoint not in SKIPPED and r.endpoint not in ("reminders.calendar", "old_calendar")]
        urls = [url_for(r.endpoint, **{a: 2**63 for a in r.arguments}) for r in rules]
    assert len(urls) > 10
    for url in urls:
        assert client.get(url).status_code == 404, url
    for name in query_parameters():
        for value in ("99999999999999999999999", str(2**63), "²", "٣", "-1", "1e400", "nan", "\x00"):
            for url in ("/companies", "/engagements", "/reminders", "/admin/audit", "/admin/outbox", "/holdings/funds",
                        "/holdings/screening", "/exports", "/holdings/import", "/holdings/review"):
                response = client.get(url, query_string={name: value})
                assert response.status_code < 500, (url, name, value, response.status_code)


def query_parameters() -> set[str]:
    """Every query-string parameter a view reads, found in the source rather than listed by hand."""
    import pathlib
    import re

    import engage

    names = set()
    for path in pathlib.Path(engage.__file__).parent.rglob("*.py"):
        text = path.read_text()
        names |= set(re.findall(r"args\.get\(\"(\w+)\"", text)) | set(re.findall(r"args\[\"(\w+)\"\]", text))
    names |= {"campaign", "stage", "escalation", "owner", "sector", "overdue", "stale", "score_below", "trend"}
    assert {"page", "moderate", "fund_id"} <= names
    return names


def test_first_page_and_a_page_past_the_end(app, client, login_as):
    login_as("viewer")
    db.session.add(Company(name="Only Company"))
    db.session.commit()
    assert client.get("/companies?page=1").status_code == 200
    # the companies list pages by cursor: an old page number gives the first page and says so
    past = client.get("/companies?page=2")
    assert past.status_code == 200 and "no longer has numbered pages" in past.get_data(as_text=True)
    assert client.get("/engagements?page=1").status_code == 200  # an empty first page is not an error


# --- empty posts ------------------------------------------------------------------------------


@pytest.fixture()
def world(app, runner, monkeypatch):
    """The demo data set plus one row of every kind a URL can name."""
    monkeypatch.setenv("ENGAGE_DEMO_PASSWORD", "demo password for tests")
    result = runner.invoke(args=["seed", "--demo"])
    assert result.exit_code == 0, result.output
    engagement = db.session.scalar(sa.select(Engagement).where(Engagement.stage != "closed").order_by(Engagement.id))
    response = db.session.scalar(sa.select(Interaction).where(Interaction.kind == "response"))
    db.session.add(Attachment(interaction=response, filename="reply.pdf", stored_name=secrets.token_hex(8) + ".pdf",
                              content_type="application/pdf", size_bytes=1, sha256="0" * 64))
    db.session.add(OutboxEmail(recipient="x@example.org", subject="s", body_text="b", status="failed",
                                message_id=f"<{secrets.token_hex(8)}@engage>"))
    template = db.session.scalar(sa.select(LetterTemplate))
    db.session.add(LetterBatch(template=template))
    db.session.add(ExportRun(month="2026-01", filename="missing.csv"))
    db.session.add(BackgroundJob(kind="holdings_import", key="walk-job", label="A failed import", status="failed",
                                 params={"token": "0" * 32}, error="refused"))
    db.session.add(SavedView(owner=engagement.owner or db.session.scalar(sa.select(User).order_by(User.id)),
                             list_kind="engagements", name="Walk view", query="stage=open", shared=True))
    db.session.add(MatchCandidate(company_id=engagement.company_id, list_name="us_entity_list", entry_key="a possible match",
                                  score=80, reason="a name close to the entry's", status="rejected"))  # decided: screening keeps it
    db.session.add(Reminder(engagement=engagement, due_on=dt.date.today() + dt.timedelta(days=3), reason="r"))
    db.session.add(InboundMessage(message_key="0" * 64, folder="INBOX", uidvalidity=1, uid=1, subject="s",
                                  received_at=dt.datetime(2026, 1, 5), status="triage", reason="not matched",
                                  from_address="someone@company.example"))
    if not db.session.scalar(sa.select(Relationship.id).where(Relationship.company_id == engagement.company_id)):
        vc_map = ValueChainMap(company_id=engagement.company_id, number=1, source_kind="manual")
        db.session.add(Relationship(map=vc_map, company_id=engagement.company_id, kind="supplier",
                                    counterparty=Company(name="Walk Supplier (fictional)"), in_uyghur_region=True))
    db.session.commit()
    return engagement


def ids_for(rule) -> dict:
    """A valid value for each argument of a rule, taken from the database."""
    first = lambda model, *where: db.session.scalar(sa.select(model.id).where(*where).order_by(model.id))  # noqa: E731
    values = {}
    for arg in sorted(rule.arguments, key=lambda a: a in ("language", "contact_id", "relationship_id")):  # owners first
        if arg == "engagement_id":
            values[arg] = first(Engagement, Engagement.stage != "closed")
        elif arg == "company_id":
            values[arg] = db.session.scalar(sa.select(RiskFlag.company_id).order_by(RiskFlag.id))
        elif arg == "flag_id":
            values[arg] = first(RiskFlag)
        elif arg == "interaction_id":
            values[arg] = first(Interaction, Interaction.kind == "response")
        elif arg == "letter_id":
            values[arg] = first(Letter, Letter.status == "draft")
        elif arg == "template_id":
            values[arg] = first(LetterTemplate)
        elif arg in ("version", "number"):
            values[arg] = 1
        elif arg == "relationship_id":  # a relationship of the engagement's company (the rule's engagement_id)
            values[arg] = db.session.scalar(sa.select(Relationship.id).join(
                Engagement, Engagement.company_id == Relationship.company_id).where(
                Engagement.id == values["engagement_id"]).order_by(Relationship.id))
        elif arg == "language":  # a language version of the template in the same rule
            values[arg] = "zh-Hans"
            if not db.session.scalar(sa.select(LetterTemplateLanguage.id).where(
                    LetterTemplateLanguage.template_id == values["template_id"])):
                db.session.add(LetterTemplateLanguage(template_id=values["template_id"], language="zh-Hans",
                                                      subject="主题", body="正文"))
                db.session.commit()
        elif arg == "contact_id":  # a contact of the company in the same rule
            values[arg] = db.session.scalar(sa.select(CompanyContact.id).where(
                CompanyContact.company_id == values["company_id"]).order_by(CompanyContact.id))
            if values[arg] is None:
                contact = CompanyContact(company_id=values["company_id"], name="Empty Post Contact", role="other")
                db.session.add(contact)
                db.session.commit()
                values[arg] = contact.id
        elif arg == "token":
            values[arg] = secrets.token_urlsafe(32)
        elif arg == "view_id":  # the delete rule, walked first, may have deleted the last one
            if first(SavedView) is None:
                db.session.add(SavedView(owner=db.session.scalar(sa.select(User).order_by(User.id)),
                                         list_kind="engagements", name="Walk view", query="", shared=True))
                db.session.commit()
            values[arg] = first(SavedView)
        elif arg == "token_id":  # an API token (the account page revokes only one's own)
            if first(ApiToken) is None:
                tokens.create(db.session.scalar(sa.select(User).order_by(User.id)), name="walk", scope="read",
                              expires_on=dt.date(2026, 12, 31), today=dt.date(2026, 1, 1), max_days=366)
                db.session.commit()
            values[arg] = first(ApiToken)
        else:
            model = {"campaign_id": Campaign, "investor_id": Investor, "rubric_id": Rubric, "user_id": User,
                     "attachment_id": Attachment, "run_id": ExportRun, "fund_id": Fund, "batch_id": LetterBatch,
                     "reminder_id": Reminder, "score_id": Score, "email_id": OutboxEmail,
                     "inbound_id": InboundMessage, "candidate_id": MatchCandidate, "job_id": BackgroundJob}[arg]
            values[arg] = first(model)
        assert values[arg] is not None, (rule.rule, arg)
    return values


def test_empty_post_to_every_form_is_refused_not_a_500(app, client, make_user, world):
    """Every POST endpoint, given nothing or only a CSRF token (CSRF is off in tests), refuses cleanly."""
    from tests.conftest import login

    admin = make_user("admin")
    rules = sorted((r for r in app.url_map.iter_rules() if "POST" in r.methods and r.endpoint not in SKIPPED),
                   key=lambda r: r.rule)
    assert len(rules) > 30
    failures = []
    for rule in rules:
        login(client, admin.email)
        with app.test_request_context():
            url = url_for(rule.endpoint, **ids_for(rule))
        for body in ({}, {"csrf_token": "x"}):
            try:
                status = client.post(url, data=body).status_code
            except Exception as error:  # the test app propagates exceptions: a 500 in production
                status = f"{type(error).__name__}: {error}"[:300]
            if not isinstance(status, int) or status >= 500:
                failures.append((rule.rule, body, status))
            elif "GET" in rule.methods and rule.endpoint != "auth.login" and not 400 <= status < 500:
                # A page with a form (an edit form above all) answers a post missing its fields with
                # field errors; it must not save the stored values again, or anything else.
                failures.append((rule.rule, body, status))
    assert failures == []


def test_company_edit_with_only_a_csrf_token_shows_field_errors(client, login_as):
    login_as("analyst")
    company = Company(name="Keep My Name Ltd")
    db.session.add(company)
    db.session.commit()
    response = client.post(f"/companies/{company.id}/edit", data={"csrf_token": "x"})
    assert response.status_code == 422
    assert "This field is required." in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Company, company.id).name == "Keep My Name Ltd"


def test_nul_characters_are_refused_everywhere(app, client, login_as):
    """PostgreSQL text cannot hold NUL: a NUL in a path, query or form is a 400, never a database error."""
    assert app.test_client().post("/auth/login", data={"email": "a\x00@example.org", "password": "x"}).status_code == 400
    assert app.test_client().get("/reminders/calendar/" + "a" * 40 + "%00.ics").status_code in (400, 404)
    login_as("analyst")
    assert client.get("/companies", query_string={"q": "a\x00b"}).status_code == 400
    assert client.get("/companies", query_string={"x\x00": "1"}).status_code == 400
    response = client.post("/companies/new", data={"name": "Nul\x00 Ltd"})
    assert response.status_code == 400 and "NUL" in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count(Company.id))) == 0
