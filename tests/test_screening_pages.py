"""Issue 20: the screening page in slices, and its lists in full on their own pages.

The screening page keeps every fund's aggregates and shows the first SHOWN rows of each long list
(on an official list, linked through a parent, noted only, held again after divestment) with
"N of M shown" and a link to the full list, paged (PAGE_SIZE) in a stable order, filterable; a bad
page is a 404 and a bad filter a 400, each saying what is wrong, a page past the end shows the last page and says so.
The bulk action still opens engagements for every eligible holding of the fund, not the slice.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
import sqlalchemy as sa

from engage.engagements import cycle
from engage.extensions import db
from engage.holdings import screening
from engage.models import Company, Engagement, FlagLink, Fund, Holding, RiskFlag
from tests import factories

TODAY = dt.date(2026, 6, 15)  # conftest FROZEN_AT
AS_OF = dt.date(2026, 5, 31)
SHOWN = 3
PAGE = 4


@pytest.fixture(autouse=True)
def small_pages(app, monkeypatch, frozen_today):
    monkeypatch.setattr(screening, "SHOWN", SHOWN)
    monkeypatch.setitem(app.config, "PAGE_SIZE", PAGE)


def fund(name="Paged Fund"):
    item = Fund(name=name, base_currency="USD")
    db.session.add(item)
    db.session.flush()
    return item


def hold(fund_, company, value):
    db.session.add(Holding(fund=fund_, company=company, as_of=AS_OF,
                           market_value=None if value is None else Decimal(value)))


def listed(name, source="us_entity_list", link=FlagLink.DIRECT.value):
    company = factories.company(name)
    company.risk_flags.append(RiskFlag(source=source, citation=f"{source} citation", link=link))
    return company


def divest(engagement, on):
    cycle.move_stage(engagement, "closed", on=on, today=TODAY, actor_id=None, outcome="divested",
                     note="Sold after the divestment recommendation.")
    db.session.commit()


#: Official holdings in their expected order: largest first, ties by name, then by the holding's id (the
#: two ties have the same normalized name, "tie listed ...", and are inserted in reverse: B first), the
#: unknown value last.
OFFICIAL = [("Alpha Listed", 9000), ("Bravo Listed", 8000), ("Tie B Listed", 7000), ("Tie A Listed", 7000),
            ("Echo Listed", 6000), ("Foxtrot Listed", 5000), ("Unknown Value Listed", None)]


def paged_fund(name="Paged Fund", official=OFFICIAL, noted=5, linked=2, held_again=5):
    item = fund(name)
    # inserted by name, descending: another order than the expected one, so the order is the query's
    for company_name, value in sorted(official, reverse=True):
        hold(item, listed(f"{company_name} {name}", source="cbp_wro" if "Echo" in company_name else "us_entity_list"),
             value)
    for n in range(noted):
        hold(item, listed(f"Noted {n} {name}", source="analyst"), 100 + n)
    for n in range(linked):
        hold(item, listed(f"Linked {n} {name}", link=FlagLink.LINKED.value), 50 + n)
    hold(item, factories.company(f"Plain {name}"), 99999)  # unflagged: on no list of the page
    db.session.commit()
    for n in range(held_again):
        engagement = factories.engagement(company=factories.company(f"Divested {n} {name}"), opened_on=dt.date(2026, 1, 5))
        divest(engagement, dt.date(2026, 3, 10))
        hold(item, engagement.company, 1000 * (n + 1))
    db.session.commit()
    return item


def names(html, marker):
    """Companies (linked to their page or engagement) whose name contains `marker`, in the page's order."""
    return re.findall(r'<a href="/(?:companies|engagements)/\d+">([^<>]*' + re.escape(marker) + r"[^<>]*)</a>", html)


def test_the_screening_page_shows_the_first_rows_of_each_list_and_how_many_there_are(client, login_as):
    login_as("analyst")
    factories.campaign()
    item = paged_fund()
    page = client.get("/holdings/screening").get_data(as_text=True)
    section = page.split(f"<h2>{item.name}</h2>")[1]
    assert names(section, "Listed Paged Fund") == ["Alpha Listed Paged Fund", "Bravo Listed Paged Fund",
                                                   "Tie B Listed Paged Fund"]
    assert f"3 of 7 shown (largest holdings first)" in section
    assert f'href="/holdings/screening/{item.id}?section=official"' in section
    assert "3 of 5 shown" in section and f'href="/holdings/screening/{item.id}?section=noted"' in section
    assert "5 holdings with analyst notes or sector risk only" in section  # the count is all of them
    assert "All 2 shown" in section and len(names(section, "Linked")) == 2  # a short list is shown whole
    # held again: the largest three of five, and a link to the full list of the fund
    held = section.split("Held again after divestment")[1].split("</div>")[0]
    assert [n for n in re.findall(r"<li>(Divested \d) Paged Fund", held)] == ["Divested 4", "Divested 3", "Divested 2"]
    assert "3 of 5 shown" in held and f'href="/holdings/screening/held-again?fund={item.id}"' in held
    # the aggregates are over every holding, not the slice
    assert "USD 42,000, value unknown for 1" in section  # the official part: all seven, not the slice
    # the bulk action counts every eligible holding of the fund
    assert "Open engagements for the 7 listed companies without one" in section
    assert "Opens 7 engagements: every holding of the fund on an official list" in section


