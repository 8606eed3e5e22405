"""Search everywhere (issue 17): the header's box, the results page, the full-text indexes.

Hangzhou Hikvision's name, aliases, ISIN and ticker are those of seeds/companies.yaml; the other
companies, contacts and interactions are fictional.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engage.extensions import db
from engage.models import CompanyAlias, Interaction
from engage.search import index, service
from tests import factories
from tests.test_companies import company_form

HIKVISION = {"name": "Hangzhou Hikvision Digital Technology Co., Ltd.", "isin": "CNE100000PM8", "ticker": "002415",
             "exchange": "XSHE", "country": "CN"}
#: A fictional company with a Chinese name and a (check-digit valid) LEI.
COTTON = {"name": "新疆样例棉业有限公司", "lei": "5493001KJTIIGC8Y1R12", "country": "CN"}


def postgresql() -> bool:
    return db.engine.dialect.name == "postgresql"


@pytest.fixture()
def hikvision(app):
    company = factories.company(**HIKVISION)
    company.aliases = [CompanyAlias(alias="Hikvision"), CompanyAlias(alias="Hikvision Digital Technology")]
    engagement = factories.engagement(company=company, objectives="A full map of the surveillance supply chain.",
                                      with_contact=False)
    contact = factories.contact(company, name="Jordan Liang", title="Board secretary", email="ir@hikvision.example")
    interaction = Interaction(engagement=engagement, kind="response", direction="inbound",
                              occurred_on=dt.date(2026, 3, 2), subject="Reply to our letter",
                              summary="The company declined to name its integrators in the Uyghur Region.",
                              participants="Jordan Liang")
    db.session.add_all([contact, interaction])
    other = factories.company(name="Zhejiang Dahua Technology Co., Ltd.", isin="CNE100000BJ4")
    db.session.commit()
    return {"company": company, "engagement": engagement, "contact": contact, "interaction": interaction,
            "other": other}


def results(client, q, **args):
    response = client.get("/search", query_string={"q": q, **args})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_data(as_text=True)


def section(page: str, kind: str) -> str:
    """The HTML of one kind's group ("" when the page has none)."""
    found = re.search(rf'<section class="search-group" aria-labelledby="search-{kind}">(.*?)</section>', page, re.S)
    return found.group(1) if found else ""


def links(page: str, kind: str) -> list[str]:
    return re.findall(r'<p class="search-title"><a href="([^"]+)"', section(page, kind))


# --- finding things -------------------------------------------------------------------------------

def test_a_viewer_finds_hikvision_by_isin_alias_ticker_and_a_word_of_an_interaction(client, login_as, hikvision):
    login_as("viewer")
    company_url = f"/companies/{hikvision['company'].id}"
    engagement_url = f"/engagements/{hikvision['engagement'].id}"

    page = results(client, "CNE100000PM8")
    assert links(page, "companies") == [company_url]
    assert '<span class="tag">identifier</span>' in section(page, "companies")
    assert links(results(client, "cne100000pm8"), "companies") == [company_url]  # typed in lower case
    assert links(results(client, "ＣＮＥ１０００００ＰＭ８"), "companies") == [company_url]  # full-width, as IMEs type
    assert links(results(client, "002415"), "companies") == [company_url]  # the ticker, whole

    page = results(client, "Hikvision")
    assert links(page, "companies") == [company_url]  # not Dahua
    assert links(page, "engagements") == [engagement_url]  # the company's engagement
    assert links(page, "contacts") == [f"{company_url}#contacts"]  # ir@hikvision.example
    assert links(results(client, "hikv"), "companies") == [company_url]  # part of a word
    assert links(results(client, "Digital Technology Hikvision"), "companies") == [company_url]  # any order

    page = results(client, "integrators")
    iid = hikvision["interaction"].id
    assert links(page, "interactions") == [f"{engagement_url}#interaction-{iid}"]
    assert "<mark>integrators</mark>" in section(page, "interactions")
    assert '<time datetime="2026-03-02">02 Mar 2026</time>' in section(page, "interactions")
    assert links(results(client, "integr uyghur"), "interactions") == [f"{engagement_url}#interaction-{iid}"]  # prefixes
    assert links(results(client, "integrators Tibet"), "interactions") == []  # every word must be there
    assert links(results(client, "surveillance"), "engagements") == [engagement_url]  # the objectives
    assert links(results(client, "Jordan"), "contacts") == [f"{company_url}#contacts"]


