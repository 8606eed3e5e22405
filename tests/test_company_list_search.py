"""The companies list's search box (`?q=`) gives the rows it always gave: names containing the text
(lower(name) LIKE), the ISIN, the ticker (upper-cased), an alias, in the list's order. On SQLite
the name is first looked up in the trigram index (engage.companies.queries.name_like): these
tests compare the pages with the plain condition, for texts the index can and cannot look up,
letters outside ASCII (which the index folds and lower() does not), and LIKE's wildcards."""

from __future__ import annotations

import re
from urllib.parse import quote

import sqlalchemy as sa

from engage.extensions import db
from engage.models import Company, CompanyAlias

from tests import factories


def _page_ids(client, query: str) -> list[int]:
    ids, url = [], f"/companies?{query}"
    while url:
        html = client.get(url).get_data(as_text=True)
        ids += [int(n) for n in re.findall(r'data-label="Company"><a href="/companies/(\d+)"', html)]
        found = re.search(r'href="([^"]*)" rel="next"', html)
        url = found.group(1).replace("&amp;", "&") if found else None
    return ids


def _definition(q: str) -> list[int]:
    like = f"%{q.lower()}%"
    aliases = sa.select(CompanyAlias.company_id).where(sa.func.lower(CompanyAlias.alias).like(like))
    return list(db.session.scalars(sa.select(Company.id).where(sa.or_(
        sa.func.lower(Company.name).like(like), Company.isin == q.upper(),
        sa.func.upper(Company.ticker) == q.upper(), Company.id.in_(aliases),
    )).order_by(Company.normalized_name, Company.id)))


def test_the_search_box_gives_the_rows_of_the_plain_condition(app, client, login_as, monkeypatch):
    monkeypatch.setitem(app.config, "PAGE_SIZE", 3)
    login_as("viewer")
    names = ["Golden Solar", "GOLDEN PEAK", "Old Gold Mining", "Marigolden Ltd", "Éclair Foods", "éclair Bakery",
             "Gold_en Partners", "Goldfinch", "Steelworks", "Bolden Energy", "Ürümqi Golden", "Silver Line",
             'Quote "Golden" Bowl']
    for i, name in enumerate(names):
        factories.company(name=name, ticker=["GLD", "gldx", None, "MRG"][i % 4], isin=f"CNE1000{i:05d}")
    db.session.add(CompanyAlias(company=db.session.scalar(sa.select(Company).where(Company.name == "Steelworks")),
                                alias="Golden Steel"))
    db.session.add(CompanyAlias(company=db.session.scalar(sa.select(Company).where(Company.name == "Silver Line")),
                                alias='Argent "Cotton" Mills'))
    db.session.commit()
    for q in ("golden", "GOLDEN", "olde", "old", "go", "éclair", "Éclair", "ÉCLAIR", "gol%en", "_old", "gold_en",
              "gldx", "GLD", "mrg", "CNE100000003", "ürümqi", "urumqi", "steel", "nothing here",
              # asked of the trigram index as a phrase (no wildcard inside): spaces, quotes
              "golden solar", "n so", '"golden"', 'e "g', 'den" bo', "COTTON", '"cotton" m', "cott%",
              "gent_"):
        expected = _definition(q)
        assert _page_ids(client, f"q={quote(q)}") == expected, q
    assert _definition("golden") and _definition("éclair") and _definition("gldx")
    assert _definition("golden solar") and _definition('"golden"') and _definition('den" bo')
    assert _definition('"cotton" m') and _definition("gent_")
