"""Measure a list file of ENTRIES (20,000) made-up CSL entries: upload and preview in the request (before) against the upload answered and the preview job (after).

Run from the project folder: `ENTRIES=20000 .venv/bin/python scripts/bench_listjob.py` (a temporary SQLite file; the job runs in this process)."""
import io, os, sys, time, resource, tempfile
sys.path.insert(0, os.getcwd())
from config import TestConfig
from engage import create_app, background
from engage.extensions import db
from flask_migrate import upgrade
from tests.test_lists_jobs_break import csl_file
from tests.conftest import login
from engage.models import User, BackgroundJob

folder = tempfile.mkdtemp(prefix="h-listjob-bench-")
app = create_app(TestConfig, overrides={"SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder}/b.sqlite",
                                        "JOBS_URL": f"sqlite:///{folder}/jobs.sqlite"})
app.instance_path = folder
entries = int(os.environ.get("ENTRIES", "20000"))
data = csl_file(entries)
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime
with app.app_context():
    upgrade()
    from tests.conftest import PASSWORD
    u = User(email="bench@example.org", name="Bench", role="analyst"); u.set_password(PASSWORD)
    db.session.add(u); db.session.commit()
    client = app.test_client()
    from tests.conftest import login as do_login
    assert do_login(client, u.email).status_code == 302
    print(f"file: {entries:,} entries, {len(data)/1e6:.1f} MB; load {os.getloadavg()}")
    for label, threshold in (("before (in the request)", 10**12), ("after (a job)", 1_000_000)):
        app.config["LISTS_PREVIEW_JOB_BYTES"] = threshold
        w, c = time.perf_counter(), cpu()
        r = client.post("/lists/import", data={"file": (io.BytesIO(data), "big.csv")}, content_type="multipart/form-data")
        print(f"{label}: upload answered {r.status_code} in {1000*(time.perf_counter()-w):.0f} ms ({1000*(cpu()-c):.0f} ms CPU)")
        if r.status_code == 302:
            job_id = int(r.location.rsplit("/", 1)[1])
            w, c = time.perf_counter(), cpu()
            background.execute(job_id)
            job = db.session.get(BackgroundJob, job_id)
            print(f"  preview job: {job.status} in {time.perf_counter()-w:.1f} s ({cpu()-c:.1f} s CPU)")
            w, c = time.perf_counter(), cpu()
            p = client.get(job.result_url)
            print(f"  preview page: {p.status_code} in {1000*(time.perf_counter()-w):.0f} ms ({1000*(cpu()-c):.0f} ms CPU)")
    print(f"load at end {os.getloadavg()}")
