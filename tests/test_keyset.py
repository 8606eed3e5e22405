"""Keyset paging of the companies and engagements lists (engage.keyset, issue 20).

Following Next from the first page, or Previous from the last, gives exactly the rows of the
list's order (`ORDER BY value NULLS LAST, id`, as the OFFSET pages gave them), for every sort and
direction, with ties and NULLs on the page boundaries; a stale, forged or garbled page link gives
the first page with a message, never an error.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from decimal import Decimal

import pytest
import sqlalchemy as sa

from engage import clock
from engage.companies.queries import SORTS as COMPANY_SORTS
from engage.companies.queries import company_query
from engage.engagements.queries import COMPUTED_SORTS
from engage.engagements.queries import SORTS as ENGAGEMENT_SORTS
from engage.engagements.queries import engagement_query
from engage.extensions import db
from engage.models import Campaign, Company, Engagement, Interaction, Reminder, Rubric, Score

PAGE = 4
DAY = dt.date(2026, 3, 2)


@pytest.fixture
def small_pages(app, monkeypatch):
    monkeypatch.setitem(app.config, "PAGE_SIZE", PAGE)


@pytest.fixture
def listed(app):
    """19 companies and 2 campaigns' engagements with ties and NULLs in every sortable column."""
    first, second = Campaign(slug="a", name="A"), Campaign(slug="b", name="B")
    rubric = Rubric(campaign=first, name="R", version=1)
    names = ["acme", "acme", "acme", "birch", "cedar", "cedar", "delta", "echo", "echo", "fjord", "gale",
             "gale", "gale", "gale", "harbor", "iris", "jade", "jade", "kilo"]
    countries = ["CN", None, "CN", "US", None, "DE", "CN", "US", None, "CN", "DE", "CN", None, "US", "CN", None,
                 "DE", "CN", "US"]
    sectors = [None, "Solar", "Solar", None, "Mining", "Solar", None, "Mining", "Solar", "Solar", None, "Mining",
               "Mining", None, "Solar", "Solar", None, "Mining", "Solar"]
    totals = [[40, 50], [50], [], [40, 50], [50, 40], [60], [], [50, 50], [40, 50], [50], [60, 40], [], [70],
              [50], [40, 50], [], [60], [50, 40], [50]]
    for i, name in enumerate(names):
        company = Company(name=name.title(), isin=None if i % 3 == 0 else f"CNE{(19 - i):08d}{i % 2}",
                          country=countries[i], sector=sectors[i])
        for campaign in (first, second) if i % 2 else (first,):
            engagement = Engagement(company=company, campaign=campaign, opened_on=DAY - dt.timedelta(days=i % 4),
                                    stage=["identified", "mapping_requested", "acknowledged"][i % 3],
                                    escalation=["none", "follow_up"][i % 2],
                                    next_step="call" if i % 4 else "", next_step_on=DAY + dt.timedelta(days=i % 3) if i % 4 else None)
            db.session.add(engagement)
            if i % 3:
                db.session.add(Reminder(engagement=engagement, due_on=DAY + dt.timedelta(days=i % 2), reason="due"))
            if i % 4 != 1:
                db.session.add(Interaction(engagement=engagement, kind="letter", direction="outbound",
                                           occurred_on=DAY - dt.timedelta(days=i % 3)))
            for n, total in enumerate(totals[i]):
                db.session.add(Score(engagement=engagement, rubric=rubric, scored_on=DAY + dt.timedelta(days=n),
                                     total=Decimal(total) + (Decimal("0.25") if campaign is second else 0)))
    db.session.commit()


def _ids(html: str, kind: str) -> list[int]:
    return [int(i) for i in re.findall(rf'data-label="Company"><a href="/{kind}/(\d+)"', html)]


def _link(html: str, rel: str) -> str | None:
    found = re.search(rf'href="([^"]*)" rel="{rel}"', html)
    return found.group(1).replace("&amp;", "&") if found else None


def _walk(client, url: str, kind: str, rel: str) -> list[list[int]]:
    pages = []
    while url:
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.get_data(as_text=True)
        pages.append(_ids(html, kind))
        url = _link(html, rel)
        assert len(pages) < 50
    return pages


