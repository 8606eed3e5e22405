"""Saved views (issue 17): saving a list's filters, sharing them, who may see, rename and delete."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engage.extensions import db
from engage.models import AuditEvent, SavedView, User
from engage.views import service
from tests import factories
from tests.conftest import PASSWORD, csrf_token_from, login


def views() -> list[SavedView]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(SavedView).order_by(SavedView.id)))


def save(client, name, query="", kind="engagements", shared=False):
    data = {"kind": kind, "name": name, "query": query}
    if shared:
        data["shared"] = "y"
    return client.post("/views", data=data)


def sign_in_as(client, user):
    client.post("/auth/logout")
    assert login(client, user.email).status_code == 302


def test_save_a_view_keeps_only_the_filters_the_list_knows(client, login_as):
    analyst = login_as("analyst")
    response = save(client, "  Overdue   at mapping ",
                    "?stage=mapping_requested&overdue=yes&page=3&evil=<script>&sort=score&dir=desc&owner=&stage=closed")
    assert response.status_code == 302
    [view] = views()
    # Unknown keys, the page number and empty values are dropped; a repeated key keeps its first value.
    assert view.query == "stage=mapping_requested&overdue=yes&sort=score&dir=desc"
    assert view.name == "Overdue at mapping" and view.owner_id == analyst.id and not view.shared
    assert view.list_kind == "engagements"
    assert response.headers["Location"] == "/engagements?stage=mapping_requested&overdue=yes&sort=score&dir=desc"
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.object_type == "SavedView"))
    assert event.action == "create" and event.actor_id == analyst.id and event.changes["query"] == view.query

    # The list page opened with those filters names the view and marks it in the menu.
    page = client.get("/engagements?stage=mapping_requested&overdue=yes&sort=score&dir=desc").get_data(as_text=True)
    assert '<span class="views-current">Overdue at mapping</span>' in page
    assert re.search(r'<a href="/engagements\?stage=mapping_requested&amp;overdue=yes&amp;sort=score&amp;dir=desc" '
                     r'aria-current="true">Overdue at mapping</a>', page)
    assert "views-current" not in client.get("/engagements?stage=closed").get_data(as_text=True)


def test_company_views_are_cleaned_by_the_companies_filters(client, login_as):
    login_as("analyst")
    assert save(client, "Chinese solar", "q=+solar+&country=cn&engaged=yes&campaign=3", kind="companies").status_code == 302
    [view] = views()
    assert view.query == "q=solar&country=CN&engaged=yes"  # trimmed, upper-cased, `campaign` is not a company filter
    assert client.get(f"/views/{view.id}").headers["Location"] == "/companies?q=solar&country=CN&engaged=yes"
    # A view of one list is not offered on the other.
    assert "Chinese solar" in client.get("/companies").get_data(as_text=True)
    assert "Chinese solar" not in client.get("/engagements").get_data(as_text=True)


def test_bad_views_are_refused_saying_why_and_nothing_is_written(client, login_as):
    login_as("analyst")
    assert save(client, "Mine", "owner=me").status_code == 302
    cases = [
        ("", "stage=open", "Name: Give the view a name."),
        ("   ", "stage=open", "Name: Give the view a name."),
        ("x" * 81, "stage=open", "Name: A view&#39;s name has at most 80 characters (81 given)."),
        ("MINE", "stage=open", "Name: You already have a view named &#39;MINE&#39; on the engagements list."),
        ("Bad stage", "stage=nowhere", "Filters: Stage: Unknown stage &#39;nowhere&#39;."),
        ("Bad score", "score_below=101", "score_below must be a whole number from 0 to 100."),
        ("Too long", "sector=" + "x" * 1200, "The filters are too long to save"),
    ]
    for name, query, message in cases:
        response = save(client, name, query)
        assert response.status_code == 422, (name, query)
        page = response.get_data(as_text=True)
        assert message in page, (name, page[page.find("Not saved"):][:600])
        assert "Not saved." in page
    assert [v.name for v in views()] == ["Mine"]
    assert save(client, "Elsewhere", "", kind="reminders").status_code == 400
    # The same name on the other list is another view.
    assert save(client, "Mine", "engaged=no", kind="companies").status_code == 302
    assert len(views()) == 2


def test_shared_views_reach_the_team_and_private_ones_stay_private(client, login_as, make_user):
    owner = login_as("analyst")
    save(client, "Team: escalated", "escalation=collective", shared=True)
    save(client, "My private one", "stage=identified")
    shared, private = views()
    assert shared.shared and not private.shared

    teammate = make_user("analyst")
    sign_in_as(client, teammate)
    page = client.get("/engagements").get_data(as_text=True)
    assert "Team: escalated" in page and owner.name in page
    assert "My private one" not in page
    assert "My private one" not in client.get("/views").get_data(as_text=True)
    assert client.get(f"/views/{shared.id}").status_code == 302
    for url in (f"/views/{private.id}", f"/views/{private.id}/edit"):
        assert client.get(url).status_code == 404, url
    assert client.post(f"/views/{private.id}/delete").status_code == 404
    assert client.post(f"/views/{private.id}/edit", data={"name": "Taken"}).status_code == 404
    # A shared view is the owner's to rename and delete, not a teammate's.
    assert client.post(f"/views/{shared.id}/edit", data={"name": "Hijacked", "shared": "y"}).status_code == 403
    assert client.post(f"/views/{shared.id}/delete").status_code == 403
    assert [v.name for v in views()] == ["Team: escalated", "My private one"]

    # An admin may delete the team's shared view, but never sees a private one.
    admin = make_user("admin")
    sign_in_as(client, admin)
    assert client.post(f"/views/{private.id}/delete").status_code == 404
    index = client.get("/views").get_data(as_text=True)
    assert f'action="/views/{shared.id}/delete"' in index and "Rename" not in index
    assert client.post(f"/views/{shared.id}/delete").status_code == 302
    assert [v.name for v in views()] == ["My private one"]
    deleted = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.object_type == "SavedView",
                                                            AuditEvent.action == "delete"))
    assert deleted.actor_id == admin.id and deleted.object_id == shared.id


def test_owner_renames_shares_and_deletes(client, login_as):
    login_as("analyst")
    save(client, "First", "stage=open")
    save(client, "Second", "stage=closed")
    first, second = views()
    form = client.get(f"/views/{first.id}/edit").get_data(as_text=True)
    assert 'value="First"' in form and "filters: Stage: open" in form
    assert "Stage: <strong>closed</strong>" in client.get("/views").get_data(as_text=True)
    refused = client.post(f"/views/{first.id}/edit", data={"name": "second"})
    assert refused.status_code == 422 and "You already have a view named" in refused.get_data(as_text=True)
    assert client.post(f"/views/{first.id}/edit", data={"name": "", "shared": "y"}).status_code == 422
    assert client.post(f"/views/{first.id}/edit", data={}).status_code == 422  # not the stored name saved again
    assert [(v.name, v.shared) for v in views()] == [("First", False), ("Second", False)]
    assert client.post(f"/views/{first.id}/edit", data={"name": "Open ones", "shared": "y"}).status_code == 302
    assert [(v.name, v.shared) for v in views()] == [("Open ones", True), ("Second", False)]
    update = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.object_type == "SavedView",
                                                           AuditEvent.action == "update"))
    assert update.changes == {"name": ["First", "Open ones"], "shared": [False, True]}
    assert client.post(f"/views/{second.id}/delete").status_code == 302
    assert [v.name for v in views()] == ["Open ones"]


def test_viewers_save_private_views_but_do_not_share(client, login_as):
    login_as("viewer")
    page = client.get("/engagements").get_data(as_text=True)
    assert "Save this view" in page and "Share with the team" not in page
    refused = save(client, "Committee list", "stage=disclosed", shared=True)
    assert refused.status_code == 422
    assert "Viewers keep their views to themselves" in refused.get_data(as_text=True)
    assert views() == []
    assert save(client, "Committee list", "stage=disclosed").status_code == 302
    [view] = views()
    assert client.post(f"/views/{view.id}/edit", data={"name": "Committee", "shared": "y"}).status_code == 422
    assert client.post(f"/views/{view.id}/delete").status_code == 302
    assert views() == []


def test_saving_needs_the_form_token(make_app, make_user, app):
    protected = make_app(WTF_CSRF_ENABLED=True).test_client()
    user = make_user("analyst")
    token = csrf_token_from(protected.get("/auth/login").get_data(as_text=True))
    protected.post("/auth/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token})
    assert protected.post("/views", data={"kind": "engagements", "name": "No token"}).status_code == 400
    assert views() == []
    page = protected.get("/engagements?stage=open").get_data(as_text=True)
    token = re.search(r'<form method="post" action="/views" class="save-view">\s*<input id="csrf_token" '
                      r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    assert 'name="query" type="hidden" value="stage=open"' in page
    ok = protected.post("/views", data={"kind": "engagements", "name": "Open", "query": "stage=open",
                                        "csrf_token": token})
    assert ok.status_code == 302 and [v.query for v in views()] == ["stage=open"]


def test_list_rows_carry_their_column_names_for_narrow_screens(client, login_as):
    login_as("analyst")
    factories.engagement()
    for url, labels in (("/engagements", ("Company", "Stage", "Next follow-up", "Score")),
                        ("/companies", ("Company", "ISIN", "Risk flags", "Change"))):
        page = client.get(url).get_data(as_text=True)
        assert '<details class="filter-panel" open>' in page and "data-apply-on-change" in page
        assert 'class="stack list-table"' in page
        for label in labels:
            assert f'data-label="{label}"' in page, (url, label)


def test_the_views_menu_does_not_add_queries_per_view(client, login_as, make_user, count_queries):
    login_as("analyst")
    save(client, "One", "stage=open", shared=True)
    save(client, "Two", "engaged=yes", kind="companies")
    counts = {}
    for url in ("/engagements", "/companies"):
        with count_queries() as counter:
            assert client.get(url).status_code == 200
        counts[url] = counter.count
    for n in range(12):
        owner = make_user("analyst")
        db.session.add(SavedView(owner_id=owner.id, list_kind="engagements", name=f"View {n}", query="stage=open",
                                 shared=True))
        db.session.add(SavedView(owner_id=owner.id, list_kind="companies", name=f"View {n}", query="engaged=yes",
                                 shared=True))
    db.session.commit()
    for url in ("/engagements", "/companies"):
        with count_queries() as counter:
            page = client.get(url).get_data(as_text=True)
        assert "View 11" in page
        assert counter.count == counts[url], (url, counter.statements)


KNOWN = {
    "engagements": ["campaign", "stage", "escalation", "owner", "sector", "overdue", "stale", "score_below", "trend",
                    "sort", "dir"],
    "companies": ["q", "sector", "country", "source", "engaged", "stage", "score_below", "trend", "sort", "dir"],
}
VALUES = ["open", "identified", "closed", "collective", "me", "none", "1", "42", "yes", "no", "up", "down", "CN", "cn",
          "company", "name", "score", "asc", "desc", "-1", "101", "", " ", "x" * 120, "<b>", "%00", "é", "&", "=", "'"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(KNOWN)),
       pairs=st.lists(st.tuples(st.one_of(st.sampled_from(KNOWN["engagements"] + KNOWN["companies"] + ["page"]),
                                          st.text(max_size=12)),
                                st.one_of(st.sampled_from(VALUES), st.text(max_size=30))), max_size=8))
def test_any_query_string_is_refused_or_cleaned_to_a_working_list_page(app, client, kind, pairs):
    """Generated query strings: a stored query holds only the list's own filters, is stable, and opens the list."""
    raw = urlencode([(key.replace("\x00", ""), value.replace("\x00", "")) for key, value in pairs])
    try:
        cleaned = service.clean_query(kind, raw)
    except service.ViewError as error:
        assert error.field == "query" and error.message
        return
    assert len(cleaned) <= 1000
    assert {key for key, _ in parse_qsl(cleaned)} <= set(KNOWN[kind])
    assert service.clean_query(kind, cleaned) == cleaned
    user = db.session.scalar(sa.select(User).order_by(User.id))
    if user is None:
        user = User(email="prop@example.org", name="Prop", role="analyst")
        user.set_password(PASSWORD)
        db.session.add(user)
        db.session.commit()
    login(client, user.email)
    assert client.get(f"/{kind}?{cleaned}").status_code == 200, cleaned
