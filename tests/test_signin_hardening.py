"""Sign-in hardening (issue 13, after break-testing): known browsers, concurrent clicks,
stale cookies, admin unlock, the calendar link, and the production configuration rules."""

from __future__ import annotations

import datetime as dt
import logging
import random
import runpy
import string
import threading

import pytest
import sqlalchemy as sa

from config import Config, ProductionConfig
from engage import clock, create_app
from engage.extensions import db
from engage.models import AuditEvent, User
from tests.conftest import PASSWORD, login

T0 = dt.datetime(2026, 6, 15, 9, 0, 0)
WRONG = "wrong password entirely"
NEW = "a fresh passphrase 2026"
BROWSER_COOKIE = "engage_browser"


def at(seconds: float):
    return clock.frozen(T0 + dt.timedelta(seconds=seconds))


def fresh(user) -> User:
    db.session.expire_all()
    return db.session.get(User, user.id)


def events(action: str) -> list[AuditEvent]:
    return list(db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def sign_in(app, user, remember: bool = False, password: str = PASSWORD):
    client = app.test_client()
    data = {"email": user.email, "password": password}
    if remember:
        data["remember"] = "y"
    assert client.post("/auth/login", data=data).status_code == 302
    return client


def signed_in(client) -> bool:
    return client.get("/").status_code == 200


def copy_of(app, client):
    """A second client holding the same cookies (the same browser, another request)."""
    twin = app.test_client()
    for name in ("session", "remember_token", BROWSER_COOKIE):
        cookie = client.get_cookie(name)
        if cookie is not None:
            twin.set_cookie(name, cookie.value)
    return twin


def set_cookies(response) -> list[str]:
    return response.headers.getlist("Set-Cookie")


def writes_session(response) -> bool:
    return any(c.startswith("session=") or c.startswith("remember_token=") for c in set_cookies(response))


# -- known browsers ---------------------------------------------------------------------------

def test_an_attacker_cannot_pause_sign_in_on_the_users_own_browser(app, make_user):
    user = make_user("admin")
    laptop = sign_in(app, user)
    assert laptop.post("/auth/logout").status_code == 302  # signed out; the browser stays known
    attacker = app.test_client()
    with at(0):
        for _ in range(20):
            login(attacker, user.email, WRONG)
    assert fresh(user).locked_until > T0
    with at(1):
        assert login(app.test_client(), user.email).status_code == 200  # a new browser waits...
        assert login(laptop, user.email).status_code == 302  # ...the user's own does not
    assert fresh(user).locked_until > T0  # and signing in there gives the attacker no fresh guesses


def test_failures_on_a_known_browser_draw_on_its_own_budget(app, make_user):
    user = make_user("viewer")
    laptop = sign_in(app, user)
    laptop.post("/auth/logout")
    with at(0):
        for _ in range(7):
            assert login(laptop, user.email, WRONG).status_code == 200
    user = fresh(user)
    assert (user.device_failed_logins, user.device_locked_until) == (5, T0 + dt.timedelta(seconds=30))
    assert (user.failed_logins, user.locked_until) == (0, None)
    [pause] = events("login_backoff")
    assert "30 s after 5 failed attempts from browsers it signed in on before" in pause.summary
    with at(1):
        assert login(laptop, user.email).status_code == 200  # paused there: someone is guessing on it
        assert login(app.test_client(), user.email).status_code == 302
    with at(31):
        assert login(laptop, user.email).status_code == 302
    assert fresh(user).device_failed_logins == 0


def test_only_a_genuine_cookie_of_that_account_makes_a_browser_known(app, make_user):
    from itsdangerous import URLSafeTimedSerializer

    user, other = make_user("viewer"), make_user("viewer")
    someone_else = sign_in(app, other)  # known, but for another account
    forged = URLSafeTimedSerializer("not-the-key", salt="engage.known-browser").dumps([user.id])
    tampered = app.test_client()
    tampered.set_cookie(BROWSER_COOKIE, forged)
    junk = app.test_client()
    junk.set_cookie(BROWSER_COOKIE, "x" * 3000)
    with at(0):
        for client in (someone_else, tampered, junk):
            login(client, user.email, WRONG)
    assert (fresh(user).failed_logins, fresh(user).device_failed_logins) == (3, 0)


def test_the_known_browser_cookie_is_http_only_lax_long_lived_and_lists_recent_accounts(app, make_user):
    users = [make_user("viewer") for _ in range(7)]
    client = app.test_client()
    for user in users:
        response = login(client, user.email)
        client.post("/auth/logout")
    [cookie] = [c for c in set_cookies(response) if c.startswith(BROWSER_COOKIE + "=")]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and f"Max-Age={365 * 24 * 3600}" in cookie
    with app.test_request_context(headers={"Cookie": f"{BROWSER_COOKIE}={client.get_cookie(BROWSER_COOKIE).value}"}):
        from engage.auth.browsers import known_user_ids

        assert known_user_ids() == [u.id for u in reversed(users)][:5]


def test_parallel_guesses_on_a_known_browser_are_not_all_checked(app, make_user, monkeypatch):
    import engage.models.users as users_module

    user = make_user("analyst")
    laptop = sign_in(app, user)
    laptop.post("/auth/logout")
    checked, lock = [], threading.Lock()
    barrier = threading.Barrier(12)
    real = users_module.check_password_hash

    def slow_check(hash_, password):
        if password.startswith("guess"):
            with lock:
                checked.append(password)
            try:
                barrier.wait(timeout=2)
            except threading.BrokenBarrierError:
                pass
        return real(hash_, password)

    monkeypatch.setattr(users_module, "check_password_hash", slow_check)
    clients = [copy_of(app, laptop) for _ in range(12)]
    threads = [threading.Thread(target=login, args=(c, user.email, f"guess {n}")) for n, c in enumerate(clients)]
    with at(0):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(checked) == app.config["LOGIN_BACKOFF_AFTER"]
    assert fresh(user).device_failed_logins == 5 and fresh(user).device_locked_until is not None


# -- double clicks and stale cookies ----------------------------------------------------------

def test_a_repeated_password_change_after_the_first_lands_on_the_account_page(app, make_user):
    user = make_user("viewer")
    browser = sign_in(app, user)
    stale = copy_of(app, browser)  # the second click, sent with the cookie the first one replaces
    data = {"current_password": PASSWORD, "new_password": NEW, "confirm": NEW}
    assert browser.post("/account/password", data=data).headers["Location"] == "/account"
    second = stale.post("/account/password", data=data, headers={"Referer": "http://localhost/account"})
    assert second.status_code == 302 and second.headers["Location"] == "/auth/login?next=%2Faccount"
    assert not writes_session(second)  # the browser keeps the cookie the first click earned...
    landing = browser.get(second.headers["Location"])  # ...so following the answer ends on /account
    assert landing.status_code == 302 and landing.headers["Location"] == "/account"
    assert "Password changed" in browser.get("/account").get_data(as_text=True)
    # a browser that kept only the old cookie signs in and lands on the account page, not a 405
    back = stale.post("/auth/login", data={"email": user.email, "password": NEW, "next": "/account"})
    assert back.headers["Location"] == "/account" and stale.get("/account").status_code == 200
    assert len(events("password_change")) == 1


def test_next_never_names_a_form_action(client, make_user):
    user = make_user("viewer")
    for target in ("/auth/logout", "/account/password", "/account/sessions", "/nowhere"):
        response = login(client, user.email, next_url=target)
        assert response.headers["Location"] == "/", target
        client.post("/auth/logout")
    anonymous = client.post("/account/password")  # no Referer: no next at all
    assert anonymous.headers["Location"] == "/auth/login"
    edit = client.post("/companies/new")  # a form whose address is also a page: back to that page
    assert edit.headers["Location"] == "/auth/login?next=%2Fcompanies%2Fnew"


def test_an_expired_session_signs_out_without_an_error(make_app, make_user, app):
    protected = make_app(WTF_CSRF_ENABLED=True)
    browser = protected.test_client()
    response = browser.post("/auth/logout", data={"csrf_token": "from-a-page-opened-yesterday"})
    assert response.status_code == 302 and response.headers["Location"] == "/auth/login"
    assert "You are signed out" in browser.get("/auth/login").get_data(as_text=True)


def run_together(calls, monkeypatch, target: str):
    """Run `calls` in threads that meet at `target` (a function name in engage.auth.service)."""
    import engage.auth.service as auth_service

    barrier = threading.Barrier(len(calls))
    real = getattr(auth_service, target)

    def meet(*args, **kwargs):
        try:
            barrier.wait(timeout=3)
        except threading.BrokenBarrierError:
            pass
        return real(*args, **kwargs)

    monkeypatch.setattr(auth_service, target, meet)
    results = [None] * len(calls)

    def run(i):
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    db.session.expire_all()  # this thread's session (shared by later test requests) saw the old rows
    return results


def test_a_double_clicked_password_change_changes_once_and_keeps_the_browser_signed_in(app, make_user, monkeypatch):
    user = make_user("analyst")
    first = sign_in(app, user, remember=True)
    second = copy_of(app, first)
    data = {"current_password": PASSWORD, "new_password": NEW, "confirm": NEW}
    # both clicks have checked the current password before either changes it
    responses = run_together([lambda: first.post("/account/password", data=data),
                              lambda: second.post("/account/password", data=data)], monkeypatch, "reset_budget")
    assert [r.status_code for r in responses] == [302, 302]
    assert all(r.headers["Location"] == "/account" for r in responses)
    assert len(events("password_change")) == 1
    assert signed_in(first) and signed_in(second)  # whichever answer the browser kept, it works
    assert fresh(user).check_password(NEW)


def test_a_double_clicked_sign_out_everywhere_else_ends_sessions_once_and_keeps_this_one(app, make_user,
                                                                                     monkeypatch):
    user = make_user("viewer")
    here = sign_in(app, user)
    elsewhere = sign_in(app, user)
    twin = copy_of(app, here)
    responses = run_together([lambda: here.post("/account/sessions"), lambda: twin.post("/account/sessions")],
                             monkeypatch, "new_session_token")
    assert [r.headers["Location"] for r in responses] == ["/account", "/account"]
    assert len(events("sessions_ended")) == 1
    [winner] = [client for client, r in zip((here, twin), responses) if writes_session(r)]
    assert signed_in(winner) and not signed_in(elsewhere)


def test_concurrent_sign_outs_both_sign_out(app, make_user, monkeypatch):
    user = make_user("viewer")
    here = sign_in(app, user, remember=True)
    twin = copy_of(app, here)
    responses = run_together([lambda: here.post("/auth/logout"), lambda: twin.post("/auth/logout")],
                             monkeypatch, "new_session_token")
    assert [r.headers["Location"] for r in responses] == ["/auth/login", "/auth/login"]
    assert len(events("logout")) == 1
    assert not signed_in(here) and not signed_in(twin)
    assert all(any(c.startswith("remember_token=;") for c in set_cookies(r)) for r in responses)


def test_a_page_opened_with_a_dead_cookie_drops_it(app, make_user):
    user = make_user("viewer")
    browser = sign_in(app, user, remember=True)
    stale = copy_of(app, browser)
    browser.post("/account/sessions")  # another tab rotates the token
    page = stale.get("/companies")
    assert page.status_code == 302 and page.headers["Location"] == "/auth/login?next=%2Fcompanies"
    assert any(c.startswith("remember_token=;") for c in set_cookies(page))  # the dead remember-me goes
    with stale.session_transaction() as session:
        assert "_user_id" not in session


# -- remember-me across client changes -------------------------------------------------------

def test_remember_me_survives_a_new_address(client, make_user):
    user = make_user("viewer")
    login_response = client.post("/auth/login", data={"email": user.email, "password": PASSWORD, "remember": "y"},
                                 environ_base={"REMOTE_ADDR": "192.0.2.10"})
    assert login_response.status_code == 302
    assert client.get("/", environ_base={"REMOTE_ADDR": "198.51.100.7"}).status_code == 200
    client.delete_cookie("session")
    assert client.get("/", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 200
    assert client.get_cookie("remember_token") is not None


# -- admin unlock -------------------------------------------------------------------------------

def test_an_admin_lifts_a_pause(app, make_user):
    victim = make_user("analyst")
    with at(0):
        for _ in range(6):
            login(app.test_client(), victim.email, WRONG)
    with at(10):
        admin_user = make_user("admin")
        admin = sign_in(app, admin_user)
        assert "sign-in paused" in admin.get("/admin/users").get_data(as_text=True)
        page = admin.get(f"/admin/users/{victim.id}/edit").get_data(as_text=True)
        assert "Sign-in to this account is paused until" in page and "after\n5 failed attempts" in page
        response = admin.post(f"/admin/users/{victim.id}/unlock")
        assert response.status_code == 302
        assert login(app.test_client(), victim.email).status_code == 302
    [event] = events("login_unlock")
    assert event.object_id == victim.id and event.actor_id == admin_user.id and "lifted" in event.summary


def test_unlock_is_for_admins_only(app, make_user):
    victim = make_user("analyst")
    with at(0):
        for _ in range(5):
            login(app.test_client(), victim.email, WRONG)
        analyst = sign_in(app, make_user("analyst"))
        assert analyst.post(f"/admin/users/{victim.id}/unlock").status_code == 403
    assert fresh(victim).failed_logins == 5


def test_cli_unlock(app, make_user, runner):
    victim = make_user("viewer")
    with at(0):
        for _ in range(5):
            login(app.test_client(), victim.email, WRONG)
    result = runner.invoke(args=["users", "unlock", victim.email.upper()])
    assert result.exit_code == 0 and "unpaused" in result.output
    assert (fresh(victim).failed_logins, fresh(victim).locked_until) == (0, None)
    assert events("login_unlock")[0].actor_label == "cli"
    missing = runner.invoke(args=["users", "unlock", "nobody@example.org"])
    assert missing.exit_code == 1 and "no user" in missing.stderr


# -- the calendar link ---------------------------------------------------------------------------

def calendar_link(client) -> str:
    assert client.post("/account/calendar").status_code == 302
    page = client.get("/account").get_data(as_text=True)
    return "/reminders/calendar/" + page.split("/reminders/calendar/")[1].split(".ics")[0] + ".ics"


def feed_works(app, url: str) -> bool:
    return app.test_client().get(url).status_code == 200


@pytest.mark.parametrize("action", ["sign out everywhere else", "password change", "admin password reset",
                                    "deactivation and reactivation"])
def test_actions_taken_after_a_suspected_leak_revoke_the_calendar_link(app, make_user, action):
    user = make_user("analyst")
    browser = sign_in(app, user)
    url = calendar_link(browser)
    assert feed_works(app, url)
    if action == "sign out everywhere else":
        browser.post("/account/sessions")
    elif action == "password change":
        browser.post("/account/password", data={"current_password": PASSWORD, "new_password": NEW, "confirm": NEW})
    else:
        admin = sign_in(app, make_user("admin"))
        if action == "admin password reset":
            admin.post(f"/admin/users/{user.id}/password", data={"pw-password": NEW, "pw-confirm": NEW})
        else:
            for active in ({}, {"active": "y"}):
                admin.post(f"/admin/users/{user.id}/edit", data={"email": user.email, "name": user.name,
                                                                 "role": "analyst", **active})
            assert fresh(user).active
    assert not feed_works(app, url), action
    assert fresh(user).calendar_token is None


def test_signing_out_keeps_the_calendar_link(app, make_user):
    user = make_user("analyst")
    browser = sign_in(app, user)
    url = calendar_link(browser)
    browser.post("/auth/logout")
    assert feed_works(app, url)


# -- configuration ------------------------------------------------------------------------------

def test_wsgi_serves_only_development_or_production(monkeypatch):
    monkeypatch.setenv("ENGAGE_ENV", "testing")
    with pytest.raises(RuntimeError, match="development or production.*only the test suite"):
        runpy.run_path("wsgi.py")


@pytest.mark.parametrize("key", [
    "dev-only-change-medev-only-change-me",
    "abcdefgh" * 4,
    "Zq9!" * 12,
    "x7Kp2mQ9" * 5 + "x7",  # a pattern repeated, cut anywhere
    "prefix-dev-only-change-me-and-some-more-characters",
    "please-change-me-before-going-live-4f9c",
    "abcdefghijklmnopqrstuvwxyz0123456789",
    "9876543210zyxwvutsrqponmlkjihgfedcba",
    "aaaabbbbccccddddeeeeffffgggghhhhiiii",
])
def test_production_refuses_keys_derived_from_public_values_or_patterns(database_url, key):
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app(ProductionConfig, overrides={"SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": key,
                                                 "FORCE_HTTPS": False})


def test_production_accepts_random_keys(database_url):
    from engage import secret_key_problem

    rng = random.Random(13)
    for length in range(32, 97):
        for alphabet in (string.ascii_letters + string.digits + "-_", string.hexdigits.lower()[:16], string.digits):
            key = "".join(rng.choice(alphabet) for _ in range(length))
            assert secret_key_problem(key) is None, key
    app = create_app(ProductionConfig, overrides={"SQLALCHEMY_DATABASE_URI": database_url, "FORCE_HTTPS": False,
                                                   "SECRET_KEY": "fQ3-ZpL9xw_T7vRkq2NbY8sHcJ4uMdE6"})
    assert app.config["PRODUCTION"]


def test_production_refuses_to_switch_csrf_off(database_url):
    with pytest.raises(RuntimeError, match="WTF_CSRF_ENABLED"):
        create_app(ProductionConfig, overrides={"SQLALCHEMY_DATABASE_URI": database_url, "FORCE_HTTPS": False,
                                                 "SECRET_KEY": "fQ3-ZpL9xw_T7vRkq2NbY8sHcJ4uMdE6",
                                                 "WTF_CSRF_ENABLED": False})


@pytest.mark.parametrize("key", ["", "   ", None])
def test_an_empty_development_key_gets_a_random_one_with_a_warning(database_url, key, caplog, app):
    with caplog.at_level(logging.WARNING):
        first = create_app(Config, overrides={"SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": key})
        second = create_app(Config, overrides={"SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": key})
    assert len(first.config["SECRET_KEY"]) >= 32 and first.config["SECRET_KEY"] != second.config["SECRET_KEY"]
    assert "SECRET_KEY is empty" in caplog.text
    with first.app_context():
        page = first.test_client().get("/auth/login")
    assert page.status_code == 200 and 'name="csrf_token"' in page.get_data(as_text=True)
