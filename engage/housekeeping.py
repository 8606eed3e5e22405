"""Deleting what nobody will use again: import previews never confirmed, old cached documents,
claimed form tokens past any form's life, PostgreSQL's write log of the funds page's stored
exposures past LOG_CLEAR_AT rows (engage.holdings.stored.clear_log), and the stored results of background jobs finished more
than JOB_RESULTS_KEEP_DAYS ago (engage.background.expire_results: exports, letter ZIPs, uploads).

Both live under the instance folder: `uploads/` holds holdings files between their preview and
their confirmation (and, briefly, the result of a confirmation); `cache/` holds rendered
documents that can be rendered again. Ages are measured from each file's modification time.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from flask import current_app

from engage import background, idempotency
from engage.holdings import screening_stored
from engage.holdings import stored as holdings_stored


def remove_files_older_than(folder: Path, cutoff: dt.datetime, keep=lambda name: False) -> int:
    """Delete regular files under `folder` (recursively, never following links) changed before
    `cutoff`, but those whose name `keep(name)` says to keep."""
    if not folder.is_dir() or folder.is_symlink():
        return 0
    limit = (cutoff if cutoff.tzinfo else cutoff.replace(tzinfo=dt.UTC)).timestamp()
    removed = 0
    for root, _dirs, files in os.walk(folder, followlinks=False):
        for name in files:
            path = Path(root) / name
            if keep(name):
                continue
            try:
                if path.lstat().st_mtime < limit:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:  # removed meanwhile (a confirmation, another housekeeping run)
                continue
    return removed


def remove_old_uploads(now: dt.datetime) -> int:
    """Import previews (and confirmation results) older than UPLOAD_MAX_AGE_HOURS, but the uploads
    of queued and running jobs (a big file waiting for a busy worker, an import running for long)."""
    hours = current_app.config["UPLOAD_MAX_AGE_HOURS"]
    busy = background.busy_tokens()
    return remove_files_older_than(Path(current_app.instance_path) / "uploads", now - dt.timedelta(hours=hours),
                                   keep=lambda name: name.split(".", 1)[0] in busy)


def expire_job_results(now: dt.datetime) -> list[str]:
    """The stored results of jobs finished more than JOB_RESULTS_KEEP_DAYS days ago, deleted; the jobs marked."""
    days = current_app.config["JOB_RESULTS_KEEP_DAYS"]
    jobs, files = background.expire_results(now, days)
    return [f"{files} stored job result file(s) of {jobs} job(s) finished over {days} days ago removed"]


def remove_old_cache_files(now: dt.datetime) -> int:
    """Anything under instance/cache/ older than CACHE_MAX_AGE_DAYS."""
    days = current_app.config["CACHE_MAX_AGE_DAYS"]
    return remove_files_older_than(Path(current_app.instance_path) / "cache", now - dt.timedelta(days=days))


def run(now: dt.datetime) -> list[str]:
    """One housekeeping pass; the caller (job or CLI) commits the forgotten form tokens."""
    tokens = idempotency.prune(now - dt.timedelta(days=idempotency.KEEP_DAYS))
    expired = expire_job_results(now)
    cleared = holdings_stored.clear_log()
    cleared_screening = screening_stored.clear_log()
    return [f"{remove_old_uploads(now)} expired import preview file(s) removed",
            f"{remove_old_cache_files(now)} old cache file(s) removed",
            f"{tokens} form token(s) forgotten"] + expired + (
                [f"{cleared} row(s) of the funds page's write log cleared"] if cleared else []) + (
                [f"{cleared_screening} row(s) of the screening pages' write log cleared"] if cleared_screening else [])
