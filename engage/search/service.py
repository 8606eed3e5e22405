"""Search everywhere: one query over companies, engagements, contacts and interactions.

What is matched, per kind:

- companies: name, aliases, ISIN, ticker and LEI. Each word of the query must occur in the name
  and identifiers, or in one alias. An identifier typed whole (an ISIN, an LEI, a ticker) is
  also looked up exactly, on the columns' own indexes, and comes first.
- engagements: those of the companies found, and those whose objectives hold every word.
- contacts: name, job title and email (never an erased contact).
- interactions: subject, summary and participants; the last logged first.

How (migration 0023 makes the indexes):

- SQLite: FTS5 tables kept by triggers. Names and identifiers use the trigram tokenizer, so any
  part of 3 characters or more matches, in any script ("hikv", "海康威", "0PM8"); a word of 1 or
  2 characters is left out of a name search (it would match nothing) and only finds a ticker
  typed whole. Free text uses unicode61 words, each word of the query a prefix ("engag" finds
  "engagement"); a run of Chinese characters is one word there, found by its beginning.
- PostgreSQL: GIN indexes on to_tsvector('simple', ...) (no stemming, no stop words: names and
  identifiers stay as typed), each word of the query a prefix (`'word':*`). A run of Chinese
  characters is one lexeme, found by its beginning ("杭州海康" finds "杭州海康威视...", "海康威视"
  does not).

The query is cut into words (letters and digits, any script) and each word is quoted, so no
character typed reaches the FTS5 or tsquery syntax as an operator. One SQL statement per kind,
whatever the number of results.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass, field

import sqlalchemy as sa
from markupsafe import Markup, escape

from engage.extensions import db
from engage.models import Campaign, Company, CompanyContact, ContactRole, Engagement, Interaction, InteractionKind, Stage

#: The kinds, in the order the results page shows them, with their headings.
KINDS = {"companies": "Companies", "engagements": "Engagements", "contacts": "Contacts",
         "interactions": "Interactions"}
#: Results per kind on the overview; "more" opens one kind, PAGE_SIZE a page.
PER_KIND = 5
PAGE_SIZE = 25
#: Longer queries are cut: a search box, not a document.
MAX_QUERY = 200
MAX_TERMS = 8
MAX_TERM = 64
#: Shortest word the trigram index can match (SQLite names and identifiers).
TRIGRAM = 3

WORD = re.compile(r"\w+")
IDENTIFIER = re.compile(r"[A-Z0-9][A-Z0-9.\-]{0,19}")
EXACT_SCORE = -1e9

#: The PostgreSQL index expressions, exactly as migration 0023 created them.
PG_COMPANY = ("to_tsvector('simple', coalesce(companies.name, '') || ' ' || coalesce(companies.isin, '') || ' ' "
              "|| coalesce(companies.ticker, '') || ' ' || coalesce(companies.lei, ''))")
PG_ALIAS = "to_tsvector('simple', company_aliases.alias)"
PG_CONTACT = ("to_tsvector('simple', company_contacts.name || ' ' || company_contacts.title || ' ' "
              "|| translate(coalesce(company_contacts.email, ''), '@.', '  '))")
PG_ENGAGEMENT = "to_tsvector('simple', engagements.objectives)"
PG_INTERACTION = ("to_tsvector('simple', interactions.subject || ' ' || interactions.summary || ' ' "
                  "|| interactions.participants)")


@dataclass(frozen=True)
class Query:
    """What was typed, as words and (when it looks like one) an identifier to look up exactly."""

    text: str
    terms: tuple[str, ...]
    identifier: str | None

    @property
    def empty(self) -> bool:
        return not self.terms

    @property
    def long_terms(self) -> tuple[str, ...]:
        return tuple(t for t in self.terms if len(t) >= TRIGRAM)


def parse(text: str | None) -> Query:
    """Cut the typed text into at most MAX_TERMS words (letters and digits of any script).

    NFKC first: an accent typed as a combining mark joins its letter, and full-width letters and
    digits (ＣＮＥ１００…, as Chinese and Japanese input methods type them) become plain ones.
    """
    text = " ".join(unicodedata.normalize("NFKC", text or "").split())[:MAX_QUERY]
    terms: list[str] = []
    for word in WORD.findall(text):
        word = word.strip("_")[:MAX_TERM]
        if word and word.casefold() not in (t.casefold() for t in terms):
            terms.append(word)
    upper = text.upper()
    identifier = upper if IDENTIFIER.fullmatch(upper) else None
    return Query(text=text, terms=tuple(terms[:MAX_TERMS]), identifier=identifier)


@dataclass
class Hit:
    """One result: what to show and which page it belongs to (the view makes the link)."""

    kind: str
    id: int
    title: str
    detail: str = ""
    snippet: Markup | None = None
    company_id: int | None = None
    engagement_id: int | None = None
    exact: bool = False
    #: The day it happened (interactions), shown in the app's date format.
    on: dt.date | None = None


@dataclass
class Group:
    kind: str
    label: str
    hits: list[Hit] = field(default_factory=list)
    #: More results than shown.
    more: bool = False


@dataclass
class Results:
    query: Query
    groups: list[Group]
    #: One kind, paged (None on the overview).
    kind: str | None = None
    page: int = 1

    @property
    def total_shown(self) -> int:
        return sum(len(g.hits) for g in self.groups)


def search(text: str | None, kind: str | None = None, page: int = 1) -> Results:
    """Every kind (PER_KIND each) or, with `kind`, one page of PAGE_SIZE results of that kind."""
    query = parse(text)
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    kinds = [kind] if kind else list(KINDS)
    limit = PAGE_SIZE if kind else PER_KIND
    offset = (page - 1) * limit if kind else 0
    groups = []
    for name in kinds:
        group = Group(kind=name, label=KINDS[name])
        if not query.empty:
            hits = FINDERS[name](query, limit + 1, offset)
            group.hits, group.more = hits[:limit], len(hits) > limit
        groups.append(group)
    return Results(query=query, groups=groups, kind=kind, page=page)


# --- match expressions per dialect ------------------------------------------------------------

def _postgresql() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def fts5_query(terms) -> str:
    """An FTS5 MATCH string: every word as a quoted string ("" escapes a quote), each a prefix."""
    return " ".join('"' + term.replace('"', '""') + '"*' for term in terms)


def fts5_substrings(terms) -> str:
    """An FTS5 MATCH string for the trigram tables: every word a quoted substring."""
    return " ".join('"' + term.replace('"', '""') + '"' for term in terms)


def tsquery(terms) -> str:
    """A to_tsquery('simple', ...) string: every word a quoted prefix, all required."""
    quoted = []
    for term in terms:
        escaped = term.replace("\\", "\\\\").replace("'", "''")
        quoted.append(f"'{escaped}':*")
    return " & ".join(quoted)


def _company_hits(query: Query) -> tuple[str, dict]:
    """SQL (id, score) of the companies matching, lower score first; and its parameters."""
    params: dict = {}
    parts = []
    if query.identifier:
        params["identifier"] = query.identifier
        parts.append(f"SELECT id, {EXACT_SCORE} AS score FROM companies "
                     "WHERE isin = :identifier OR lei = :identifier OR ticker = :identifier")
    if _postgresql():
        params["tsq"] = tsquery(query.terms)
        parts += [
            f"SELECT id, -ts_rank({PG_COMPANY}, to_tsquery('simple', :tsq)) AS score FROM companies "
            f"WHERE {PG_COMPANY} @@ to_tsquery('simple', :tsq)",
            f"SELECT company_id AS id, -ts_rank({PG_ALIAS}, to_tsquery('simple', :tsq)) AS score FROM company_aliases "
            f"WHERE {PG_ALIAS} @@ to_tsquery('simple', :tsq)",
        ]
    elif query.long_terms:
        # Words under 3 characters cannot match a trigram index: left out of the name search.
        params["match"] = fts5_substrings(query.long_terms)
        parts += [
            "SELECT rowid AS id, rank AS score FROM search_companies WHERE search_companies MATCH :match",
            "SELECT company_aliases.company_id AS id, search_company_aliases.rank AS score "
            "FROM search_company_aliases JOIN company_aliases ON company_aliases.id = search_company_aliases.rowid "
            "WHERE search_company_aliases MATCH :match",
        ]
    if not parts:
        return "", params
    union = " UNION ALL ".join(parts)
    return f"SELECT id, min(score) AS score FROM ({union}) AS matched GROUP BY id", params


def _words_match(fts_table: str, table: str, pg_expression: str, query: Query,
                 ranked: bool = True) -> tuple[str, dict]:
    """SQL (id, score) of the rows of `table` whose free-text index holds every word (as a prefix).

    Unranked (score 0) for a kind shown in another order: no rank is computed for every match.
    """
    if _postgresql():
        score = f"-ts_rank({pg_expression}, to_tsquery('simple', :tsq))" if ranked else "0"
        return (f"SELECT id, {score} AS score FROM {table} "
                f"WHERE {pg_expression} @@ to_tsquery('simple', :tsq)"), {"tsq": tsquery(query.terms)}
    score = "rank" if ranked else "0"
    return (f"SELECT rowid AS id, {score} AS score FROM {fts_table} WHERE {fts_table} MATCH :words",
            {"words": fts5_query(query.terms)})


#: PostgreSQL: how many of the newest rows a page of interactions is first looked for in.
NEWEST_WINDOW = 1000


def _newest_match(fts_table: str, table: str, pg_expression: str, query: Query, limit: int,
                  offset: int) -> tuple[str, dict]:
    """SQL (id, score) of one page of the matching rows, the last recorded (highest id) first.

    The page is cut inside the match: SQLite's FTS5 walks its index backwards and stops there, so
    a word found in 200,000 interactions costs a page, not a sort of 200,000 rows.

    PostgreSQL's GIN index has no order: it returns every match, and a word in every one of
    2,000,000 interactions cost 0.9 s of heap reads before the newest 25 were sorted out. So the
    page is first looked for among the newest NEWEST_WINDOW rows, walking the primary key
    backwards inside that window only and testing each row (1,000 rows: a few ms). When the
    window holds the whole page (and the rows before it), those are the newest matches, nothing
    older can come before them; otherwise (a rarer word, a deep page) the GIN index answers, and
    then the word is in fewer than one row in NEWEST_WINDOW / (offset + limit), so its matches
    are few. One statement either way: the GIN branch is skipped by a one-time filter.

    The GIN branch is ordered by `id + 0`, not plain `id`: on `id` the planner may walk the whole
    primary key backwards testing every row (it cannot estimate a prefix query's matches), a
    second for a rare word at 200,000 interactions; `id + 0` keeps it on the GIN index.
    """
    sql, params = _words_match(fts_table, table, pg_expression, query, ranked=False)
    if not _postgresql():
        terms_table = FTS5_TERMS.get(fts_table)
        if terms_table:
            match, params = fts5_newest_match(terms_table, query.terms)
            sql = f"SELECT rowid AS id, 0 AS score FROM {fts_table} WHERE {fts_table} MATCH ({match})"
        return f"{sql} ORDER BY rowid DESC LIMIT {int(limit)} OFFSET {int(offset)}", params
    wanted = int(limit) + int(offset)
    match = f"{pg_expression} @@ to_tsquery('simple', :tsq)"
    # OFFSET 0 keeps the window a subquery of its own: the planner cannot trade its backward walk
    # for the GIN index. The window is named as the table so that the index expression reads it.
    sql = (
        f"WITH recent AS MATERIALIZED ("
        f"SELECT id FROM (SELECT * FROM {table} WHERE id > (SELECT max(id) FROM {table}) - {NEWEST_WINDOW} "
        f"ORDER BY id DESC OFFSET 0) AS {table} WHERE {match} LIMIT {wanted}) "
        f"SELECT id, 0 AS score FROM ("
        f"SELECT id FROM recent WHERE (SELECT count(*) FROM recent) >= {wanted} "
        f"UNION ALL "
        f"SELECT id FROM (SELECT id FROM {table} WHERE {match} AND (SELECT count(*) FROM recent) < {wanted} "
        f"ORDER BY id + 0 DESC LIMIT {wanted}) AS older"
        f") AS matched ORDER BY id DESC LIMIT {int(limit)} OFFSET {int(offset)}"
    )
    return sql, params


#: SQLite: the FTS5 tables read newest first, and the fts5vocab table (migration 0040) listing their words.
FTS5_TERMS = {"search_interactions": "search_interactions_terms"}
#: A word typed is looked up as the words of the index it begins, when they are at most this many.
EXPANDED_TERMS = 32
#: Words this short are prefixes the FTS5 prefix indexes ('2 3') answer in order by themselves.
PREFIX_INDEXED = 3
_PLAIN_WORD = re.compile(r"[A-Za-z0-9]+")


def fts5_newest_match(terms_table: str, terms) -> tuple[str, dict]:
    """SQL of an FTS5 MATCH string meaning what `fts5_query(terms)` means (every word a prefix), and
    its parameters, for a match read newest first (ORDER BY rowid DESC LIMIT).

    SQLite 3.40's FTS5 answers a prefix longer than its prefix indexes ("synthetic"*) by merging
    the whole list of rows of every word it begins before returning the first row: a word in all
    2,000,000 interactions cost 107 ms of CPU, however few rows the page wants. The same word
    written as the words of the index that begin with it ("synthetic" OR "synthetics"), each
    exact, is read row by row from the newest and stops at the page (0.3 ms). The words are read
    from the fts5vocab table `terms_table` in the same statement (the same snapshot of the index),
    one after the other from the prefix (`term >= previous || char(1)`: each step one seek).

    Only for a plain ASCII word of more than PREFIX_INDEXED characters: unicode61 makes exactly
    its lower case of it, so the index's words that begin with it are the prefix's matches. Other
    words (accents, other scripts, a word the tokenizer would cut) and a prefix beginning more
    than EXPANDED_TERMS words stay prefixes. A prefix no word begins becomes that exact word,
    which matches nothing, as the prefix did.
    """
    params: dict = {}
    parts = []
    for number, term in enumerate(terms):
        quoted = '"' + term.replace('"', '""') + '"*'
        if len(term) <= PREFIX_INDEXED or not _PLAIN_WORD.fullmatch(term):
            params[f"prefix_{number}"] = quoted
            parts.append(f":prefix_{number}")
            continue
        word = f":word_{number}"
        params[f"word_{number}"] = term.lower()
        length = len(term)
        parts.append(
            f"(WITH RECURSIVE begun(term, n) AS ("
            f"SELECT (SELECT term FROM {terms_table} WHERE term >= {word} LIMIT 1), 1 "
            f"UNION ALL SELECT (SELECT term FROM {terms_table} WHERE term >= begun.term || char(1) LIMIT 1), n + 1 "
            f"FROM begun WHERE substr(begun.term, 1, {length}) = {word} AND n <= {EXPANDED_TERMS}) "
            f"SELECT CASE WHEN count(*) = 0 THEN '\"' || {word} || '\"' "
            f"WHEN count(*) > {EXPANDED_TERMS} THEN '\"' || {word} || '\"*' "
            f"ELSE '(' || group_concat('\"' || replace(term, '\"', '\"\"') || '\"', ' OR ') || ')' END "
            f"FROM begun WHERE substr(term, 1, {length}) = {word})"
        )
    return " || ' AND ' || ".join(parts), params


def _hits_subquery(sql: str, params: dict, name: str):
    return sa.text(sql).bindparams(**params).columns(id=sa.Integer, score=sa.Float).subquery(name)


# --- the kinds -----------------------------------------------------------------------------------

def find_companies(query: Query, limit: int, offset: int) -> list[Hit]:
    sql, params = _company_hits(query)
    if not sql:
        return []
    hits = _hits_subquery(sql, params, "hits")
    rows = db.session.execute(
        sa.select(Company.id, Company.name, Company.isin, Company.ticker, Company.exchange, Company.lei,
                  Company.country, hits.c.score)
        .join(hits, hits.c.id == Company.id)
        .order_by(hits.c.score, Company.name, Company.id).limit(limit).offset(offset)).all()
    out = []
    for row in rows:
        detail = " · ".join(x for x in (row.country, f"ISIN {row.isin}" if row.isin else "",
                                        f"{row.ticker} {row.exchange or ''}".strip() if row.ticker else "",
                                        f"LEI {row.lei}" if row.lei else "") if x)
        out.append(Hit(kind="companies", id=row.id, title=row.name, detail=detail, company_id=row.id,
                       exact=row.score == EXACT_SCORE))
    return out


def find_engagements(query: Query, limit: int, offset: int) -> list[Hit]:
    company_sql, params = _company_hits(query)
    objectives_sql, more = _words_match("search_engagements", "engagements", PG_ENGAGEMENT, query)
    params.update(more)
    parts = [objectives_sql]
    if company_sql:
        parts.append(f"SELECT engagements.id, companies_found.score FROM engagements "
                     f"JOIN ({company_sql}) AS companies_found ON companies_found.id = engagements.company_id")
    union = " UNION ALL ".join(parts)
    hits = _hits_subquery(f"SELECT id, min(score) AS score FROM ({union}) AS matched GROUP BY id", params, "hits")
    rows = db.session.execute(
        sa.select(Engagement.id, Engagement.stage, Engagement.objectives, Engagement.company_id,
                  Company.name.label("company"), Campaign.name.label("campaign"))
        .join(hits, hits.c.id == Engagement.id)
        .join(Company, Company.id == Engagement.company_id)
        .join(Campaign, Campaign.id == Engagement.campaign_id)
        .order_by(hits.c.score, (Engagement.stage == Stage.CLOSED.value), Engagement.id.desc())
        .limit(limit).offset(offset)).all()
    return [Hit(kind="engagements", id=row.id, title=row.company, company_id=row.company_id, engagement_id=row.id,
                detail=f"{row.campaign} · {Stage(row.stage).label}", snippet=snippet(row.objectives, query))
            for row in rows]


def find_contacts(query: Query, limit: int, offset: int) -> list[Hit]:
    sql, params = _words_match("search_contacts", "company_contacts", PG_CONTACT, query)
    hits = _hits_subquery(sql, params, "hits")
    rows = db.session.execute(
        sa.select(CompanyContact.id, CompanyContact.name, CompanyContact.title, CompanyContact.role,
                  CompanyContact.email, CompanyContact.active, CompanyContact.company_id, Company.name.label("company"))
        .join(hits, hits.c.id == CompanyContact.id)
        .join(Company, Company.id == CompanyContact.company_id)
        .where(CompanyContact.erased_at.is_(None))
        .order_by(hits.c.score, CompanyContact.name, CompanyContact.id).limit(limit).offset(offset)).all()
    out = []
    for row in rows:
        detail = " · ".join(x for x in (row.title or ContactRole(row.role).label, row.company, row.email or "",
                                        "" if row.active else "inactive") if x)
        out.append(Hit(kind="contacts", id=row.id, title=row.name, detail=detail, company_id=row.company_id))
    return out


def find_interactions(query: Query, limit: int, offset: int) -> list[Hit]:
    sql, params = _newest_match("search_interactions", "interactions", PG_INTERACTION, query, limit, offset)
    hits = _hits_subquery(sql, params, "hits")
    rows = db.session.execute(
        sa.select(Interaction.id, Interaction.kind, Interaction.occurred_on, Interaction.subject, Interaction.summary,
                  Interaction.participants, Interaction.engagement_id, Engagement.company_id,
                  Company.name.label("company"))
        .join(hits, hits.c.id == Interaction.id)
        .join(Engagement, Engagement.id == Interaction.engagement_id)
        .join(Company, Company.id == Engagement.company_id)
        .order_by(Interaction.id.desc())).all()
    out = []
    for row in rows:
        kind = InteractionKind(row.kind).label
        out.append(Hit(kind="interactions", id=row.id, title=row.subject or kind, company_id=row.company_id,
                       engagement_id=row.engagement_id, detail=f"{row.company} · {kind}", on=row.occurred_on,
                       snippet=snippet(row.summary, query) or snippet(row.participants, query)))
    return out


FINDERS = {"companies": find_companies, "engagements": find_engagements, "contacts": find_contacts,
           "interactions": find_interactions}


# --- showing where the words are ------------------------------------------------------------------

SNIPPET_CHARS = 160


def snippet(text: str | None, query: Query) -> Markup | None:
    """Up to SNIPPET_CHARS of `text` around the first word of the query found in it, the words
    marked (<mark>); None when none is in it. Escaped: the text is the user's."""
    if not text or not query.terms:
        return None
    pattern = re.compile("|".join(re.escape(t) for t in sorted(query.terms, key=len, reverse=True)), re.IGNORECASE)
    first = pattern.search(text)
    if first is None:
        return None
    start = max(0, first.start() - SNIPPET_CHARS // 3)
    end = min(len(text), start + SNIPPET_CHARS)
    piece = " ".join(text[start:end].split())
    out = Markup("…") if start > 0 else Markup("")
    position = 0
    for found in pattern.finditer(piece):
        out += escape(piece[position:found.start()]) + Markup("<mark>") + escape(found.group()) + Markup("</mark>")
        position = found.end()
    out += escape(piece[position:])
    return out + (Markup("…") if end < len(text) else Markup(""))
