"""Issue 20: the screening pages from stored figures (engage.holdings.screening_stored, migration 0041).

The overview, a fund's full lists and the held-again list store what they count and rank with
the values of two write counters (holdings, flags and funds: 0039; engagements, divesting events
and company names: 0041) and use it while no write has committed since. These tests check that
the stored rows and figures are those the functions counting everything give (`held_again`,
`flagged_page`, `flagged_slices`, `flagged_figures`); that after every kind of write the pages
reading them (ORM, executemany, raw SQL) show exactly what counting now shows; that a write the
pages do not read (an interaction, whose stored dates update engagements) leaves them stored; and
that without the triggers they would go stale. Runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa

from engage.extensions import db
from engage.holdings import screening, screening_stored
from engage.models import Company, DashboardFigures, Engagement, FlagLink, Fund, RiskFlag
from tests import factories
from tests.test_screening_pages import AS_OF, TODAY, divest, hold, listed, paged_fund

KINDS = (screening_stored.FIGURES, screening_stored.LISTS, screening_stored.HELD)


def urls(fund_ids: list[int]) -> list[str]:
    out = ["/holdings/screening", "/holdings/screening/held-again", "/holdings/screening/held-again?page=2",
           "/holdings/screening/held-again?page=99"]
    for fund_id in fund_ids:
        out += [f"/holdings/screening/{fund_id}?section=official", f"/holdings/screening/{fund_id}?section=official&page=2",
                f"/holdings/screening/{fund_id}?section=noted", f"/holdings/screening/{fund_id}?section=linked",
                f"/holdings/screening/held-again?fund={fund_id}",
                f"/holdings/screening/{fund_id}?section=official&list=us_entity_list"]
    return out


def get_pages(client, fund_ids: list[int]) -> list[str]:
    db.session.expire_all()
    out = []
    for url in urls(fund_ids):
        response = client.get(url)
        assert response.status_code == 200, url
        out.append(re.sub(r'name="csrf_token" value="[^"]*"', "", response.get_data(as_text=True)))
    return out


def forget() -> None:
    db.session.execute(sa.delete(DashboardFigures).where(DashboardFigures.kind.in_(KINDS)))
    db.session.commit()


def counted_now(client, fund_ids: list[int]) -> list[str]:
    """The pages as counting now draws them: the stored figures forgotten first."""
    forget()
    return get_pages(client, fund_ids)


def stored_kinds() -> set[str]:
    return set(db.session.scalars(sa.select(DashboardFigures.kind).where(DashboardFigures.kind.in_(KINDS))))


@pytest.fixture()
def two_funds(app, monkeypatch, frozen_today):
    monkeypatch.setattr(screening, "SHOWN", 3)
    monkeypatch.setitem(app.config, "PAGE_SIZE", 4)
    factories.campaign()
    big = paged_fund("Stored Big Fund", held_again=6)
    small = paged_fund("Stored Small Fund", held_again=2)
    return [big.id, small.id]


def test_the_stored_rankings_are_those_counting_everything_gives(app, two_funds):
    snap = screening.snapshots()
    held = screening_stored.held_lists()
    every = screening.held_again(snap)[0]
    stored_rows = screening.held_again_rows([i for fund_id in sorted(held, key=lambda f: [r.fund for r in every
                                                                                          if r.fund_id == f][0])
                                             for i in held[fund_id]])
    assert stored_rows == every and len(every) == 8
    for fund_id in two_funds:  # every page of each fund, as the old LIMIT/OFFSET query pages them
        ids = held[fund_id]
        for offset in range(0, len(ids) + 4, 4):
            assert (screening.held_again_rows(ids[offset:offset + 4])
                    == screening.held_again(snap, limit=4, offset=offset, fund_id=fund_id)[0])
    groups, lists = screening_stored.fund_lists(None)
    assert sorted(map(screening_stored._group_json, groups)) == sorted(
        map(screening_stored._group_json, screening.flagged_figures(snap)))
    for fund_id in two_funds:
        for section in screening.SECTIONS:
            ids = lists.get((fund_id, section), [])
            assert len(ids) == screening.flagged_count(snap, fund_id, section) > 0
            for offset in range(0, len(ids), 4):
                assert ([row.holding.id for row in screening.flagged_rows(ids[offset:offset + 4])]
                        == [row.holding.id for row in screening.flagged_page(snap, fund_id, section, limit=4, offset=offset)])
    _, slice_ids, held_slices = screening_stored.overview(None)
    assert screening.rows_by_ids(slice_ids).keys() == screening.flagged_slices(snap, 3).keys()
    assert {key: [row.holding.id for row in rows] for key, rows in screening.rows_by_ids(slice_ids).items()} == {
        key: [row.holding.id for row in rows] for key, rows in screening.flagged_slices(snap, 3).items()}
    assert held_slices == screening.held_again_slices(snap, 3)
    assert held_slices[two_funds[0]][1] == 6 and len(held_slices[two_funds[0]][0]) == 3
    assert stored_kinds() == set(KINDS) and screening_stored.drift() == []


def test_between_writes_the_pages_read_the_stored_figures(client, login_as, two_funds, count_queries):
    login_as("analyst")
    first = get_pages(client, two_funds)  # counted and stored
    assert stored_kinds() == set(KINDS)
    with count_queries() as counter:
        again = get_pages(client, two_funds)
    assert again == first
    # nothing ranked again: the only window picks the latest divestment of the shown held-again rows, by id
    windows = [s for s in counter.statements if ("row_number()" in s.lower() or "rank()" in s.lower())
               and "holdings.id IN" not in s]
    assert windows == []
    assert stored_kinds() == set(KINDS) and screening_stored.drift() == []


def _divest_another(fund_ids):
    engagement = factories.engagement(company=factories.company("Newly Divested Co"), opened_on=dt.date(2026, 1, 5))
    hold(db.session.get(Fund, fund_ids[0]), engagement.company, 5500)
    db.session.commit()
    divest(engagement, dt.date(2026, 4, 1))


def _readmit(fund_ids):
    engagement = db.session.scalar(sa.select(Engagement).join(Company).where(Company.name == "Divested 5 Stored Big Fund"))
    engagement.outcome = None
    engagement.stage = "acknowledged"
    engagement.escalation = "none"
    engagement.closed_on = None


def _divesting_date_after_the_snapshot(fund_ids):  # raw SQL: the held-again row goes
    db.session.execute(sa.text(
        "UPDATE engagement_events SET occurred_on = :on WHERE kind = 'close' AND outcome = 'divested' AND engagement_id = "
        "(SELECT e.id FROM engagements e JOIN companies c ON c.id = e.company_id WHERE c.name = 'Divested 4 Stored Big Fund')"),
        {"on": AS_OF + dt.timedelta(days=1)})


def _rename(fund_ids):  # the order by name: "Alpha" goes after "Bravo"
    company = db.session.scalar(sa.select(Company).where(Company.name == "Alpha Listed Stored Big Fund"))
    company.name = "Zulu Listed Stored Big Fund"
    company.normalized_name = "zulu listed stored big fund"
    db.session.execute(sa.text("UPDATE holdings SET market_value = 8000 WHERE company_id = :c"), {"c": company.id})


def _flag(fund_ids):
    company = db.session.scalar(sa.select(Company).where(Company.name == "Plain Stored Big Fund"))
    db.session.add(RiskFlag(company=company, source="us_entity_list", citation="c", link=FlagLink.DIRECT.value))


def _end_flags_executemany(fund_ids):
    ids = db.session.scalars(sa.select(RiskFlag.id).where(RiskFlag.source == "analyst")).all()[:3]
    db.session.execute(sa.update(RiskFlag), [{"id": i, "ended_on": TODAY} for i in ids])


def _value(fund_ids):
    db.session.execute(sa.text("UPDATE holdings SET market_value = 123456 WHERE company_id IN "
                               "(SELECT id FROM companies WHERE name LIKE 'Noted 0 %')"))


def _owner(fund_ids):
    user = factories.user() if hasattr(factories, "user") else None
    engagement = db.session.scalar(sa.select(Engagement).join(Company).where(Company.name == "Divested 5 Stored Big Fund"))
    if user is None:
        db.session.execute(sa.text("UPDATE engagements SET owner_id = NULL WHERE id = :e"), {"e": engagement.id})
    else:
        engagement.owner_id = user.id


def _delete_engagement(fund_ids):
    db.session.execute(sa.text("DELETE FROM engagements WHERE company_id = "
                               "(SELECT id FROM companies WHERE name = 'Divested 3 Stored Big Fund')"))


def _open(fund_ids):  # the bulk action's count: one listed company now has an open engagement
    company = db.session.scalar(sa.select(Company).where(Company.name == "Bravo Listed Stored Big Fund"))
    factories.engagement(company=company, opened_on=dt.date(2026, 5, 1))


WRITES = [_divest_another, _readmit, _divesting_date_after_the_snapshot, _rename, _flag, _end_flags_executemany,
          _value, _owner, _delete_engagement, _open]


@pytest.mark.parametrize("write", WRITES, ids=[w.__name__.strip("_") for w in WRITES])
def test_after_every_kind_of_write_the_pages_show_what_counting_now_shows(client, login_as, two_funds, write):
    login_as("analyst")
    before = get_pages(client, two_funds)
    assert stored_kinds() == set(KINDS)
    counters = screening_stored.writes()
    write(two_funds)
    db.session.commit()
    assert screening_stored.writes() != counters
    shown = get_pages(client, two_funds)
    assert shown == counted_now(client, two_funds)
    assert screening_stored.drift() == []
    if write is not _owner:  # the owner is not shown on these pages
        assert shown != before  # the write changed something the pages show


def test_an_interaction_leaves_the_stored_figures_in_use(client, login_as, two_funds):
    """Logging an interaction updates its engagement's stored dates (0033's triggers), columns the
    screening pages do not read: the counter does not move."""
    from engage.engagements import service

    login_as("analyst")
    engagement = factories.engagement(company=factories.company("Interacting Co"), opened_on=dt.date(2026, 5, 1))
    db.session.commit()
    get_pages(client, two_funds)
    counters = screening_stored.writes()
    service.log_interaction(engagement, kind="email", direction="outbound", occurred_on=TODAY, subject="Follow-up",
                            summary="Asked for the audit.", participants="", uploads=[], today=TODAY, actor_id=None)
    db.session.commit()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(sa.text("interactions"))) >= 1
    assert screening_stored.writes() == counters


def test_without_the_triggers_the_stored_figures_would_go_stale(client, login_as, two_funds):
    """The test that can fail: with the triggers dropped, a divestment is not seen by the pages."""
    login_as("analyst")
    get_pages(client, two_funds)
    conn = db.session.connection()
    screening_stored.uninstall(conn)
    db.session.commit()
    try:
        _divesting_date_after_the_snapshot(two_funds)
        db.session.commit()
        stale = get_pages(client, two_funds)
        assert screening_stored.drift() != []
        assert stale != counted_now(client, two_funds)
    finally:
        screening_stored.install(db.session.connection())
        db.session.commit()
    assert screening_stored.missing_triggers(db.session.connection()) == []


def test_the_migrations_made_the_triggers(app):
    assert screening_stored.missing_triggers(db.session.connection()) == []


def test_held_again_totals_from_the_dashboard_are_kept_only_while_the_dashboard_has_that_count(
        app, client, login_as, two_funds, freeze_clock, monkeypatch):
    """With the dashboard's stored counts usable, the overview takes its held-again totals from them
    (as before, no count over every holding) and keeps them only while the dashboard holds that count:
    a refresh of the dashboard's figures is a new key, so the stored figures are never older than it."""
    from engage import clock
    from engage.main import figures
    from tests.conftest import FROZEN_AT

    login_as("analyst")
    monkeypatch.setitem(app.config, "DASHBOARD_MAX_AGE_SECONDS", 900)
    freeze_clock(FROZEN_AT)
    figures.refresh(clock.utcnow())

    def stored_row():
        row = db.session.get(DashboardFigures, screening_stored.FIGURES, populate_existing=True)
        return row.data["key"], row.computed_at

    html = client.get("/holdings/screening").get_data(as_text=True)
    assert 'id="totals-age"' in html and "3 of 6 shown" in html.split("<h2>Stored Big Fund</h2>")[1]
    first = stored_row()
    assert first[0][1] is not None  # counted with the dashboard's counts
    freeze_clock(FROZEN_AT + dt.timedelta(seconds=30))
    client.get("/holdings/screening")
    assert stored_row() == first  # the same dashboard count: the stored value is used
    freeze_clock(FROZEN_AT + dt.timedelta(seconds=60))
    figures.refresh(clock.utcnow())  # counted again: a new key, the page counts with it
    html = client.get("/holdings/screening").get_data(as_text=True)
    assert "3 of 6 shown" in html.split("<h2>Stored Big Fund</h2>")[1]
    again = stored_row()
    assert again[0] != first[0] and again[1] > first[1]