def _expected(kind: str, sort: str, direction: str) -> list[int]:
    """The ids in the list's order, read with ORDER BY as the OFFSET pages read them."""
    if kind == "companies":
        f = {"q": "", "sector": "", "country": "", "source": "", "stage": "", "engaged": "", "score_below": "",
             "trend": "", "sort": sort, "dir": direction}
        return list(db.session.scalars(company_query(f).with_only_columns(Company.id)))
    f = {"campaign": "", "stage": "", "escalation": "", "owner": "", "sector": "", "overdue": "", "stale": "",
         "score_below": "", "trend": "", "sort": sort, "dir": direction}
    return list(db.session.scalars(engagement_query(f, clock.today()).with_only_columns(Engagement.id)))


CASES = ([("companies", sort, d) for sort in COMPANY_SORTS for d in ("asc", "desc")]
         + [("engagements", sort, d) for sort in [*ENGAGEMENT_SORTS, *COMPUTED_SORTS] for d in ("asc", "desc")])


@pytest.mark.parametrize(("kind", "sort", "direction"), CASES)
def test_next_and_previous_give_the_rows_of_the_list_order(client, login_as, listed, small_pages, kind, sort, direction):
    login_as("viewer")
    expected = _expected(kind, sort, direction)
    assert len(expected) == (19 if kind == "companies" else 28)
    forward = _walk(client, f"/{kind}?sort={sort}&dir={direction}", kind, "next")
    assert [i for page in forward for i in page] == expected
    assert all(len(page) == PAGE for page in forward[:-1])
    backward = _walk(client, f"/{kind}?sort={sort}&dir={direction}&last=1", kind, "prev")
    # Previous to the start gives a whole first page (the rows of the page before it may repeat)
    tail = [i for page in reversed(backward[:-1]) for i in page]
    assert backward[-1] == expected[:PAGE] and tail == expected[len(expected) - len(tail):]
    assert len(tail) + PAGE >= len(expected) and all(len(page) == PAGE for page in backward)
    # Next then Previous comes back to the same page
    second = client.get(_link(client.get(f"/{kind}?sort={sort}&dir={direction}").get_data(as_text=True), "next"))
    back = client.get(_link(second.get_data(as_text=True), "prev")).get_data(as_text=True)
    assert _ids(back, kind) == expected[:PAGE] and _link(back, "prev") is None


def test_the_old_order_is_what_the_test_compares_with(listed):
    """The reference order itself: country descending, no country last, ties by id (in Python)."""
    rows = db.session.execute(sa.select(Company.id, Company.country)).all()
    python = [r.id for r in sorted(rows, key=lambda r: (r.country is None, [-ord(c) for c in r.country or ""], r.id))]
    assert _expected("companies", "country", "desc") == python


def test_filters_are_kept_across_pages(client, login_as, listed, small_pages):
    login_as("viewer")
    pages = _walk(client, "/engagements?stage=mapping_requested&sort=next_follow_up&dir=desc", "engagements", "next")
    shown = [i for page in pages for i in page]
    stages = dict(db.session.execute(sa.select(Engagement.id, Engagement.stage)).all())
    assert shown and all(stages[i] == "mapping_requested" for i in shown)
    assert len(shown) == sum(1 for stage in stages.values() if stage == "mapping_requested")


def _cursor(signature: str, value, row_id) -> str:
    return base64.urlsafe_b64encode(json.dumps([signature, value, row_id]).encode()).decode().rstrip("=")


def test_a_deleted_row_keeps_its_place(client, login_as, listed, small_pages):
    login_as("analyst")
    expected = _expected("engagements", "last_contact", "desc")
    after = _link(client.get("/engagements?sort=last_contact&dir=desc").get_data(as_text=True), "next")
    db.session.delete(db.session.get(Engagement, expected[PAGE - 1]))  # the last row shown, the cursor's row
    db.session.commit()
    assert _ids(client.get(after).get_data(as_text=True), "engagements") == expected[PAGE:2 * PAGE]


