"""Long work off the request: a job queue (Huey) and the job rows the team sees.

A feature hands work over with `submit(kind, key=..., label=..., params=...)`: a `BackgroundJob` row
is written (its `key` makes a second submit of the same work, a double click, find the first
job) and only the row's id goes to the queue. A worker (`flask jobs worker`, started by `make
run` beside the scheduler) runs the feature's handler, registered with `@handler(kind)`, in an
app context; the handler reports progress through `report(done, total, message)` and returns an
`Outcome` (summary lines and where the result is).

The queue is chosen by `JOBS_URL`: empty (the default) is an embedded SQLite file in the instance
folder (no other service: works beside the default SQLite database), `postgresql://...` puts it
in PostgreSQL tables (several web and worker machines), `redis://...` in Redis (needs the
`redis` package), `memory://` keeps it in this process (tests that run their own worker thread).
Progress lives in the queue's own storage, not in the database: a handler's work is one database
transaction, which on SQLite holds the write lock, so a progress row could not be written beside it.

A handler is idempotent (a retried job must not do its work twice; the holdings import claims
its upload once) and raises `Refused` for what retrying cannot mend (the import's preview changed,
the upload is gone): the job fails at once with that message. Any other exception is retried
(`JOBS_RETRIES` times, `JOBS_RETRY_SECONDS` apart), then the job fails with the error, listed for
admins on /jobs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import secrets
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import Flask
from huey import Huey, crontab
from huey.storage import BaseSqlStorage, MemoryStorage, PostgresStorage, RedisStorage, SqliteStorage

from engage import audit, clock
from engage.dbutil import raise_busy_timeout
from engage.extensions import db
from engage.models import BackgroundJob, JobStatus, User

log = logging.getLogger("engage.jobs")

#: The queue. Its storage is set by `init_app` from JOBS_URL (memory until then).
huey = Huey("engage", results=False, storage_class=MemoryStorage, utc=True)

_state: dict = {"app": None}
#: The queue's own tables in PostgreSQL (Huey's; migrations leave them alone).
TABLE_PREFIX = "jobq"
HANDLERS: dict[str, Callable] = {}
#: kind -> how the files a finished job of that kind stored are deleted (`stored_result`).
RESULTS: dict[str, StoredResult] = {}


class Refused(Exception):
    """The job cannot be done as asked (not a passing fault): fail it at once with this message."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass
class Outcome:
    lines: list[str] = field(default_factory=list)
    #: (endpoint, values) of the page with the result.
    result: tuple[str, dict] | None = None


def handler(kind: str):
    """Register `func(job, report) -> Outcome` as the work of jobs of `kind`."""

    def register(func):
        HANDLERS[kind] = func
        return func

    return register


@dataclass(frozen=True)
class StoredResult:
    #: func(job, cutoff) -> files deleted.
    forget: Callable
    #: The result's page outlives the files (an import's fund or list version): the job's link is kept.
    lasting: bool = False


def stored_result(kind: str, *, lasting: bool = False):
    """Register `func(job, cutoff) -> int` as the deletion of what a finished job of `kind` stored
    (the number of files deleted). Called by `expire_results` once the job is JOB_RESULTS_KEEP_DAYS
    old; it must leave alone what a queued or running job still uses (`busy_tokens`) and files
    changed after `cutoff` (written again by a later job)."""

    def register(func):
        RESULTS[kind] = StoredResult(func, lasting)
        return func

    return register


def result_expired(job: BackgroundJob) -> bool:
    """The job's result was a stored file, deleted since (its page says so instead of linking to it)."""
    kept = RESULTS.get(job.kind)
    return job.expired_at is not None and kept is not None and not kept.lasting


def busy_tokens() -> set[str]:
    """The upload tokens of the jobs queued or running (their stashed files must not be deleted)."""
    params = db.session.scalars(sa.select(BackgroundJob.params).where(
        BackgroundJob.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]))).all()
    return {p["token"] for p in params if isinstance(p, dict) and isinstance(p.get("token"), str)}


