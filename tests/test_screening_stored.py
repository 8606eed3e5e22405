"""Issue 20: the screening pages at 100,000 companies (README, Performance, "The screening pages
from stored counts and flagged companies").

Counts over every holding of a snapshot (positions, market value, holdings without a value, held
again after divestment) come from the dashboard's stored figures when they are fresh enough and no
holdings import came after them; every other figure is read live, led by the flagged companies.
These tests check that a page drawn from the stored counts shows what a page counting everything
shows, that an import made after the count is never shown from it, and that the one query over the
flagged holdings gives the same sections as counting each one apart.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
import sqlalchemy as sa

from engage import audit, clock
from engage.extensions import db
from engage.holdings import screening, service
from engage.identifiers import isin_check_digit
from engage.lists import screening as list_screening
from engage.main import figures
from engage.models import FlagLink, Holding, RiskFlag
from tests import factories
from tests.conftest import FROZEN_AT
from tests.test_screening_pages import AS_OF, paged_fund

SHOWN = 3


@pytest.fixture()
def stored(app, monkeypatch, freeze_clock):
    """Small slices, and the page counting everything itself until a test stores the figures."""
    monkeypatch.setattr(screening, "SHOWN", SHOWN)
    monkeypatch.setitem(app.config, "PAGE_SIZE", 4)
    monkeypatch.setitem(app.config, "DASHBOARD_MAX_AGE_SECONDS", 0)
    freeze_clock(FROZEN_AT)
    return app


def count_and_store(app):
    """What the scheduler's dashboard-figures job does, then the pages may read the stored counts."""
    app.config["DASHBOARD_MAX_AGE_SECONDS"] = 900
    figures.refresh(clock.utcnow())


def without_age(html: str) -> str:
    """The page without the line saying when the stored counts were counted (and without CSRF tokens)."""
    html = re.sub(r'<p class="muted small" id="totals-age">.*?</p>', "", html, flags=re.S)
    return re.sub(r'name="csrf_token" value="[^"]*"', "", html)


def pages(client, fund_id: int) -> list[str]:
    urls = ["/holdings/screening", f"/holdings/screening/{fund_id}?section=official",
            f"/holdings/screening/{fund_id}?section=noted&page=2", f"/holdings/screening/{fund_id}?section=linked"]
    out = []
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        out.append(response.get_data(as_text=True))
    return out


def test_pages_from_the_stored_counts_show_what_counting_everything_shows(client, login_as, stored):
    login_as("analyst")
    factories.campaign()
    big = paged_fund("Stored Big Fund", held_again=5)      # more held again than the page shows
    small = paged_fund("Stored Small Fund", held_again=2)  # fewer: the rows' number
    live = pages(client, big.id) + pages(client, small.id)
    assert not any('id="totals-age"' in html for html in live)
    count_and_store(stored)
    from_stored = pages(client, big.id) + pages(client, small.id)
    assert all('id="totals-age"' in html for html in from_stored)
    assert [without_age(html) for html in from_stored] == [without_age(html) for html in live]
    overview = from_stored[0]
    assert "3 of 5 shown" in overview.split("<h2>Stored Big Fund</h2>")[1]


def test_the_stored_counts_are_the_live_counts(app, stored):
    fund = paged_fund("Counted Fund", held_again=4)
    db.session.add(Holding(fund=fund, company=factories.company("Valueless Co"), as_of=AS_OF, market_value=None))
    db.session.commit()
    count_and_store(stored)
    totals, _ = figures.screening_totals(clock.utcnow())
    snap = screening.snapshots()
    positions, value, unknown = db.session.execute(
        sa.select(sa.func.count(Holding.id), sa.func.sum(Holding.market_value),
                  sa.func.count(sa.case((Holding.market_value.is_(None), Holding.id))))
        .where(Holding.fund_id == fund.id, Holding.as_of == AS_OF)).one()
    assert totals[fund.id] == screening.SnapshotTotals(as_of=AS_OF, positions=positions, total=Decimal(value),
                                                       unknown=unknown, held_again=4)
    assert screening.held_again_counts(snap)[fund.id] == 4 == len(screening.held_after_divestment(snap))