def test_every_result_link_opens_for_the_viewer_who_searched(client, login_as, hikvision):
    """Results link only to pages the user can see: a viewer follows each of them."""
    login_as("viewer")
    page = results(client, "Hikvision") + results(client, "Jordan")
    hrefs = {href for kind in service.KINDS for href in links(page, kind)}
    assert len(hrefs) == 4  # company, engagement, contact (company page), interaction (named Jordan)
    for href in hrefs:
        path, _, fragment = href.partition("#")
        response = client.get(path)
        assert response.status_code == 200, href
        if fragment:
            assert f'id="{fragment}"' in response.get_data(as_text=True)


def test_an_lei_and_a_chinese_name(client, login_as, app):
    login_as("viewer")
    company = factories.company(**COTTON)
    db.session.commit()
    url = f"/companies/{company.id}"
    assert links(results(client, "5493001KJTIIGC8Y1R12"), "companies") == [url]
    assert links(results(client, "新疆样例"), "companies") == [url]  # the beginning of the name
    assert links(results(client, "新疆样例棉业有限公司"), "companies") == [url]  # the whole name
    # Inside a name: SQLite's trigram index finds any 3 characters; PostgreSQL's lexemes only a beginning.
    assert links(results(client, "样例棉业"), "companies") == ([] if postgresql() else [url])
    # Two characters: PostgreSQL finds the beginning; SQLite's trigrams need 3 (README, Search).
    assert links(results(client, "新疆"), "companies") == ([url] if postgresql() else [])


def test_an_empty_query_asks_for_words_and_searches_nothing(client, login_as, count_queries):
    login_as("viewer")
    with count_queries() as counter:
        page = results(client, "")
    assert "Type a name, an identifier" in page
    assert not any("search_" in s or "to_tsvector" in s for s in counter.statements)
    assert "has none to look for" in results(client, "  -*- ")


HOSTILE = ['"', '""', "*", "AND(", "-", "-Hikvision", "NOT", "OR", "NEAR(hik vision)", "hik*vision", "^hik",
           "name:Hikvision", "'", "\\", "\\'", ":*", "'hik':*", "!", "&|!", "(((", ")", '"hik" OR "x"',
           "a'b\\c", "%", "_", "%_%", "..", "😀", "x" * 5000, "Hik vision" * 50, "\u200b", "\t\n"]


@pytest.mark.parametrize("q", HOSTILE)
def test_hostile_queries_never_fail(client, login_as, hikvision, q):
    login_as("viewer")
    results(client, q)
    results(client, q, kind="interactions")


def test_operators_typed_are_words_not_syntax(client, login_as, hikvision):
    login_as("viewer")
    assert links(results(client, '"Hikvision'), "companies") == [f"/companies/{hikvision['company'].id}"]
    assert links(results(client, "Hikvision -Digital"), "companies") == [f"/companies/{hikvision['company'].id}"]
    assert links(results(client, "Hikvision OR Dahua"), "companies") == []  # OR is a word here, in no name


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=80))
def test_any_text_is_a_query(app, text):
    found = service.search(text)
    assert [g.kind for g in found.groups] == list(service.KINDS)
    db.session.rollback()


# --- more, pages, kinds ---------------------------------------------------------------------------------

def test_results_are_capped_per_kind_with_a_link_to_more(client, login_as, app):
    login_as("viewer")
    for i in range(service.PER_KIND + 2):
        factories.company(name=f"Polysilicon Maker {i:02d}")
    db.session.commit()
    page = results(client, "polysilicon")
    assert len(links(page, "companies")) == service.PER_KIND
    assert 'href="/search?q=polysilicon&amp;kind=companies"' in page
    page = results(client, "polysilicon", kind="companies")
    assert len(links(page, "companies")) == service.PER_KIND + 2
    assert 'rel="next"' not in page
    assert client.get("/search", query_string={"q": "polysilicon", "kind": "companies", "page": 2}).status_code == 404
    assert client.get("/search", query_string={"q": "polysilicon", "kind": "users"}).status_code == 404
    assert client.get("/search", query_string={"q": "polysilicon", "kind": "companies",
                                                "page": str(2**63 - 1)}).status_code == 404
    assert client.get("/search", query_string={"q": "polysilicon", "kind": "companies", "page": "x"}).status_code == 404


