"""Long work off the request: the job queue (Huey) run by a real consumer on a real SQLite queue file.

The consumer runs in this process (threads), each job in its own app context and database
session, as `flask jobs worker` runs it in its own process.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from engage import background
from engage.extensions import db
from engage.models import BackgroundJob, Fund, Holding
from tests import factories

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture()
def worker(app, tmp_path, database_url):
    """A consumer started for the test and stopped after it: of a queue in an SQLite file (the default
    kind), or in the PostgreSQL database when the tests run on one (the distributed kind)."""
    app.config["JOBS_URL"] = (database_url if database_url.startswith("postgresql")
                              else f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    background.init_app(app)
    consumer = background.consumer(workers=1)
    consumer.start()
    yield consumer
    consumer.stop(graceful=True)
    app.config["JOBS_URL"] = "memory://"
    background.init_app(app)


@pytest.fixture()
def no_worker(app, tmp_path):
    """A queue nobody consumes: jobs stay queued."""
    app.config["JOBS_URL"] = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    background.init_app(app)
    yield
    app.config["JOBS_URL"] = "memory://"
    background.init_app(app)


def wait_for(job_id: int, seconds: float = 60) -> BackgroundJob:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        db.session.expire_all()
        job = db.session.get(BackgroundJob, job_id)
        if job.finished:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job.status} after {seconds} s")


def upload(client, fund: Fund) -> tuple[str, str]:
    data = (FIXTURES / "ishares_em.csv").read_bytes()
    preview = client.post("/holdings/import", data={"fund_id": fund.id, "file": (io.BytesIO(data), "em.csv"),
                                                    "partial": "y"}, content_type="multipart/form-data")
    page = preview.get_data(as_text=True)
    assert preview.status_code == 200 and "Import 5 holdings" in page
    return page.split("/holdings/import/")[1].split('"')[0], page


def holdings() -> int:
    return db.session.scalar(sa.select(sa.func.count(Holding.id)))


@pytest.fixture()
def big_from_3(app, runner, monkeypatch):
    """Imports of 3 rows or more go to the job worker; the seed's companies are there."""
    assert runner.invoke(args=["seed"]).exit_code == 0
    monkeypatch.setitem(app.config, "HOLDINGS_JOB_ROWS", 3)
    fund = Fund(name="Job Fund")
    db.session.add(fund)
    db.session.commit()
    return fund


def test_a_big_holdings_import_runs_as_a_job_once_whatever_the_clicks(client, login_as, worker, big_from_3):
    login_as("analyst")
    token, page = upload(client, big_from_3)
    first = client.post(f"/holdings/import/{token}", data=factories.confirmation(page))
    second = client.post(f"/holdings/import/{token}", data=factories.confirmation(page))  # a double click
    assert first.status_code == second.status_code == 302
    assert first.location == second.location and first.location.startswith("/background/")
    job_id = int(first.location.rsplit("/", 1)[1])

    job = wait_for(job_id)
    assert (job.status, job.attempts, job.error) == ("done", 1, None)
    assert holdings() == 5  # once
    assert job.result_url == f"/holdings/funds/{big_from_3.id}"
    shown = client.get(first.location).get_data(as_text=True)
    assert "Done" in shown and "See the result" in shown and "5 rows → 5 positions" in job.message
    assert 'http-equiv="refresh"' not in shown  # a finished job's page stops refreshing
    # the same upload confirmed again later: the same finished job, nothing imported twice
    assert client.post(f"/holdings/import/{token}", data=factories.confirmation(page)).location == first.location
    assert holdings() == 5


def test_a_changed_preview_fails_the_job_at_once_with_the_reason(client, login_as, worker, big_from_3):
    login_as("analyst")
    token, page = upload(client, big_from_3)
    stale = {"preview": "0" * 64}  # confirms a preview that is not what the file reads as now
    job_id = int(client.post(f"/holdings/import/{token}", data=stale).location.rsplit("/", 1)[1])
    job = wait_for(job_id)
    assert job.status == "failed" and job.attempts == 1  # refused, not retried
    assert "has changed since its preview" in job.error and holdings() == 0
    shown = client.get(f"/background/{job.id}").get_data(as_text=True)
    assert "Not done." in shown and "has changed since its preview" in shown


