"""A big monthly export asked for on the Exports page, made by a background job into a stored file.

An export of EXPORT_JOB_ENGAGEMENTS engagements or more takes longer than a page (17,000
engagements: seconds; ten times that: a minute), so the page queues this job and shows its page.
The job builds the export as the page would (the same month, format, filters and cut-off day),
writes it under instance/exports (as the scheduler's monthly export) and records it as an
`ExportRun` of kind `job-<id>`, listed on the Exports page and linked from the job's page.

Retried, it stores one file: a run already recorded for this job is its result, and an attempt
that died before recording its run wrote the same file name, which the next attempt replaces.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import sqlalchemy as sa

from engage import background, clock
from engage.exports import monthly, service
from engage.extensions import db
from engage.models import AuditEvent, Engagement, ExportRun

KIND = "monthly_export"


def run_kind(job_id: int) -> str:
    return f"job-{job_id}"


def key(args: dict, today: dt.date, user_id: int) -> str:
    """The same export asked for again (a double click, a second tab) while the data has not changed:
    the same job. Any change since (an audit event, an engagement updated) or another day: a new one."""
    stamp = (db.session.scalar(sa.select(sa.func.max(AuditEvent.id)).where(
                 AuditEvent.object_type.not_in(("BackgroundJob", "ExportRun", "FormSubmission", "User")))),
             db.session.scalar(sa.select(sa.func.max(Engagement.updated_at))))
    text = json.dumps([sorted(args.items()), today.isoformat(), stamp[0], str(stamp[1]), user_id])
    return f"{KIND}:{hashlib.sha256(text.encode()).hexdigest()[:32]}"


@background.handler(KIND)
def make(job, report) -> background.Outcome:
    earlier = db.session.scalar(sa.select(ExportRun).where(ExportRun.kind == run_kind(job.id)))
    if earlier is not None and (service.export_dir() / earlier.filename).is_file():
        return _outcome(earlier)  # an earlier attempt stored it, then its worker died
    today = dt.date.fromisoformat(job.params["today"])
    try:
        asked = monthly.parse_request(job.params["args"], today)
    except monthly.ExportError as error:  # a campaign, owner or fund deleted since it was asked for
        raise background.Refused(f"No export: {error.message}") from error
    total = monthly.count(asked.month, asked.filters, cut_off=today)
    report(0, total, f"Writing {total:,} engagements as {asked.fmt.upper()}")
    # read while it is written, a batch of rows at a time; each batch reports (the job's heartbeat)
    export = monthly.stream(asked.month, asked.filters, cut_off=today, on_batch=lambda done: report(
        min(done, total), total, f"Writing {total:,} engagements as {asked.fmt.upper()}: {min(done, total):,} written"))
    filename = f"engage-status-{asked.month}-job{job.id}.{asked.fmt}"
    monthly.write_file(export, asked.fmt, service.export_dir() / filename)
    report(total, total, "Storing the file")
    now = clock.utcnow()
    if earlier is None:
        earlier = ExportRun(kind=run_kind(job.id), month=str(asked.month), filename=filename, rows=export.row_count,
                            created_at=now, updated_at=now)
        db.session.add(earlier)
    else:  # recorded, but its file is gone: written again above
        earlier.filename, earlier.rows = filename, export.row_count
    db.session.commit()
    report(total, total, "Done")
    return _outcome(earlier)


def _outcome(run: ExportRun) -> background.Outcome:
    return background.Outcome([f"{run.filename}: {run.rows:,} engagements. It is kept on the Exports page."],
                              ("exports.stored", {"run_id": run.id}))


@background.stored_result(KIND)
def forget(job, _cutoff) -> int:
    """The file a finished export job stored (its ExportRun stays, saying on the Exports page and at
    its link that the file was deleted)."""
    run = db.session.scalar(sa.select(ExportRun).where(ExportRun.kind == run_kind(job.id)))
    if run is None:
        return 0
    path = service.export_dir() / run.filename
    if not path.is_file() or path.is_symlink():
        return 0
    path.unlink()
    return 1
