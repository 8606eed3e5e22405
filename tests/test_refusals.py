"""Refusals are seen and lose nothing: the message at the top of the page and on its field, the input kept."""

from __future__ import annotations

import ast
import datetime as dt
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from engage.companies.forms import CompanyForm
from engage.engagements import cycle
from engage.errors import FieldError
from engage.extensions import db
from engage.models import Company, Engagement, EngagementEvent, Interaction
from engage.web import refuse
from tests import factories

SUMMARY = "Called the CFO: they will send the tier-2 supplier map by **30 June**; asked about Aksu mills."


def top_of_page(html: str) -> str:
    """The alert region the layout draws above the page's content."""
    match = re.search(r'<div class="flash flash-error refusals" role="alert" id="refusals">(.*?)</div>', html, re.S)
    assert match, "no refusal region at the top of the page"
    return match.group(1)


@pytest.fixture()
def closed_meanwhile(client, login_as):
    """An engagement the user opened in a tab, then a colleague closed it."""
    login_as("analyst")
    engagement = factories.engagement(stage="acknowledged")
    seen = str(engagement.version)
    cycle.move_stage(engagement, "closed", on=dt.date(2026, 6, 1), today=dt.date(2026, 6, 15), actor_id=None,
                     outcome="resolved")
    db.session.commit()
    return engagement, seen


def counts():
    db.session.expire_all()
    return (db.session.scalar(sa.select(sa.func.count(Interaction.id))),
            db.session.scalar(sa.select(sa.func.count(EngagementEvent.id))))


def test_logging_a_call_on_an_engagement_closed_meanwhile(client, closed_meanwhile, frozen_today):
    engagement, seen = closed_meanwhile
    before = counts()
    response = client.post(f"/engagements/{engagement.id}/interactions", content_type="multipart/form-data", data={
        "kind": "call", "direction": "outbound", "occurred_on": "2026-06-12", "subject": "Call with the CFO",
        "summary": SUMMARY, "participants": "J. Doe (CFO)", "move_to": "", "version": seen})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "closed on 01 Jun 2026; reopen it to log new contact" in top_of_page(page)
    # the input is on the page, to copy: the form itself is not drawn for a closed engagement
    assert 'readonly rows="6">' + SUMMARY.replace("*", "*") in page.replace("&#39;", "'")
    assert "Call with the CFO" in page and "J. Doe (CFO)" in page
    assert counts() == before
    db.session.expire_all()
    assert db.session.get(Engagement, engagement.id).stage == "closed"


def test_escalating_an_engagement_closed_meanwhile(client, closed_meanwhile, frozen_today):
    engagement, seen = closed_meanwhile
    before = counts()
    response = client.post(f"/engagements/{engagement.id}/escalation", data={
        "target": "follow_up", "occurred_on": "2026-06-12", "note": "Second letter after no reply.",
        "version": seen})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "reopen it before changing its escalation" in top_of_page(page)
    assert "Second letter after no reply." in page
    assert counts() == before


def test_moving_an_engagement_closed_meanwhile(client, closed_meanwhile, frozen_today):
    engagement, seen = closed_meanwhile
    before = counts()
    # a move the closed engagement no longer allows: refused on its field and at the top
    response = client.post(f"/engagements/{engagement.id}/stage", data={
        "target": "closed", "occurred_on": "2026-06-12", "note": "Closing again.", "outcome": "dropped",
        "version": seen})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "it can only be reopened" in top_of_page(page)
    stage_form = page.split('id="stage"')[1].split("</form>")[0]
    assert "Closing again.</textarea>" in stage_form and "it can only be reopened" in stage_form
    # a move that is allowed now (reopening) but from a stale tab: the stale-edit refusal, input kept
    response = client.post(f"/engagements/{engagement.id}/stage", data={
        "target": "value_chain_mapped", "occurred_on": "2026-06-12", "note": "Map received.", "version": seen})
    assert response.status_code == 409
    page = response.get_data(as_text=True)
    assert page.index("someone else changed this engagement") < page.index("<h1>")
    assert "Map received.</textarea>" in page.split('id="stage"')[1].split("</form>")[0]
    assert counts() == before


def test_every_form_refusal_reaches_the_top_of_the_page(client, login_as):
    login_as("analyst")
    company = Company(name="Kept Ltd")
    db.session.add(company)
    db.session.commit()
    response = client.post(f"/companies/{company.id}/edit", data={"name": "", "isin": "XX123",
                                                                  "description": "my long description"})
    assert response.status_code == 422
    top = top_of_page(response.get_data(as_text=True))
    assert "Name: This field is required." in top and "ISIN:" in top
    assert "my long description</textarea>" in response.get_data(as_text=True)


def test_a_page_without_refusal_has_no_alert(client, login_as):
    login_as("viewer")
    assert 'id="refusals"' not in client.get("/companies").get_data(as_text=True)


def test_routes_show_a_field_error_through_the_one_helper():
    """A route that catches a service's FieldError hands it to `engage.web.refuse`, not to code of its own."""
    hand_rolled = []
    for path in sorted(Path("engage").glob("*/routes.py")):
        for handler in ast.walk(ast.parse(path.read_text())):
            if not isinstance(handler, ast.ExceptHandler) or handler.name is None:
                continue
            for node in ast.walk(handler):
                if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "field_error"
                        and any(getattr(getattr(arg, "value", None), "id", None) == handler.name for arg in node.args)):
                    hand_rolled.append(f"{path}:{node.lineno}")
    assert hand_rolled == []


def test_refuse_keeps_nothing_and_shows_the_message_on_its_field(app):
    """The helper rolls the attempt back, puts the message on the field and answers 422."""
    with app.test_request_context(method="POST", data={"name": "Acme"}):
        form = CompanyForm(meta={"csrf": False})
        db.session.add(Company(name="Half-saved Co"))
        assert refuse(form, FieldError("name", "A company called Acme already exists.")) == 422
        assert form.name.errors == ["A company called Acme already exists."]
        assert form.name.data == "Acme"
        assert db.session.scalar(sa.select(Company).where(Company.name == "Half-saved Co")) is None

