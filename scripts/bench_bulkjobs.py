"""Figures for issue 20's bulk jobs on the synthetic data set: request ms before (in the request) and
after (queued), and the job's seconds in a real `flask jobs worker` process.

    flask --app wsgi synth --companies 10000   # into DATABASE_URL, a copy of which this script uses
    DATABASE_URL=sqlite:////tmp/synth.sqlite python scripts/bench_bulkjobs.py [letters|email|lists|export ...]

It writes to the database (a batch of LETTERS letters, contacts, a list version, stored exports):
run it on a copy.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from config import TestConfig  # noqa: E402
from engage import clock, create_app  # noqa: E402
from engage.extensions import db  # noqa: E402
from engage.models import BackgroundJob, CompanyContact, Engagement, LetterBatch, LetterTemplate, User  # noqa: E402

LETTERS = int(os.environ.get("BENCH_LETTERS", "1000"))
ENTRIES = int(os.environ.get("BENCH_ENTRIES", "20000"))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Bench:
    def __init__(self, url: str, folder: Path):
        self.jobs_url = f"sqlite:///{folder / 'jobs.sqlite'}"
        self.folder = folder
        self.app = create_app(TestConfig, overrides={"SQLALCHEMY_DATABASE_URI": url, "JOBS_URL": self.jobs_url,
                                                     "DOCUMENT_CACHE_DIR": str(folder / "documents")})
        self.url = url
        self.context = self.app.app_context()
        self.context.push()
        self.client = self.app.test_client()
        user = db.session.scalar(sa.select(User).where(User.email == "bench@example.org"))
        if user is None:
            user = User(email="bench@example.org", name="Bench Analyst", role="analyst")
            user.set_password("bench-password-1")
            db.session.add(user)
            db.session.commit()
        self.user = user
        with self.client.session_transaction() as session:
            session["_user_id"] = user.get_id()
            session["_fresh"] = True
        self.worker = None

    def start_worker(self):
        env = {**os.environ, "ENGAGE_ENV": "development", "DATABASE_URL": self.url, "JOBS_URL": self.jobs_url,
               "FLASK_APP": "wsgi", "PYTHONPATH": str(ROOT), "DOCUMENT_CACHE_DIR": str(self.folder / "documents")}
        self.worker = subprocess.Popen([sys.executable, "-m", "flask", "jobs", "worker", "--workers", "1"], cwd=ROOT,
                                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(4)

    def stop_worker(self):
        if self.worker is not None:
            self.worker.terminate()
            self.worker.wait(60)

    def timed(self, method: str, url: str, **kwargs):
        started, cpu = time.perf_counter(), time.process_time()
        response = getattr(self.client, method)(url, **kwargs)
        return response, (time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000

    def flashed(self) -> list[str]:
        with self.client.session_transaction() as session:
            return [text[:200] for _, text in session.get("_flashes", [])]

    def wait(self, response) -> tuple[BackgroundJob, float, float]:
        assert response.status_code in (302, 303) and "/background/" in response.location, \
            (response.status_code, response.location, response.get_data(as_text=True)[:2000])
        job_id = int(response.location.rsplit("/", 1)[1])
        cpu = cpu_seconds(self.worker.pid)
        while True:
            db.session.expire_all()
            job = db.session.get(BackgroundJob, job_id)
            if job.finished:
                break
            time.sleep(0.5)
        return job, (job.finished_at - job.started_at).total_seconds(), cpu_seconds(self.worker.pid) - cpu


def report(what: str, request_ms: float, request_cpu_ms: float, extra: str = "") -> None:
    print(f"{what}: {request_ms:,.0f} ms (CPU {request_cpu_ms:,.0f} ms) {extra}", flush=True)


def make_batch(bench: Bench) -> LetterBatch:
    from engage.letters import service

    engagements = db.session.scalars(sa.select(Engagement).where(Engagement.is_open).order_by(Engagement.id)
                                     .limit(LETTERS)).all()
    have = set(db.session.scalars(sa.select(CompanyContact.company_id).where(CompanyContact.email.is_not(None))))
    for engagement in engagements:
        if engagement.company_id not in have:
            db.session.add(CompanyContact(company_id=engagement.company_id, name="Investor Relations",
                                          email=f"ir{engagement.company_id}@bench.example", role="investor_relations"))
            have.add(engagement.company_id)
    db.session.commit()
    template = db.session.scalar(sa.select(LetterTemplate).where(LetterTemplate.slug == "bench-letter"))
    if template is None:  # the seed's letter without the lines naming the seed campaign's expectations
        seed = db.session.scalar(sa.select(LetterTemplate).where(LetterTemplate.kind == "initial"))
        template = LetterTemplate(slug="bench-letter")
        service.save_template(template, name="Bench letter", kind="initial", subject=seed.subject,
                              body=re.sub(r"\{% for .*?\{% endfor %\}\n|We also invite.*\n", "", seed.body, flags=re.S),
                              active=True, actor_id=bench.user.id)
        db.session.add(template)
        db.session.commit()
    started = time.perf_counter()
    batch = service.generate_many(engagements, template, bench.user)
    db.session.commit()
    print(f"batch #{batch.id}: {len(engagements)} letters generated in {time.perf_counter() - started:.1f} s")
    return batch


def letters(bench: Bench) -> None:
    batch = make_batch(bench)
    app = bench.app
    # before: the page polled /prepare, 20 letters (40 documents) a request
    app.config["LETTERS_JOB_LETTERS"] = 10 ** 9
    response, ms, cpu = bench.timed("post", f"/letters/batches/{batch.id}/prepare")
    report(f"before: one /prepare request (20 of {LETTERS} letters, PDF+DOCX)", ms, cpu,
           f"-> about {ms * LETTERS / 20 / 1000:,.0f} s of requests for the batch")
    response, ms, cpu = bench.timed("get", f"/letters/batches/{batch.id}")
    report("before: batch page", ms, cpu)
    app.config["LETTERS_JOB_LETTERS"] = 25
    response, ms, cpu = bench.timed("get", f"/letters/batches/{batch.id}")
    report("after: batch page", ms, cpu)
    response, ms, cpu = bench.timed("post", f"/letters/batches/{batch.id}/prepare-job", data={})
    report("after: Prepare the ZIP (queues the job)", ms, cpu)
    job, seconds, job_cpu = bench.wait(response)
    print(f"  job {job.id} {job.status}: {seconds:,.1f} s (worker CPU {job_cpu:,.1f} s); {job.message or job.error}")
    response, ms, cpu = bench.timed("get", f"/letters/batches/{batch.id}.zip")
    report(f"after: the ZIP ({len(response.data) / 1e6:.1f} MB)", ms, cpu)


def email(bench: Bench) -> None:
    batch = make_batch(bench)
    app = bench.app
    page = bench.client.get(f"/letters/batches/{batch.id}").get_data(as_text=True)
    token = re.search(r'name="form_token" type="hidden" value="([0-9a-f]{32})"', page).group(1)
    if os.environ.get("BENCH_BEFORE"):
        app.config["LETTERS_JOB_LETTERS"] = 10 ** 9
        response, ms, cpu = bench.timed("post", f"/letters/batches/{batch.id}/email", data={"form_token": token},
                                        follow_redirects=True)
        flashed = re.findall(r'class="flash[^"]*"[^>]*>(.*?)<', response.get_data(as_text=True), re.S)
        report("before: Email the drafts in the request", ms, cpu, str([f.strip()[:160] for f in flashed]))
        return
    app.config["LETTERS_JOB_LETTERS"] = 25
    response, ms, cpu = bench.timed("post", f"/letters/batches/{batch.id}/email", data={"form_token": token})
    report("after: Email the drafts (queues the job)", ms, cpu)
    job, seconds, job_cpu = bench.wait(response)
    print(f"  job {job.id} {job.status}: {seconds:,.1f} s (worker CPU {job_cpu:,.1f} s); {job.message or job.error}")


def list_file(n: int) -> bytes:
    lines = ["source,entity_number,type,programs,name,title,addresses,federal_register_notice,start_date,end_date,"
             "standard_order,license_requirement,license_policy,call_sign,vessel_type,gross_tonnage,"
             "gross_registered_tonnage,vessel_flag,vessel_owner,remarks,source_list_url,alt_names,citizenships,"
             "dates_of_birth,nationalities,places_of_birth,source_information_url,ids"]
    for i in range(n):
        lines.append(f"Entity List (EL) - Bureau of Industry and Security,,Entity,,Bench Listed Entity {i} Co Ltd,,"
                     f"\"{i} Bench Road, Shenzhen, CN\",84 FR {i},2020-01-01,,,,,,,,,,,,,,,,,,,")
    return ("\n".join(lines) + "\n").encode()


def lists(bench: Bench) -> None:
    app = bench.app
    data = list_file(ENTRIES)
    for label, threshold in (("before", 10 ** 9), ("after", 2000)):
        app.config["LISTS_JOB_ENTRIES"] = threshold
        app.config["MAX_CONTENT_LENGTH"] = 256 * 1024 * 1024
        data = data.replace(b"Bench Listed Entity 0 ", f"Bench Listed Entity 0 {label} ".encode())
        started = time.perf_counter()
        page = bench.client.post("/lists/import", data={"file": (io.BytesIO(data), f"bench-{label}.csv"),
                                                        "retrieved_on": clock.today().isoformat()},
                                 content_type="multipart/form-data").get_data(as_text=True)
        print(f"{label}: upload and preview of {ENTRIES:,} entries: {time.perf_counter() - started:,.1f} s")
        token = re.search(r'action="/lists/import/([0-9a-f]{32})"', page).group(1)
        digest = re.search(r'name="preview" value="([0-9a-f]{64})"', page).group(1)
        response, ms, cpu = bench.timed("post", f"/lists/import/{token}", data={"preview": digest, "older": "y"})
        report(f"{label}: confirm", ms, cpu, "" if label == "after" else str(bench.flashed()))
        if label == "after":
            job, seconds, job_cpu = bench.wait(response)
            print(f"  job {job.id} {job.status}: {seconds:,.1f} s (worker CPU {job_cpu:,.1f} s); "
                  f"{(job.message or job.error).replace(chr(10), ' / ')}")


def export(bench: Bench) -> None:
    app = bench.app
    month = os.environ.get("BENCH_MONTH") or ""
    url = f"/exports/monthly?format=xlsx{'&month=' + month if month else ''}"
    app.config["EXPORT_JOB_ENGAGEMENTS"] = 10 ** 9
    response, ms, cpu = bench.timed("get", url)
    report(f"before: download ({len(response.data) / 1e6:.1f} MB)", ms, cpu)
    app.config["EXPORT_JOB_ENGAGEMENTS"] = 3000
    response, ms, cpu = bench.timed("get", url)
    report("after: download (queues the job)", ms, cpu)
    job, seconds, job_cpu = bench.wait(response)
    print(f"  job {job.id} {job.status}: {seconds:,.1f} s (worker CPU {job_cpu:,.1f} s); {job.message or job.error}")
    response, ms, cpu = bench.timed("get", job.result_url)
    report("after: the stored file", ms, cpu)


def main() -> None:
    url = os.environ["DATABASE_URL"]
    with tempfile.TemporaryDirectory() as folder:
        bench = Bench(url, Path(folder))
        bench.start_worker()
        try:
            for name in sys.argv[1:] or ["letters", "email", "lists", "export"]:
                print(f"--- {name} (load average {os.getloadavg()[0]:.2f})", flush=True)
                globals()[name](bench)
        finally:
            bench.stop_worker()


if __name__ == "__main__":
    main()
