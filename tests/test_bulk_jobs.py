"""Bulk work as background jobs run by a real worker (issue 20): a letter batch's documents and ZIP,
emailing a batch, a list import with its screening, a big monthly export from the Exports page.

The thresholds are lowered so that small data goes to the job worker (a real Huey consumer on an
SQLite queue file, or on PostgreSQL when the tests run on it: tests/test_background_jobs.py).
"""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from engage import background
from engage.extensions import db
from engage.letters import documents, service
from engage.models import (
    BackgroundJob,
    Campaign,
    ExportRun,
    Interaction,
    Letter,
    LetterTemplate,
    ListedEntity,
    ListVersion,
    OutboxEmail,
)
from tests import factories
from tests.test_background_jobs import no_worker, wait_for, worker  # noqa: F401 (fixtures)
from tests.test_exports import build_history

LISTS = Path(__file__).parent / "fixtures" / "lists"


@pytest.fixture()
def seeded(runner):
    assert runner.invoke(args=["seed"]).exit_code == 0
    campaign = db.session.scalar(sa.select(Campaign).where(Campaign.slug == "xuar"))
    campaign.sender_email = "stewardship@fund.example"
    db.session.commit()
    return {t.kind: t for t in db.session.scalars(sa.select(LetterTemplate))}, campaign


@pytest.fixture()
def by_job(app, monkeypatch, tmp_path):
    """Every batch, list import and export goes to the job worker; documents cached in a folder of the test's."""
    for name in ("LETTERS_JOB_LETTERS", "LISTS_JOB_ENTRIES", "EXPORT_JOB_ENGAGEMENTS"):
        monkeypatch.setitem(app.config, name, 1)
    monkeypatch.setitem(app.config, "JOBS_RETRY_SECONDS", 0)
    monkeypatch.setitem(app.config, "DOCUMENT_CACHE_DIR", str(tmp_path / "documents"))


def batch_of(seeded, user, n=3, emails=True):
    templates, campaign = seeded
    engagements = []
    for i in range(n):
        company = factories.company(f"Bulk Job {i} Ltd", address=f"{i} Job Street")
        if emails:
            factories.contact(company, f"IR {i}", email=f"ir{i}@bulk{i}.example")
        engagements.append(factories.engagement(campaign=campaign, company=company, opened_on=dt.date(2026, 3, 1)))
    batch = service.generate_many(engagements, templates["initial"], user)
    db.session.commit()
    return batch


def job_of(response) -> int:
    assert response.status_code in (302, 303), response.status_code
    assert response.location.startswith("/background/"), response.location
    return int(response.location.rsplit("/", 1)[1])


def form_token(page: str, action: str) -> str:
    form = page.split(f'action="{action}"')[1].split("</form>")[0]
    return re.search(r'name="form_token" type="hidden" value="([0-9a-f]{32})"', form).group(1)


def run_again(job_id: int) -> BackgroundJob:
    """The job run once more, as a retry or a duplicated message would (its row put back to queued)."""
    job = db.session.get(BackgroundJob, job_id)
    job.status = "queued"
    db.session.commit()
    background.requeue(job)
    return wait_for(job_id)


# --- letters: the batch's documents and ZIP ---------------------------------------------------

