"""The companies list: its filters, sorting and query (the list page and saved views read them)."""

from __future__ import annotations

import re

import sqlalchemy as sa

from engage.companies.forms import CompanyFilterForm
from engage.extensions import db
from engage.formatting import SHOWN_CHANGE, shown_below
from engage.keyset import NUMBER, Order
from engage.models import Company, CompanyAlias, Engagement, RiskFlag
from engage.models.scoring import ranked_scores


def company_scores(*where):
    """Per company: the latest primary score and the one before it, in one pass over the scores.

    The definition the stored `companies.latest_score` and `score_change` follow (engage.companies.stored,
    kept by triggers; the tests compare the two). The list reads the stored columns.

    A derived table (window function), not a correlated subquery per company: sorting ten
    thousand companies by score stays a single scan of the scores. `where` (on the engagement)
    narrows the scores read: the list page's figures are those of its own companies only (a
    condition outside the derived table is not pushed into the window by SQLite, which then
    ranked all the scores for 50 companies: 143 ms at 100,000 companies).
    """
    ranked = ranked_scores(Engagement.company_id, *where, columns=(Engagement.company_id.label("company_id"),))
    return (
        sa.select(ranked.c.company_id,
                  sa.func.max(sa.case((ranked.c.rank == 1, ranked.c.total))).label("score"),
                  sa.func.max(sa.case((ranked.c.rank == 2, ranked.c.total))).label("previous"))
        .where(ranked.c.rank <= 2)
        .group_by(ranked.c.company_id)
        .cte("company_scores")
    )


#: Sorts whose column may be NULL (those rows come last), and those whose value is a number.
NULLABLE_SORTS = {"isin", "country", "sector", "score", "change"}
NUMBER_SORTS = {"score", "change"}

SORTS = {
    "name": lambda: Company.normalized_name,
    "isin": lambda: Company.isin,
    "country": lambda: Company.country,
    "sector": lambda: Company.sector,
    # Stored by triggers (engage.companies.stored) and indexed: a page is read from the index.
    "score": lambda: Company.latest_score,
    "change": lambda: Company.score_change,
}


def filter_form(formdata) -> CompanyFilterForm:
    """The list's filters from the query string (unchecked until validated)."""
    return CompanyFilterForm(formdata, sorts=SORTS)


def company_filters(args) -> dict:
    """The list's checked filters from the query string; a bad value is a 400 saying which."""
    return filter_form(args).values_or_400()


#: Three characters in a row that are not LIKE wildcards: what a trigram index can look up.
_TRIGRAM = re.compile(r"[^%_]{3}")


def name_like(like: str):
    """`lower(name) LIKE like`: the search box's condition on the name, as the list has always read it.

    On SQLite, with three characters in a row to look up, the companies the trigram index
    (search_companies, migration 0023, kept by triggers) finds for the same LIKE come first, then
    the condition itself on those: the index folds case itself and finds every row the condition
    does (or more), and the condition keeps exactly the rows it always gave. The rows are then
    those few thousand ids (with the ISIN, ticker and alias terms, a MULTI-INDEX OR: `ticker_is`),
    not a walk through every name in the list's order until 50 match (SQLite, 100,000 companies,
    q=golden: 85 to 133 ms of CPU before, 62 after). It relies on the search index following the
    table, which `flask search check` verifies.
    """
    return _through_trigrams(sa.func.lower(Company.name).like(like), "name", like)


def ticker_is(text: str):
    """`upper(ticker) = text`, looked up the same way on SQLite (the trigram index holds the ticker
    too; `LIKE` folds case, so it finds a superset of the equal tickers): with the name's lookup,
    every term of the search box reads an index and SQLite can use them together (MULTI-INDEX OR)."""
    return _through_trigrams(sa.func.upper(Company.ticker) == text, "ticker", text)