def expire_results(now: dt.datetime, keep_days: int) -> tuple[int, int]:
    """Delete the stored results of the jobs finished more than `keep_days` days before `now` (of the
    kinds that store one) and mark each job expired: its page then says so instead of linking to a
    file that is gone. Queued and running jobs are never touched. Idempotent; the caller commits.
    (jobs marked, files deleted)."""
    cutoff = now - dt.timedelta(days=keep_days)
    jobs = db.session.scalars(sa.select(BackgroundJob).where(
        BackgroundJob.kind.in_(sorted(RESULTS)), BackgroundJob.expired_at.is_(None),
        BackgroundJob.status.in_([JobStatus.DONE.value, JobStatus.FAILED.value]),
        BackgroundJob.finished_at < cutoff).order_by(BackgroundJob.id)).all()
    files = 0
    for job in jobs:
        files += RESULTS[job.kind].forget(job, cutoff)
        job.expired_at = now
    return len(jobs), files


def storage_for(url: str, instance_path: str) -> tuple[type, dict]:
    """(storage class, its arguments) for JOBS_URL; ValueError for a URL of another kind."""
    if not url:
        return SqliteStorage, {"filename": str(Path(instance_path) / "jobs.sqlite")}
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
        if not path:
            raise ValueError(f"JOBS_URL {url!r}: a SQLite queue is sqlite:///path/to/jobs.sqlite")
        return SqliteStorage, {"filename": path if path.startswith("/") else str(Path(instance_path) / path)}
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        kwargs = {"dsn": "postgresql://" + url.split("://", 1)[1], "table_prefix": TABLE_PREFIX}
        if "connect_timeout" not in url:  # a queue host that does not answer fails a job in seconds, not the page
            kwargs["connect_timeout"] = 5
        return PostgresStorage, kwargs
    if scheme in ("redis", "rediss"):
        return RedisStorage, {"url": url}
    if scheme == "memory":
        return MemoryStorage, {}
    raise ValueError(f"JOBS_URL {url!r}: use sqlite:///..., postgresql://..., redis://... or memory://")


def init_app(app: Flask) -> None:
    """Point the queue at JOBS_URL and remember the app whose context the jobs run in."""
    storage_class, kwargs = storage_for(app.config.get("JOBS_URL") or "", app.instance_path)
    if issubclass(storage_class, BaseSqlStorage):
        kwargs["create_tables"] = False  # no connection at start: the web serves even while the queue is down
    if storage_class is not type(huey.storage) or kwargs != huey.storage_kwargs:
        huey.storage_class, huey.storage_kwargs = storage_class, kwargs
        huey.storage = huey.create_storage()
        _state["schema"] = False
    _state["app"] = app


def _ensure_schema() -> None:
    """The queue's own tables, made on first use in this process (idempotent: CREATE ... IF NOT EXISTS).

    An embedded queue's file deleted or replaced meanwhile (a careless clean-up of the instance
    folder) is noticed: the connection to the old file is closed and the new file made, so the web
    and the workers meet in the same file again (the workers check every minute)."""
    storage = huey.storage
    if _state.get("schema") and isinstance(storage, SqliteStorage) and _file_id(storage) != _state.get("file"):
        log.warning("job queue file %s was deleted or replaced; opening it again", storage.filename)
        storage.close()
        _state["schema"] = False
    if not _state.get("schema"):
        if isinstance(storage, BaseSqlStorage):
            storage.initialize_schema()
        if isinstance(storage, SqliteStorage):
            _state["file"] = _file_id(storage)
        _state["schema"] = True


def _file_id(storage: SqliteStorage) -> tuple[int, int] | None:
    try:
        found = os.stat(storage.filename)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def find(key: str) -> BackgroundJob | None:
    return db.session.scalar(sa.select(BackgroundJob).where(BackgroundJob.key == key))


