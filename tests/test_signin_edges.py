"""Sign-in and sessions at their edges: lock-outs, parallel guesses, remember-me, double clicks."""

import datetime as dt

from engage import clock
from engage.extensions import db
from engage.models import User
from tests.conftest import PASSWORD, login

T0 = dt.datetime(2026, 6, 15, 9, 0, 0)


def at(seconds: float):
    return clock.frozen(T0 + dt.timedelta(seconds=seconds))


def test_an_attacker_with_four_requests_an_hour_cannot_keep_a_user_out_for_a_day(client, make_user):
    """One wrong attempt each time the pause ends renews a 15-minute pause, forever."""
    victim = make_user("admin")
    second = 0.0
    with at(second):
        for _ in range(10):
            login(client, victim.email, "guess")  # the first ten build the pause up to the cap
    attacker_requests, victim_got_in = 10, False
    while second < 24 * 3600:
        db.session.expire_all()
        second = (db.session.get(User, victim.id).locked_until - T0).total_seconds()
        with at(second):  # the attacker tries again the second the pause ends...
            login(client, victim.email, "guess")
            attacker_requests += 1
        with at(second + 1):  # ...and the victim, one second later, has the right password
            if login(client, victim.email).status_code == 302:
                victim_got_in = True
                break
    assert victim_got_in, f"locked out for a day by {attacker_requests} requests (about 4 an hour)"


def test_admin_password_reset_lifts_the_pause(client, make_user):
    """A user under attack asks an admin; the reset password should let them in."""
    victim = make_user("analyst")
    for step in range(12):  # each failure once the previous pause is over: the cap, 15 minutes
        with at(step * 1000):
            login(client, victim.email, "guess")
    victim = db.session.get(User, victim.id)
    assert victim.locked_until == T0 + dt.timedelta(seconds=11 * 1000 + 900)
    victim.set_password("a brand new password 42")
    db.session.commit()
    with at(11 * 1000 + 60):
        assert login(client, victim.email, "a brand new password 42").status_code == 302


def test_remember_me_survives_opening_the_sign_in_page(make_app, make_user):
    """Browser restarted (session cookie gone), user opens the bookmarked /auth/login (CSRF on, as served)."""
    from tests.conftest import csrf_token_from

    client = make_app(WTF_CSRF_ENABLED=True).test_client()
    user = make_user("viewer")
    token = csrf_token_from(client.get("/auth/login").get_data(as_text=True))
    r = client.post("/auth/login", data={"email": user.email, "password": PASSWORD, "remember": "y", "csrf_token": token})
    assert r.status_code == 302
    remember = client.get_cookie("remember_token").value
    client.delete_cookie("session")
    page = client.get("/auth/login")
    assert client.get_cookie("remember_token") is not None, "GET /auth/login deleted the remember-me cookie"
    assert page.status_code == 302 or client.get("/").status_code == 200, remember


def test_remember_me_survives_a_browser_update(client, make_user):
    """Same browser, same cookies, new User-Agent after an update (or a new IP address)."""
    user = make_user("viewer")
    r = client.post("/auth/login", data={"email": user.email, "password": PASSWORD, "remember": "y"},
                    headers={"User-Agent": "Browser/1"})
    assert r.status_code == 302
    assert client.get("/", headers={"User-Agent": "Browser/1"}).status_code == 200
    after_update = client.get("/", headers={"User-Agent": "Browser/2"})
    assert after_update.status_code == 200 or client.get("/", headers={"User-Agent": "Browser/2"}).status_code == 200
    assert client.get_cookie("remember_token") is not None, "remember-me cookie deleted"


def test_a_repeated_post_after_the_token_changed_does_not_end_on_405(client, make_user):
    """Double-click on Sign out / Change password: the second POST arrives with the old cookie."""
    user = make_user("viewer")
    assert login(client, user.email).status_code == 302
    old = client.get_cookie("session").value
    client.post("/auth/logout")
    client.set_cookie("session", old)
    second = client.post("/auth/logout")
    assert second.status_code == 302
    back = client.post("/auth/login", data={"email": user.email, "password": PASSWORD,
                                       "next": second.headers["Location"].split("next=")[-1].replace("%2F", "/")})
    assert client.get(back.headers["Location"]).status_code != 405


def test_parallel_guesses_are_not_all_checked(app, make_user, monkeypatch):
    """Backoff bypass: guesses sent together all pass the pause check before any failure is counted."""
    import threading

    import engage.models.users as users_module

    victim = make_user("admin")
    victim_hash = victim.password_hash
    barrier, checked, lock = threading.Barrier(10), [], threading.Lock()
    real = users_module.check_password_hash

    def slow_check(hash_, password):  # a password check takes ~100 ms of scrypt: let them overlap
        if hash_ == victim_hash:
            with lock:
                checked.append(password)
            try:
                barrier.wait(timeout=3)
            except threading.BrokenBarrierError:
                pass
        return real(hash_, password)

    monkeypatch.setattr(users_module, "check_password_hash", slow_check)

    def guess(n):
        app.test_client().post("/auth/login", data={"email": victim.email, "password": f"guess {n}"})

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(10)]
    with at(0):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(checked) <= app.config["LOGIN_BACKOFF_AFTER"], f"{len(checked)} guesses checked before the pause"