def small_file(rows: int) -> bytes:
    lines = ["ISIN,Name,Market Value,Weight (%)"]
    for i in range(rows):
        stem = f"US{i:09d}"
        lines.append(f"{stem}{isin_check_digit(stem)},Reimported Co {i:04d},{1000 + i},0.01")
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("same_date", [True, False])
def test_an_import_after_the_count_is_counted_by_the_page_itself(client, login_as, make_user, stored, same_date):
    """The stored counts carry the newest holdings import's id: an import of the same date again
    (other positions, same date) or of a new date is never shown from an older count."""
    login_as("analyst")
    analyst = make_user("analyst")
    fund = paged_fund("Reimported Fund")
    count_and_store(stored)
    assert 'id="totals-age"' in client.get("/holdings/screening").get_data(as_text=True)
    as_of = AS_OF if same_date else AS_OF + dt.timedelta(days=1)
    with audit.acting_as(analyst.email, analyst.id):
        service.import_file(small_file(7), "again.csv", service.ReadOptions(partial=True, as_of=as_of), fund_id=fund.id)
    db.session.commit()
    assert figures.screening_totals(clock.utcnow()) is None
    html = client.get("/holdings/screening").get_data(as_text=True)
    assert 'id="totals-age"' not in html
    stored.config["DASHBOARD_MAX_AGE_SECONDS"] = 0
    assert without_age(html) == without_age(client.get("/holdings/screening").get_data(as_text=True))
    # counted again, the stored counts are used again
    count_and_store(stored)
    assert figures.screening_totals(clock.utcnow())[0][fund.id].positions == 7


def test_figures_too_old_for_the_dashboard_are_not_used(client, login_as, stored, freeze_clock):
    login_as("analyst")
    paged_fund("Aged Fund")
    count_and_store(stored)
    assert figures.screening_totals(clock.utcnow()) is not None
    freeze_clock(FROZEN_AT + dt.timedelta(seconds=901))
    assert figures.screening_totals(clock.utcnow()) is None
    assert 'id="totals-age"' not in client.get("/holdings/screening").get_data(as_text=True)


def test_the_one_query_over_flagged_holdings_counts_each_section_as_counting_them_apart(app, stored):
    """A company on two lists, one linked and listed, analyst notes beside a list, new flags: the
    sections, the new ones and those the bulk action may open, from `flagged_figures`, are
    `section_counts`'s; and each part of the exposure counts a holding once."""
    fund = paged_fund("Grouped Fund")
    both = factories.company("Two Lists Co")
    both.risk_flags += [RiskFlag(source="us_entity_list", citation="c"), RiskFlag(source="cbp_wro", citation="c"),
                        RiskFlag(source="analyst", citation="note"),
                        RiskFlag(source="uflpa_entity_list", citation="c", link=FlagLink.LINKED.value)]
    linked_twice = factories.company("Linked Twice Co")
    linked_twice.risk_flags += [RiskFlag(source="us_entity_list", citation="c", link=FlagLink.LINKED.value),
                                RiskFlag(source="cbp_wro", citation="c", link=FlagLink.LINKED.value),
                                RiskFlag(source="sector_risk", citation="s")]
    db.session.add_all([Holding(fund=fund, company=both, as_of=AS_OF, market_value=Decimal(70)),
                        Holding(fund=fund, company=linked_twice, as_of=AS_OF, market_value=None)])
    db.session.commit()
    snap = screening.snapshots()
    for new_after in (None, 0, list_screening.new_since_threshold()):
        groups = screening.flagged_figures(snap, new_after)
        live = screening.section_counts(snap, new_after)
        assert dict(screening.section_counts_of(groups)) == dict(live)
    e = screening.exposures([fund.id])[0]
    official = db.session.scalars(sa.select(Holding).where(Holding.fund_id == fund.id,
                                                           Holding.company_id.in_(screening.on_official_list()))).all()
    linked = db.session.scalars(sa.select(Holding).where(
        Holding.fund_id == fund.id, Holding.company_id.in_(screening.linked_to_official_list()))).all()
    assert e.official.positions == len(official) and e.linked_any.positions == len(linked)
    assert e.official.value == sum(h.market_value or 0 for h in official)
    assert e.linked_any.unknown == sum(1 for h in linked if h.market_value is None)
    by_list = {p.source: p.positions for p in e.lists}
    assert by_list["us_entity_list"] == len([h for h in official if any(
        f.source == "us_entity_list" and f.link == "direct" for f in h.company.risk_flags)])


