"""PDF and DOCX: bounded input, a hard render budget, a cache per letter version."""

import datetime as dt
import io
import re
import threading
import time
import zipfile
from decimal import Decimal

import pytest
import sqlalchemy as sa
from pypdf import PdfReader

from engage import bounded, clock
from engage.extensions import db
from engage.letters import service
from engage.models import Campaign, Investor, Letter, LetterTemplate
from tests import factories
from tests.conftest import login

HUGE_BODY = "a\n" * 49999  # under the 100,000-character cap; took 131 s to render as PDF


@pytest.fixture(autouse=True)
def cache_dir(app, tmp_path):
    """Each test starts with an empty cache of its own."""
    previous = app.config["DOCUMENT_CACHE_DIR"]
    app.config["DOCUMENT_CACHE_DIR"] = str(tmp_path / "cache")
    yield tmp_path / "cache"
    app.config["DOCUMENT_CACHE_DIR"] = previous


@pytest.fixture()
def renders(monkeypatch):
    """How many worker processes were started to render (a spy around the real function)."""
    started = []
    real = bounded.run

    def counting(func, *args, **kwargs):
        if func.__module__ == "engage.letters.documents":
            started.append(func)
        return real(func, *args, **kwargs)

    monkeypatch.setattr(bounded, "run", counting)
    return started


@pytest.fixture()
def seeded(runner):
    assert runner.invoke(args=["seed"]).exit_code == 0
    return {t.kind: t for t in db.session.scalars(sa.select(LetterTemplate))}


@pytest.fixture()
def letter(seeded, make_user):
    with clock.frozen(dt.datetime(2026, 6, 15, 9, 0)):
        campaign = db.session.scalar(sa.select(Campaign).where(Campaign.slug == "xuar"))
        engagement = factories.engagement(company=factories.company("Document Co"), campaign=campaign,
                                          opened_on=dt.date(2026, 3, 1))
        item = service.generate(engagement, seeded["initial"], make_user("analyst"))
        db.session.commit()
    return item


def _cached(folder):
    return sorted(p.name for p in folder.glob("*") if not p.name.endswith(".lock")) if folder.exists() else []


def test_a_huge_draft_is_refused_at_once_with_a_message_and_nothing_rendered(client, login_as, letter, renders):
    """A draft stored before the cap (or by another path): a viewer opening it costs nothing."""
    letter.body = HUGE_BODY
    db.session.commit()
    login_as("viewer")
    for fmt in ("pdf", "docx"):
        response = client.get(f"/letters/{letter.id}.{fmt}")
        page = response.get_data(as_text=True)
        assert response.status_code == 422 and response.mimetype == "text/html"
        assert f"No {fmt.upper()}: The letter has 50,002 lines (50,000 of text, 2 signatories)" in page
        assert "a letter may have at most 1,000" in page
    assert renders == []


def test_saving_a_huge_draft_is_refused_saying_what_to_shorten(client, login_as, letter):
    login_as("analyst")
    body = letter.body
    response = client.post(f"/letters/{letter.id}/edit", data={"subject": letter.subject, "body": HUGE_BODY})
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and "a letter may have at most 1,000" in page and "Shorten the text" in page
    db.session.expire_all()
    assert db.session.get(Letter, letter.id).body == body


def test_generation_refuses_a_letter_too_long_to_render(client, login_as, seeded):
    login_as("analyst")
    template = LetterTemplate(slug="long", name="Long", kind="other", subject="Hi",
                              body="{% for i in range(1500) %}line {{ i }}\n{% endfor %}")
    db.session.add(template)
    engagement = factories.engagement(company=factories.company("Long Co"))
    response = client.post(f"/letters/generate/{engagement.id}", data={"template_id": template.id})
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "No letter generated: Long Co: The letter has 1,501 lines" in page and "Shorten the template" in page
    assert db.session.scalar(sa.select(sa.func.count(Letter.id))) == 0