def test_search_needs_sign_in(client):
    response = client.get("/search?q=Hikvision")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_the_header_has_the_box_and_its_script_is_served(client, login_as):
    login_as("viewer")
    page = client.get("/").get_data(as_text=True)
    assert '<form class="site-search" role="search" aria-label="Search everywhere" method="get" action="/search">' in page
    assert 'id="site-search-q" name="q"' in page and 'src="/static/js/search.js"' in page
    script = client.get("/static/js/search.js")
    assert script.status_code == 200 and b'"site-search-q"' in script.data


# --- cost -------------------------------------------------------------------------------------------

def make_matches(count: int) -> None:
    for _ in range(count):
        engagement = factories.engagement(objectives="Remediation plan for cotton sourcing.")
        factories.contact(engagement.company, name="Remediation Officer")
        db.session.add(Interaction(engagement=engagement, kind="email", direction="outbound",
                                   occurred_on=dt.date(2026, 2, 1), subject="Remediation", summary="remediation"))
    db.session.commit()


def test_query_count_does_not_grow_with_results(client, login_as, count_queries):
    login_as("viewer")
    make_matches(2)
    with count_queries() as few:
        page = results(client, "remediation")
    assert len(links(page, "interactions")) == 2
    make_matches(service.PER_KIND + 3)
    with count_queries() as many:
        page = results(client, "remediation")
    assert len(links(page, "interactions")) == service.PER_KIND
    assert len(links(page, "engagements")) == service.PER_KIND
    assert many.count == few.count
    with count_queries() as paged:
        page = results(client, "remediation", kind="interactions")
    assert len(links(page, "interactions")) == service.PER_KIND + 5
    assert paged.count < few.count


PG_INDEXES = {"companies": "ix_search_companies", "company_aliases": "ix_search_company_aliases",
              "company_contacts": "ix_search_contacts", "engagements": "ix_search_engagements",
              "interactions": "ix_search_interactions"}


def plan(sql: str, params: dict) -> str:
    if postgresql():
        db.session.execute(sa.text("SET LOCAL enable_seqscan = off"))
        rows = db.session.execute(sa.text(f"EXPLAIN {sql}"), params).scalars().all()
    else:
        rows = [r[-1] for r in db.session.execute(sa.text(f"EXPLAIN QUERY PLAN {sql}"), params)]
    return "\n".join(rows)


def test_the_searches_use_the_full_text_indexes(app, hikvision):
    """The match of each kind is answered from its index, never by reading the table
    (PostgreSQL: the planner can use the migration's expression indexes only when the service's
    expressions are the same)."""
    query = service.parse("Hikvision integr")
    checks = [(*service._company_hits(query), ["companies", "company_aliases"])]
    for fts, table, expression in (("search_engagements", "engagements", service.PG_ENGAGEMENT),
                                   ("search_contacts", "company_contacts", service.PG_CONTACT),
                                   ("search_interactions", "interactions", service.PG_INTERACTION)):
        checks.append((*service._words_match(fts, table, expression, query), [table]))
    # The interactions' page, cut inside the match: on the GIN index, not the primary key walked backwards.
    checks.append((*service._newest_match("search_interactions", "interactions", service.PG_INTERACTION, query,
                                          6, 0), ["interactions"]))
    for sql, params, tables in checks:
        text = plan(sql, params)
        for table in tables:
            if postgresql():
                assert PG_INDEXES[table] in text, text
                assert f"Seq Scan on {table}" not in text, text
            else:
                assert f"SCAN {table}" not in text.replace("SCAN search_", ""), text
        db.session.rollback()