def test_a_big_batch_is_prepared_by_one_job_and_its_zip_served(client, login_as, worker, by_job, seeded):
    analyst = login_as("analyst")
    batch = batch_of(seeded, analyst)
    page = client.get(f"/letters/batches/{batch.id}").get_data(as_text=True)
    assert "Prepare the ZIP" in page and 'id="batch-download"' not in page  # no polling of renders in requests
    early = client.get(f"/letters/batches/{batch.id}.zip", follow_redirects=True)  # not rendered in the request
    assert "made by a background job" in early.get_data(as_text=True) and not list(documents.cache_dir().glob("*.pdf"))
    first = client.post(f"/letters/batches/{batch.id}/prepare-job", data={})
    second = client.post(f"/letters/batches/{batch.id}/prepare-job", data={})  # a double click, a second tab
    assert job_of(first) == job_of(second)
    job = wait_for(job_of(first))
    assert (job.status, job.attempts, job.error) == ("done", 1, None)
    assert job.result_url == f"/letters/batches/{batch.id}.zip"
    assert "3 letters of batch" in job.message and "the ZIP" in job.message
    shown = client.get(f"/background/{job.id}").get_data(as_text=True)
    assert "See the result" in shown and f"/letters/batches/{batch.id}.zip" in shown
    page = client.get(f"/letters/batches/{batch.id}").get_data(as_text=True)
    assert "Download all as ZIP" in page and "Prepare the ZIP" not in page
    answer = client.get(f"/letters/batches/{batch.id}.zip")
    assert answer.status_code == 200 and answer.mimetype == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(answer.data))
    names = archive.namelist()
    assert len(names) == 6 and sum(n.endswith(".pdf") for n in names) == 3
    # the job copied each cached document into the ZIP file (in chunks, not the ZIP built in memory)
    cached = {path.read_bytes() for path in documents.cache_dir().iterdir() if path.suffix in (".pdf", ".docx")}
    entries = {archive.read(name) for name in names}
    assert len(entries) == 6 and entries <= cached and archive.testzip() is None
    assert not list(documents.cache_dir().glob(".tmp-*"))  # nothing partial left beside it
    # run again (a retry): the same ZIP, nothing rendered twice
    zips = sorted(documents.cache_dir().glob(f"batch-{batch.id}-*.zip"))
    assert len(zips) == 1
    again = run_again(job.id)
    assert again.status == "done" and sorted(documents.cache_dir().glob(f"batch-{batch.id}-*.zip")) == zips
    # the ZIP deleted (the cache's clean-up): the page offers it again, and a new job makes it
    zips[0].unlink()
    assert "Prepare the ZIP" in client.get(f"/letters/batches/{batch.id}").get_data(as_text=True)
    remade = wait_for(job_of(client.post(f"/letters/batches/{batch.id}/prepare-job", data={})))
    assert remade.id != job.id and remade.status == "done" and zips[0].is_file()
    # a letter edited: the stored ZIP no longer matches, the page offers a new preparation
    letter = db.session.get(Letter, batch.letters[0].id)
    service.update_draft(letter, letter.subject, letter.body + "\nOne more line.")
    db.session.commit()
    page = client.get(f"/letters/batches/{batch.id}").get_data(as_text=True)
    assert "Prepare the ZIP" in page
    assert job_of(client.post(f"/letters/batches/{batch.id}/prepare-job", data={})) != job.id


def test_a_letter_that_cannot_be_rendered_fails_the_job_with_its_reason(app, client, login_as, worker, by_job,
                                                                         seeded, monkeypatch):
    analyst = login_as("analyst")
    batch = batch_of(seeded, analyst)
    letter = db.session.get(Letter, batch.letters[1].id)
    letter.body = "\n".join(f"Line {i}." for i in range(80))
    db.session.commit()
    monkeypatch.setitem(app.config, "LETTER_MAX_LINES", 60)
    job = wait_for(job_of(client.post(f"/letters/batches/{batch.id}/prepare-job", data={})))
    assert job.status == "failed" and job.attempts == 1  # refused: not retried
    assert job.error.startswith(f"1 letter cannot be made: letter {letter.id} to Bulk Job 1 Ltd (PDF and DOCX): "
                                "The letter has 82 lines"), job.error
    shown = client.get(f"/background/{job.id}").get_data(as_text=True)
    assert "Not done." in shown and "Bulk Job 1 Ltd" in shown
    page = client.get(f"/letters/batches/{batch.id}").get_data(as_text=True)
    assert "The last preparation failed" in page and "Bulk Job 1 Ltd" in page
    login_as("admin")
    assert "Bulk Job 1 Ltd" in client.get("/background/?status=failed").get_data(as_text=True)