def test_second_download_is_served_from_the_cache(client, login_as, letter, renders, cache_dir):
    login_as("viewer")
    first = client.get(f"/letters/{letter.id}.pdf")
    assert first.status_code == 200 and len(renders) == 1
    [name] = _cached(cache_dir)
    assert name.startswith(f"{letter.id}-") and name.endswith(".pdf")
    stat = (cache_dir / name).stat()
    second = client.get(f"/letters/{letter.id}.pdf")
    assert second.data == first.data and len(renders) == 1  # no second render
    assert (cache_dir / name).stat().st_mtime_ns == stat.st_mtime_ns
    assert "Document Co" in PdfReader(io.BytesIO(second.data)).pages[0].extract_text()
    docx = client.get(f"/letters/{letter.id}.docx")
    assert docx.status_code == 200 and len(renders) == 2
    assert client.get(f"/letters/{letter.id}.docx").data == docx.data and len(renders) == 2
    assert not list(cache_dir.glob(".tmp-*"))  # written atomically, nothing left behind


def test_editing_a_draft_removes_its_old_cache_files(client, login_as, letter, cache_dir):
    login_as("analyst")
    client.get(f"/letters/{letter.id}.pdf")
    client.get(f"/letters/{letter.id}.docx")
    old = _cached(cache_dir)
    assert len(old) == 2
    response = client.post(f"/letters/{letter.id}/edit", data={"subject": letter.subject,
                                                               "body": "Dear board,\n\nA new text."})
    assert response.status_code == 302 and _cached(cache_dir) == []
    pdf = client.get(f"/letters/{letter.id}.pdf")
    assert "A new text." in PdfReader(io.BytesIO(pdf.data)).pages[0].extract_text()
    [new] = _cached(cache_dir)
    assert new not in old


def test_a_viewer_cannot_make_the_server_spend_more_than_the_budget(client, login_as, letter, renders, app):
    """Within the line cap but slower than the (here tight) budget: killed, refused, remembered."""
    letter.body = "a\n" * 990
    db.session.commit()
    login_as("viewer")
    app.config["DOCUMENT_RENDER_SECONDS"] = 0.3
    try:
        started = time.monotonic()
        response = client.get(f"/letters/{letter.id}.pdf")
        assert time.monotonic() - started < 0.3 + 2
        assert response.status_code == 422
        assert "took longer than 0.3 s, the limit; shorten the letter" in response.get_data(as_text=True)
        started = time.monotonic()
        again = client.get(f"/letters/{letter.id}.pdf")
        assert again.status_code == 422 and "took longer than 0.3 s" in again.get_data(as_text=True)
        assert time.monotonic() - started < 1 and len(renders) == 1  # the refusal is remembered
    finally:
        app.config["DOCUMENT_RENDER_SECONDS"] = 20.0


def test_the_memory_budget_holds_for_documents(client, login_as, letter, app):
    letter.body = ("Many words on a line " * 5 + "\n") * 900  # 95,400 characters
    db.session.commit()
    login_as("viewer")
    app.config["DOCUMENT_RENDER_MEMORY_MB"] = 16
    try:
        response = client.get(f"/letters/{letter.id}.pdf")
    finally:
        app.config["DOCUMENT_RENDER_MEMORY_MB"] = 512
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    # Python's MemoryError, or a C library aborting on a failed allocation (GLib): both say so.
    assert re.search(r"No PDF: Rendering this letter as PDF (needs|stopped \(SIG\w+\), most likely because it needs) "
                     r"more than 16 MB of memory, the limit", page), page[page.find("flash-error"):][:300]


