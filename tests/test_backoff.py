"""Per-account sign-in backoff, with an injected clock instead of sleeping."""

import datetime as dt

import sqlalchemy as sa
from hypothesis import given, settings, strategies as st

from engage import clock
from engage.auth.service import backoff_delay
from engage.extensions import db
from engage.models import AuditEvent, User
from tests.conftest import PASSWORD, login

T0 = dt.datetime(2026, 6, 15, 9, 0, 0)
GENERIC = "That email and password do not match an active account."
WRONG = "wrong password entirely"


def at(seconds: float):
    return clock.frozen(T0 + dt.timedelta(seconds=seconds))


def state(user) -> tuple[int, dt.datetime | None]:
    db.session.expire_all()
    fresh = db.session.get(User, user.id)
    return fresh.failed_logins, fresh.locked_until


def known_browser_state(user) -> tuple[int, dt.datetime | None]:
    db.session.expire_all()
    fresh = db.session.get(User, user.id)
    return fresh.device_failed_logins, fresh.device_locked_until


def fail(client, email: str, times: int, second: float = 0):
    with at(second):
        return [login(client, email, WRONG) for _ in range(times)]


def events(action: str) -> list[AuditEvent]:
    return list(db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def test_five_failures_pause_the_account_and_a_correct_password_is_refused_meanwhile(client, make_user):
    user = make_user("viewer")
    fail(client, user.email, 4)
    assert state(user) == (4, None) and events("login_backoff") == []
    fail(client, user.email, 1)
    assert state(user) == (5, T0 + dt.timedelta(seconds=30))
    [started] = events("login_backoff")
    assert started.object_id == user.id and "30 s after 5 failed attempts" in started.summary
    with at(29):
        refused = login(client, user.email)  # the right password, during the pause
    assert refused.status_code == 200 and GENERIC in refused.get_data(as_text=True)
    assert client.get("/").status_code == 302
    assert "refused during backoff" in events("login_failed")[-1].summary
    with at(30):
        assert login(client, user.email).status_code == 302
    assert state(user) == (0, None)  # success resets the counter


def test_attempts_during_a_pause_neither_count_nor_extend_it(client, make_user):
    user = make_user("viewer")
    fail(client, user.email, 5)
    fail(client, user.email, 5, second=10)
    assert state(user) == (5, T0 + dt.timedelta(seconds=30))
    assert len(events("login_backoff")) == 1


def test_pause_doubles_with_each_further_failure_and_is_capped_at_fifteen_minutes(client, make_user, app):
    """Each failure sent the moment the previous pause ends doubles the pause, up to the cap;
    the window's failures are forgotten LOGIN_BACKOFF_WINDOW_SECONDS after its first one."""
    window = app.config["LOGIN_BACKOFF_WINDOW_SECONDS"]
    assert window == 4 * 3600
    user = make_user("viewer")
    fail(client, user.email, 5)
    pauses = []
    _, until = state(user)
    while True:
        second = (until - T0).total_seconds()  # the moment the pause ends
        fail(client, user.email, 1, second=second)
        failures, until = state(user)
        if second >= window:
            break
        pauses.append((until - (T0 + dt.timedelta(seconds=second))).total_seconds())
    assert pauses[:6] == [60, 120, 240, 480, 900, 900]
    assert set(pauses[4:]) == {900} and len(pauses) == 19
    # the window that began at T0 is over: this failure starts a new count and no pause
    assert failures == 1 and until <= T0 + dt.timedelta(seconds=second)
    with at(second + 1):  # never a permanent lock: the right password works
        assert login(client, user.email).status_code == 302


def test_failures_far_apart_never_add_up_to_a_pause(client, make_user):
    user = make_user("viewer")
    for step in range(8):  # one typo every 4.5 hours
        fail(client, user.email, 1, second=step * 4.5 * 3600)
        assert state(user) == (1, None)


def test_unknown_and_paused_accounts_read_like_a_wrong_password(client, make_user, monkeypatch):
    """Same page and one password hash per attempt, whether the account exists, pauses or not."""
    import engage.auth.service as auth_service
    import engage.models.users as users_module

    hashes = []
    real = auth_service.check_password_hash

    def counting(hash_, password):
        hashes.append(hash_)
        return real(hash_, password)

    monkeypatch.setattr(auth_service, "check_password_hash", counting)
    monkeypatch.setattr(users_module, "check_password_hash", counting)
    paused = make_user("viewer")
    fail(client, paused.email, 5)
    other = make_user("viewer")
    hashes.clear()
    with at(1):
        pages = [login(client, "nobody@example.org", WRONG), login(client, paused.email, PASSWORD),
                 login(client, other.email, WRONG)]
    assert len(hashes) == 3
    bodies = [p.get_data(as_text=True) for p in pages]
    assert all(p.status_code == 200 for p in pages)
    assert all(GENERIC in body for body in bodies)
    assert len({body.replace(paused.email, "").replace(other.email, "").replace("nobody@example.org", "")
                for body in bodies}) == 1


def test_the_counter_is_per_account(client, make_user):
    victim, bystander = make_user("viewer"), make_user("viewer")
    fail(client, victim.email, 5)
    with at(1):
        assert login(client, bystander.email).status_code == 302


def test_a_wrong_current_password_on_the_account_page_counts_too(client, login_as):
    user = login_as("viewer")
    with at(0):
        for _ in range(5):
            response = client.post("/account/password", data={"current_password": WRONG, "new_password": "x" * 20,
                                                              "confirm": "x" * 20})
            assert response.status_code == 422
    assert known_browser_state(user)[0] == 5  # a signed-in session is a known browser
    assert state(user) == (0, None)  # an attacker's failures elsewhere are another budget
    with at(1):  # the pause holds here as well: even the right password is not checked
        response = client.post("/account/password", data={"current_password": PASSWORD, "new_password": "x" * 20,
                                                          "confirm": "x" * 20})
    assert response.status_code == 422 and "That is not your current password" in response.get_data(as_text=True)
    with at(31):
        ok = client.post("/account/password", data={"current_password": PASSWORD, "new_password": "x" * 20,
                                                    "confirm": "x" * 20})
    assert ok.status_code == 302


def test_backoff_can_be_switched_off(make_app, make_user, app):
    relaxed = make_app(LOGIN_BACKOFF_AFTER=0)
    user = make_user("viewer")
    client = relaxed.test_client()
    fail(client, user.email, 8)
    with at(1):
        assert login(client, user.email).status_code == 302


@settings(max_examples=200, deadline=None, derandomize=True)
@given(failures=st.integers(0, 10_000), after=st.integers(0, 50), first=st.integers(1, 3600),
       cap=st.integers(1, 24 * 3600))
def test_backoff_delay_is_bounded_and_never_shrinks(failures, after, first, cap):
    delay = backoff_delay(failures, after, first, cap)
    following = backoff_delay(failures + 1, after, first, cap)
    if after == 0 or failures < after:
        assert delay is None
        return
    assert dt.timedelta(0) < delay <= dt.timedelta(seconds=max(cap, 1))
    assert following is not None and following >= delay
