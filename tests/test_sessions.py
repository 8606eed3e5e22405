"""Revocable sessions, the production key rule and no-store on everything a signed-in user sees."""

import io

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from config import DEVELOPMENT_SECRET_KEY, ProductionConfig
from engage import create_app
from engage.extensions import db
from engage.models import AuditEvent, User
from engage.security import require_role
from tests import factories
from tests.conftest import PASSWORD, IsolatedClient

PRODUCTION_KEY = "k7Qz1vX9-production-secret-for-tests-3Fp0"


def sign_in(app, user, remember: bool = False):
    """A new client signed in as `user`; with `remember`, it also holds a remember-me cookie."""
    client = app.test_client()
    data = {"email": user.email, "password": PASSWORD}
    if remember:
        data["remember"] = "y"
    assert client.post("/auth/login", data=data).status_code == 302
    return client


def with_cookie(app, name: str, value: str):
    """A fresh client that holds only one copied cookie."""
    client = app.test_client()
    client.set_cookie(name, value)
    return client


def signed_in(client) -> bool:
    return client.get("/").status_code == 200


def copied_cookies(app, client) -> list:
    """Clients that each hold one cookie copied from `client` (session, remember-me)."""
    copies = [with_cookie(app, "session", client.get_cookie("session").value)]
    remember = client.get_cookie("remember_token")
    if remember is not None:
        copies.append(with_cookie(app, "remember_token", remember.value))
    return copies


def test_copied_session_and_remember_cookies_stop_working_after_sign_out(app, make_user):
    user = make_user("viewer")
    client = sign_in(app, user, remember=True)
    copies = copied_cookies(app, client)
    assert len(copies) == 2
    assert all(signed_in(copy) for copy in copies)  # they work while the user is signed in...
    assert client.post("/auth/logout").status_code == 302
    assert not signed_in(client)
    for name, value in (("session", copies[0].get_cookie("session").value),
                        ("remember_token", copies[1].get_cookie("remember_token").value)):
        fresh = with_cookie(app, name, value)
        response = fresh.get("/")
        assert response.status_code == 302 and response.headers["Location"].startswith("/auth/login"), name


def test_remember_me_keeps_a_browser_signed_in_across_requests(app, make_user):
    user = make_user("viewer")
    client = sign_in(app, user, remember=True)
    remembered = with_cookie(app, "remember_token", client.get_cookie("remember_token").value)
    assert [remembered.get("/").status_code for _ in range(3)] == [200, 200, 200]
    cookie = client.get_cookie("remember_token").value
    assert cookie.startswith(f"{user.id}:") and db.session.get(User, user.id).session_token in cookie


def test_a_cookie_without_the_session_token_is_refused(app, make_user):
    """Cookies issued before tokens existed (or forged with only the id) sign nobody in."""
    user = make_user("admin")
    client = sign_in(app, user)
    with client.session_transaction() as session:
        session["_user_id"] = str(user.id)
    assert not signed_in(client)
    client = sign_in(app, user)
    with client.session_transaction() as session:
        session["_user_id"] = f"{user.id}:{'x' * 43}"
    assert not signed_in(client)


def test_password_change_ends_other_sessions_and_keeps_this_one(app, make_user):
    user = make_user("analyst")
    laptop = sign_in(app, user, remember=True)
    phone = sign_in(app, user, remember=True)
    stolen = copied_cookies(app, laptop)
    response = laptop.post("/account/password", data={"current_password": PASSWORD, "new_password": "a new passphrase 2026",
                                                       "confirm": "a new passphrase 2026"})
    assert response.status_code == 302
    assert signed_in(laptop)
    assert not signed_in(phone)
    assert not any(signed_in(copy) for copy in stolen)
    # the laptop's new remember-me cookie carries the new token and works on its own
    renewed = with_cookie(app, "remember_token", laptop.get_cookie("remember_token").value)
    assert signed_in(renewed)


def test_admin_password_reset_ends_the_users_sessions(app, make_user):
    target = make_user("analyst")
    victim = sign_in(app, target, remember=True)
    copies = copied_cookies(app, victim)
    admin = sign_in(app, make_user("admin"))
    response = admin.post(f"/admin/users/{target.id}/password",
                          data={"pw-password": "brand new secret 42", "pw-confirm": "brand new secret 42"})
    assert response.status_code == 302
    assert signed_in(admin)
    assert not signed_in(victim) and not any(signed_in(copy) for copy in copies)


