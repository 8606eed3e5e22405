"""The list pages as a newcomer reads them (issue 15, walked in a browser): refusals that name the
upload form's fields, lists named for people, a way from the lists to the review and the
screening, and the reason a holding is flagged shown on the screening page.

Entries are those of the public notices, as in tests/test_screening.py (84 FR 54002, 9 Oct 2019;
86 FR 33119, 24 Jun 2021; the CBP WRO of 24 Jun 2021 on Hoshine and its subsidiaries).
"""

from __future__ import annotations

import html
import re
from decimal import Decimal

import sqlalchemy as sa

from engage.extensions import db
from engage.models import Fund, Holding, ListVersion, MatchCandidate, RiskFlag
from tests import factories
from tests.test_lists_import import FIXTURES, confirm_data, upload
from tests.test_screening import AS_OF, DAQO, HIKVISION, HOSHINE_WRO, candidate, run, version


def flashes(page: str) -> list[str]:
    """The flashed messages of a page, as read."""
    return [html.unescape(m) for m in re.findall(r'<p class="flash flash-\w+">(.*?)</p>', page, re.S)]


def test_the_upload_form_names_its_fields_not_command_line_options(client, login_as):
    login_as("analyst")
    form = client.get("/lists/import").get_data(as_text=True)
    assert ">US Consolidated Screening List, CSV export (csl-csv)</option>" in form
    assert ">DHS UFLPA Entity List page, saved as HTML (uflpa-html)</option>" in form

    unknown = upload(client, FIXTURES / "team_watchlist.csv")
    text = unknown.get_data(as_text=True)
    assert unknown.status_code == 422 and "the format cannot be told from the columns" in text
    assert "choose a Format" in text and "a Column mapping" in text and "--format" not in text

    unnamed = upload(client, FIXTURES / "team_watchlist.csv", mapping="name=Company,aliases=Other names")
    text = unnamed.get_data(as_text=True)
    assert unnamed.status_code == 422 and "a team&#39;s own CSV needs a list name (List name)" in text
    assert "--list" not in text and "--mapping" not in text
    # the hint and the error are read out with the field, not only shown next to it
    assert re.search(r'<input aria-describedby="list_name-hint list_name-error" aria-invalid="true" id="list_name"', text)
    assert '<p class="hint" id="list_name-hint">A team&#39;s own CSV: the name of the list.' in text
    assert re.search(r'<input aria-describedby="retrieved_on-hint" id="retrieved_on"', form)
    assert db.session.scalar(sa.select(sa.func.count(ListVersion.id))) == 0


def test_an_older_file_is_confirmed_with_the_box_the_page_shows(client, login_as):
    login_as("analyst")
    page = upload(client, FIXTURES / "csl_2021-08-01.csv", retrieved_on="2021-08-01").get_data(as_text=True)
    token, form = confirm_data(page)
    assert client.post(f"/lists/import/{token}", data=form).status_code == 302
    page = upload(client, FIXTURES / "csl_2021-07-01.csv", retrieved_on="2021-07-01").get_data(as_text=True)
    token, form = confirm_data(page)
    refused = client.post(f"/lists/import/{token}", data=form)
    text = refused.get_data(as_text=True)
    assert refused.status_code == 422 and "tick “make it the latest anyway” below" in text and "--older" not in text
    assert "make it the latest anyway</label>" in text  # the box it names is on the page
    assert db.session.scalar(sa.select(sa.func.count(ListVersion.id))) == 1


def test_the_lists_page_leads_to_the_review_and_the_screening(client, login_as):
    login_as("viewer")
    empty = client.get("/lists/").get_data(as_text=True)
    assert "No list has been loaded yet. An analyst loads them." in empty
    assert 'href="/lists/review"' in empty and 'href="/holdings/screening"' in empty
    el = version("us_entity_list", DAQO)
    run(candidate(factories.company("Daqo New Energy Corp."), el, "daqo", 80))
    page = client.get("/lists/").get_data(as_text=True)
    assert re.search(r'<a href="/lists/review"><strong>1 possible match to review</strong></a>', page)
    detail = client.get(f"/lists/versions/{el.id}").get_data(as_text=True)
    assert 'href="/holdings/screening"' in detail and 'href="/lists/review"' in detail


