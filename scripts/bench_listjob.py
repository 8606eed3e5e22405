"""Measure a list file of ENTRIES (20,000) made-up CSL entries: the upload and preview in the
request (before) against the upload answered at once and the preview job (after).

Run from the project folder: `ENTRIES=20000 .venv/bin/python scripts/bench_listjob.py` (a temporary
SQLite file and queue; the job runs in this process, so its CPU seconds are this process's)."""

import io
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.getcwd())

from flask_migrate import upgrade  # noqa: E402

from config import TestConfig  # noqa: E402
from engage import background, create_app  # noqa: E402
from engage.extensions import db  # noqa: E402
from engage.models import BackgroundJob, User  # noqa: E402
from tests.conftest import PASSWORD, login  # noqa: E402
from tests.test_lists_jobs_break import csl_file  # noqa: E402


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    folder = tempfile.mkdtemp(prefix="bench-listjob-")
    app = create_app(TestConfig, overrides={"SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder}/bench.sqlite",
                                            "JOBS_URL": f"sqlite:///{folder}/jobs.sqlite"})
    app.instance_path = folder
    entries = int(os.environ.get("ENTRIES", "20000"))
    data = csl_file(entries)
    with app.app_context():
        upgrade()
        user = User(email="bench@example.org", name="Bench", role="analyst")
        user.set_password(PASSWORD)
        db.session.add(user)
        db.session.commit()
        client = app.test_client()
        assert login(client, user.email).status_code == 302
        print(f"file: {entries:,} entries, {len(data) / 1e6:.1f} MB; load {os.getloadavg()}")
        for label, threshold in (("before (in the request)", 10**12), ("after (a job)", 1_000_000)):
            app.config["LISTS_PREVIEW_JOB_BYTES"] = threshold
            wall, used = time.perf_counter(), cpu()
            answer = client.post("/lists/import", data={"file": (io.BytesIO(data), "big.csv")},
                                 content_type="multipart/form-data")
            print(f"{label}: upload answered {answer.status_code} in {1000 * (time.perf_counter() - wall):.0f} ms "
                  f"({1000 * (cpu() - used):.0f} ms CPU)")
            if answer.status_code != 302:
                continue
            job_id = int(answer.location.rsplit("/", 1)[1])
            wall, used = time.perf_counter(), cpu()
            background.execute(job_id)
            job = db.session.get(BackgroundJob, job_id)
            print(f"  preview job: {job.status} in {time.perf_counter() - wall:.1f} s ({cpu() - used:.1f} s CPU)")
            wall, used = time.perf_counter(), cpu()
            page = client.get(job.result_url)
            print(f"  preview page: {page.status_code} in {1000 * (time.perf_counter() - wall):.0f} ms "
                  f"({1000 * (cpu() - used):.0f} ms CPU)")
        print(f"load at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
