"""A big holdings upload read by the preview job, then confirmed and imported by the import job
(issue 20), under a careless user, a hostile one and a faulty environment: double clicks, a
stale tab, a worker killed while reading, a file bad halfway, a file over the limit, two funds
at once, a viewer posting to the routes. Real queue (an SQLite file, or PostgreSQL when the tests
run on it), real consumers (a thread here, a `flask jobs worker` process where it is killed).
"""

from __future__ import annotations

import io
import os
import re
import signal
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from engage import background
from engage.extensions import db
from engage.models import BackgroundJob, Company, Fund, Holding
from tests import factories
from tests.test_background_break import _stop, _worker_process, holdings_file
from tests.test_background_jobs import FIXTURES, no_worker, wait_for, worker  # noqa: F401
from tests.test_holdings_bulk import small_file


@pytest.fixture()
def by_jobs(app, monkeypatch):
    """Every upload is read by the preview job and every confirmation imported by the import job."""
    monkeypatch.setitem(app.config, "HOLDINGS_PREVIEW_JOB_BYTES", 1)
    monkeypatch.setitem(app.config, "HOLDINGS_JOB_ROWS", 1)


def fund_named(name: str) -> Fund:
    fund = Fund(name=name)
    db.session.add(fund)
    db.session.commit()
    return fund


def post_upload(client, fund: Fund, data: bytes, name: str = "em.csv", **fields):
    return client.post("/holdings/import", data={"fund_id": fund.id, "file": (io.BytesIO(data), name), "partial": "y",
                                                 **fields}, content_type="multipart/form-data")


def job_of(answer) -> int:
    assert answer.status_code == 302 and answer.location.startswith("/background/"), answer.status_code
    return int(answer.location.rsplit("/", 1)[1])


def preview_by_job(client, fund: Fund, data: bytes, name: str = "em.csv"):
    """Upload, let the worker read the file, open the preview it leads to: (token, page, response)."""
    job = wait_for(job_of(post_upload(client, fund, data, name)))
    assert job.status == "done", job.error
    shown = client.get(job.result_url)
    page = shown.get_data(as_text=True)
    token = job.result_url.rsplit("/", 1)[1]
    return token, page, shown


def uploads_kept(app) -> int:
    folder = Path(app.instance_path) / "uploads"
    return len(list(folder.glob("*.bin"))) if folder.is_dir() else 0


def holdings_of(fund: Fund) -> int:
    return db.session.scalar(sa.select(sa.func.count(Holding.id)).where(Holding.fund_id == fund.id))


def refusal(page: str) -> str:
    """The refusal as the preview page shows it: the message and the table of rows, what and where."""
    start = page.index("The file was refused; nothing was saved.")
    return page[start:page.index("<form", start) if "<form" in page[start:] else page.index("Upload a corrected", start)]


# --- the path itself ------------------------------------------------------------------------------

def test_a_big_upload_is_answered_at_once_and_its_preview_is_the_synchronous_one(
        app, client, login_as, worker, by_jobs, runner):  # noqa: F811
    assert runner.invoke(args=["seed"]).exit_code == 0
    fund = fund_named("Job Preview Fund")
    login_as("analyst")
    data = (FIXTURES / "ishares_em.csv").read_bytes()
    answer = post_upload(client, fund, data)
    reading = client.get(answer.location).get_data(as_text=True)
    assert "Holdings file check: em.csv for Job Preview Fund" in reading
    token, page, shown = preview_by_job(client, fund, data)
    assert shown.status_code == 200 and "Import 5 holdings" in page
    app.config["HOLDINGS_PREVIEW_JOB_BYTES"] = 10**9  # the same file read in the request, as small files are
    direct = post_upload(client, fund, data)
    assert direct.status_code == 200
    strip = lambda text: re.sub(r'(/holdings/import/)[0-9a-f]{32}|name="csrf_token"[^>]*', r"\1", text)  # noqa: E731
    assert strip(page) == strip(direct.get_data(as_text=True))  # what the page shows is the same
    job_id = job_of(client.post(f"/holdings/import/{token}", data=factories.confirmation(page)))
    job = wait_for(job_id)
    assert job.status == "done" and holdings_of(fund) == 5, job.error


# --- double click, second tab ----------------------------------------------------------------------

