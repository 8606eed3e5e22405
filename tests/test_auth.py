import sqlalchemy as sa

from engage.extensions import db, limiter
from engage.models import AuditEvent, User
from tests.conftest import PASSWORD, csrf_token_from, login

GENERIC = "That email and password do not match an active account."


def audit_actions():
    return [e.action for e in db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id))]


def test_password_is_stored_as_scrypt_hash(make_user):
    user = make_user("analyst")
    assert user.password_hash.startswith("scrypt:")
    assert PASSWORD not in user.password_hash


def test_login_success_redirects_to_dashboard_and_is_audited(client, make_user):
    user = make_user("viewer")
    response = login(client, user.email.upper())  # emails are case-insensitive
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert client.get("/").status_code == 200
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "login"))
    assert event.actor_id == user.id and event.object_id == user.id
    assert db.session.get(User, user.id).last_login_at is not None


def test_unknown_email_wrong_password_and_inactive_user_read_the_same(client, make_user):
    active = make_user("analyst")
    inactive = make_user("analyst", active=False)
    pages = [
        login(client, "nobody@example.org"),
        login(client, active.email, "wrong password entirely"),
        login(client, inactive.email),
    ]
    for response in pages:
        assert response.status_code == 200
        assert GENERIC in response.get_data(as_text=True)
    assert audit_actions().count("login_failed") == 3
    reasons = [e.summary for e in db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "login_failed"))]
    assert any("unknown email" in r for r in reasons)
    assert any("wrong password" in r for r in reasons)
    assert any("inactive user" in r for r in reasons)
    assert client.get("/").status_code == 302  # still signed out


def test_safe_next_redirect_is_followed(client, make_user):
    user = make_user("viewer")
    response = login(client, user.email, next_url="/companies?q=hik")
    assert response.headers["Location"] == "/companies?q=hik"


def test_unsafe_next_redirects_are_ignored(client, make_user):
    user = make_user("viewer")
    for target in ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)", "evil"]:
        client.post("/auth/logout")
        response = login(client, user.email, next_url=target)
        assert response.status_code == 302
        assert response.headers["Location"] == "/", target


def test_anonymous_request_redirects_to_login_with_relative_next(client):
    response = client.get("/engagements?stage=identified")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/login?next=")
    assert "%2Fengagements" in response.headers["Location"]


def test_logout_clears_session_and_requires_post(client, login_as):
    login_as("analyst")
    assert client.get("/auth/logout").status_code == 405
    with client.session_transaction() as session:
        session["left_over"] = "value"
    response = client.post("/auth/logout")
    assert response.status_code == 302
    with client.session_transaction() as session:
        assert "left_over" not in session
        assert "_user_id" not in session
    assert client.get("/").status_code == 302
    assert "logout" in audit_actions()


def test_login_is_throttled(make_app, make_user, app):
    throttled = make_app(LOGIN_THROTTLE=True, LOGIN_RATE_LIMIT="3 per minute")
    limiter.reset()
    user = make_user("viewer")
    client = throttled.test_client()
    statuses = [login(client, user.email, "wrong password entirely").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert "Too many attempts" in login(client, user.email).get_data(as_text=True)
    limiter.reset()


def test_csrf_is_required_on_forms(make_app, make_user, app):
    protected = make_app(WTF_CSRF_ENABLED=True)
    user = make_user("admin")
    client = protected.test_client()
    assert login(client, user.email).status_code == 400  # no token
    page = client.get("/auth/login").get_data(as_text=True)
    token = csrf_token_from(page)
    response = client.post("/auth/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302
    assert client.post("/auth/logout").status_code == 400  # logout without token refused
    assert client.get("/").status_code == 200  # still signed in
    dashboard = client.get("/").get_data(as_text=True)
    assert client.post("/auth/logout", data={"csrf_token": csrf_token_from(dashboard)}).status_code == 302