# --- the index follows every change --------------------------------------------------------------------

def test_the_index_follows_edits_and_deletions(client, login_as, hikvision):
    login_as("admin")
    company = hikvision["company"]
    url = f"/companies/{company.id}"
    response = client.post(f"{url}/edit", data=company_form(name="Renamed Camera Maker Co., Ltd.",
                                                            aliases="Camera Maker", isin="CNE100000PM8",
                                                            ticker="002415", exchange="XSHE"))
    assert response.status_code == 302
    assert links(results(client, "Hikvision"), "companies") == []  # old name and aliases gone
    assert links(results(client, "Renamed Camera"), "companies") == [url]
    assert links(results(client, "Camera Maker"), "companies") == [url]
    assert links(results(client, "CNE100000PM8"), "companies") == [url]

    # Erasing a contact removes its name from contacts and from the interactions that named it.
    contact = hikvision["contact"]
    assert client.post(f"{url}/contacts/{contact.id}/erase", data={"confirm": "erase"}).status_code == 302
    page = results(client, "Jordan Liang")
    assert links(page, "contacts") == [] and links(page, "interactions") == []

    interaction = db.session.get(Interaction, hikvision["interaction"].id)
    db.session.delete(interaction)
    db.session.commit()
    assert links(results(client, "integrators"), "interactions") == []
    # A new interaction is found at once.
    page = client.post(f"/engagements/{hikvision['engagement'].id}/interactions", content_type="multipart/form-data",
                       data={"kind": "email", "direction": "outbound", "occurred_on": "2026-03-10",
                             "subject": "Follow-up on audits", "summary": "We asked again for the auditors' names.",
                             "participants": "", "move_to": "",
                             "version": str(hikvision["engagement"].version)})
    assert page.status_code == 302, page.get_data(as_text=True)[:300]
    assert len(links(results(client, "auditors"), "interactions")) == 1


def test_migration_indexes_existing_rows_and_downgrades(make_app, tmp_path, database_url):
    """0023 indexes the rows already there; its downgrade removes every search object (SQLite file)."""
    from flask_migrate import downgrade, upgrade

    if not database_url.startswith("sqlite"):
        pytest.skip("run on a SQLite file of its own; PostgreSQL's part is checked by the index test above")
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'search.sqlite'}")
    with app.app_context():
        upgrade(revision="0022")
        with db.engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO companies (id, name, normalized_name, isin, description, address, created_at, updated_at) "
                "VALUES (7, 'Hangzhou Hikvision Digital Technology Co., Ltd.', 'hangzhou hikvision digital technology', "
                "'CNE100000PM8', '', '', '2026-01-01', '2026-01-01')")
        upgrade()
        assert [h.id for h in service.search("Hikvision").groups[0].hits] == [7]
        downgrade(revision="0022")
        names = db.session.scalars(sa.text("SELECT name FROM sqlite_master WHERE name LIKE 'search%'")).all()
        assert names == []
        upgrade()
        assert [h.id for h in service.search("CNE100000PM8").groups[0].hits] == [7]
        # a later migration of a searched table keeps its triggers, up and down (0025: engagements)
        downgrade(revision="0024")
        upgrade()
        assert index.problems() == []
        db.session.remove()
        db.engine.dispose()


def test_postgresql_never_walks_all_interactions_for_a_page(app):
    """Ordered by plain `id`, PostgreSQL's planner may read the primary key backwards testing every
    row (a second at 200,000 interactions for a rare word); the page's order must not allow it:
    the only backward walk is the newest window's, bounded by its index condition. Bitmap scans
    are switched off here to show what the planner falls back to."""
    if not postgresql():
        pytest.skip("PostgreSQL's planner")
    sql, params = service._newest_match("search_interactions", "interactions", service.PG_INTERACTION,
                                        service.parse("hotan"), 6, 0)
    db.session.execute(sa.text("SET LOCAL enable_bitmapscan = off"))
    lines = plan(sql, params).splitlines()
    walks = [i for i, line in enumerate(lines) if "Index Scan Backward using pk_interactions" in line]
    assert len(walks) == 1, "\n".join(lines)
    assert "Index Cond: (id > (" in lines[walks[0] + 1], "\n".join(lines)
    db.session.rollback()


