"""The held-again slice of the screening page (each fund's first rows, and how many) is found by an
index walk per fund (issue 20: LATERAL on PostgreSQL, a correlated subquery on SQLite), not by
ranking every held-again row; it must give the same rows, in the same order, with the same counts
as the full held-again list cut per fund. Ties in value, unknown values, a company divested twice,
a divestment after the snapshot, an engagement not divested, a second fund and a fund with none.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from engage.extensions import db
from engage.holdings import screening
from engage.models import Holding
from tests import factories
from tests.test_screening_pages import AS_OF, divest, fund, small_pages  # noqa: F401 (fixture)


def held(fund_, name: str, value, divested_on=dt.date(2026, 3, 10), twice: bool = False):
    engagement = factories.engagement(company=factories.company(name), opened_on=dt.date(2026, 1, 5))
    divest(engagement, divested_on)
    if twice:  # an earlier engagement of the same company, divested before: the later one is shown
        earlier = factories.engagement(company=engagement.company, opened_on=dt.date(2025, 1, 5))
        divest(earlier, dt.date(2025, 6, 1))
    db.session.add(Holding(fund=fund_, company=engagement.company, as_of=AS_OF,
                           market_value=None if value is None else Decimal(value)))
    db.session.commit()
    return engagement


def cut(rows: list, per_fund: int) -> list:
    """The full list (held_again's order) cut to each fund's first `per_fund`, with the fund's count."""
    counts: dict[int, int] = {}
    for row in rows:
        counts[row.fund_id] = counts.get(row.fund_id, 0) + 1
    seen: dict[int, int] = {}
    out = []
    for row in rows:
        seen[row.fund_id] = seen.get(row.fund_id, 0) + 1
        if seen[row.fund_id] <= per_fund:
            out.append((row, counts[row.fund_id]))
    return out


@pytest.mark.parametrize("per_fund", [1, 3, 20])
def test_the_slices_are_the_full_list_cut_per_fund(app, per_fund):
    north, south = fund("North"), fund("South")
    fund("Empty")  # holds nothing held again
    for n, value in enumerate([5000, 7000, 7000, 7000, None, 100, 9000]):
        held(north, f"Tie {'ABC'[n % 3]} Divested {n}", value, twice=(n == 2))
    held(north, "Sold Later", 8000, divested_on=dt.date(2026, 6, 10))  # divested after the snapshot: not held again
    engaged = factories.engagement(company=factories.company("Engaged Not Divested"), opened_on=dt.date(2026, 1, 5))
    db.session.add(Holding(fund=north, company=engaged.company, as_of=AS_OF, market_value=Decimal(9500)))
    db.session.commit()
    for n in range(4):
        held(south, f"South Divested {n}", 300 * (n % 2) or None)
    snap = screening.snapshots()
    every, total = screening.held_again(snap)
    assert total == 11 and "Sold Later" not in [r.company for r in every] and "Engaged Not Divested" not in [r.company for r in every]
    sliced, shown = screening.held_again(snap, per_fund=per_fund)
    assert [(vars(r), n) for r, n in sliced] == [(vars(r), n) for r, n in cut(every, per_fund)]
    assert shown == len(sliced)
    # the engagement shown for the company divested twice is its later one
    twice = [r for r in every if r.company == "Tie C Divested 2"][0]
    assert twice.divested_on == dt.date(2026, 3, 10)
    # held_again_slices (the screening page's) agrees
    slices = screening.held_again_slices(snap, per_fund)
    assert {f: (len(rows), n) for f, (rows, n) in slices.items()} == {north.id: (min(per_fund, 7), 7),
                                                                      south.id: (min(per_fund, 4), 4)}
