"""The tracker import on the web (engage/tracker/routes.py): upload -> the mapping step with its preview
-> confirm once; viewers are refused; the team's words are remembered for the next upload."""

from __future__ import annotations

import html
import io
import re

import sqlalchemy as sa

from engage.extensions import db
from engage.models import Engagement, TrackerValueMapping
from tests.conftest import csrf_token_from
from tests import test_tracker
from tests.test_tracker import counts
from tests.tracker_files import ESCALATION_WORDS, STATUS_WORDS, messy_tracker


#: The seed data, a second campaign and the tracker's owners (the fixture of tests/test_tracker.py).
team = test_tracker.team


def upload(client, data: bytes, name: str = "tracker.xlsx", **fields):
    form = {"file": (io.BytesIO(data), name), "campaign_id": "0", "date_order": "day", **fields}
    return client.post("/tracker/import", data=form, content_type="multipart/form-data")


def csrf(page: str) -> str:
    """The page's CSRF token (the test settings turn CSRF off: then there is none to send)."""
    return csrf_token_from(page) if 'name="csrf_token"' in page else ""


def mapping_form(page: str, answers: dict[str, dict[str, str]]) -> dict:
    """The mapping step's form as shown, with the team's words answered from `answers`."""
    form = {"csrf_token": csrf(page), "columns": "0", "campaign_id": "0", "date_order": "day"}
    for kind in ("status", "escalation"):
        words = re.findall(rf'name="{kind}-word-(\d+)" value="([^"]*)"', page)
        form[f"{kind}-count"] = str(len(words))
        for index, word in words:
            word = html.unescape(word)
            form[f"{kind}-word-{index}"] = word
            form[f"{kind}-{index}"] = answers[kind].get(word, "")
    return form


def test_viewers_cannot_import_a_tracker(client, login_as, team):
    login_as("viewer")
    assert client.get("/tracker/import").status_code == 403
    data, _ = messy_tracker(rows=10)
    assert upload(client, data).status_code == 403
    assert client.post("/tracker/import/" + "a" * 32, data={}).status_code == 403
    assert client.post("/tracker/import/" + "a" * 32 + "/confirm", data={}).status_code == 403


def test_an_analyst_maps_the_words_previews_and_imports_once(client, login_as, team):
    login_as("analyst")
    page = client.get("/engagements").get_data(as_text=True)
    assert 'href="/tracker/import">Import a tracker</a>' in page
    data, expected = messy_tracker(rows=60)
    before = counts()
    sent = upload(client, data)
    assert sent.status_code == 302, sent.get_data(as_text=True)
    step = client.get(sent.headers["Location"])
    text = step.get_data(as_text=True)
    assert step.status_code == 200
    assert "Nothing is imported yet." in text and counts() == before
    assert "not mapped yet" in text and "This tracker cannot be imported yet: map the words above" in text
    assert "Letter sent" in text and "No reply \u2014 2nd letter" in text
    assert "“Someone Who Left”: no user with this email or name" in text

    answers = {"status": STATUS_WORDS, "escalation": {k: v for k, v in ESCALATION_WORDS.items() if k}}
    mapped = client.post(sent.headers["Location"], data=mapping_form(text, answers))
    assert mapped.status_code == 302, mapped.get_data(as_text=True)
    text = client.get(mapped.headers["Location"]).get_data(as_text=True)
    assert "not mapped yet" not in text
    assert f"{len(expected)} to import: {len(expected)} new engagement(s), 0 to update, 0 unchanged; 0 refused" in text
    assert counts() == before
    token = re.search(r'action="/tracker/import/([0-9a-f]{32})/confirm"', text).group(1)
    digest = re.search(r'name="preview" value="([0-9a-f]{64})"', text).group(1)
    done = client.post(f"/tracker/import/{token}/confirm", data={"csrf_token": csrf(text), "preview": digest})
    assert done.status_code == 302 and done.headers["Location"].endswith("/engagements")
    assert counts()["Engagement"] == before["Engagement"] + len(expected)
    again = client.post(f"/tracker/import/{token}/confirm", data={"csrf_token": csrf(text), "preview": digest},
                        follow_redirects=True)
    assert "This tracker was imported already, once" in again.get_data(as_text=True)
    assert counts()["Engagement"] == before["Engagement"] + len(expected)
    remembered = {(m.kind, m.label): m.target for m in db.session.scalars(sa.select(TrackerValueMapping))}
    assert remembered[("status", "Excluded")] == "closed:divested"

    # the same file again: every word known, nothing to write
    second = upload(client, data)
    text = client.get(second.headers["Location"]).get_data(as_text=True)
    assert "not mapped yet" not in text
    assert "0 to import" not in text and f"0 new engagement(s), 0 to update, {len(expected)} unchanged" in text


def test_a_stale_preview_is_not_imported(client, login_as, team):
    login_as("analyst")
    data = b"Company,Campaign,Status,Letter sent\nStale Fictional Co,Tech,Mapping requested,2024-03-04\n"
    sent = upload(client, data, "t.csv")
    text = client.get(sent.headers["Location"]).get_data(as_text=True)
    token = re.search(r'action="/tracker/import/([0-9a-f]{32})/confirm"', text).group(1)
    refused = client.post(f"/tracker/import/{token}/confirm", data={"csrf_token": csrf(text), "preview": "0" * 64},
                          follow_redirects=True)
    assert "Not imported: what the tracker would write changed since the preview" in refused.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Engagement)) == 0


def test_a_file_that_is_no_tracker_is_refused_on_the_upload_page(client, login_as, team):
    login_as("analyst")
    refused = upload(client, b"Colour,Size\nred,3\n", "t.csv")
    assert refused.status_code == 422
    assert "no header row naming the company" in refused.get_data(as_text=True)
    refused = upload(client, b"%PDF-1.4", "t.pdf")
    assert refused.status_code == 422 and "a .pdf file is not a tracker" in refused.get_data(as_text=True)


def test_two_previews_of_one_file_import_it_once(client, login_as, team):
    login_as("analyst")
    data = b"Company,Campaign,Status,Letter sent\nTwice Fictional Co,Tech,Mapping requested,2024-03-04\n"
    pages = []
    for _ in range(2):
        sent = upload(client, data, "t.csv")
        pages.append(client.get(sent.headers["Location"]).get_data(as_text=True))
    for text in pages:
        token = re.search(r'action="/tracker/import/([0-9a-f]{32})/confirm"', text).group(1)
        digest = re.search(r'name="preview" value="([0-9a-f]{64})"', text).group(1)
        last = client.post(f"/tracker/import/{token}/confirm", data={"csrf_token": csrf(text), "preview": digest},
                           follow_redirects=True)
    text = last.get_data(as_text=True)
    assert "Not imported: what the tracker would write changed since the preview" in text
    assert "0 new engagement(s), 0 to update, 1 unchanged" in text
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Engagement)) == 1
