"""The account page: own password, sign out everywhere, the calendar link."""

import sqlalchemy as sa

from engage.extensions import db
from engage.models import AuditEvent, User
from engage.validators import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from tests.conftest import PASSWORD, csrf_token_from, login

NEW = "a fresh passphrase 2026"


def change(client, current=PASSWORD, new=NEW, confirm=None):
    return client.post("/account/password", data={"current_password": current, "new_password": new,
                                                  "confirm": new if confirm is None else confirm})


def password_hash(user) -> str:
    db.session.expire_all()
    return db.session.get(User, user.id).password_hash


def test_account_page_is_linked_from_every_page_and_offers_its_forms(client, login_as):
    user = login_as("viewer")
    dashboard = client.get("/").get_data(as_text=True)
    # labelled "Account" (a newcomer did not see that their name leads to the account page)
    assert f'href="/account" title="Password, sessions and calendar link">Account: {user.name}' in dashboard
    page = client.get("/account").get_data(as_text=True)
    for text in ("Change password", "Current password", "New password", "Repeat new password",
                 "Sign out everywhere", "Calendar feed", 'action="/account/calendar"', 'action="/account/sessions"'):
        assert text in page, text
    # each section once, in the page's body (not in its <title>)
    assert "<title>Your account · Engage</title>" in page and page.count('id="tokens"') == 1


def test_user_changes_their_password(client, login_as, app):
    user = login_as("viewer")
    before = password_hash(user)
    response = change(client)
    assert response.status_code == 302 and response.headers["Location"] == "/account"
    assert "Password changed" in client.get("/account").get_data(as_text=True)
    assert password_hash(user) != before
    assert login(app.test_client(), user.email, PASSWORD).status_code == 200  # old one refused
    assert login(app.test_client(), user.email, NEW).status_code == 302
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "password_change"))
    assert event.object_id == user.id and event.actor_id == user.id
    assert NEW not in str(event.changes) and NEW not in event.summary


def test_refused_changes_say_why_at_the_top_and_on_the_field_and_change_nothing(client, login_as):
    user = login_as("viewer")
    before = password_hash(user)
    cases = [
        (change(client, current="not my password at all"), "current_password", "That is not your current password"),
        (change(client, new="short", confirm="short"), "new_password", f"at least {MIN_PASSWORD_LENGTH} characters"),
        (change(client, new=" " * 20), "new_password", "This field is required."),
        (change(client, new="y" * (MAX_PASSWORD_LENGTH + 1)), "new_password", f"at most {MAX_PASSWORD_LENGTH}"),
        (change(client, confirm="something else entirely"), "confirm", "The passwords differ."),
        (change(client, new=PASSWORD), "new_password", "must differ from the current one"),
        (change(client, current=""), "current_password", "This field is required."),
    ]
    for response, field, message in cases:
        page = response.get_data(as_text=True)
        assert response.status_code == 422, (field, message)
        on_field = page.split(f'id="{field}-error">')[1].split("</p>")[0]
        assert message in on_field, (field, message)
        top = page.split('class="flashes"')[1].split("</div>")[0]
        assert "Password not changed" in top and message in top, (field, message)
    assert password_hash(user) == before
    assert db.session.scalar(sa.select(sa.func.count()).where(AuditEvent.action == "password_change")) == 0
    assert db.session.scalar(sa.select(sa.func.count()).where(AuditEvent.action == "password_change_failed")) == 1


def test_account_page_and_cli_apply_one_password_rule(client, login_as, runner):
    login_as("viewer")
    for weak in ("elevenchars", "y" * (MAX_PASSWORD_LENGTH + 1)):
        page = change(client, new=weak).get_data(as_text=True)
        cli = runner.invoke(args=["users", "create", "weak@example.org", "--name", "Weak", "--role", "viewer"],
                            input=weak + "\n")
        assert cli.exit_code == 1
        message = cli.stderr.strip().removeprefix("Error: password: ")
        assert message and f'id="new_password-error">{message}' in page, (weak, cli.stderr)
    assert db.session.scalar(sa.select(User).where(User.email == "weak@example.org")) is None


def test_password_change_needs_csrf_and_sign_in(make_app, make_user, app):
    protected = make_app(WTF_CSRF_ENABLED=True)
    user = make_user("viewer")
    client = protected.test_client()
    assert client.post("/account/password", data={}).status_code in (302, 400)  # signed out: nothing happens
    token = csrf_token_from(client.get("/auth/login").get_data(as_text=True))
    client.post("/auth/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token})
    before = password_hash(user)
    refused = client.post("/account/password", data={"current_password": PASSWORD, "new_password": NEW, "confirm": NEW})
    assert refused.status_code == 400 and password_hash(user) == before
    assert client.post("/account/sessions").status_code == 400
    page = client.get("/account").get_data(as_text=True)
    ok = client.post("/account/password", data={"current_password": PASSWORD, "new_password": NEW, "confirm": NEW,
                                                "csrf_token": csrf_token_from(page)})
    assert ok.status_code == 302 and password_hash(user) != before


def test_signed_out_visitor_is_sent_to_sign_in(client):
    for method, url in (("get", "/account"), ("post", "/account/password"), ("post", "/account/sessions"),
                        ("post", "/account/calendar")):
        response = getattr(client, method)(url)
        assert response.status_code == 302 and response.headers["Location"].startswith("/auth/login"), url


def test_password_change_is_throttled_per_address_like_sign_in(make_app, make_user, app):
    from engage.extensions import limiter

    throttled = make_app(LOGIN_THROTTLE=True, LOGIN_RATE_LIMIT="2 per minute")
    limiter.reset()
    try:
        user = make_user("viewer")
        client = throttled.test_client()
        assert login(client, user.email).status_code == 302
        statuses = [change(client, current="not my password at all").status_code for _ in range(3)]
        assert statuses == [422, 422, 429]
    finally:
        limiter.reset()
