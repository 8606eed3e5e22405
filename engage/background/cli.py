"""`flask jobs worker` runs the job queue's consumer; `flask jobs list` shows recent jobs; `flask jobs
clean` deletes the stored results of old jobs (housekeeping does it hourly)."""

from __future__ import annotations

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import AppGroup

from engage import background, clock
from engage.extensions import db
from engage.formatting import format_datetime
from engage.models import BackgroundJob

jobs_cli = AppGroup("jobs", help="The background job queue (long imports and bulk work).")


@jobs_cli.command("worker")
@click.option("--workers", type=click.IntRange(1, 32), default=2, show_default=True,
              help="Jobs run at once by this process (threads).")
def worker(workers: int) -> None:
    """Run queued jobs until SIGTERM (lets running jobs finish) or Ctrl+C (at once); one per machine, or more."""
    click.echo(f"Job worker: {workers} thread(s) on {type(background.huey.storage).__name__}")
    consumer = background.consumer(workers, periodic=True)
    recovered = background.recover_stale()  # jobs a worker that died left "running"
    if recovered:
        click.echo(f"Jobs left running by a stopped worker, queued again or failed: {', '.join(map(str, recovered))}")
    consumer.run()


@jobs_cli.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
def list_jobs(limit: int) -> None:
    """The latest jobs: id, status, attempts, what, and the error of a failed one."""
    for job in db.session.scalars(sa.select(BackgroundJob).order_by(BackgroundJob.id.desc()).limit(limit)):
        click.echo(f"{job.id}\t{job.status}\t{job.attempts}\t{format_datetime(job.created_at)}\t{job.label}"
                   + (f"\n\t{job.error}" if job.error else ""))


@jobs_cli.command("clean")
@click.option("--days", type=click.IntRange(0, 36_500), default=None,
              help="Keep the results of jobs finished within this many days (default: JOB_RESULTS_KEEP_DAYS).")
def clean(days: int | None) -> None:
    """Delete the stored results (exports, letter ZIPs, kept uploads) of jobs finished more than
    JOB_RESULTS_KEEP_DAYS days ago; their pages then say the result was deleted. Running jobs are
    never touched. The scheduler's hourly housekeeping does the same."""
    days = current_app.config["JOB_RESULTS_KEEP_DAYS"] if days is None else days
    jobs, files = background.expire_results(clock.utcnow(), days)
    db.session.commit()
    click.echo(f"{files} stored result file(s) of {jobs} job(s) finished over {days} day(s) ago removed")