@pytest.mark.parametrize("change", [{"role": "analyst", "active": "y"}, {"role": "viewer"}])
def test_role_change_and_deactivation_end_the_users_sessions(app, make_user, change):
    target = make_user("viewer")
    victim = sign_in(app, target, remember=True)
    copies = copied_cookies(app, victim)
    admin = sign_in(app, make_user("admin"))
    response = admin.post(f"/admin/users/{target.id}/edit", data={"email": target.email, "name": target.name, **change})
    assert response.status_code == 302
    assert not signed_in(victim) and not any(signed_in(copy) for copy in copies)
    assert signed_in(admin)


def test_cookies_from_before_a_deactivation_stay_dead_after_reactivation(app, make_user):
    target = make_user("viewer")
    victim = sign_in(app, target, remember=True)
    copies = copied_cookies(app, victim)
    admin = sign_in(app, make_user("admin"))
    for active in ({}, {"active": "y"}):  # deactivate, then activate again
        response = admin.post(f"/admin/users/{target.id}/edit",
                              data={"email": target.email, "name": target.name, "role": "viewer", **active})
        assert response.status_code == 302
    assert db.session.get(User, target.id).active
    assert not signed_in(victim) and not any(signed_in(copy) for copy in copies)
    assert signed_in(sign_in(app, target))


def test_an_edit_that_changes_neither_role_nor_activity_keeps_sessions(app, make_user):
    target = make_user("viewer")
    victim = sign_in(app, target)
    admin = sign_in(app, make_user("admin"))
    admin.post(f"/admin/users/{target.id}/edit", data={"email": target.email, "name": "New Name", "role": "viewer",
                                                      "active": "y"})
    assert signed_in(victim)


def test_admin_changing_their_own_role_stays_signed_in(app, make_user):
    make_user("admin")  # another admin, so this one may step down
    me = make_user("admin")
    client = sign_in(app, me)
    other = sign_in(app, me)
    response = client.post(f"/admin/users/{me.id}/edit", data={"email": me.email, "name": me.name, "role": "analyst",
                                                              "active": "y"})
    assert response.status_code == 302
    assert signed_in(client) and client.get("/admin/users").status_code == 403  # new role applies at once
    assert not signed_in(other)


def test_sign_out_everywhere_ends_the_other_sessions(app, make_user):
    user = make_user("viewer")
    here = sign_in(app, user)
    elsewhere = sign_in(app, user, remember=True)
    page = here.get("/account").get_data(as_text=True)
    # the heading and the button say the same thing (a newcomer read them as two actions)
    assert '<h2 id="sessions">Sign out everywhere else</h2>' in page
    assert '<button type="submit">Sign out everywhere else</button>' in page
    assert here.post("/account/sessions").status_code == 302
    assert signed_in(here)
    assert not signed_in(elsewhere)
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "sessions_ended"))
    assert event.object_id == user.id and "signed out everywhere" in event.summary
    assert "session_token" not in str([e.changes for e in db.session.scalars(sa.select(AuditEvent))])


def test_a_request_in_flight_cannot_outlive_a_sign_out_elsewhere(make_app, app, make_user):
    """A request that started before another browser signed out everywhere does not carry its
    session over to the new token, even when it commits after the rotation."""
    racing = make_app()
    user = make_user("viewer")

    @racing.route("/test-race", methods=["POST"])
    @require_role("viewer")
    def race():
        with db.engine.begin() as conn:  # another request's "sign out everywhere" commits meanwhile
            conn.execute(sa.update(User).where(User.id == user.id).values(session_token="rotated-elsewhere-" + "x" * 30))
        db.session.commit()  # this request commits too (its user object expires and reloads)
        return "done"

    client = sign_in(racing, user)
    with racing.app_context():
        assert client.post("/test-race").status_code == 200
        assert not signed_in(client)


def test_deactivated_user_with_a_valid_cookie_is_refused(app, make_user):
    """Even a cookie with the current token does not sign in a deactivated user."""
    user = make_user("viewer")
    client = sign_in(app, user)
    db.session.execute(sa.update(User).where(User.id == user.id).values(active=False))
    db.session.commit()
    assert not signed_in(client)


# -- production key ---------------------------------------------------------------------------

@pytest.mark.parametrize("overrides", [
    {"FORCE_HTTPS": False},
    {"FORCE_HTTPS": False, "DEBUG": True},
    {"FORCE_HTTPS": False, "TESTING": True},
    {"FORCE_HTTPS": True},
])
def test_production_refuses_the_development_key_whatever_the_other_settings(database_url, overrides):
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app(ProductionConfig, overrides={"SQLALCHEMY_DATABASE_URI": database_url,
                                                 "SECRET_KEY": DEVELOPMENT_SECRET_KEY, **overrides})


