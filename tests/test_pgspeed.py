"""Issue 20: the query shapes that keep the pages fast on PostgreSQL and at 100,000 companies give
the same rows and figures as the plain definitions they replace.

- quiet engagements (dashboard): "last contact, or opening without any, before the cutoff", asked
  as no contact since the cutoff and (opened before it or contacted at all);
- the engagements list sorted by next follow-up: a grouped pass over the waiting reminders;
- divested companies held again: one query, the latest divestment per fund and company, the
  dashboard listing the first HELD_AGAIN_SHOWN and saying how many there are.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa

from engage.engagements import cycle
from engage.engagements.service import last_contact_query
from engage.extensions import db
from engage.holdings import screening
from engage.main import figures
from engage.main import routes as dashboard
from engage.models import Engagement, Fund, Holding, Interaction, Reminder
from tests import factories

TODAY = dt.date(2026, 6, 15)  # conftest FROZEN_AT
CUTOFF = TODAY - dt.timedelta(days=90)  # STALE_AFTER_DAYS


def contact(engagement, on, kind="email"):
    db.session.add(Interaction(engagement=engagement, kind=kind, direction="outbound", occurred_on=on,
                               subject=f"{kind} on {on}"))


def plain_quiet(today):
    """The definition, as the dashboard asked it before issue 20."""
    cutoff = today - dt.timedelta(days=90)
    last = sa.func.coalesce(last_contact_query(), Engagement.opened_on)
    return db.session.execute(sa.select(Engagement.id, last).where(Engagement.is_open, last < cutoff)
                              .order_by(last, Engagement.id)).all()


def test_quiet_engagements_are_those_whose_last_contact_or_opening_is_before_the_cutoff(app, client, login_as,
                                                                                        frozen_today):
    login_as("viewer")
    old = CUTOFF - dt.timedelta(days=30)
    cases = {
        "opened long ago, never contacted": dict(opened_on=old),
        "opened long ago, contacted long ago": dict(opened_on=old, contacts=[old + dt.timedelta(days=3)]),
        "opened long ago, contacted on the cutoff": dict(opened_on=old, contacts=[CUTOFF]),
        "opened long ago, contacted since": dict(opened_on=old, contacts=[old, TODAY - dt.timedelta(days=2)]),
        "opened long ago, only a note since": dict(opened_on=old, contacts=[old], notes=[TODAY]),
        "opened recently, never contacted": dict(opened_on=TODAY - dt.timedelta(days=10)),
        # history imported with the engagement: a contact before the opening, none since the cutoff
        "opened recently, contacted before the cutoff": dict(opened_on=TODAY - dt.timedelta(days=10),
                                                            contacts=[old - dt.timedelta(days=1)]),
        "opened long ago, a contact dated ahead": dict(opened_on=old, contacts=[TODAY + dt.timedelta(days=5)]),
        "closed long ago": dict(opened_on=old, stage="closed", closed_on=old, outcome="resolved"),
    }
    made = {}
    for name, case in cases.items():
        engagement = factories.engagement(company=factories.company(name), opened_on=case["opened_on"],
                                          **{k: case[k] for k in ("stage", "closed_on", "outcome") if k in case})
        for on in case.get("contacts", []):
            contact(engagement, on)
        for on in case.get("notes", []):
            contact(engagement, on, kind="note")
        made[name] = engagement
    db.session.commit()

    with app.test_request_context():
        quiet = dashboard.quiet_engagements(TODAY, limit=50)
    expected = {"opened long ago, never contacted", "opened long ago, contacted long ago",
                "opened long ago, only a note since", "opened recently, contacted before the cutoff"}
    assert {e.company.name for e, _ in quiet["rows"]} == expected
    assert quiet["total"] == 4
    assert [(e.id, last) for e, last in quiet["rows"]] == [tuple(row) for row in plain_quiet(TODAY)]
    by_name = {e.company.name: last for e, last in quiet["rows"]}
    assert by_name["opened recently, contacted before the cutoff"] == old - dt.timedelta(days=1)
    assert by_name["opened long ago, only a note since"] == old  # a note is not a contact

    with app.test_request_context():
        first = dashboard.quiet_engagements(TODAY, limit=2)
    assert first["total"] == 4 and len(first["rows"]) == 2
    page = client.get("/").get_data(as_text=True)
    assert '<span class="tile-number">4</span> with no contact in 90 days' in page


def test_engagements_sorted_by_next_follow_up_count_only_waiting_reminders(client, login_as, frozen_today):
    login_as("viewer")
    rows = {
        "Early Ltd": [(TODAY + dt.timedelta(days=1), "open"), (TODAY + dt.timedelta(days=9), "open")],
        "Done Early Ltd": [(TODAY - dt.timedelta(days=30), "done"), (TODAY + dt.timedelta(days=5), "snoozed")],
        "Tie A Ltd": [(TODAY + dt.timedelta(days=3), "open")],
        "Tie B Ltd": [(TODAY + dt.timedelta(days=3), "open")],
        "Only Done Ltd": [(TODAY - dt.timedelta(days=60), "done")],
        "None Ltd": [],
    }
    ids = {}
    for name, reminders in rows.items():
        engagement = factories.engagement(company=factories.company(name))
        ids[name] = engagement.id
        for due_on, status in reminders:
            db.session.add(Reminder(engagement=engagement, due_on=due_on, status=status, reason="follow up"))
    db.session.commit()

    def order(query):
        text = client.get("/engagements" + query).get_data(as_text=True)
        found = {name: text.find(f">{name}<") for name in rows}
        assert all(at >= 0 for at in found.values()), found
        return sorted(found, key=found.get)

    # without a waiting reminder last (by id); ties by id
    assert order("?sort=next_follow_up") == ["Early Ltd", "Tie A Ltd", "Tie B Ltd", "Done Early Ltd",
                                             "Only Done Ltd", "None Ltd"]
    assert order("?sort=next_follow_up&dir=desc") == ["Done Early Ltd", "Tie A Ltd", "Tie B Ltd", "Early Ltd",
                                                      "Only Done Ltd", "None Ltd"]
    assert ids["Tie A Ltd"] < ids["Tie B Ltd"]
    # the count of the sorted list is every engagement's, not those with a reminder
    assert '<p class="muted">6 rows</p>' in client.get("/engagements?sort=next_follow_up").get_data(as_text=True)


def held_fund(companies_values, as_of=dt.date(2026, 5, 31)):
    fund = Fund(name="Held Again Fund", base_currency="USD")
    db.session.add(fund)
    db.session.flush()
    for company, value in companies_values:
        db.session.add(Holding(fund_id=fund.id, company_id=company.id, as_of=as_of, market_value=value))
    db.session.commit()
    return fund


def divest(engagement, on):
    cycle.move_stage(engagement, "closed", on=on, today=TODAY, actor_id=None, outcome="divested",
                     note="Sold after the divestment recommendation.")
    db.session.commit()


def test_dashboard_lists_the_first_divested_companies_held_again_and_says_how_many(client, login_as, frozen_today):
    login_as("viewer")
    shown = figures.HELD_AGAIN_SHOWN
    engagements = []
    for n in range(shown + 3):
        engagement = factories.engagement(company=factories.company(f"Divested {n:02d} Co"),
                                          opened_on=dt.date(2026, 1, 5))
        divest(engagement, dt.date(2026, 3, 10))
        engagements.append(engagement)
    # one company divested twice (two campaigns): listed once, with its latest divestment
    again = factories.engagement(company=engagements[0].company, opened_on=dt.date(2026, 2, 1))
    divest(again, dt.date(2026, 4, 20))
    held_fund([(e.company, Decimal(1000 * (n + 1))) for n, e in enumerate(engagements)])

    everything = screening.held_after_divestment(screening.snapshots())
    assert len(everything) == shown + 3
    assert [h.market_value for h in everything] == sorted((h.market_value for h in everything), reverse=True)
    first = next(h for h in everything if h.company_id == engagements[0].company_id)
    assert (first.engagement_id, first.divested_on) == (again.id, dt.date(2026, 4, 20))
    rows, total = screening.held_again(screening.snapshots(), limit=shown)
    assert total == shown + 3 and rows == everything[:shown]

    section = client.get("/").get_data(as_text=True).split("Divested companies held again")[1].split("</section>")[0]
    assert section.count("<tr><td><a href=") == shown
    assert f"{shown} of {shown + 3} shown" in section and 'href="/holdings/screening/held-again"' in section
    assert "Divested 22 Co" in section and "Divested 02 Co" not in section  # largest holdings first
    full_list = "".join(client.get(f"/holdings/screening/held-again?page={page}").get_data(as_text=True)
                        for page in (1, 2))  # PAGE_SIZE 50 in tests: one page; the second shows the last one
    assert all(f"Divested {n:02d} Co" in full_list for n in range(shown + 3))


def test_dashboard_lists_every_divested_company_held_again_when_there_are_few(client, login_as, frozen_today):
    login_as("viewer")
    engagement = factories.engagement(company=factories.company("Few Divested Co"), opened_on=dt.date(2026, 1, 5))
    divest(engagement, dt.date(2026, 3, 10))
    held_fund([(engagement.company, Decimal(500))])
    section = client.get("/").get_data(as_text=True).split("Divested companies held again")[1].split("</section>")[0]
    assert "Few Divested Co" in section and " shown" not in section
