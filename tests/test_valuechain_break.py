"""The value chain's web side under hostile, careless and faulty use (issue 16, breaking it on purpose):
tampered tokens, closed engagements, invisible characters, cells cut short, files that are not what
they say. Each refusal says what and where, and nothing partial is written.

The map is the solar maker's supplier list (tests/fixtures/valuechain, see its README), as in
tests/test_valuechain_import_web.py and tests/test_valuechain_tab.py.
"""

from __future__ import annotations

import re

import sqlalchemy as sa

from engage.extensions import db
from tests import factories
from tests.test_valuechain import MAP, counts, maker
from tests.test_valuechain_import_web import HEADER, confirm, confirm_data, stashed_files, upload
from tests.test_valuechain_tab import add_url, mapped, status_post, status_url, tab_url  # noqa: F401 - a fixture


def flashes(response) -> str:
    return " ".join(re.findall(r'<p class="flash[^"]*">(.*?)</p>', response.get_data(as_text=True), re.S))


# --- the confirmation token ------------------------------------------------------------------


def test_a_token_of_another_companys_import_tells_nothing_of_it_and_imports_nothing(client, login_as):
    ours, theirs = maker(), factories.company("Other Glass Holdings (fictional)")
    db.session.commit()
    login_as("analyst")
    page = upload(client, theirs.id, MAP).get_data(as_text=True)
    token, form = confirm_data(page)
    tampered = client.post(f"/value-chain/companies/{ours.id}/import/{token}", data=form, follow_redirects=True)
    assert "That import is no longer waiting; upload the map again." in flashes(tampered)
    assert counts()[0] == 0
    assert "Map 1 of Other Glass" in flashes(confirm(client, theirs.id, page, follow_redirects=True))
    # once it is done, the token under our company's URL says nothing of their import
    tampered = client.post(f"/value-chain/companies/{ours.id}/import/{token}", data=form, follow_redirects=True)
    text = flashes(tampered)
    assert "Other Glass" not in text and "confirmed already" not in text
    assert "That import is no longer waiting; upload the map again." in text
    assert counts()[0] == 1
