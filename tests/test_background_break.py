"""Background jobs under a hostile user, a careless user and a faulty environment (issue 20).

A real `flask jobs worker` subprocess is killed with SIGKILL in the middle of a holdings import;
a restarted one finishes it exactly once. Ids past the database's integer range, retries of
jobs that are not failed, a forged retry, a confirmation after the preview changed in another
tab, a queue file that vanished or cannot be written, a queue in a PostgreSQL that is down.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from engage import background, clock
from engage.extensions import db
from engage.identifiers import isin_check_digit
from engage.holdings import service
from engage.models import AuditEvent, BackgroundJob, Fund, Holding
from engage.models.holdings import HoldingImport
from tests import factories
from tests.conftest import PASSWORD, csrf_token_from
from tests.test_background_jobs import big_from_3, holdings, no_worker, upload, wait_for, worker  # noqa: F401

ROOT = Path(__file__).parent.parent


def holdings_file(rows: int) -> bytes:
    """A provider's CSV of `rows` made-up companies with valid ISINs (the layout tests/benchmarks uses)."""
    lines = ["iShares Breaking Fund", 'Fund Holdings as of,"Oct 31, 2026"', "",
             "Ticker,Name,Sector,Asset Class,Market Value,Weight (%),Notional Value,Quantity,Price,Location,Exchange,ISIN"]
    weight = f"{90 / rows:.6f}"  # adding up to 90 %: a whole fund's file, as near as a provider rounds
    for i in range(rows):
        first11 = f"XS{i:09d}"
        lines.append(f'"B{i}","Breakwater Test Holdings {i} Ltd","Energy","Equity","{1_000_000 + i:,}.00","{weight}",'
                     f'"{1_000_000 + i:,}.00","1,000.00","10.00","China","Shenzhen Stock Exchange",'
                     f'"{first11}{isin_check_digit(first11)}"')
    lines += ["", '"Holdings are subject to change."']
    return "\n".join(lines).encode()


def upload_file(client, fund: Fund, data: bytes, name: str = "big.csv") -> tuple[str, str]:
    """Upload and preview a file: (the stash's token, the preview page). A file of
    HOLDINGS_PREVIEW_JOB_BYTES or more is read by the preview job, run here as a worker runs it."""
    preview = client.post("/holdings/import", data={"fund_id": fund.id, "file": (io.BytesIO(data), name),
                                                    "partial": "y"}, content_type="multipart/form-data")
    if preview.status_code == 302 and preview.location.startswith("/background/"):
        job_id = int(preview.location.rsplit("/", 1)[1])
        background.execute(job_id)
        db.session.expire_all()
        job = db.session.get(BackgroundJob, job_id)
        assert job.status == "done", job.error
        preview = client.get(job.result_url)
    page = preview.get_data(as_text=True)
    assert preview.status_code == 200, page
    return page.split("/holdings/import/")[1].split('"')[0], page


def _noop(job, report):
    return background.Outcome(["nothing to do"], None)


background.handler("test_break_noop")(_noop)


# --- ids, roles, CSRF, retries of jobs that are not failed -------------------------------------

@pytest.mark.parametrize("job_id", [2**31, 2**63, 10**30])
def test_a_job_id_past_the_integer_range_is_no_job(client, login_as, no_worker, job_id):  # noqa: F811
    login_as("admin")
    assert client.get(f"/background/{job_id}").status_code == 404
    assert client.post(f"/background/{job_id}/retry", data={}).status_code == 404
    assert client.get("/background/-1").status_code == 404  # not an int to the route: no job either


def test_a_viewer_sees_no_one_elses_job_and_cannot_confirm_or_retry(client, login_as, make_user, no_worker, big_from_3):  # noqa: F811
    owner = make_user("analyst")
    job = background.submit("test_break_noop", key="break-1", label="Quiet work", params={}, user_id=owner.id)
    login_as("viewer")
    assert client.get(f"/background/{job.id}").status_code == 404
    assert client.post(f"/background/{job.id}/retry", data={}).status_code == 403
    assert client.post("/holdings/import/" + "a" * 32, data={"preview": "0" * 64}).status_code == 403
    assert db.session.scalar(sa.select(sa.func.count(BackgroundJob.id))) == 1