def test_a_double_clicked_upload_makes_one_reading_and_keeps_one_file(app, client, login_as, no_worker, by_jobs):  # noqa: F811
    fund = fund_named("Double Fund")
    login_as("analyst")
    data = (FIXTURES / "ishares_em.csv").read_bytes()
    before = uploads_kept(app)
    first, second = post_upload(client, fund, data), post_upload(client, fund, data)
    assert job_of(first) == job_of(second)
    assert uploads_kept(app) == before + 1
    assert db.session.scalar(sa.select(sa.func.count(BackgroundJob.id))) == 1
    # another fund, or other options, is other work
    other = post_upload(client, fund_named("Other Fund"), data)
    assert job_of(other) != job_of(first)


def test_a_second_tab_confirming_a_stale_preview_imports_nothing_and_the_current_one_once(
        app, client, login_as, worker, by_jobs):  # noqa: F811
    fund = fund_named("Two Tabs Fund")
    login_as("analyst")
    token, tab_one, _ = preview_by_job(client, fund, (FIXTURES / "ishares_em.csv").read_bytes())
    # tab two reads the file again with other options (its date given): read again by a job too
    again = client.post(f"/holdings/import/{token}/read", data={"partial": "y", "as_of": "2026-11-20"})
    job = wait_for(job_of(again))
    tab_two = client.get(job.result_url).get_data(as_text=True)
    assert job.result_url.endswith(token) and factories.confirmation(tab_two) != factories.confirmation(tab_one)
    stale = wait_for(job_of(client.post(f"/holdings/import/{token}", data=factories.confirmation(tab_one))))
    assert stale.status == "failed" and "has changed since its preview" in stale.error and holdings_of(fund) == 0
    current = wait_for(job_of(client.post(f"/holdings/import/{token}", data=factories.confirmation(tab_two))))
    assert current.id == stale.id and current.status == "done" and holdings_of(fund) == 5
    # tab one's preview page, reloaded: the import is done, said once
    reloaded = client.get(f"/holdings/import/{token}", follow_redirects=True).get_data(as_text=True)
    assert "This import was confirmed already and saved once" in reloaded and holdings_of(fund) == 5


# --- a file bad halfway, a wrong column: the same refusal as in the request, nothing written ----------

def _bad_halfway() -> bytes:
    lines = small_file().decode().splitlines()
    lines.insert(7, '"BAD","Broken Row Ltd","Energy","Equity","12 apples","1","1","1","1","China","XSHG",""')
    return "\n".join(lines).encode()


def _wrong_column() -> bytes:
    return small_file().decode().replace("Market Value,Weight (%)", "Market Value,Weight (%),Weight (%)").encode()


def _no_name_column() -> bytes:
    return small_file().decode().replace("Ticker,Name,Sector", "Ticker,Title,Sector").encode()


@pytest.mark.parametrize("data", [_bad_halfway(), _wrong_column(), _no_name_column()],
                         ids=["bad row", "a column twice", "no name column"])
def test_a_bad_file_read_by_the_job_shows_what_and_where_as_the_request_does(
        app, client, login_as, worker, by_jobs, data):  # noqa: F811
    fund = fund_named("Bad Fund")
    login_as("analyst")
    companies = db.session.scalar(sa.select(sa.func.count(Company.id)))
    _token, page, shown = preview_by_job(client, fund, data, "bad.csv")
    assert shown.status_code == 422
    app.config["HOLDINGS_PREVIEW_JOB_BYTES"] = 10**9
    direct = post_upload(client, fund, data, "bad.csv")
    assert direct.status_code == 422
    assert refusal(page) == refusal(direct.get_data(as_text=True))
    if "Broken Row" in data.decode():
        assert re.search(r"<td class=\"num\">8</td><td>Market Value</td><td><code>12 apples</code>", page), refusal(page)
    assert 'class="primary">Import' not in page and 'name="preview"' not in page
    assert db.session.scalar(sa.select(sa.func.count(Company.id))) == companies and holdings_of(fund) == 0


# --- a file over the limit -----------------------------------------------------------------------------

def test_a_file_over_the_holdings_limit_is_refused_with_its_size_and_the_limit(app, client, login_as, no_worker, monkeypatch):  # noqa: F811
    fund = fund_named("Huge Fund")
    login_as("analyst")
    monkeypatch.setitem(app.config, "HOLDINGS_MAX_UPLOAD_MB", 1)
    before = uploads_kept(app)
    answer = post_upload(client, fund, b"x" * (3 * 1024 * 1024), "huge.csv")
    page = answer.get_data(as_text=True)
    assert answer.status_code == 413
    assert "This upload is 3 MB and a holdings file may be at most 1 MB (HOLDINGS_MAX_UPLOAD_MB)" in page
    assert "Check the file" in page  # the upload form again
    assert uploads_kept(app) == before and db.session.scalar(sa.select(sa.func.count(BackgroundJob.id))) == 0