def test_stale_forged_and_garbled_cursors_give_the_first_page(client, login_as, listed, small_pages):
    login_as("viewer")
    first = _expected("companies", "name", "asc")[:PAGE]
    # a link made for another order (the tab was sorted by country, the sort changed since)
    stale = client.get(f"/companies?sort=name&after={_cursor('country:asc', 'CN', 3)}")
    assert stale.status_code == 200 and _ids(stale.get_data(as_text=True), "companies") == first
    assert "order changed since that page link was made" in stale.get_data(as_text=True)
    for bad in ["x", "%%%", "a" * 3000, _cursor("name:asc", 5, 1), _cursor("name:asc", "acme", "1"),
                _cursor("name:asc", "acme", 2**40), _cursor("name:asc", None, 1), _cursor("name:asc", "a\x00", 1),
                base64.urlsafe_b64encode(b"[1,2]").decode(), base64.urlsafe_b64encode(b"\xff\xfe").decode()]:
        for param in ("after", "before"):
            response = client.get("/companies", query_string={param: bad})
            html = response.get_data(as_text=True)
            assert response.status_code == 200 and _ids(html, "companies") == first, (param, bad)
            assert "could not be read" in html, (param, bad)
    for bad in [_cursor("opened:asc", "not a date", 1), _cursor("score:desc", "NaN", 1), _cursor("score:desc", "1e999999", 1)]:
        sort, direction = json.loads(base64.urlsafe_b64decode(bad + "==="))[0].split(":")
        kind = "engagements" if sort == "opened" else "companies"
        response = client.get(f"/{kind}?sort={sort}&dir={direction}&after={bad}")
        assert response.status_code == 200 and "could not be read" in response.get_data(as_text=True), bad


def test_past_the_last_row_gives_the_last_page(client, login_as, listed, small_pages):
    login_as("viewer")
    expected = _expected("engagements", "company", "asc")
    beyond = client.get(f"/engagements?after={_cursor('company:asc', 'zzzz', 1)}").get_data(as_text=True)
    assert _ids(beyond, "engagements") == expected[-PAGE:] and _link(beyond, "next") is None
    before = client.get(f"/engagements?before={_cursor('company:asc', 'aaaa', 1)}").get_data(as_text=True)
    assert _ids(before, "engagements") == expected[:PAGE] and _link(before, "prev") is None


def test_the_count_stops_at_the_cap(client, login_as, app, small_pages, monkeypatch):
    from engage import keyset

    login_as("viewer")
    monkeypatch.setattr(keyset, "COUNT_CAP", 5)
    db.session.add_all([Company(name=f"Company {i}") for i in range(6)])
    db.session.commit()
    assert "More than 5 rows, 4 a page" in client.get("/companies").get_data(as_text=True)
    db.session.delete(db.session.scalar(sa.select(Company).limit(1)))
    db.session.commit()
    assert "5 rows, 4 a page" in client.get("/companies").get_data(as_text=True)


def test_saved_views_drop_the_page_position(client, login_as):
    from engage.views.service import clean_query

    assert clean_query("companies", f"?sector=Solar&after={_cursor('name:asc', 'acme', 1)}&last=1&page=3") == "sector=Solar"



def test_the_filter_choices_are_the_distinct_values_in_order(listed):
    """dbutil.distinct_values (a skip through the index) gives what SELECT DISTINCT ... ORDER BY gave."""
    from engage.dbutil import distinct_values

    db.session.add_all([Company(name="Lower", sector="energy"), Company(name="Upper", sector="Energy"),
                        Company(name="Spaced", sector="Solar power"), Company(name="Accent", sector="Énergie")])
    db.session.commit()
    for column in (Company.sector, Company.country):
        old = list(db.session.scalars(sa.select(column).where(column.is_not(None)).distinct().order_by(column)))
        assert distinct_values(column) == old and len(old) >= 3
    db.session.execute(sa.delete(Company).where(Company.id.not_in(sa.select(Engagement.company_id))))
    db.session.execute(sa.update(Company).values(sector=None))
    assert distinct_values(Company.sector) == []