# --- letters: emailing the batch --------------------------------------------------------------

def test_a_big_batch_is_emailed_by_a_job_once(client, login_as, worker, by_job, seeded):
    analyst = login_as("analyst")
    batch = batch_of(seeded, analyst)
    url = f"/letters/batches/{batch.id}/email"
    page = client.get(f"/letters/batches/{batch.id}").get_data(as_text=True)
    token = form_token(page, url)
    first = client.post(url, data={"form_token": token})
    again = client.post(url, data={"form_token": token})  # a double click: the same form
    other_tab = client.post(url, data={"form_token": form_token(page, url)[::-1]})  # another form, same drafts
    job_id = job_of(first)
    assert again.location == first.location and job_of(other_tab) == job_id
    job = wait_for(job_id)
    assert (job.status, job.error) == ("done", None)
    assert job.message == "3 letters queued by email and recorded as sent."
    assert job.result_url == f"/letters/batches/{batch.id}"
    assert db.session.scalar(sa.select(sa.func.count(OutboxEmail.id))) == 3
    assert db.session.scalar(sa.select(sa.func.count(Interaction.id))) == 3
    assert all(letter.is_sent for letter in db.session.scalars(sa.select(Letter).where(Letter.batch_id == batch.id)))
    # the job run again (a retry, a duplicated message): nothing emailed twice
    again = run_again(job_id)
    assert again.status == "done" and "0 letters queued" in again.message and "3 already sent before" in again.message
    assert db.session.scalar(sa.select(sa.func.count(OutboxEmail.id))) == 3
    assert "Email the drafts" not in client.get(f"/letters/batches/{batch.id}").get_data(as_text=True)


def test_viewers_cannot_email_a_batch_and_another_user_cannot_see_the_job(client, login_as, worker, by_job, seeded,
                                                                          make_user):
    analyst = make_user("analyst")
    batch = batch_of(seeded, analyst)
    login_as("viewer")
    assert client.post(f"/letters/batches/{batch.id}/email", data={"form_token": "a" * 32}).status_code == 403
    assert db.session.scalar(sa.select(sa.func.count(BackgroundJob.id))) == 0
    job = background.submit("letters_email", key="x", label="theirs", params={"batch_id": batch.id},
                            user_id=analyst.id)
    wait_for(job.id)
    assert client.get(f"/background/{job.id}").status_code == 404
    assert db.session.scalar(sa.select(sa.func.count(OutboxEmail.id))) == 3


# --- lists: the import and its screening ------------------------------------------------------

def upload_list(client, path: Path, **fields) -> tuple[str, dict, str]:
    form = {"file": (io.BytesIO(path.read_bytes()), path.name), **fields}
    page = client.post("/lists/import", data=form, content_type="multipart/form-data").get_data(as_text=True)
    token = re.search(r'action="/lists/import/([0-9a-f]{32})"', page).group(1)
    digest = re.search(r'name="preview" value="([0-9a-f]{64})"', page).group(1)
    return token, {"preview": digest}, page


def list_counts():
    return (db.session.scalar(sa.select(sa.func.count(ListVersion.id))),
            db.session.scalar(sa.select(sa.func.count(ListedEntity.id))))