def test_each_slice_is_the_first_rows_of_its_list_in_the_page_order(app, stored):
    """`flagged_slices` ranks the flagged holdings in their section and, for those with a new flag,
    among the fund's new ones, in one pass: each slice is the first SHOWN rows of its list as
    ranked here in Python (largest first, then name, then the holding's id)."""
    from engage.models import ListedEntity, ListVersion

    fund = paged_fund("Sliced Fund")
    version = ListVersion(name="US Entity List", source="us_entity_list", format="csv", file_name="e.csv",
                          retrieved_on=AS_OF, sha256="1" * 64)
    entity = ListedEntity(version=version, key="k", source="us_entity_list", name="Entry", normalized_name="entry",
                          citation="89 FR 2")
    db.session.add(entity)
    db.session.flush()
    before = db.session.scalar(sa.select(sa.func.max(RiskFlag.id)))
    # new: listed directly or linked (the linked one third: the sections and the new ones rank apart), ties, unknown value
    for n, value in enumerate([500, 700, 700, 600, None]):
        company = factories.company(f"Fresh {n} Co")
        company.risk_flags.append(RiskFlag(source="us_entity_list", citation="c", entity_id=entity.id,
                                           link=FlagLink.LINKED.value if n == 3 else FlagLink.DIRECT.value))
        db.session.add(Holding(fund=fund, company=company, as_of=AS_OF,
                               market_value=None if value is None else Decimal(value)))
    db.session.commit()
    snap = screening.snapshots()
    slices = screening.flagged_slices(snap, SHOWN, new_after=before)
    flagged = screening.flagged_companies(before)
    rows = db.session.execute(
        sa.select(Holding, screening._section(flagged), flagged.c.new)
        .join(flagged, flagged.c.company_id == Holding.company_id).where(Holding.fund_id == fund.id)).all()

    def ranked(items):
        return sorted(items, key=lambda h: (h.market_value is None, -(h.market_value or 0), h.company.normalized_name,
                                            h.id))

    for name in ("official", "linked", "noted"):
        expected = ranked([h for h, section, _ in rows if section == name])[:SHOWN]
        assert [r.holding.id for r in slices[fund.id, name]] == [h.id for h in expected], name
    expected_new = ranked([h for h, _, new in rows if new == 1])[:SHOWN]
    assert len(expected_new) == SHOWN
    assert [r.holding.id for r in slices[fund.id, "new"]] == [h.id for h in expected_new]
    assert screening.section_counts_of(screening.flagged_figures(snap, before))[fund.id].new == 5


def test_a_slice_cut_inside_a_tie_of_values_takes_the_first_by_name(app, stored):
    """Five holdings of one value, inserted in reverse order of name, where the slice of SHOWN ends:
    the slice takes the first by name (candidates are found by value, ties all kept, then numbered
    by value, name and id)."""
    fund = paged_fund("Tied Fund", official=[], noted=0, linked=0, held_again=0)
    for word in ("Echo", "Delta", "Charlie", "Bravo", "Alpha"):
        company = factories.company(f"Tied {word} Co")
        company.risk_flags.append(RiskFlag(source="us_entity_list", citation="c"))
        db.session.add(Holding(fund=fund, company=company, as_of=AS_OF, market_value=Decimal(500)))
    db.session.commit()
    slices = screening.flagged_slices(screening.snapshots(), SHOWN)
    assert [row.company.name for row in slices[fund.id, "official"]] == ["Tied Alpha Co", "Tied Bravo Co",
                                                                       "Tied Charlie Co"]