def submit(kind: str, *, key: str, label: str, params: dict, user_id: int | None) -> BackgroundJob:
    """The job for `key`: the one already asked for, or a new one queued now (committed).

    A failed job of the same key is queued again (the user asked again)."""
    if kind not in HANDLERS:
        raise LookupError(f"no handler for jobs of kind {kind!r}")
    job = find(key)
    if job is not None and job.status != JobStatus.FAILED.value:
        return job
    if job is None:
        job = BackgroundJob(kind=kind, key=key, label=label[:300], params=params, created_by_id=user_id)
        db.session.add(job)
        try:
            db.session.commit()
        except sa.exc.IntegrityError:  # another request asked for the same work a moment ago
            db.session.rollback()
            return find(key)
    else:  # asked again after it failed: with this request's parameters (a preview confirmed anew)
        job.params, job.label = params, label[:300]
        requeue(job)
        return job
    _enqueue(job)
    return job


def submit_unless_running(kind: str, asked: list, *, label: str, user_id: int | None,
                          start: Callable[[], dict]) -> BackgroundJob:
    """A job of `kind` for the work `asked` names (e.g. the user, the file's SHA-256, the options),
    unless one for the same is queued or running: then that one (a double click on Upload, a second
    tab). `start()` is called only for a new job (it stashes the upload) and gives its params; the
    key is `<kind>:<digest of asked>:<params' token>:<random>`, so a finished job's work may be asked again."""
    digest = hashlib.sha256(json.dumps(asked, sort_keys=True, default=str).encode()).hexdigest()[:40]
    prefix = f"{kind}:{digest}:"
    running = db.session.scalar(sa.select(BackgroundJob).where(
        BackgroundJob.key.startswith(prefix, autoescape=True),
        BackgroundJob.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]))
        .order_by(BackgroundJob.id.desc()).limit(1))
    if running is not None:
        return running
    params = start()
    return submit(kind, key=f"{prefix}{params.get('token', '')}:{secrets.token_hex(4)}", label=label, params=params,
                  user_id=user_id)


def requeue(job: BackgroundJob) -> None:
    """Queue a failed job again (an admin's retry, or the same work asked for again): one more attempt."""
    job.status, job.error, job.finished_at, job.message = JobStatus.QUEUED.value, None, None, ""
    db.session.commit()
    _enqueue(job)


def _enqueue(job: BackgroundJob) -> None:
    try:
        _ensure_schema()
        huey.delete(_progress_key(job.id))
        run_job(job.id)
    except Exception as exc:  # the queue's storage is down: say so on the job, not as a 500
        log.exception("job %s could not be queued", job.id)
        job.status, job.finished_at = JobStatus.FAILED.value, clock.utcnow()
        job.error = f"The job queue is unavailable ({type(exc).__name__}: {exc}); ask an admin to check JOBS_URL."
        db.session.commit()


def _progress_key(job_id: int) -> str:
    return f"engage:progress:{job_id}"


def progress(job: BackgroundJob) -> dict:
    """{"done", "total", "message"} the worker last reported for the job ({} before the first report)."""
    try:
        _ensure_schema()  # the queue's file replaced: read the new one
        return huey.get(_progress_key(job.id), peek=True) or {}
    except Exception:  # the page still shows the job's row when the queue cannot be read
        return {}


def progress_many(jobs) -> dict[int, dict]:
    return {job.id: progress(job) for job in jobs if job.status == JobStatus.RUNNING.value}


@huey.task(retries=0, context=True)
def run_job(job_id: int, task=None) -> None:
    app = _state["app"]
    if app is None:
        raise RuntimeError("engage.background.init_app was not called in this process")
    with app.app_context():
        try:
            execute(job_id)
        finally:
            db.session.remove()


