"""The issue's figure (issue 20): a 200,000-row holdings file uploaded and confirmed through the web,
read (preview job) and imported (import job) by a real `flask jobs worker` subprocess. Slow, so it runs only
with ENGAGE_BENCH_JOBS=1 (ENGAGE_BENCH_JOBS_ROWS for another size); it prints the figures.

The file's companies are known first (the same file imported into another fund beforehand, not
timed), as in a fund's monthly file; ENGAGE_BENCH_JOBS_NEW=1 leaves them to be created by the job.

    ENGAGE_BENCH_JOBS=1 python -m pytest -q -s tests/test_background_bench.py
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from engage import background
from engage.extensions import db
from engage.models import BackgroundJob, Fund, Holding
from tests import factories
from tests.test_background_break import _stop, _worker_process, holdings_file
from tests.test_background_jobs import wait_for

ROWS = int(os.environ.get("ENGAGE_BENCH_JOBS_ROWS", "200000"))

pytestmark = pytest.mark.skipif(not os.environ.get("ENGAGE_BENCH_JOBS"), reason="set ENGAGE_BENCH_JOBS=1 to run")


def _cpu_of(process) -> float:
    """User + system CPU seconds a process (the worker) has used so far, from /proc."""
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_done(client, location: str, limit: float = 900) -> None:
    """As a browser does: the job's page every 2 seconds until it is finished."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        time.sleep(2)
        page = client.get(location).get_data(as_text=True)
        if "See the result" in page or "Not done." in page:
            return


def test_a_200000_row_file_is_read_and_imported_by_jobs_each_answered_at_once(
        app, client, login_as, database_url, tmp_path, monkeypatch):
    jobs_url = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    monkeypatch.setitem(app.config, "JOBS_URL", jobs_url)
    if ROWS > app.config["HOLDINGS_MAX_ROWS"]:  # the defaults take 250,000 rows (and 64 MB)
        monkeypatch.setitem(app.config, "HOLDINGS_MAX_ROWS", ROWS + 10)
        monkeypatch.setenv("HOLDINGS_MAX_ROWS", str(ROWS + 10))  # the worker's setting too
    background.init_app(app)
    fund = Fund(name="Two Hundred Thousand Fund")
    db.session.add(fund)
    db.session.commit()
    login_as("analyst")
    data = holdings_file(ROWS)
    if not os.environ.get("ENGAGE_BENCH_JOBS_NEW"):
        from engage.holdings import service

        known = Fund(name="Companies known")
        db.session.add(known)
        db.session.commit()
        service.import_file(data, "known.csv", service.ReadOptions(partial=True), fund_id=known.id)
        db.session.commit()
    worker = _worker_process(database_url, jobs_url)
    try:
        time.sleep(3)  # the worker is up and polling, as beside a running web server
        started = time.perf_counter()
        answer = client.post("/holdings/import", data={"fund_id": fund.id, "file": (io.BytesIO(data), "big.csv"),
                                                       "partial": "y"}, content_type="multipart/form-data")
        upload_seconds = time.perf_counter() - started
        assert answer.status_code == 302 and answer.location.startswith("/background/"), answer.status_code
        reading = int(answer.location.rsplit("/", 1)[1])
        cpu = _cpu_of(worker)
        _wait_done(client, answer.location)
        read_job = wait_for(reading, seconds=5)
        read_cpu = _cpu_of(worker) - cpu
        assert read_job.status == "done", read_job.error
        started = time.perf_counter()
        preview = client.get(read_job.result_url)
        preview_page_seconds = time.perf_counter() - started
        page = preview.get_data(as_text=True)
        assert preview.status_code == 200 and f"Import {ROWS} holdings" in page, page[:3000]
        token = page.split("/holdings/import/")[1].split('"')[0]
        started = time.perf_counter()
        answer = client.post(f"/holdings/import/{token}", data=factories.confirmation(page))
        confirm_seconds = time.perf_counter() - started
        assert answer.status_code == 302 and answer.location.startswith("/background/")
        started = time.perf_counter()
        shown = client.get(answer.location)
        page_seconds = time.perf_counter() - started
        job_id = int(answer.location.rsplit("/", 1)[1])
        cpu = _cpu_of(worker)
        _wait_done(client, answer.location)
        job = wait_for(job_id, seconds=5)
        import_cpu = _cpu_of(worker) - cpu
    finally:
        output = _stop(worker)
    assert shown.status_code == 200
    assert job.status == "done", (job.error, output)
    new = "new" if os.environ.get("ENGAGE_BENCH_JOBS_NEW") else "known"
    count = db.session.scalar(sa.select(sa.func.count(Holding.id)).where(Holding.fund_id == fund.id))
    read_run = (read_job.finished_at - read_job.started_at).total_seconds()
    run = (job.finished_at - job.started_at).total_seconds()
    print(f"\n{ROWS:,} rows ({new} companies), {len(data) / 1e6:.1f} MB, database {db.engine.dialect.name}, "
          f"load average {os.getloadavg()[0]:.1f}: upload answered in {upload_seconds * 1000:.0f} ms; preview job "
          f"{read_run:.1f} s (worker CPU {read_cpu:.1f} s); preview page {preview_page_seconds * 1000:.0f} ms; "
          f"confirmation answered in {confirm_seconds * 1000:.0f} ms; job page {page_seconds * 1000:.0f} ms; "
          f"import job {run:.1f} s (worker CPU {import_cpu:.1f} s); {count:,} positions")
    assert count == ROWS and db.session.get(BackgroundJob, job.id).attempts == 1
    assert upload_seconds < 5 and confirm_seconds < 2