def test_the_bulk_action_opens_engagements_for_every_eligible_holding_not_the_slice(client, login_as):
    login_as("analyst")
    campaign = factories.campaign()
    item = paged_fund()
    already = db.session.scalar(sa.select(Company).where(Company.name == "Alpha Listed Paged Fund"))
    existing = factories.engagement(company=already, campaign=campaign)  # open in the campaign already: not again
    elsewhere = db.session.scalar(sa.select(Company).where(Company.name == f"{OFFICIAL[1][0]} Paged Fund"))
    other = factories.engagement(company=elsewhere, campaign=factories.campaign("another-campaign"))  # open elsewhere
    page = client.get("/holdings/screening").get_data(as_text=True)
    assert "Opens 5 engagements" in page
    before = db.session.scalar(sa.select(sa.func.count(Engagement.id)))
    response = client.post("/holdings/screening/engage", data={"fund_id": item.id, "campaign_id": campaign.id})
    assert response.status_code == 302
    opened = db.session.scalars(sa.select(Engagement).where(Engagement.campaign_id == campaign.id,
                                                            Engagement.id != existing.id)).all()
    # as many as the page said: not the one open in another campaign either
    assert len(opened) == 5 and {e.stage for e in opened} == {"identified"}
    assert {e.company.name for e in opened} == {f"{n} Paged Fund" for n, _ in OFFICIAL[2:]}
    assert db.session.scalar(sa.select(sa.func.count(Engagement.id)).where(Engagement.company_id == elsewhere.id)) == 1
    assert other.campaign_id != campaign.id
    client.post("/holdings/screening/engage", data={"fund_id": item.id, "campaign_id": campaign.id})
    assert db.session.scalar(sa.select(sa.func.count(Engagement.id))) == before + 5  # not twice
    assert "Open engagements for the" not in client.get("/holdings/screening").get_data(as_text=True)


def test_the_full_list_pages_in_a_stable_order_and_says_what_a_bad_page_is(client, login_as):
    login_as("viewer")
    item = paged_fund()
    url = f"/holdings/screening/{item.id}?section=official"
    first = client.get(url).get_data(as_text=True)
    second = client.get(url + "&page=2").get_data(as_text=True)
    expected = [f"{n} Paged Fund" for n, _ in OFFICIAL]
    assert names(first, "Listed Paged Fund") == expected[:4]
    assert names(second, "Listed Paged Fund") == expected[4:]
    assert "Rows 1 to 4 of 7 · page 1 of 2" in first and 'rel="next"' in first and 'rel="prev"' not in first
    assert "Rows 5 to 7 of 7 · page 2 of 2" in second and 'rel="prev"' in second and 'rel="next"' not in second
    assert client.get(url + "&page=1").get_data(as_text=True) == first
    # past the end: the last page, saying so
    for past in ("3", "1000000"):
        response = client.get(url + f"&page={past}")
        text = response.get_data(as_text=True)
        assert response.status_code == 200
        assert f"There is no page {past}: this list has 2 pages, so the last one is shown." in text
        assert names(text, "Listed Paged Fund") == expected[4:]
    # not a page number: a 404 (as every list's), saying why
    for bad in ("0", "abc", "-1", "1.5", "99999999999999999999999999", str(2**31)):
        response = client.get(url + f"&page={bad}")
        assert response.status_code == 404, bad
        assert "is not a page number: give a whole number from 1" in response.get_data(as_text=True)
    # the other sections, and their filters
    noted = client.get(f"/holdings/screening/{item.id}?section=noted").get_data(as_text=True)
    assert names(noted, "Noted") == ["Noted 4 Paged Fund", "Noted 3 Paged Fund", "Noted 2 Paged Fund",
                                     "Noted 1 Paged Fund"]
    assert names(client.get(f"/holdings/screening/{item.id}?section=linked").get_data(as_text=True), "Linked ") == [
        "Linked 1 Paged Fund", "Linked 0 Paged Fund"]
    filtered = client.get(url + "&list=cbp_wro").get_data(as_text=True)
    assert names(filtered, "Listed Paged Fund") == ["Echo Listed Paged Fund"] and "Rows 1 to 1 of 1" in filtered
    assert "No holding of" in client.get(url + "&list=gpfg_exclusion").get_data(as_text=True)
    for bad in ("section=everything", "list=nolist", "new=yes"):
        response = client.get(f"/holdings/screening/{item.id}?{bad}")
        assert response.status_code == 400 and "is not one of the choices" in response.get_data(as_text=True)
    assert client.get("/holdings/screening/999999?section=official").status_code == 404