def test_decisions_name_the_list_and_say_only_what_was_flagged(client, login_as):
    el = version("us_entity_list", DAQO)
    lookalike = factories.company("Daqo New Energy Corp.")
    [question] = run(candidate(lookalike, el, "daqo", 80, "close name")).queued
    login_as("analyst")
    queue = client.get("/lists/review").get_data(as_text=True)
    assert "A score of 90 or more flags without review" in queue and "Score (of 100)" in queue
    accepted = client.post(f"/lists/review/{question.id}/decide", data={"accept": "y"}, follow_redirects=True)
    said = flashes(accepted.get_data(as_text=True))
    assert said == ["Accepted: Daqo New Energy Corp. flagged on US Entity List. "
                    "It shows on the screening page and on the company's page."]
    stale = client.post(f"/lists/review/{question.id}/decide", data={"reject": "y"}, follow_redirects=True)
    [told] = flashes(stale.get_data(as_text=True))
    assert "Daqo New Energy Corp. ↔ Xinjiang Daqo New Energy Co. Ltd. (US Entity List) was already accepted" in told
    decided = client.get("/lists/review/decided").get_data(as_text=True)
    assert '<td data-label="List">US Entity List</td>' in decided and "us_entity_list" not in decided


def test_accepting_an_entry_that_reaches_subsidiaries_says_how_many(client, login_as):
    wro = version("cbp_wro", HOSHINE_WRO)
    parent = factories.company("Hoshine Silicon Ind.")
    factories.company("Hoshine Silicon (Jiaxing) Co., Ltd.", parent=parent)
    [question] = run(candidate(parent, wro, "hoshine", 80, "close name")).queued
    login_as("analyst")
    accepted = client.post(f"/lists/review/{question.id}/decide", data={"accept": "y"}, follow_redirects=True)
    assert flashes(accepted.get_data(as_text=True)) == [
        "Accepted: Hoshine Silicon Ind. flagged on CBP Withhold Release Order; 1 subsidiary flagged as linked. "
        "It shows on the screening page and on the company's page."]
    assert db.session.scalar(sa.select(sa.func.count(RiskFlag.id))) == 2


def test_the_screening_page_shows_why_a_holding_is_flagged(client, login_as):
    el = version("us_entity_list", HIKVISION)
    hikvision = factories.company("Hangzhou Hikvision Digital Technology Co., Ltd.")
    fund = Fund(name="Surveillance Fund")
    db.session.add(fund)
    db.session.add(Holding(fund=fund, company=hikvision, as_of=AS_OF, market_value=Decimal(5_000_000)))
    db.session.commit()
    reason = 'name "Hangzhou Hikvision Digital Technology Co., Ltd." = entry name "Hangzhou Hikvision Digital Technology Co. Ltd."'
    [flag] = run(candidate(hikvision, el, "hikvision", 97, reason)).created
    assert flag.match_reason == reason and db.session.scalar(sa.select(sa.func.count(MatchCandidate.id))) == 0
    login_as("viewer")
    page = client.get("/holdings/screening").get_data(as_text=True)
    section = page[page.index("<h2>Surveillance Fund</h2>"):]
    assert "84 FR 54002 (BIS, Addition of Certain Entities to the Entity List), 9 Oct 2019</span>" in section
    assert ("Matched: name &#34;Hangzhou Hikvision Digital Technology Co., Ltd.&#34; = entry name "
            "&#34;Hangzhou Hikvision Digital Technology Co. Ltd.&#34;</span>") in section


def test_the_screening_page_without_lists_says_where_to_load_them(client, login_as):
    login_as("analyst")
    page = client.get("/holdings/screening").get_data(as_text=True)
    assert 'Lists loaded: none yet — <a href="/lists/import">import a list file</a>.' in page
    assert "flask lists import" not in page
    version("us_entity_list", DAQO)
    page = client.get("/holdings/screening").get_data(as_text=True)
    assert '(<a href="/lists/">the lists and their versions</a>)' in page


def test_each_lists_count_of_versions_is_a_link_that_says_what_it_opens(client, login_as):
    version("us_entity_list", DAQO)
    version("us_entity_list", DAQO, HIKVISION)
    login_as("viewer")
    page = client.get("/lists/").get_data(as_text=True)
    assert ('<a href="/lists/versions?list=us_entity_list">2<span class="visually-hidden"> versions of US Entity List'
            '</span></a>') in page