def test_simultaneous_downloads_of_one_letter_render_it_once(app, letter, make_user, renders):
    viewer = make_user("viewer")
    clients = [app.test_client() for _ in range(3)]
    for c in clients:
        assert login(c, viewer.email).status_code == 302
    results, url = [], f"/letters/{letter.id}.pdf"
    threads = [threading.Thread(target=lambda c=c: results.append(c.get(url))) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [r.status_code for r in results] == [200, 200, 200]
    assert len({r.data for r in results}) == 1 and len(renders) == 1


def test_batch_prepare_and_zip_report_a_letter_that_cannot_be_made(client, login_as, seeded, letter, cache_dir):
    login_as("analyst")
    campaign = db.session.scalar(sa.select(Campaign).where(Campaign.slug == "xuar"))
    engagements = [factories.engagement(campaign=campaign, opened_on=dt.date(2026, 3, 1)) for _ in range(2)]
    response = client.post("/letters/bulk", data={"template_id": seeded["initial"].id, "scope": "selected",
                                                  "engagement_ids": [str(e.id) for e in engagements]})
    batch_id = int(response.headers["Location"].rstrip("/").split("/")[-1])
    [first, second] = db.session.scalars(sa.select(Letter).where(Letter.batch_id == batch_id).order_by(Letter.id))
    second.body = HUGE_BODY
    db.session.commit()
    progress = client.post(f"/letters/batches/{batch_id}/prepare").get_json()
    assert progress["done"] == 1 and progress["total"] == 2 and progress["zip"] is None
    assert {r["letter"] for r in progress["refused"]} == {second.id}
    assert "The letter has 50,002 lines" in progress["refused"][0]["message"]
    assert any(name.startswith(f"{first.id}-") for name in _cached(cache_dir))
    refused = client.get(f"/letters/batches/{batch_id}.zip")
    page = refused.get_data(as_text=True)
    assert refused.status_code == 422 and f"letter {second.id} to" in page and "50,002 lines" in page
    second.body = "Short again."
    db.session.commit()
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/letters/batches/{batch_id}.zip").data))
    assert len(archive.namelist()) == 4


def test_non_finite_aum_frozen_in_a_letter_is_refused_not_printed(client, login_as, letter):
    letter.signatories = [{"name": "Broken Fund", "aum_usd": "Infinity"}, {"name": "NaN Fund", "aum_usd": "NaN"}]
    db.session.commit()
    login_as("viewer")
    page = client.get(f"/letters/{letter.id}")
    assert page.status_code == 200 and "Infinity trillion" not in page.get_data(as_text=True)
    for fmt in ("pdf", "docx"):
        response = client.get(f"/letters/{letter.id}.{fmt}")
        text = response.get_data(as_text=True)
        assert response.status_code == 422 and "The AUM of Broken Fund in this letter is not a finite number" in text


def test_non_finite_aum_of_a_signatory_is_a_render_error(client, login_as, seeded):
    """Generation and preview refuse, naming the investor (where the database can hold the value)."""
    from engage.letters.rendering import LetterTemplateError, letter_context

    campaign = db.session.scalar(sa.select(Campaign).where(Campaign.slug == "xuar"))
    engagement = factories.engagement(company=factories.company("Money Co"), campaign=campaign,
                                      opened_on=dt.date(2026, 3, 1))
    investor = Investor(name="Overflow Pension", aum_usd=Decimal("Infinity"))
    with db.session.no_autoflush:
        campaign.signatories.append(investor)
        with pytest.raises(LetterTemplateError, match="the AUM of Overflow Pension is not a finite number"):
            letter_context(engagement, None)
    if db.engine.dialect.name == "postgresql":
        db.session.rollback()  # numeric(20, 2) cannot hold it there; the context check above is what holds
        return
    db.session.commit()
    login_as("admin")
    response = client.post(f"/letters/generate/{engagement.id}", data={"template_id": seeded["initial"].id})
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "No letter generated: Money Co: the AUM of Overflow Pension is not a finite number" in page
    preview = client.post("/letters/templates/preview", data={"subject": "x", "body": "{{ signatories_aum }}",
                                                            "preview_engagement": str(engagement.id)}).get_json()
    assert "the AUM of Overflow Pension is not a finite number" in preview["error"]
    assert "not a finite amount" in client.get("/admin/investors").get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count(Letter.id))) == 0


def test_a_batch_being_prepared_elsewhere_is_not_rendered_twice(client, login_as, seeded, letter, renders):
    from engage.letters import documents

    viewer = login_as("viewer")
    batch = service.generate_many([letter.engagement], seeded["call_to_action"], viewer)
    db.session.commit()
    with documents.lock(f"batch-{batch.id}"):  # another request (tab, worker) is preparing it
        progress = client.post(f"/letters/batches/{batch.id}/prepare").get_json()
    assert progress["busy"] is True and progress["done"] == 0 and renders == []
    progress = client.post(f"/letters/batches/{batch.id}/prepare").get_json()
    assert progress["busy"] is False and progress["done"] == progress["total"] == 1 and len(renders) == 1


def test_an_unusable_cache_folder_still_serves_documents(client, login_as, letter, app, tmp_path):
    """A faulty environment: the cache folder cannot be created; the PDF is rendered, not cached."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    app.config["DOCUMENT_CACHE_DIR"] = str(blocker / "cache")
    login_as("viewer")
    response = client.get(f"/letters/{letter.id}.pdf")
    assert response.status_code == 200 and response.data.startswith(b"%PDF")