def test_the_held_again_list_pages_all_funds_or_one(client, login_as):
    login_as("viewer")
    one = paged_fund("First Fund", official=[], noted=0, linked=0, held_again=5)
    other = paged_fund("Second Fund", official=[], noted=0, linked=0, held_again=2)
    every = client.get("/holdings/screening/held-again").get_data(as_text=True)
    assert "Rows 1 to 4 of 7 · page 1 of 2" in every
    assert names(every, "Divested") == ["Divested 4 First Fund", "Divested 3 First Fund", "Divested 2 First Fund",
                                    "Divested 1 First Fund"]  # by fund, largest first
    last = client.get("/holdings/screening/held-again?page=2").get_data(as_text=True)
    assert names(last, "Divested") == ["Divested 0 First Fund", "Divested 1 Second Fund", "Divested 0 Second Fund"]
    only = client.get(f"/holdings/screening/held-again?fund={other.id}").get_data(as_text=True)
    assert names(only, "Divested") == ["Divested 1 Second Fund", "Divested 0 Second Fund"]
    past = client.get(f"/holdings/screening/held-again?fund={one.id}&page=7").get_data(as_text=True)
    assert "There is no page 7: this list has 2 pages, so the last one is shown." in past
    assert names(past, "Divested") == ["Divested 0 First Fund"]
    for bad in ("fund=abc", "fund=0", "fund=999999"):
        response = client.get(f"/holdings/screening/held-again?{bad}")
        assert response.status_code == 400 and "is no fund" in response.get_data(as_text=True), bad
    for bad in ("page=0", "page=x"):
        assert client.get(f"/holdings/screening/held-again?{bad}").status_code == 404, bad
    assert "No divested company is held again" in client.get(
        f"/holdings/screening/held-again?fund={fund('Empty Fund').id}").get_data(as_text=True)


def test_the_dashboard_links_to_the_full_held_again_list(client, login_as, monkeypatch):
    from engage.main import figures

    login_as("viewer")
    monkeypatch.setattr(figures, "HELD_AGAIN_SHOWN", 2)  # the dashboard's figures keep the first ones
    paged_fund(official=[], noted=0, linked=0, held_again=3)
    section = client.get("/").get_data(as_text=True).split("Divested companies held again")[1].split("</section>")[0]
    assert "2 of 3 shown" in section and 'href="/holdings/screening/held-again"' in section


def test_roles_of_the_full_lists(client, login_as, make_user):
    item = paged_fund()
    factories.campaign()
    urls = ["/holdings/screening", f"/holdings/screening/{item.id}?section=official", "/holdings/screening/held-again"]
    for url in urls:
        assert client.get(url).status_code == 302  # signed out: to the sign-in page
    login_as("viewer")
    for url in urls:
        text = client.get(url).get_data(as_text=True)
        assert "Open engagements for the" not in text  # a viewer sees no bulk action
    assert client.post("/holdings/screening/engage", data={}).status_code == 403
    login_as("analyst")
    assert "Open engagements for the 7 listed companies" in client.get(urls[1]).get_data(as_text=True)


def test_the_query_count_does_not_grow_with_the_rows(client, login_as, count_queries):
    login_as("analyst")
    factories.campaign()
    urls = lambda item: ["/holdings/screening", f"/holdings/screening/{item.id}?section=official",
                         f"/holdings/screening/{item.id}?section=official&page=2&list=us_entity_list",
                         f"/holdings/screening/{item.id}?section=noted", "/holdings/screening/held-again",
                         f"/holdings/screening/held-again?fund={item.id}&page=2"]

    def measure(item):
        counts = []
        for url in urls(item):
            with count_queries() as counter:
                assert client.get(url).status_code == 200
            counts.append(counter.count)
        return counts

    small = paged_fund("Small Fund", official=OFFICIAL[:5], noted=1, linked=1, held_again=5)
    few = measure(small)
    for n in range(12):  # more rows in every list, beyond a slice and a page
        hold(small, listed(f"More Listed {n}"), 10 + n)
        hold(small, listed(f"More Noted {n}", source="sector_risk"), 10 + n)
        hold(small, listed(f"More Linked {n}", link=FlagLink.LINKED.value), 10 + n)
        engagement = factories.engagement(company=factories.company(f"More Divested {n}"))
        divest(engagement, dt.date(2026, 3, 10))
        hold(small, engagement.company, 10 + n)
    paged_fund("Another Fund")  # and another fund
    db.session.commit()
    assert measure(small) == few