def test_retrying_a_queued_running_or_done_job_changes_nothing(client, login_as, make_user, no_worker):  # noqa: F811
    owner = make_user("analyst")
    login_as("admin")
    for status in ("queued", "running", "done"):
        job = background.submit("test_break_noop", key=f"break-{status}", label="Work", params={}, user_id=owner.id)
        job.status, job.attempts = status, 1
        db.session.commit()
        answer = client.post(f"/background/{job.id}/retry", data={}, follow_redirects=True)
        assert f"Job {job.id} is {status}, not failed: nothing to retry." in answer.get_data(as_text=True)
        db.session.expire_all()
        assert (db.session.get(BackgroundJob, job.id).status, db.session.get(BackgroundJob, job.id).attempts) == (status, 1)


def test_a_retry_without_the_form_token_is_refused(app, make_app, make_user, no_worker):  # noqa: F811
    admin = make_user("admin")
    job = background.submit("test_break_noop", key="break-csrf", label="Work", params={}, user_id=admin.id)
    job.status, job.error = "failed", "it broke"
    db.session.commit()
    protected = make_app(WTF_CSRF_ENABLED=True)
    try:
        browser = protected.test_client()
        token = csrf_token_from(browser.get("/auth/login").get_data(as_text=True))
        browser.post("/auth/login", data={"email": admin.email, "password": PASSWORD, "csrf_token": token})
        browser.post(f"/background/{job.id}/retry", data={})
    finally:
        background.init_app(app)  # the second app took the queue over
    db.session.expire_all()
    assert db.session.get(BackgroundJob, job.id).status == "failed"


# --- two tabs: confirmed with a stale preview, then with the current one --------------------------

def test_confirming_again_after_a_changed_preview_imports_the_current_one_once(client, login_as, worker, big_from_3):  # noqa: F811
    login_as("analyst")
    token, page = upload(client, big_from_3)
    # tab 1 confirms a preview that is no longer what the file reads as (tab 2 read it again)
    failed = client.post(f"/holdings/import/{token}", data={"preview": "0" * 64})
    job = wait_for(int(failed.location.rsplit("/", 1)[1]))
    assert job.status == "failed" and "has changed since its preview" in job.error and holdings() == 0
    # tab 2 confirms what it shows: the same job, queued again with that preview, imports once
    again = client.post(f"/holdings/import/{token}", data=factories.confirmation(page))
    assert again.location == failed.location
    job = wait_for(job.id)
    assert (job.status, job.error, job.attempts) == ("done", None, 2) and holdings() == 5
    assert client.post(f"/holdings/import/{token}", data=factories.confirmation(page)).location == failed.location
    assert holdings() == 5


# --- a worker that died -----------------------------------------------------------------------

def _running(job_id: int, minutes_ago: int, attempts: int = 1) -> None:
    """The job as a worker left it: running attempt `attempts`, started `minutes_ago`."""
    started = clock.utcnow() - dt.timedelta(minutes=minutes_ago)
    db.session.execute(sa.update(BackgroundJob).where(BackgroundJob.id == job_id).values(
        status="running", attempts=attempts, started_at=started))
    db.session.commit()


def test_jobs_left_running_are_queued_again_once_then_failed_past_their_attempts(app, client, login_as, make_user,
                                                                                   no_worker, monkeypatch):  # noqa: F811
    monkeypatch.setitem(app.config, "HOLDINGS_CONFIRM_LEASE_SECONDS", 60)
    owner = make_user("analyst")
    dead = background.submit("test_break_noop", key="dead", label="Dead", params={}, user_id=owner.id)
    alive = background.submit("test_break_noop", key="alive", label="Alive, slow", params={}, user_id=owner.id)
    fresh = background.submit("test_break_noop", key="fresh", label="Just started", params={}, user_id=owner.id)
    worn = background.submit("test_break_noop", key="worn", label="Killed every time", params={}, user_id=owner.id)
    _running(dead.id, 5)
    _running(alive.id, 5)
    _running(fresh.id, 0)
    _running(worn.id, 5, attempts=1 + app.config["JOBS_RETRIES"])
    background.huey.put(background._progress_key(alive.id), {"done": 10, "total": 20, "message": "",
                                                              "at": time.time() - 5})  # reported 5 s ago
    login_as("admin")
    assert "its worker may have stopped" in client.get(f"/background/{dead.id}").get_data(as_text=True)
    assert "its worker may have stopped" not in client.get(f"/background/{alive.id}").get_data(as_text=True)

    assert sorted(background.recover_stale()) == sorted([dead.id, worn.id])
    assert background.recover_stale() == []  # idempotent: a second worker starting finds nothing to do
    db.session.expire_all()
    status = {j.key: (j.status, j.error or "") for j in db.session.scalars(sa.select(BackgroundJob))}
    assert status["dead"][0] == "queued" and "stopped without finishing it" in status["dead"][1]
    assert status["alive"] == ("running", "") and status["fresh"] == ("running", "")
    assert status["worn"][0] == "failed" and status["worn"][1].startswith(f"failed after {1 + app.config['JOBS_RETRIES']} attempts")
    assert background.huey.pending_count() >= 1  # the dead one is in the queue again