def test_the_holdings_limit_is_its_own_other_forms_keep_the_global_one(app, client, login_as, no_worker, monkeypatch):  # noqa: F811
    fund = fund_named("Limits Fund")
    login_as("analyst")
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 1024 * 1024)
    big = holdings_file(12_000)  # about 2 MB: over the global limit, under the holdings one (64 MB)
    assert 1024 * 1024 < len(big) < 4 * 1024 * 1024
    answer = post_upload(client, fund, big, "big.csv")
    assert answer.status_code == 302 and answer.location.startswith("/background/")  # taken, read by a job
    token = db.session.get(BackgroundJob, job_of(answer)).params["token"]
    other = client.post(f"/holdings/import/{token}/read", data={"partial": "y", "filler": "x" * (2 * 1024 * 1024)})
    assert other.status_code == 413 and "larger than the limit this server accepts" in other.get_data(as_text=True)


def test_a_default_server_takes_a_200000_row_file(app):
    """The defaults: a 200,000-row monthly file (about 35 MB as CSV) is within the limits."""
    assert app.config["HOLDINGS_MAX_ROWS"] >= 200_000 and app.config["HOLDINGS_MAX_UPLOAD_MB"] * 1024 * 1024 > 40e6
    assert app.config["MAX_CONTENT_LENGTH"] == 16 * 1024 * 1024  # other forms keep theirs


# --- two funds at once ------------------------------------------------------------------------------------

