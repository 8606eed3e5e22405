"""Letter documents at their edges: non-Latin company names in download headers, an unusable
cache folder during batch preparation, long unbroken words in the PDF."""

import datetime as dt
import io

import pytest
import sqlalchemy as sa

from engage import clock
from engage.extensions import db
from engage.letters import service
from engage.models import Campaign, LetterTemplate
from tests import factories


@pytest.fixture(autouse=True)
def cache_dir(app, tmp_path):
    previous = app.config["DOCUMENT_CACHE_DIR"]
    app.config["DOCUMENT_CACHE_DIR"] = str(tmp_path / "cache")
    yield tmp_path / "cache"
    app.config["DOCUMENT_CACHE_DIR"] = previous


@pytest.fixture()
def seeded(runner):
    assert runner.invoke(args=["seed"]).exit_code == 0
    return {t.kind: t for t in db.session.scalars(sa.select(LetterTemplate))}


def _letter(seeded, make_user, company_name):
    with clock.frozen(dt.datetime(2026, 6, 15, 9, 0)):
        campaign = db.session.scalar(sa.select(Campaign).where(Campaign.slug == "xuar"))
        engagement = factories.engagement(company=factories.company(company_name), campaign=campaign,
                                          opened_on=dt.date(2026, 3, 1))
        item = service.generate(engagement, seeded["initial"], make_user("analyst"))
        db.session.commit()
    return item


@pytest.mark.parametrize("name", ["海康威视数字技术", "شركة الاختبار"])
@pytest.mark.parametrize("fmt", ["pdf", "docx"])
def test_letter_download_header_is_valid_for_a_non_latin_company_name(client, login_as, seeded, make_user, name, fmt):
    """Under gunicorn, GET /letters/<id>.pdf for a company named in CJK/Arabic/emoji is a 500
    (InvalidResponseHeader: Content-Disposition): file_stem() keeps every isalnum() character, so the
    header is not latin-1. WSGI headers must be latin-1; use an ASCII fallback plus filename*=UTF-8''."""
    letter = _letter(seeded, make_user, name)
    login_as("viewer")
    response = client.get(f"/letters/{letter.id}.{fmt}")
    assert response.status_code == 200
    header = response.headers["Content-Disposition"]
    header.encode("latin-1")  # what PEP 3333 servers (gunicorn) require; raises today


def test_batch_preparation_finishes_when_the_cache_folder_is_unusable(app, client, login_as, seeded, make_user,
                                                                     tmp_path):
    """An unusable cache (read-only disk; here a path under a regular file) leaves documents working
    one by one, but /letters/batches/<id>/prepare renders the chunk, cannot cache it and reports done=0
    every time; the batch page's script calls prepare again at once while done < total (app.js), so an
    open batch page re-renders the same letters forever and the ZIP link never appears.
    Expected: progress that reaches the total (or a response that tells the page to stop and offer the ZIP)."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    app.config["DOCUMENT_CACHE_DIR"] = str(blocker / "cache")
    first = _letter(seeded, make_user, "Batch One Co")
    with clock.frozen(dt.datetime(2026, 6, 15, 9, 0)):
        campaign = db.session.scalar(sa.select(Campaign).where(Campaign.slug == "xuar"))
        engagement = factories.engagement(company=factories.company("Batch Two Co"), campaign=campaign,
                                          opened_on=dt.date(2026, 3, 1))
        batch = service.generate_many([first.engagement, engagement], seeded["initial"], make_user("analyst"))
        db.session.commit()
    login_as("viewer")
    results = [client.post(f"/letters/batches/{batch.id}/prepare").get_json() for _ in range(2)]
    assert all(r is not None for r in results)
    last = results[-1]
    assert last["done"] == last["total"] or last.get("zip"), results


def test_a_long_unbroken_word_wraps_instead_of_being_cut_off(client, login_as, seeded, make_user):
    """A long link or token in the body used to run off the page and be clipped silently."""
    from pypdf import PdfReader

    letter = _letter(seeded, make_user, "Long Word Co")
    token = "https://example.org/" + "".join(f"segment{n:03d}" for n in range(40))  # ~420 characters, no break
    letter.body = f"See {token} for the details."
    db.session.commit()
    login_as("viewer")
    response = client.get(f"/letters/{letter.id}.pdf")
    assert response.status_code == 200
    raw = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(response.data)).pages)
    assert token in "".join(raw.split())  # all of it is there...
    assert sum("segment" in line for line in raw.splitlines()) >= 3  # ...on several lines within the page