def test_a_page_of_interactions_is_the_newest_matches_inside_and_beyond_the_newest_window(app, monkeypatch):
    """PostgreSQL looks for the page among the newest NEWEST_WINDOW rows first and asks the GIN
    index only when the window falls short: every page must be the matches in id order, newest
    first, whichever way it was found. With a window of 10 among 60 interactions, a word in every
    row is answered from the window, one in every 7th row or in a single old row from the index,
    and deep pages cross from one to the other (on SQLite FTS5 answers all, the same pages)."""
    monkeypatch.setattr(service, "NEWEST_WINDOW", 10)
    engagement = factories.engagement(with_contact=False)
    rows = []
    for n in range(60):
        words = ["zephyr"] + (["quartz"] if n % 7 == 0 else []) + (["obsidian"] if n == 3 else [])
        rows.append(Interaction(engagement=engagement, kind="email", direction="outbound",
                                occurred_on=dt.date(2026, 1, 1) + dt.timedelta(days=n),
                                subject=f"Letter {n}", summary=" ".join(words), participants=""))
    db.session.add_all(rows)
    db.session.commit()
    for word in ("zephyr", "quartz", "obsidian", "nowhere"):
        expected = sorted((r.id for r in rows if word in r.summary), reverse=True)
        for limit, offset in ((6, 0), (6, 4), (11, 0), (3, 9), (26, 25), (6, 55), (6, 70)):
            sql, params = service._newest_match("search_interactions", "interactions", service.PG_INTERACTION,
                                                service.parse(word), limit, offset)
            found = db.session.execute(sa.text(sql), params).scalars().all()
            assert found == expected[offset:offset + limit], (word, limit, offset)
        monkeypatch.setattr(service, "PAGE_SIZE", 4)
        pages = [[hit.id for hit in service.search(word, kind="interactions", page=page).groups[0].hits]
                 for page in (1, 2, 3)]
        assert pages == [expected[0:4], expected[4:8], expected[8:12]], word


def test_a_page_of_interactions_by_the_words_a_long_word_begins(app, monkeypatch):
    """SQLite reads a plain word of 4 characters or more as the index's words it begins, each exact
    (FTS5 merges every row of a long prefix before the first one otherwise): the pages must be
    the prefix's matches, newest first, whatever the word: one word or several beginning with it,
    upper case, none, more than EXPANDED_TERMS (then the prefix itself), a short word (the prefix
    indexes), an accented one (left a prefix), and with other words. Both databases."""
    monkeypatch.setattr(service, "EXPANDED_TERMS", 3)
    engagement = factories.engagement(with_contact=False)
    texts = ["synthetic letter", "synthetics", "synthesis note", "a Synthetic reply", "letter only",
             "synthétique", "synthx1 synthx2", "synthx3 synthx4 letter", "nothing here", "SYNTHETIC LETTERS"]
    rows = []
    for n in range(40):
        rows.append(Interaction(engagement=engagement, kind="email", direction="outbound",
                                occurred_on=dt.date(2026, 1, 1) + dt.timedelta(days=n),
                                subject=f"Item {n}", summary=texts[n % len(texts)], participants=""))
    db.session.add_all(rows)
    db.session.commit()

    def words(text):
        return [w.lower() for w in re.findall(r"\w+", text)]

    for typed in ("synthetic", "Synthetic", "synthe", "synthx", "synth", "syn", "lett", "synthetic letter",
                  "synthese", "nowhere", "synthétique", "letters synthetic"):
        wanted = [t.lower() for t in service.parse(typed).terms]
        expected = sorted((r.id for r in rows
                           if all(any(w.startswith(t) for w in words(r.summary)) for t in wanted)), reverse=True)
        if typed == "synthe" and not postgresql():  # SQLite folds the accent: "synthétique" begins with "synthe"
            expected = sorted(set(expected) | {r.id for r in rows if r.summary == "synthétique"}, reverse=True)
        for limit, offset in ((6, 0), (6, 4), (26, 0), (3, 9)):
            sql, params = service._newest_match("search_interactions", "interactions", service.PG_INTERACTION,
                                                service.parse(typed), limit, offset)
            found = db.session.execute(sa.text(sql), params).scalars().all()
            assert found == expected[offset:offset + limit], (typed, limit, offset, found)
    if postgresql():
        return
    # What the statement looks up on SQLite: the words of the index, each exact.
    for typed, match in (("synthetic", '("synthetic" OR "synthetics")'), ("SYNTHX", '"synthx"*'),
                         ("synthq", '"synthq"'), ("syn", '"syn"*'), ("synthétique", '"synthétique"*'),
                         ("synthetic lett", '("synthetic" OR "synthetics") AND ("letter" OR "letters")')):
        expression, params = service.fts5_newest_match("search_interactions_terms", service.parse(typed).terms)
        shown = db.session.execute(sa.text(f"SELECT {expression}"), params).scalar()
        if shown.startswith("("):  # the OR's order is the index's: compare the words
            shown = " AND ".join("(" + " OR ".join(sorted(part.strip("()").split(" OR "))) + ")"
                                 for part in shown.split(" AND "))
        assert shown == match, typed