@pytest.fixture()
def two_workers(app, tmp_path, database_url):
    app.config["JOBS_URL"] = (database_url if database_url.startswith("postgresql")
                              else f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    background.init_app(app)
    consumer = background.consumer(workers=2)
    consumer.start()
    yield consumer
    consumer.stop(graceful=True)
    app.config["JOBS_URL"] = "memory://"
    background.init_app(app)


def test_two_funds_read_and_imported_at_once_create_each_company_once(app, client, login_as, two_workers, by_jobs):
    login_as("analyst")
    data = holdings_file(3_000)  # 3,000 companies new to both
    funds = [fund_named("North Fund"), fund_named("South Fund")]
    readings = [job_of(post_upload(client, fund, data, f"{fund.name}.csv")) for fund in funds]
    pages = []
    for job_id in readings:
        job = wait_for(job_id, seconds=180)
        assert job.status == "done", job.error
        pages.append((job.result_url.rsplit("/", 1)[1], client.get(job.result_url).get_data(as_text=True)))
    assert all("New companies</dt><dd>3000" in page for _token, page in pages)
    imports = [job_of(client.post(f"/holdings/import/{token}", data=factories.confirmation(page)))
               for token, page in pages]
    jobs = [wait_for(job_id, seconds=240) for job_id in imports]
    assert [job.status for job in jobs] == ["done", "done"], [job.error for job in jobs]
    assert [holdings_of(fund) for fund in funds] == [3_000, 3_000]
    assert db.session.scalar(sa.select(sa.func.count(Company.id))) == 3_000  # created by the first, matched by the second
    created = sorted("created: 3000 companies" in job.message for job in jobs)
    assert created == [False, True], [job.message for job in jobs]


# --- a worker killed while reading the file ---------------------------------------------------------------

def test_a_worker_killed_while_reading_a_file_leaves_a_reading_a_restarted_worker_finishes(
        app, client, login_as, database_url, tmp_path, monkeypatch):
    jobs_url = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    monkeypatch.setitem(app.config, "JOBS_URL", jobs_url)
    monkeypatch.setitem(app.config, "HOLDINGS_CONFIRM_LEASE_SECONDS", 3)
    background.init_app(app)
    fund = fund_named("Killed Reading Fund")
    login_as("analyst")
    rows = 40_000  # about 7 MB: seconds of reading, time to kill the worker in the middle
    data = holdings_file(rows)
    job_id = job_of(post_upload(client, fund, data, "big.csv"))
    first = _worker_process(database_url, jobs_url)
    second = None
    try:
        deadline = time.monotonic() + 120
        while db.session.get(BackgroundJob, job_id).status != "running":
            assert time.monotonic() < deadline and first.poll() is None, _stop(first)
            time.sleep(0.05)
            db.session.expire_all()
        time.sleep(1)
        os.killpg(first.pid, signal.SIGKILL)  # in the middle of reading: the row says "running"
        first.wait(timeout=10)
        db.session.expire_all()
        assert db.session.get(BackgroundJob, job_id).status == "running"
        second = _worker_process(database_url, jobs_url)  # after the lease, its start queues the job again
        job = wait_for(job_id, seconds=240)
        assert (job.status, job.attempts) == ("done", 2), job.error
    finally:
        _stop(first)
        output = _stop(second) if second is not None else ""
        app.config["JOBS_URL"] = "memory://"
        background.init_app(app)
    # Recovered by the second worker: at its start if the lease had run out by then, else by its
    # minute's check; either way it logs the stopped attempt and queues the job again.
    assert "the worker running attempt 1 stopped without finishing it" in output and "queued again" in output, output
    page = client.get(job.result_url).get_data(as_text=True)
    assert f"Import {rows} holdings" in page and holdings_of(fund) == 0  # read, nothing written


# --- a viewer, another analyst ---------------------------------------------------------------------------

def test_a_viewer_can_post_to_none_of_the_routes_and_no_one_sees_anothers_reading(
        app, client, login_as, no_worker, by_jobs):  # noqa: F811
    fund = fund_named("Viewer Fund")
    login_as("analyst")
    job_id = job_of(post_upload(client, fund, (FIXTURES / "ishares_em.csv").read_bytes()))
    token = db.session.get(BackgroundJob, job_id).params["token"]
    login_as("viewer")
    data = (FIXTURES / "ishares_em.csv").read_bytes()
    assert post_upload(client, fund, data).status_code == 403
    assert client.get(f"/holdings/import/{token}").status_code == 403
    assert client.post(f"/holdings/import/{token}/read", data={"partial": "y"}).status_code == 403
    assert client.post(f"/holdings/import/{token}", data={"preview": "0" * 64}).status_code == 403
    assert client.get(f"/background/{job_id}").status_code == 404
    login_as("analyst")  # another analyst
    assert client.get(f"/background/{job_id}").status_code == 404
    assert db.session.scalar(sa.select(sa.func.count(BackgroundJob.id))) == 1


# --- what the preview job keeps --------------------------------------------------------------------------

def test_the_import_job_takes_the_reading_the_preview_job_kept(app, client, login_as, worker, by_jobs, monkeypatch):  # noqa: F811
    """The file is read once: after its preview, even a row limit that would now refuse it (the file
    is not read again) does not stop its import."""
    fund = fund_named("Read Once Fund")
    login_as("analyst")
    token, page, _ = preview_by_job(client, fund, (FIXTURES / "ishares_em.csv").read_bytes())
    assert (Path(app.instance_path) / "uploads" / f"{token}.reading").is_file()
    monkeypatch.setitem(app.config, "HOLDINGS_MAX_ROWS", 2)  # read again, the file would be refused
    job = wait_for(job_of(client.post(f"/holdings/import/{token}", data=factories.confirmation(page))))
    assert job.status == "done" and holdings_of(fund) == 5, job.error
    assert not (Path(app.instance_path) / "uploads" / f"{token}.reading").exists()  # dropped with the upload


def test_a_kept_preview_not_signed_by_this_server_is_not_loaded(app, client, login_as, worker, by_jobs):  # noqa: F811
    import pickle

    fund = fund_named("Forged Fund")
    login_as("analyst")
    token, page, _ = preview_by_job(client, fund, (FIXTURES / "ishares_em.csv").read_bytes())
    folder = Path(app.instance_path) / "uploads"
    for suffix in ("preview", "reading"):  # put there by something else, or by a worker with another SECRET_KEY
        (folder / f"{token}.{suffix}").write_bytes(b"\0" * 32 + pickle.dumps({"for": None, "checked": None}))
    shown = client.get(f"/holdings/import/{token}")
    assert shown.status_code == 503 and "not signed with this server" in shown.get_data(as_text=True)
    job = wait_for(job_of(client.post(f"/holdings/import/{token}", data=factories.confirmation(page))))
    assert job.status != "done" and holdings_of(fund) == 0
