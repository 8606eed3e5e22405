"""Roles on every route: walk the URL map rather than trusting a list kept by hand."""

import pytest

from engage.security import access_rule

#: Reachable without a session: the login page, static files, and the calendar feed, whose
#: secret token in the URL is its credential (tested in test_reminders).
PUBLIC_ENDPOINTS = {"auth.login", "static", "reminders.calendar", "old_calendar"}


def concrete_url(rule) -> str:
    values = {arg: 1 for arg in rule.arguments}
    if rule.endpoint == "static":
        values = {"filename": "css/app.css"}
    from flask import url_for

    return url_for(rule.endpoint, **values)


def routes(app):
    return [r for r in app.url_map.iter_rules() if r.endpoint not in PUBLIC_ENDPOINTS]


def test_public_endpoints_are_exactly_these(app):
    public = {endpoint for endpoint in app.view_functions
              if endpoint != "static" and access_rule(endpoint) and access_rule(endpoint)["public"]}
    assert public == PUBLIC_ENDPOINTS - {"static"}


def test_every_view_declares_access(app):
    missing = [
        endpoint for endpoint in app.view_functions
        if endpoint != "static" and access_rule(endpoint) is None
    ]
    assert missing == []


def test_every_route_but_login_and_static_requires_login(app, client):
    assert routes(app), "the URL map is empty"
    with app.test_request_context():
        targets = [(rule, concrete_url(rule)) for rule in routes(app)]
    for rule, url in targets:
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(url, method=method)
            if access_rule(rule.endpoint).get("token"):  # the JSON API: a bearer token, never a redirect
                assert response.status_code == 401, (method, url, response.status_code)
                assert response.mimetype == "application/problem+json", (method, url)
                continue
            assert response.status_code == 302, (method, url, response.status_code)
            assert response.headers["Location"].startswith("/auth/login"), (method, url)
    assert client.get("/auth/login").status_code == 200
    assert client.get("/static/css/app.css").status_code == 200


def test_undeclared_view_is_denied(make_app, login_as):
    app = make_app()

    @app.route("/forgotten")
    def forgotten():
        return "should never be served"

    client = app.test_client()
    from tests.conftest import login

    user = login_as("admin")
    login(client, user.email)
    assert client.get("/forgotten").status_code == 403


@pytest.mark.parametrize("role", ["viewer", "analyst", "admin"])
def test_roles_on_every_route(app, client, login_as, role):
    """Reads need viewer; writes follow the view's declared role; admin pages need admin."""
    user = login_as(role)
    with app.test_request_context():
        targets = [(rule, concrete_url(rule)) for rule in routes(app)]
    checked = 0
    for rule, url in targets:
        if rule.endpoint == "auth.logout":  # would end the session; covered in test_auth
            continue
        access = access_rule(rule.endpoint)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            needed = access["read"] if method == "GET" else access["write"]
            response = client.open(url, method=method, data={})
            checked += 1
            if access.get("token"):  # a session cookie never signs an API request in (roles: test_api)
                assert response.status_code == 401, (role, method, url, response.status_code)
                continue
            allowed = user.has_role(needed)
            if allowed:
                assert response.status_code != 403, (role, method, url)
            else:
                assert response.status_code == 403, (role, method, url, response.status_code)
    assert checked >= 10


def test_admin_pages_refuse_analysts_and_viewers(client, login_as):
    login_as("analyst")
    assert client.get("/admin/users").status_code == 403
    assert client.post("/admin/users/new", data={}).status_code == 403
    page = client.get("/admin/users").get_data(as_text=True)
    assert "Not allowed" in page  # the 403 page in the app's layout


#: Rules outside the "first path segment names the package" rule, each with its reason (README, Layout).
URL_EXCEPTIONS = {
    "/": "main.dashboard",  # the home page
    "/static/<path:filename>": "static",  # Flask's static files
    "/calendar/<token>.ics": "old_calendar",  # calendar links handed out before the feed moved: a 301
}


def test_every_url_names_the_package_that_serves_it(app):
    """/<package>/... is served by engage/<package>/routes.py (blueprint <package>), whatever the rule.

    A package named by two words is spelt with a hyphen in its URLs: /value-chain/ is engage/valuechain/."""
    wrong = []
    for rule in app.url_map.iter_rules():
        if URL_EXCEPTIONS.get(rule.rule) == rule.endpoint:
            continue
        first = rule.rule.lstrip("/").split("/")[0].replace("-", "")  # /value-chain/ is package valuechain
        blueprint, _, _ = rule.endpoint.rpartition(".")
        view = app.view_functions[rule.endpoint]
        package = view.__module__.split(".")[1] if view.__module__.startswith("engage.") else None
        if not (first == blueprint == package and view.__module__ == f"engage.{package}.routes"):
            wrong.append(f"{rule.rule} -> {rule.endpoint} ({view.__module__})")
    assert wrong == []
    assert {rule.rule: rule.endpoint for rule in app.url_map.iter_rules() if rule.rule in URL_EXCEPTIONS} \
        == URL_EXCEPTIONS