# --- flask search check / rebuild -----------------------------------------------------------------------

def test_search_check_and_rebuild_on_the_test_database(runner, hikvision):
    result = runner.invoke(args=["search", "check"])
    assert result.exit_code == 0 and "all present and current" in result.output, result.output
    result = runner.invoke(args=["search", "rebuild"])
    assert result.exit_code == 0 and "Rebuilt 5 search index(es)" in result.output, result.output
    assert [h.id for h in service.search("CNE100000PM8").groups[0].hits] == [hikvision["company"].id]


def test_search_check_finds_a_lost_trigger_and_rebuild_catches_up(make_app, tmp_path, database_url):
    """What a SQLite batch migration that rebuilt `companies` would leave: no update trigger, an
    index that no longer matches the rows. `check` says so; `rebuild` brings the words back."""
    from flask_migrate import upgrade

    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's triggers, on a file of its own")
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'check.sqlite'}")
    with app.app_context():
        upgrade()
        runner = app.test_cli_runner()
        company = factories.company(name="Hangzhou Hikvision Digital Technology Co., Ltd.")
        db.session.commit()
        with db.engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER search_companies_au")
            conn.exec_driver_sql("DROP TABLE search_interactions_terms")
            conn.exec_driver_sql(f"UPDATE companies SET name = 'Renamed Camera Maker' WHERE id = {company.id}")
        result = runner.invoke(args=["search", "check"])
        assert result.exit_code == 1
        assert "trigger search_companies_au (update on companies) is missing" in result.output
        assert "search_companies does not match the rows of companies" in result.output
        assert "word list search_interactions_terms (of search_interactions) is missing" in result.output
        result = runner.invoke(args=["search", "rebuild"])
        assert result.exit_code == 0, result.output
        assert [h.id for h in service.search("Renamed Camera").groups[0].hits] == [company.id]
        result = runner.invoke(args=["search", "check"])
        assert result.exit_code == 1 and "does not match" not in result.output  # the trigger is still to make
        assert "search_interactions_terms" not in result.output  # made again by rebuild
        db.session.remove()
        db.engine.dispose()


def test_a_result_whose_page_the_role_cannot_open_has_no_link(client, login_as, hikvision, monkeypatch):
    """Were contacts to lead to their edit page (analysts only), a viewer would see them unlinked."""
    from engage.search import routes

    monkeypatch.setitem(routes.TARGETS, "contacts", (
        "companies.edit_contact", lambda hit: {"company_id": hit.company_id, "contact_id": hit.id}, ""))
    login_as("viewer")
    page = results(client, "Jordan")
    assert links(page, "contacts") == []
    assert '<p class="search-title">Jordan Liang</p>' in section(page, "contacts")
    client.post("/auth/logout")
    login_as("analyst")
    contact = hikvision["contact"]
    assert links(results(client, "Jordan"), "contacts") == [f"/companies/{contact.company_id}/contacts/{contact.id}"]