def execute(job_id: int) -> None:
    """Run one job by its row: skip it if done, else run its handler, record the outcome, retry on a fault."""
    _patient()
    job = db.session.get(BackgroundJob, job_id)
    if job is None or job.status != JobStatus.QUEUED.value:
        return  # done, failed, or running in another worker: a duplicated message does nothing
    # taken by a conditional update: of two workers given the same job (a message queued twice,
    # a job re-queued by recover_stale) one runs it
    taken = db.session.execute(sa.update(BackgroundJob).where(
        BackgroundJob.id == job_id, BackgroundJob.status == JobStatus.QUEUED.value,
        BackgroundJob.attempts == job.attempts).values(
        status=JobStatus.RUNNING.value, attempts=job.attempts + 1, started_at=clock.utcnow(), error=None)
        .execution_options(synchronize_session=False))
    db.session.commit()
    if taken.rowcount != 1:
        return
    db.session.refresh(job)

    def report(done: int, total: int | None = None, message: str = "") -> None:
        # "at" is the job's heartbeat: a running job that reported lately is alive (see recover_stale)
        huey.put(_progress_key(job_id), {"done": done, "total": total, "message": message, "at": time.time()})

    owner = db.session.get(User, job.created_by_id) if job.created_by_id else None
    try:
        # what the job changes is recorded (audit trail, "imported by") as done by who asked for it
        with audit.acting_as(owner.email if owner else "job worker", owner.id if owner else None):
            outcome = HANDLERS[job.kind](job, report)
    except Refused as exc:
        db.session.rollback()
        _finish(job_id, JobStatus.FAILED, error=exc.message)
        return
    except Exception as exc:
        db.session.rollback()
        log.exception("job %s (%s) failed on attempt", job_id, job.kind)
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        app = _state["app"]
        attempts = db.session.scalar(sa.select(BackgroundJob.attempts).where(BackgroundJob.id == job_id)) or 0
        if attempts <= app.config["JOBS_RETRIES"]:
            _finish(job_id, JobStatus.QUEUED, error=f"attempt {attempts} failed ({detail}); retried", final=False)
            run_job.schedule((job_id,), delay=app.config["JOBS_RETRY_SECONDS"])
        else:
            _finish(job_id, JobStatus.FAILED, error=f"failed after {attempts} attempts: {detail}")
        return
    adapter = _state["app"].url_map.bind("localhost")
    url = adapter.build(outcome.result[0], outcome.result[1]) if outcome.result else None
    _finish(job_id, JobStatus.DONE, lines=outcome.lines, url=url)


def _patient() -> None:
    """On SQLite, a worker's own bookkeeping (taking a job, recording its end) waits as long as an
    import waits for its turn (HOLDINGS_IMPORT_WAIT_SECONDS), not SQLITE_BUSY_TIMEOUT_MS: another
    worker thread's import holds the write lock for longer than a page would wait, and a job that
    could not be taken stayed queued until the minute's check."""
    config = _state["app"].config
    wait = int(config.get("HOLDINGS_IMPORT_WAIT_SECONDS", 120)) * 1000
    raise_busy_timeout(db.session.connection(), max(wait, int(config["SQLITE_BUSY_TIMEOUT_MS"])))


def _finish(job_id: int, status: JobStatus, *, error: str | None = None, lines: list[str] | None = None,
            url: str | None = None, final: bool = True) -> None:
    _patient()
    job = db.session.get(BackgroundJob, job_id)
    job.status, job.error = status.value, error
    if lines is not None:
        job.message = "\n".join(lines)
    if url is not None:
        job.result_url = url
    if final:
        job.finished_at = clock.utcnow()
    db.session.commit()


def consumer(workers: int = 2, periodic: bool = False):
    """A Huey consumer of this app's queue (threads; `flask jobs worker` runs it, `periodic` with
    the minute's check for jobs of a dead worker)."""
    _ensure_schema()
    # SIGTERM (what systemd, Docker and Procfile runners send to stop a service) lets the jobs being
    # run finish first; SIGINT (Ctrl+C) stops at once, leaving them to recover_stale.
    return huey.create_consumer(workers=workers, worker_type="thread", periodic=periodic, initial_delay=0.1,
                                max_delay=1.0, backoff=1.15, check_worker_health=True, graceful_signal="TERM")


