"""Stored monthly exports and the scheduler's monthly job (build, keep a copy, email it once)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import sqlalchemy as sa
from flask import current_app

from engage.dbutil import insert_ignoring_conflicts
from engage.exports.monthly import Month, stream, write_file
from engage.extensions import db
from engage.formatting import format_month
from engage.models import ExportRun
from engage.core import outbox


def export_dir() -> Path:
    folder = Path(current_app.instance_path) / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def recipients() -> list[str]:
    return [r.strip() for r in (current_app.config["MONTHLY_EXPORT_RECIPIENTS"] or "").split(",") if r.strip()]


def run_monthly(now: dt.datetime) -> str:
    """On the 1st (or whenever it runs), last month's XLSX: stored once, emailed once."""
    month = Month(now.year, now.month).previous
    filename = f"engage-status-{month}.xlsx"
    db.session.commit()  # the claim below starts its own transaction
    claimed = insert_ignoring_conflicts(ExportRun, [{"kind": "monthly", "month": str(month), "filename": filename,
                                                     "rows": 0, "created_at": now, "updated_at": now}])
    if not claimed:
        db.session.rollback()
        return f"monthly export {month}: already made"
    export = stream(month)  # read while it is written: one batch of rows in memory
    write_file(export, "xlsx", export_dir() / filename)
    db.session.execute(sa.update(ExportRun).where(ExportRun.id == claimed[0]).values(rows=export.row_count))
    for address in recipients():
        email = outbox.enqueue(address, f"Engage monthly status export, {format_month(month.first)}",
                             f"Attached: the status of {export.row_count} engagements at the end of "
                             f"{format_month(month.first)}.\n"
                             f"It is also on the Exports page: {current_app.config['ENGAGE_BASE_URL'].rstrip('/')}"
                             "/exports\n", now=now)
        email.attachment_path = str(Path("exports") / filename)
        email.attachment_name = filename
    db.session.commit()
    return f"monthly export {month}: {export.row_count} engagements, emailed to {len(recipients())} recipient(s)"


def kept_files() -> set[str]:
    """The names of the files still under instance/exports (a job's export is deleted after JOB_RESULTS_KEEP_DAYS)."""
    return {entry.name for entry in os.scandir(export_dir()) if entry.is_file(follow_symlinks=False)}


def stored_runs():
    return db.session.scalars(sa.select(ExportRun).order_by(ExportRun.month.desc()).limit(36)).all()