@pytest.mark.parametrize("key", [None, "", "   ", "test-secret-key", "short-but-random-9f3a",
                                 "x" * 64, "0123456789abcdefghijklmnopqrstu"])
def test_production_refuses_missing_public_short_or_trivial_keys(database_url, key):
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app(ProductionConfig, overrides={"SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": key,
                                                 "FORCE_HTTPS": False})


def test_development_and_tests_still_start_with_their_keys(database_url):
    from config import Config, TestConfig

    assert create_app(Config, overrides={"SQLALCHEMY_DATABASE_URI": database_url}).config["SECRET_KEY"] == \
        DEVELOPMENT_SECRET_KEY
    assert create_app(TestConfig, overrides={"SQLALCHEMY_DATABASE_URI": database_url}).testing


def forged_session(secret_key: str, payload: dict) -> str:
    """A session cookie with `payload`, signed the way Flask signs it, with `secret_key`."""
    forger = Flask("forger")
    forger.secret_key = secret_key
    forger.config["SECRET_KEY_FALLBACKS"] = []
    return SecureCookieSessionInterface().get_signing_serializer(forger).dumps(payload)


def test_forged_admin_session_signed_with_the_development_key_is_refused(app, database_url, make_user):
    production = create_app(ProductionConfig, overrides={"SQLALCHEMY_DATABASE_URI": database_url, "FORCE_HTTPS": False,
                                                         "SECRET_KEY": PRODUCTION_KEY})
    production.test_client_class = IsolatedClient
    admin = make_user("admin")
    control = production.test_client()
    with production.test_request_context(environ_base=control.environ_base):  # the client's address and agent
        from flask_login.utils import _create_identifier

        payload = {"_user_id": admin.get_id(), "_fresh": True, "_id": _create_identifier()}
    control.set_cookie("session", forged_session(PRODUCTION_KEY, payload))
    assert control.get("/admin/users").status_code == 200  # the payload is right: with the real key it works
    forged = with_cookie(production, "session", forged_session(DEVELOPMENT_SECRET_KEY, payload))
    response = forged.get("/admin/users")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


# -- Cache-Control: no-store ------------------------------------------------------------------

def test_signed_in_pages_and_downloads_are_not_stored(client, login_as, app, tmp_path):
    login_as("analyst")
    engagement = factories.engagement()
    for url in ("/", "/companies", "/account", f"/engagements/{engagement.id}",
                "/exports/monthly?month=2026-10&format=csv", f"/exports/campaigns/{engagement.campaign_id}/report.pdf",
                "/no/such/page"):
        response = client.get(url)
        assert response.headers["Cache-Control"] == "no-store", (url, response.status_code)
    assert client.get(f"/exports/campaigns/{engagement.campaign_id}/report.pdf").mimetype == "application/pdf"

    app.config["ATTACHMENT_DIR"] = str(tmp_path)  # a send_file download
    try:
        pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
        version = str(db.session.get(type(engagement), engagement.id).version)
        logged = client.post(f"/engagements/{engagement.id}/interactions", content_type="multipart/form-data", data={
            "kind": "email", "direction": "outbound", "occurred_on": "2026-06-10", "subject": "Hello", "summary": "",
            "participants": "", "move_to": "", "version": version, "attachments": [(io.BytesIO(pdf), "reply.pdf")]})
        assert logged.status_code == 302
        from engage.models import Attachment

        attachment = db.session.scalar(sa.select(Attachment))
        download = client.get(f"/engagements/attachments/{attachment.id}")
        assert download.status_code == 200 and download.data == pdf
        assert download.headers["Cache-Control"] == "no-store"
    finally:
        app.config.pop("ATTACHMENT_DIR")


def test_sign_in_page_is_not_stored_and_static_files_stay_cacheable(client, login_as):
    assert client.get("/auth/login").headers["Cache-Control"] == "no-store"
    login_as("viewer")
    for path in ("/static/css/app.css", "/static/js/app.js"):
        response = client.get(path)
        assert response.status_code == 200
        assert "no-store" not in response.headers.get("Cache-Control", ""), path


def test_calendar_feed_keeps_its_own_short_caching(client, app, make_user):
    user = make_user("analyst")
    user.calendar_token = "t" * 43
    db.session.commit()
    feed = app.test_client().get(f"/reminders/calendar/{'t' * 43}.ics")
    assert feed.status_code == 200 and feed.headers["Cache-Control"] == "private, max-age=300"