def alias_like(like: str):
    """`lower(alias) LIKE like` on company_aliases, looked up the same way on SQLite (the aliases'
    trigram index, search_company_aliases): the list's search no longer reads every alias."""
    return _through_trigrams(sa.func.lower(CompanyAlias.alias).like(like), "alias", like,
                             fts="search_company_aliases", id_column=CompanyAlias.id)


def _through_trigrams(condition, column: str, pattern: str, fts: str = "search_companies", id_column=None):
    """`condition`, with on SQLite the companies the trigram index finds for `pattern` first.

    A pattern without wildcards inside (`%golden%`, a ticker) is asked as a phrase of the column
    (`name : "golden"`): FTS5 answers it from the trigrams' positions alone. Asked as a LIKE, FTS5
    reads each candidate's name from companies to test the pattern (5,053 names for "golden" at
    100,000 companies: 21 ms against 2.3 ms). The phrase finds the names holding the text in any
    case (the trigram tokenizer folds case), a superset of those `condition` keeps, which is
    still applied.
    """
    if db.session.get_bind().dialect.name != "sqlite" or not _TRIGRAM.search(pattern):
        return condition
    inner = pattern[1:-1] if len(pattern) >= 2 and pattern[0] == pattern[-1] == "%" else pattern
    if "%" in inner or "_" in inner:
        where = sa.literal_column(f"{fts}.{column}").like(pattern)
    else:
        phrase = '"' + inner.replace('"', '""') + '"'
        where = sa.literal_column(fts).op("MATCH")(f"{column} : {phrase}")
    found = sa.select(sa.literal_column("rowid")).select_from(sa.table(fts)).where(where)
    return sa.and_((Company.id if id_column is None else id_column).in_(found), condition)


def company_query(f: dict):
    """The companies matching the filters, in the list's order (the saved views' and exports' query)."""
    query, order = company_keyset(f)
    for table, on in order.joins:
        query = query.outerjoin(table, on)
    column = order.column.desc() if order.descending else order.column.asc()
    return query.order_by(column.nulls_last(), Company.id)


def company_keyset(f: dict) -> tuple[sa.Select, Order]:
    """The companies matching the filters (no order) and the list's order, for keyset paging."""
    query = sa.select(Company)
    if f["q"]:
        like = f"%{f['q'].lower()}%"
        alias_match = sa.select(CompanyAlias.company_id).where(alias_like(like))
        query = query.where(sa.or_(
            name_like(like),
            Company.isin == f["q"].upper(),
            ticker_is(f["q"].upper()),
            Company.id.in_(alias_match),
        ))
    if f["sector"]:
        query = query.where(Company.sector == f["sector"])
    if f["country"]:
        query = query.where(Company.country == f["country"])
    if f["source"]:
        query = query.where(Company.id.in_(sa.select(RiskFlag.company_id).where(
            RiskFlag.source == f["source"], RiskFlag.ended_on.is_(None))))
    engaged = sa.select(Engagement.company_id)
    if f["stage"]:
        query = query.where(Company.id.in_(engaged.where(Engagement.stage == f["stage"])))
    if f["engaged"] == "yes":
        query = query.where(Company.id.in_(engaged.where(Engagement.is_open)))
    elif f["engaged"] == "no":
        query = query.where(Company.id.not_in(engaged.where(Engagement.is_open)))
    # The score and change are the stored columns (engage.companies.stored), indexed.
    if f["score_below"]:
        query = query.where(Company.latest_score < shown_below(int(f["score_below"])))
    if f["trend"] == "up":  # a change shown as +1 or more; "+0" is no trend
        query = query.where(Company.score_change >= SHOWN_CHANGE)
    elif f["trend"] == "down":
        query = query.where(Company.score_change <= -SHOWN_CHANGE)
    return query, Order(f["sort"], SORTS[f["sort"]](), Company.id, descending=f["dir"] == "desc",
                        nullable=f["sort"] in NULLABLE_SORTS, kind=NUMBER if f["sort"] in NUMBER_SORTS else "text")