def test_a_fault_is_retried_then_shown_to_admins(app, client, login_as, worker, monkeypatch, make_user):
    """A handler that fails twice then works: the job is done on its third attempt; one that always fails is listed."""
    calls = []

    @background.handler("test_flaky")
    def flaky(job, report):
        calls.append(job.id)
        if len(calls) < 3:
            raise OSError("disk went away")
        report(1, 1, "Done")
        return background.Outcome(["worked"], ("main.dashboard", {}))

    @background.handler("test_broken")
    def broken(job, report):
        raise ValueError("always broken")

    monkeypatch.setitem(app.config, "JOBS_RETRY_SECONDS", 0)
    owner = make_user("analyst")
    job = background.submit("test_flaky", key="flaky-1", label="Flaky work", params={}, user_id=owner.id)
    done = wait_for(job.id)
    assert (done.status, done.attempts, done.message, done.result_url) == ("done", 3, "worked", "/")

    failing = background.submit("test_broken", key="broken-1", label="Broken work", params={}, user_id=owner.id)
    failed = wait_for(failing.id)
    assert failed.status == "failed" and failed.attempts == 1 + app.config["JOBS_RETRIES"]
    assert "always broken" in failed.error

    login_as("admin")
    listing = client.get("/background/?status=failed").get_data(as_text=True)
    assert "Broken work" in listing and "always broken" in listing and "Flaky work" not in listing
    retried = client.post(f"/background/{failing.id}/retry", data={})
    assert retried.status_code == 302
    assert wait_for(failing.id).attempts == 2 + app.config["JOBS_RETRIES"]  # an admin's retry is one more attempt


def test_a_job_is_shown_only_to_who_asked_and_admins(client, login_as, no_worker, make_user, app):
    @background.handler("test_noop")
    def noop(job, report):
        return background.Outcome([], None)

    owner = make_user("analyst")
    job = background.submit("test_noop", key="noop-1", label="Quiet work", params={}, user_id=owner.id)
    login_as("analyst")  # another analyst
    assert client.get(f"/background/{job.id}").status_code == 404
    assert client.get("/background/").status_code == 403
    assert client.post(f"/background/{job.id}/retry", data={}).status_code == 403
    login_as("admin")
    page = client.get(f"/background/{job.id}").get_data(as_text=True)
    assert "Waiting for a worker" in page and 'http-equiv="refresh"' in page
    assert "Is the job worker running?" not in page  # only after 30 s queued


def test_a_queue_that_cannot_be_reached_fails_the_job_with_what_to_do(app, make_user, tmp_path):
    @background.handler("test_noop2")
    def noop(job, report):
        return background.Outcome([], None)

    app.config["JOBS_URL"] = f"sqlite:///{tmp_path / 'missing-folder' / 'jobs.sqlite'}"
    background.init_app(app)  # no connection at start: the web serves while the queue is down
    try:
        job = background.submit("test_noop2", key="noop-2", label="Work", params={}, user_id=make_user().id)
    finally:
        app.config["JOBS_URL"] = "memory://"
        background.init_app(app)
    assert job.status == "failed" and "job queue is unavailable" in job.error


@pytest.mark.parametrize("url, message", [
    ("ftp://example.org/q", "use sqlite:///..., postgresql://..., redis://... or memory://"),
    ("sqlite://", "a SQLite queue is sqlite:///path/to/jobs.sqlite"),
])
def test_a_wrong_jobs_url_stops_the_app_with_what_to_write(make_app, url, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(")):
        make_app(JOBS_URL=url)


def test_the_worker_command_and_the_list(runner, make_user):
    @background.handler("test_noop3")
    def noop(job, report):
        return background.Outcome([], None)

    background.submit("test_noop3", key="noop-3", label="Listed work", params={}, user_id=make_user().id)
    out = runner.invoke(args=["jobs", "list"]).output
    assert "queued" in out and "Listed work" in out
    assert "--workers" in runner.invoke(args=["jobs", "worker", "--help"]).output
    assert runner.invoke(args=["jobs", "worker", "--workers", "0"]).exit_code == 2