def lease() -> dt.timedelta:
    """A running job silent this long (no progress reported since it started or since its last
    report) was left by a worker that died: HOLDINGS_CONFIRM_LEASE_SECONDS, the time after which
    the holdings import's claim on its upload may be taken over too."""
    return dt.timedelta(seconds=_state["app"].config["HOLDINGS_CONFIRM_LEASE_SECONDS"])


def is_stale(job: BackgroundJob, progress_now: dict | None = None) -> bool:
    """The job is "running" but neither started nor reported progress within the lease."""
    if job.status != JobStatus.RUNNING.value or job.started_at is None:
        return False
    limit = clock.utcnow() - lease()
    if job.started_at > limit:
        return False
    beat = (progress(job) if progress_now is None else progress_now).get("at")
    return not (isinstance(beat, (int, float)) and beat > time.time() - lease().total_seconds())


def recover_stale() -> list[int]:
    """Queue again the jobs left "running" by a worker that died (killed, out of memory, machine
    lost: Huey loses a task in flight), or fail them when they have used their attempts.

    Queued jobs whose message was lost (nothing is waiting in the queue, yet they have waited a
    minute) are queued again too.

    Run when `flask jobs worker` starts and every minute by each worker. Idempotent and safe with
    several workers: a job changes only if it is still running the same attempt (a conditional
    UPDATE), so one caller re-queues it once. The ids of the jobs re-queued or failed."""
    _ensure_schema()
    limit = clock.utcnow() - lease()
    running = db.session.scalars(sa.select(BackgroundJob).where(
        BackgroundJob.status == JobStatus.RUNNING.value, BackgroundJob.started_at < limit)).all()
    changed = []
    retries = _state["app"].config["JOBS_RETRIES"]
    for job in running:
        if not is_stale(job):
            continue
        stopped = f"the worker running attempt {job.attempts} stopped without finishing it (no progress for {lease().total_seconds():g} s)"
        if job.attempts <= retries:
            values = {"status": JobStatus.QUEUED.value, "error": f"{stopped}; queued again"}
        else:
            values = {"status": JobStatus.FAILED.value, "error": f"failed after {job.attempts} attempts: {stopped}",
                      "finished_at": clock.utcnow()}
        updated = db.session.execute(sa.update(BackgroundJob).where(
            BackgroundJob.id == job.id, BackgroundJob.status == JobStatus.RUNNING.value,
            BackgroundJob.attempts == job.attempts).values(**values).execution_options(synchronize_session=False))
        db.session.commit()
        if updated.rowcount != 1:  # another worker recovered it, or it finished meanwhile
            continue
        changed.append(job.id)
        log.warning("job %s: %s", job.id, values["error"])
        if values["status"] == JobStatus.QUEUED.value:
            db.session.expire(job)
            _enqueue(job)
    # Queued jobs whose message is gone (the queue's file deleted, Redis flushed): nothing waits in
    # the queue, yet they have waited a minute. Queued again; were a message still somewhere, the
    # job would still run once (execute takes it by a conditional update).
    if huey.pending_count() == 0 and huey.scheduled_count() == 0:
        quiet = clock.utcnow() - dt.timedelta(seconds=60)
        for job in db.session.scalars(sa.select(BackgroundJob).where(
                BackgroundJob.status == JobStatus.QUEUED.value, BackgroundJob.updated_at < quiet)).all():
            log.warning("job %s: queued but not in the queue; queued again", job.id)
            job.updated_at = clock.utcnow()  # the next check leaves it alone for a minute
            db.session.commit()
            _enqueue(job)
            changed.append(job.id)
    return changed


@huey.periodic_task(crontab(), context=False)
def recover_stale_jobs() -> None:
    """Every minute, in a worker: re-queue the jobs of a worker that died (see recover_stale)."""
    app = _state["app"]
    with app.app_context():
        try:
            recover_stale()
        finally:
            db.session.remove()


def stale_after() -> dt.timedelta:
    """A job queued this long with no worker taking it: the page says a worker may not be running."""
    return dt.timedelta(seconds=30)