def test_the_check_command_finds_missing_triggers_and_stale_figures_and_forget_repairs(client, login_as, two_funds):
    runner = client.application.test_cli_runner()
    login_as("analyst")
    get_pages(client, two_funds)
    result = runner.invoke(args=["holdings", "check-screening"])
    assert result.exit_code == 0 and "triggers present" in result.output
    screening_stored.uninstall(db.session.connection())
    db.session.commit()
    _divesting_date_after_the_snapshot(two_funds)  # not seen: no trigger
    db.session.commit()
    result = runner.invoke(args=["holdings", "check-screening"])
    assert result.exit_code == 1
    assert "missing: trigger screening_writes_engagement_events_au (on engagement_events)" in result.output
    assert "stored figures screening-held differ from a count now" in result.output
    result = runner.invoke(args=["holdings", "forget-screening", "--triggers"])
    assert result.exit_code == 0 and "Triggers created. 3 stored screening figure(s) forgotten." in result.output
    assert runner.invoke(args=["holdings", "check-screening"]).exit_code == 0
    assert get_pages(client, two_funds) == counted_now(client, two_funds)


def test_a_holdings_import_moves_only_the_funds_pages_counter(app, two_funds, make_user):
    """The import path (new companies, holdings, alerts) fires none of 0041's triggers: the
    screening counter stays, the holdings' counter (0039, already there) moves."""
    from engage import audit
    from engage.holdings import service
    from tests.test_screening_stored import small_file

    analyst = make_user("analyst")
    exposure_before, screening_before = screening_stored.writes()
    with audit.acting_as(analyst.email, analyst.id):
        service.import_file(small_file(40), "new.csv", service.ReadOptions(partial=True, as_of=AS_OF + dt.timedelta(days=1)),
                            fund_id=two_funds[1])
    db.session.commit()
    exposure_after, screening_after = screening_stored.writes()
    assert exposure_after != exposure_before and screening_after == screening_before