def _worker_process(database_url: str, jobs_url: str) -> subprocess.Popen:
    environment = {**os.environ, "ENGAGE_ENV": "development", "DATABASE_URL": database_url, "JOBS_URL": jobs_url,
                   "FLASK_APP": "wsgi", "PYTHONPATH": str(ROOT), "HOLDINGS_CONFIRM_LEASE_SECONDS": "3",
                   "SECRET_KEY": "test-secret-key"}  # the web's (TestConfig): the kept previews are signed with it
    return subprocess.Popen([sys.executable, "-m", "flask", "jobs", "worker", "--workers", "1"], cwd=ROOT,
                            env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _stop(process: subprocess.Popen) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.stdout.read() if process.stdout else ""


def test_a_worker_killed_mid_import_leaves_a_job_a_restarted_worker_finishes_once(
        app, client, login_as, database_url, tmp_path, monkeypatch):
    rows = 6_000
    jobs_url = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    monkeypatch.setitem(app.config, "JOBS_URL", jobs_url)
    monkeypatch.setitem(app.config, "HOLDINGS_JOB_ROWS", 1000)
    monkeypatch.setitem(app.config, "HOLDINGS_CONFIRM_LEASE_SECONDS", 3)
    background.init_app(app)
    fund = Fund(name="Killed Fund")
    db.session.add(fund)
    db.session.commit()
    login_as("analyst")
    token, page = upload_file(client, fund, holdings_file(rows))
    first = _worker_process(database_url, jobs_url)
    second = None
    try:
        answer = client.post(f"/holdings/import/{token}", data=factories.confirmation(page))
        job_id = int(answer.location.rsplit("/", 1)[1])
        deadline = time.monotonic() + 120
        while (background.progress(db.session.get(BackgroundJob, job_id)).get("done") or 0) < 500:
            assert time.monotonic() < deadline and first.poll() is None, _stop(first)
            time.sleep(0.02)
            db.session.expire_all()
        os.killpg(first.pid, signal.SIGKILL)  # mid-import: nothing committed, the row says "running"
        first.wait(timeout=10)
        db.session.expire_all()
        assert db.session.get(BackgroundJob, job_id).status == "running"
        assert db.session.scalar(sa.select(sa.func.count(Holding.id)).where(Holding.fund_id == fund.id)) == 0
        deadline = time.monotonic() + 30  # after the lease the page says the worker may have stopped
        while "its worker may have stopped" not in client.get(answer.location).get_data(as_text=True):
            assert time.monotonic() < deadline
            time.sleep(0.5)
        second = _worker_process(database_url, jobs_url)  # its start queues the job again
        job = wait_for(job_id, seconds=240)
        assert (job.status, job.attempts) == ("done", 2), job.error
        assert "stopped" not in (job.error or "")
        assert db.session.scalar(sa.select(sa.func.count(Holding.id)).where(Holding.fund_id == fund.id)) == rows
        assert f"{rows} rows" in job.message
    finally:
        _stop(first)
        output = _stop(second) if second is not None else ""
        app.config["JOBS_URL"] = "memory://"
        background.init_app(app)
    assert "queued again or failed: " in output
    # confirmed again (the back button): the finished job, nothing imported twice
    assert client.post(f"/holdings/import/{token}", data=factories.confirmation(page)).location == answer.location
    assert db.session.scalar(sa.select(sa.func.count(Holding.id)).where(Holding.fund_id == fund.id)) == rows


def test_a_worker_stopped_by_sigterm_finishes_its_job_first(app, client, login_as, database_url, tmp_path, monkeypatch):
    """What systemd, Docker or a Procfile runner sends to stop the worker (a deploy): the import is not cut."""
    rows = 6_000
    jobs_url = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    monkeypatch.setitem(app.config, "JOBS_URL", jobs_url)
    monkeypatch.setitem(app.config, "HOLDINGS_JOB_ROWS", 1000)
    background.init_app(app)
    fund = Fund(name="Stopped Fund")
    db.session.add(fund)
    db.session.commit()
    login_as("analyst")
    token, page = upload_file(client, fund, holdings_file(rows))
    process = _worker_process(database_url, jobs_url)
    try:
        job_id = int(client.post(f"/holdings/import/{token}", data=factories.confirmation(page)).location.rsplit("/", 1)[1])
        deadline = time.monotonic() + 120
        while (background.progress(db.session.get(BackgroundJob, job_id)).get("done") or 0) < 500:
            assert time.monotonic() < deadline and process.poll() is None, _stop(process)
            time.sleep(0.02)
            db.session.expire_all()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=240) == 0
        db.session.expire_all()
        job = db.session.get(BackgroundJob, job_id)
        assert (job.status, job.attempts) == ("done", 1), job.error
        assert db.session.scalar(sa.select(sa.func.count(Holding.id)).where(Holding.fund_id == fund.id)) == rows
    finally:
        _stop(process)
        app.config["JOBS_URL"] = "memory://"
        background.init_app(app)


