"""Issue 20, break 3: the screening lists and the bulk action under odd, stale and hostile requests."""

from __future__ import annotations

import sqlalchemy as sa

from engage.extensions import db
from engage.models import Engagement
from tests import factories
from tests.test_screening_pages import OFFICIAL, paged_fund, small_pages  # noqa: F401  (fixture)


def test_the_bulk_action_refuses_an_inactive_campaign(client, login_as):
    """The page offers active campaigns only; a stale tab (the campaign since closed) or a crafted
    post must not open engagements in a campaign nobody can choose any more."""
    login_as("analyst")
    campaign = factories.campaign()
    item = paged_fund()
    campaign.active = False
    db.session.commit()
    before = db.session.scalar(sa.select(sa.func.count(Engagement.id)))
    response = client.post("/holdings/screening/engage", data={"fund_id": item.id, "campaign_id": campaign.id})
    assert response.status_code == 400
    assert "not active" in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count(Engagement.id))) == before


def test_odd_parameters_of_the_lists_are_refused_not_server_errors(client, login_as):
    login_as("viewer")
    item = paged_fund()
    for url in (f"/holdings/screening/{10**30}", "/holdings/screening/99999999999999999999?section=noted",
                f"/holdings/screening/held-again?fund={10**30}", f"/holdings/screening/{item.id}?page=%EF%BC%91",
                f"/holdings/screening/{item.id}?page=-1", f"/holdings/screening/{item.id}?page=0",
                f"/holdings/screening/{item.id}?page=1e3", f"/holdings/screening/{item.id}?page=" + "9" * 400,
                f"/holdings/screening/{item.id}?section=%00", f"/holdings/screening/{item.id}?list=%C3%A9" * 3,
                f"/holdings/screening/{item.id}?new=2", f"/holdings/screening/held-again?fund=-{item.id}",
                "/holdings/screening/held-again?fund=%EF%BC%91"):
        response = client.get(url)
        assert response.status_code in (400, 404), (url, response.status_code)
    # repeated parameters: the first counts, as everywhere
    response = client.get(f"/holdings/screening/{item.id}?section=noted&section=bogus&page=2&page=x")
    assert response.status_code == 200


def test_a_viewer_cannot_post_the_bulk_action(client, login_as):
    login_as("viewer")
    campaign = factories.campaign()
    item = paged_fund()
    before = db.session.scalar(sa.select(sa.func.count(Engagement.id)))
    response = client.post("/holdings/screening/engage", data={"fund_id": item.id, "campaign_id": campaign.id})
    assert response.status_code == 403
    assert db.session.scalar(sa.select(sa.func.count(Engagement.id))) == before


def test_the_bulk_action_names_a_few_divested_companies_not_all(client, login_as):
    """A fund with many divested holdings: the flash named every one, and flashes travel in the session
    cookie, which browsers drop past 4 KB (the user loses the message, or is signed out)."""
    import datetime as dt
    import hashlib

    login_as("analyst")
    campaign = factories.campaign()
    item = paged_fund(held_again=0)
    from tests.test_screening_pages import divest, hold
    for n in range(200):
        name = f"Divested {hashlib.sha256(str(n).encode()).hexdigest()[:24]} Holdings Limited"
        engagement = factories.engagement(company=factories.company(name), opened_on=dt.date(2026, 1, 5))
        divest(engagement, dt.date(2026, 3, 10))
        engagement.company.risk_flags.append(_flag())
        hold(item, engagement.company, 10 + n)
    db.session.commit()
    response = client.post("/holdings/screening/engage", data={"fund_id": item.id, "campaign_id": campaign.id})
    assert response.status_code == 302
    cookie = response.headers.get("Set-Cookie", "")
    assert len(cookie) < 4000, len(cookie)
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "and 195 more" in page and "divested" in page


def _flag():
    from engage.models import RiskFlag
    return RiskFlag(source="us_entity_list", citation="c")


def _double_click(app, client, hold: float) -> str:
    """The bulk action posted by `client` while another transaction (the "first click") holds its
    engagement written and uncommitted for `hold` seconds; the page the post leads to."""
    import threading

    campaign = factories.campaign()
    item = paged_fund(held_again=0)
    company = db.session.scalar(sa.text("SELECT id FROM companies WHERE name = 'Alpha Listed Paged Fund'"))
    owner = db.session.scalar(sa.text("SELECT id FROM users ORDER BY id DESC LIMIT 1"))
    db.session.commit()
    other = db.engine.connect()
    other.begin()
    # the "first click": its engagement written, not yet committed
    other.execute(sa.text("INSERT INTO engagements (company_id, campaign_id, owner_id, stage, escalation, objectives, "
                          "opened_on, version, next_step, created_at, updated_at) VALUES (:c, :k, :o, 'identified', "
                          "'none', '', '2026-06-15', 1, '', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
                  {"c": company, "k": campaign.id, "o": owner})
    result = {}

    def second_click():
        with app.app_context():
            try:
                result["response"] = client.post("/holdings/screening/engage",
                                                  data={"fund_id": item.id, "campaign_id": campaign.id})
            except Exception as error:  # a server error (the test client raises it)
                result["error"] = error

    thread = threading.Thread(target=second_click)
    thread.start()
    thread.join(hold)  # it waits on the index entry (PostgreSQL) or the write lock (SQLite)
    other.commit()
    other.close()
    thread.join(30)
    assert not thread.is_alive()
    assert "error" not in result, repr(result.get("error"))
    assert result["response"].status_code == 302, result["response"].status_code
    assert db.session.scalar(sa.select(sa.func.count(Engagement.id)).where(Engagement.company_id == company)) == 1
    assert db.session.scalar(sa.select(sa.func.count(Engagement.id)).where(Engagement.campaign_id == campaign.id)) == 1
    return client.get(result["response"].headers["Location"]).get_data(as_text=True)


def test_a_double_click_on_the_bulk_action_is_not_a_server_error(app, client, login_as):
    """Two posts of the bulk action at once: the second waits while the first commits (PostgreSQL: on
    the unique index of open engagements; SQLite: on the database's write lock), then must open
    nothing more and say so, not 500."""
    login_as("analyst")
    page = _double_click(app, client, hold=3)
    assert "another request at the same moment: nothing more opened" in page


def test_a_double_click_whose_first_post_outlasts_the_wait_is_not_a_server_error(make_app, app, make_user):
    """The first post holds its write longer than the second may wait for it (SQLite: past
    SQLITE_BUSY_TIMEOUT_MS, here 300 ms; a big fund's bulk action on a loaded machine): the second
    opens nothing and says so, not 500."""
    from tests.conftest import login

    impatient = make_app(SQLITE_BUSY_TIMEOUT_MS=300)
    client = impatient.test_client()
    login(client, make_user("analyst").email)
    page = _double_click(impatient, client, hold=2)
    assert "nothing more opened" in page
