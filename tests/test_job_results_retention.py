"""The stored results of background jobs (exports, letter ZIPs, kept uploads) are deleted
JOB_RESULTS_KEEP_DAYS days after their job finished, by the scheduler's housekeeping and by `flask
jobs clean` (issue 20); the job is marked, its page and the result's link say so (no 500), and the
files of a queued or running job are never deleted. Real jobs (a consumer thread, or the job run
in this process by `background.execute`), real files.
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import sqlalchemy as sa

from engage import background
from engage.exports import service as export_service
from engage.extensions import db
from engage.jobs import housekeeping
from engage.letters import documents
from engage.models import BackgroundJob, ExportRun, ListVersion
from tests import factories
from tests.test_background_jobs import no_worker, wait_for, worker  # noqa: F401 (fixtures)
from tests.test_bulk_jobs import LISTS, batch_of, build_history, by_job, job_of, seeded  # noqa: F401 (fixtures)

DECEMBER = dt.datetime(2026, 12, 10, 9, 0)


def later(days: float) -> dt.datetime:
    return DECEMBER + dt.timedelta(days=days)


def expired_line(lines: list[str]) -> str:
    return [line for line in lines if "stored job result file(s)" in line][0]


def test_an_export_jobs_file_is_deleted_after_the_retention_and_its_links_say_so(
        app, client, login_as, worker, by_job, freeze_clock):  # noqa: F811
    freeze_clock(DECEMBER)
    assert app.config["JOB_RESULTS_KEEP_DAYS"] == 30
    login_as("viewer")
    build_history()
    job = wait_for(job_of(client.get("/exports/monthly?month=2026-10&format=xlsx")))
    assert job.status == "done", job.error
    [run] = db.session.scalars(sa.select(ExportRun)).all()
    path = export_service.export_dir() / run.filename
    assert path.is_file()
    assert expired_line(housekeeping(later(29))).startswith("0 stored job result file(s) of 0 job(s)")
    assert path.is_file() and client.get(job.result_url).status_code == 200
    lines = housekeeping(later(31))
    assert expired_line(lines) == "1 stored job result file(s) of 1 job(s) finished over 30 days ago removed"
    assert not path.exists()
    db.session.expire_all()
    job = db.session.get(BackgroundJob, job.id)
    assert job.expired_at == later(31)
    page = client.get(f"/background/{job.id}").get_data(as_text=True)
    assert "Its result was deleted" in page and "kept 30 days" in page and "See the result" not in page
    gone = client.get(job.result_url)
    assert gone.status_code == 410 and f"The file {run.filename} was deleted" in gone.get_data(as_text=True)
    listing = client.get("/exports").get_data(as_text=True)
    assert "the file was deleted" in listing and f'href="/exports/stored/{run.id}"' not in listing
    # again: nothing more to do (the job is marked)
    assert expired_line(housekeeping(later(32))).startswith("0 stored job result file(s) of 0 job(s)")


def test_flask_jobs_clean_applies_the_retention_with_its_own_days(app, client, login_as, worker, by_job,  # noqa: F811
                                                                  freeze_clock, runner):
    freeze_clock(DECEMBER)
    login_as("viewer")
    build_history()
    job = wait_for(job_of(client.get("/exports/monthly?month=2026-10&format=csv")))
    [run] = db.session.scalars(sa.select(ExportRun)).all()
    path = export_service.export_dir() / run.filename
    freeze_clock(later(3))
    result = runner.invoke(args=["jobs", "clean"])
    assert result.exit_code == 0 and result.output.startswith("0 stored result file(s) of 0 job(s)"), result.output
    assert path.is_file()
    result = runner.invoke(args=["jobs", "clean", "--days", "2"])
    assert result.output == "1 stored result file(s) of 1 job(s) finished over 2 day(s) ago removed\n", result.output
    assert not path.exists() and db.session.get(BackgroundJob, job.id).expired_at == later(3)
    assert runner.invoke(args=["jobs", "clean", "--days", "-1"]).exit_code == 2  # refused, nothing done


def test_a_queued_or_running_jobs_upload_is_never_deleted(app, client, login_as, no_worker, monkeypatch):  # noqa: F811
    """A list file's preview job done long ago, its confirmation's import job still queued (a busy
    worker): neither the retention nor the uploads' own clean-up deletes the upload it imports."""
    monkeypatch.setitem(app.config, "LISTS_PREVIEW_JOB_BYTES", 1)
    login_as("analyst")
    data = (LISTS / "csl_2021-07-01.csv").read_bytes()
    reading = job_of(client.post("/lists/import", data={"file": (io.BytesIO(data), "csl.csv")},
                                 content_type="multipart/form-data"))
    background.execute(reading)  # the preview job, run here
    preview = db.session.get(BackgroundJob, reading)
    assert preview.status == "done", preview.error
    token = preview.params["token"]
    page = client.get(preview.result_url).get_data(as_text=True)
    importing = job_of(client.post(f"/lists/import/{token}", data=factories.confirmation(page)))
    assert db.session.get(BackgroundJob, importing).status == "queued"
    uploads = Path(app.instance_path) / "uploads"
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    housekeeping(now + dt.timedelta(days=60))  # past the uploads' 24 hours and the results' 30 days
    assert (uploads / f"{token}.bin").is_file() and (uploads / f"{token}.preview").is_file()
    assert db.session.get(BackgroundJob, reading).expired_at is not None  # marked; its files kept for the import
    background.execute(importing)  # the worker gets to it: saved once
    done = db.session.get(BackgroundJob, importing)
    assert done.status == "done" and db.session.scalar(sa.select(sa.func.count(ListVersion.id))) == 1, done.error
    assert (uploads / f"{token}.done").is_file()  # what a second click reads
    housekeeping(now + dt.timedelta(days=90))
    db.session.expire_all()
    assert not list(uploads.glob(f"{token}.*"))
    job = db.session.get(BackgroundJob, importing)
    assert job.expired_at is not None
    shown = client.get(f"/background/{job.id}").get_data(as_text=True)
    assert "See the result" in shown and "Its result was deleted" not in shown  # the list version outlives the upload
    assert client.get(job.result_url).status_code == 200