# --- duplicated or lost messages, a queue file deleted, a queue database down -------------------

def test_a_duplicated_message_does_not_run_a_job_twice(app, make_user, no_worker):  # noqa: F811
    calls = []

    @background.handler("test_break_count")
    def count(job, report):
        calls.append(job.id)
        return background.Outcome(["counted"], None)

    job = background.submit("test_break_count", key="break-dup", label="Work", params={}, user_id=make_user().id)
    _running(job.id, 0)
    background.execute(job.id)  # a second message while a worker runs it: nothing
    assert calls == []
    db.session.execute(sa.update(BackgroundJob).where(BackgroundJob.id == job.id).values(status="queued", attempts=0))
    db.session.commit()
    background.execute(job.id)
    background.execute(job.id)  # the same message twice: once
    db.session.expire_all()
    assert calls == [job.id] and db.session.get(BackgroundJob, job.id).attempts == 1


def _quiet_for_minutes(job_id: int, minutes: int = 2) -> None:
    db.session.execute(sa.update(BackgroundJob).where(BackgroundJob.id == job_id).values(updated_at=_ago(minutes)))
    db.session.commit()


def _ago(minutes: int) -> dt.datetime:
    return clock.utcnow() - dt.timedelta(minutes=minutes)


def test_a_queued_job_whose_message_was_lost_is_queued_again(app, make_user, no_worker):  # noqa: F811
    owner = make_user()
    lost = background.submit("test_break_noop", key="break-lost", label="Lost", params={}, user_id=owner.id)
    background.huey.flush()  # the queue emptied under it (Redis flushed, the queue file replaced)
    _quiet_for_minutes(lost.id)
    waiting = background.submit("test_break_noop", key="break-waiting", label="Waiting", params={}, user_id=owner.id)
    _quiet_for_minutes(waiting.id)
    assert background.recover_stale() == []  # a message is waiting in the queue: nothing is known lost
    background.huey.flush()
    assert sorted(background.recover_stale()) == sorted([lost.id, waiting.id])
    assert background.huey.pending_count() == 2
    assert background.recover_stale() == []  # not again within the minute


def test_the_queue_file_deleted_while_the_web_runs(app, make_user, no_worker, tmp_path):  # noqa: F811
    owner = make_user()
    first = background.submit("test_break_noop", key="break-before", label="Before", params={}, user_id=owner.id)
    queue_file = tmp_path / "jobs.sqlite"
    assert queue_file.exists()
    for path in tmp_path.glob("jobs.sqlite*"):
        path.unlink()  # a clean-up of the instance folder while the web runs: the first job's message is gone
    second = background.submit("test_break_noop", key="break-after", label="After", params={}, user_id=owner.id)
    assert queue_file.exists() and second.status == "queued"  # queued in the new file, where workers look
    consumer = background.consumer(workers=1)
    consumer.start()
    try:
        assert wait_for(second.id).status == "done"
        _quiet_for_minutes(first.id)
        assert background.recover_stale() == [first.id]  # a worker's minute check finds the lost one
        assert wait_for(first.id).status == "done"
    finally:
        consumer.stop(graceful=True)