def test_a_big_list_import_is_saved_and_screened_by_one_job(client, login_as, worker, by_job, runner):
    assert runner.invoke(args=["seed"]).exit_code == 0
    login_as("analyst")
    before = list_counts()
    token, form, _ = upload_list(client, LISTS / "csl_2021-07-01.csv", retrieved_on="2021-07-01")
    form["older"] = "y"  # the seed's version of the list was retrieved today
    first = client.post(f"/lists/import/{token}", data=form)
    second = client.post(f"/lists/import/{token}", data=form)  # a double click
    job_id = job_of(first)
    assert job_of(second) == job_id
    job = wait_for(job_id)
    assert (job.status, job.attempts, job.error) == ("done", 1, None), job.error
    version = db.session.scalar(sa.select(ListVersion).order_by(ListVersion.id.desc()).limit(1))
    assert list_counts() == (before[0] + 1, before[1] + 13)
    lines = job.message.splitlines()
    assert lines[0].startswith(f"Version {version.id}: US Entity List: 13 entries")
    assert re.fullmatch(r"Screened \d+ companies: \d+ new risk flag\(s\), \d+ ended, \d+ new possible match\(es\) "
                        r"to review\.", lines[1]), lines
    assert job.result_url == f"/lists/versions/{version.id}" and version.screened_at is not None
    assert version.imported_by_id == job.created_by_id
    # run again: saved once, screened once
    again = run_again(job_id)
    assert again.status == "done" and list_counts() == (before[0] + 1, before[1] + 13)
    assert "Screened" not in again.message and again.message.startswith(f"Version {version.id}")


def test_a_list_import_job_whose_preview_changed_fails_with_the_reason(client, login_as, worker, by_job, runner):
    login_as("analyst")
    token, form, _ = upload_list(client, LISTS / "csl_2021-07-01.csv", retrieved_on="2021-07-01")
    job = wait_for(job_of(client.post(f"/lists/import/{token}", data={"preview": "0" * 64})))
    assert job.status == "failed" and job.attempts == 1 and list_counts() == (0, 0)
    assert job.error.startswith("Not saved: ") and "preview" in job.error
    assert "Not done." in client.get(f"/background/{job.id}").get_data(as_text=True)
    # the right preview confirmed afterwards: the same job queued again, and saved
    job = wait_for(job_of(client.post(f"/lists/import/{token}", data=form)))
    assert job.status == "done" and list_counts() == (1, 13)


def test_small_list_imports_stay_in_the_request(client, login_as, no_worker):
    login_as("analyst")
    token, form, _ = upload_list(client, LISTS / "csl_2021-07-01.csv", retrieved_on="2021-07-01")
    answer = client.post(f"/lists/import/{token}", data=form, follow_redirects=True)
    assert "Screened" in answer.get_data(as_text=True) and list_counts() == (1, 13)
    assert db.session.scalar(sa.select(sa.func.count(BackgroundJob.id))) == 0


# --- exports: a big monthly export from the page ----------------------------------------------

@pytest.fixture()
def december(freeze_clock):
    return freeze_clock(dt.datetime(2026, 12, 10, 9, 0))


def test_a_big_export_is_stored_by_one_job_and_linked(client, login_as, worker, by_job, december):
    login_as("viewer")
    build_history()
    url = "/exports/monthly?month=2026-10&format=xlsx"
    first, second = client.get(url), client.get(url)  # a double click, a second tab
    job_id = job_of(first)
    assert job_of(second) == job_id
    job = wait_for(job_id)
    assert (job.status, job.error) == ("done", None)
    [run] = db.session.scalars(sa.select(ExportRun)).all()
    assert run.kind == f"job-{job.id}" and run.rows == 1 and run.filename == f"engage-status-2026-10-job{job.id}.xlsx"
    assert job.result_url == f"/exports/stored/{run.id}" and "1 engagements" in job.message
    stored = client.get(job.result_url)
    assert load_workbook(io.BytesIO(stored.data))["Engagements"].cell(row=3, column=1).value == "October Co"
    assert run.filename in client.get("/exports").get_data(as_text=True)
    again = run_again(job_id)
    assert again.status == "done" and db.session.scalar(sa.select(sa.func.count(ExportRun.id))) == 1


def test_an_export_below_the_threshold_is_downloaded_at_once(app, client, login_as, no_worker, december,
                                                             monkeypatch):
    login_as("viewer")
    build_history()
    monkeypatch.setitem(app.config, "EXPORT_JOB_ENGAGEMENTS", 2)
    answer = client.get("/exports/monthly?month=2026-10&format=csv")
    assert answer.status_code == 200 and "October Co" in answer.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count(BackgroundJob.id))) == 0