def test_an_expired_preview_link_says_the_upload_is_gone(app, client, login_as, no_worker, monkeypatch):  # noqa: F811
    monkeypatch.setitem(app.config, "LISTS_PREVIEW_JOB_BYTES", 1)
    login_as("analyst")
    data = (LISTS / "csl_2021-07-01.csv").read_bytes()
    reading = job_of(client.post("/lists/import", data={"file": (io.BytesIO(data), "csl.csv")},
                                 content_type="multipart/form-data"))
    background.execute(reading)
    job = db.session.get(BackgroundJob, reading)
    housekeeping(dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=31))
    assert not list((Path(app.instance_path) / "uploads").glob(f"{job.params['token']}.*"))
    page = client.get(f"/background/{job.id}").get_data(as_text=True)
    assert "Its result was deleted" in page and "See the result" not in page
    gone = client.get(job.result_url, follow_redirects=True)
    assert gone.status_code == 200 and "That import is no longer waiting; upload the file again." in gone.get_data(as_text=True)


def test_a_letter_batch_zip_is_deleted_unless_written_again_since(app, client, login_as, worker, by_job, seeded):  # noqa: F811
    analyst = login_as("analyst")
    batches = [batch_of(seeded, analyst), batch_of(seeded, analyst)]
    jobs = [wait_for(job_of(client.post(f"/letters/batches/{b.id}/prepare-job", data={}))) for b in batches]
    assert [job.status for job in jobs] == ["done", "done"], [job.error for job in jobs]
    zips = [next(documents.cache_dir().glob(f"batch-{b.id}-*.zip")) for b in batches]
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    # the first job finished long ago, but its ZIP was written after the cut-off (by a later job of the
    # same batch and content, as the batch page's "Prepare" does): the job is marked, the ZIP kept
    jobs[0].finished_at = now - dt.timedelta(days=40)
    db.session.commit()
    lines = housekeeping(now - dt.timedelta(days=5))
    assert expired_line(lines).startswith("0 stored job result file(s) of 1 job(s)") and zips[0].is_file()
    # the second, 31 days on: its ZIP goes, and the batch page offers to make it again
    lines = housekeeping(now + dt.timedelta(days=31))
    assert expired_line(lines).startswith("1 stored job result file(s) of 1 job(s)"), lines
    assert not zips[1].exists() and zips[0].is_file()
    assert "Prepare the ZIP" in client.get(f"/letters/batches/{batches[1].id}").get_data(as_text=True)
    shown = client.get(f"/background/{jobs[1].id}").get_data(as_text=True)
    assert "Its result was deleted" in shown and "See the result" not in shown