def test_a_queue_file_that_cannot_be_opened_fails_the_job_not_the_page(app, client, login_as, no_worker, tmp_path):  # noqa: F811
    user = login_as("analyst")
    background.submit("test_break_noop", key="break-ro-0", label="Before", params={}, user_id=user.id)
    for path in tmp_path.glob("jobs.sqlite*"):
        path.unlink()
    (tmp_path / "jobs.sqlite").mkdir()  # a folder where the queue's file was: no SQLite file can be opened
    job = background.submit("test_break_noop", key="break-ro", label="Unopenable", params={}, user_id=user.id)
    assert job.status == "failed" and "job queue is unavailable" in job.error
    page = client.get(f"/background/{job.id}")
    assert page.status_code == 200 and "job queue is unavailable" in page.get_data(as_text=True)
    (tmp_path / "jobs.sqlite").rmdir()  # mended: the same work asked again is queued
    assert background.submit("test_break_noop", key="break-ro", label="Unopenable", params={},
                             user_id=user.id).status == "queued"


def test_a_queue_in_a_postgresql_that_is_down_fails_the_job_in_seconds(app, client, login_as):
    app.config["JOBS_URL"] = "postgresql://engage@127.0.0.1:1/nowhere"  # nothing listens there
    background.init_app(app)
    try:
        user = login_as("analyst")
        started = time.monotonic()
        job = background.submit("test_break_noop", key="break-pg", label="Work", params={}, user_id=user.id)
        assert time.monotonic() - started < 10
        assert job.status == "failed" and "job queue is unavailable" in job.error
        assert client.get(f"/background/{job.id}").status_code == 200
    finally:
        app.config["JOBS_URL"] = "memory://"
        background.init_app(app)
    assert background.storage_for("postgresql://h/db", "/x")[1]["connect_timeout"] == 5


# --- who did it, and a worker that died between its commit and its record ----------------------

def test_a_job_import_is_recorded_as_the_user_who_confirmed_it(client, login_as, worker, big_from_3):  # noqa: F811
    analyst = login_as("analyst")
    token, page = upload(client, big_from_3)
    job = wait_for(int(client.post(f"/holdings/import/{token}", data=factories.confirmation(page))
                       .location.rsplit("/", 1)[1]))
    assert job.status == "done"
    record = db.session.scalar(sa.select(HoldingImport))
    assert (record.created_by_id, record.actor_label) == (analyst.id, analyst.email)
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "holdings_import"))
    assert (event.actor_id, event.actor_label) == (analyst.id, analyst.email)


def test_a_worker_that_died_after_its_commit_is_not_imported_twice_nor_failed(app, client, login_as, no_worker,  # noqa: F811
                                                                             big_from_3, monkeypatch):
    monkeypatch.setitem(app.config, "HOLDINGS_CONFIRM_LEASE_SECONDS", 1)
    login_as("analyst")
    token, page = upload(client, big_from_3)
    job_id = int(client.post(f"/holdings/import/{token}", data=factories.confirmation(page)).location.rsplit("/", 1)[1])
    # what the first attempt did before its worker was killed: took the job and the upload, imported, committed
    _running(job_id, 1)
    data, meta = service.claim_upload(token)
    service.import_file(data, meta["filename"], service.ReadOptions.from_meta(meta), fund_id=meta["fund_id"],
                        expected_digest=factories.confirmation(page)["preview"])
    db.session.commit()
    time.sleep(1.1)  # the claim's lease runs out
    assert background.recover_stale() == [job_id]
    background.execute(job_id)  # the second attempt, as a worker runs it
    db.session.expire_all()
    job = db.session.get(BackgroundJob, job_id)
    assert (job.status, job.attempts, job.error) == ("done", 2, None), job.error
    assert "saved by an earlier attempt of this job" in job.message and holdings() == 5
    assert job.result_url == f"/holdings/funds/{big_from_3.id}"
    assert service.upload_state(token)[0] == "done"


def test_three_clicks_at_the_same_moment_make_one_job(app, client, make_user, no_worker, big_from_3):  # noqa: F811
    import threading

    from tests.conftest import login

    analyst = make_user("analyst")
    browsers = [app.test_client() for _ in range(3)]
    for browser in browsers:
        assert login(browser, analyst.email).status_code == 302
    token, page = upload(browsers[0], big_from_3)
    ready, answers = threading.Barrier(3), []

    def click(browser):
        ready.wait()
        answers.append(browser.post(f"/holdings/import/{token}", data=factories.confirmation(page)))

    threads = [threading.Thread(target=click, args=(browser,)) for browser in browsers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [a.status_code for a in answers] == [302, 302, 302]
    assert len({a.location for a in answers}) == 1 and answers[0].location.startswith("/background/")
    assert db.session.scalar(sa.select(sa.func.count(BackgroundJob.id))) == 1
    assert background.huey.pending_count() == 1  # queued once
