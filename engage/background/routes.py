"""A job's page (progress, then the link to its result) and the admins' list of jobs with their failures."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from engage import background, clock
from engage.extensions import db
from engage.forms import ActionForm
from engage.models import BackgroundJob, JobStatus, Role, User
from engage.security import require_role

bp = Blueprint("background", __name__, url_prefix="/background")

PAGE = 100


def _visible(job_id: int) -> BackgroundJob:
    """The job, for the user who asked for it or an admin; 404 for anyone else (not even that it exists)."""
    job = db.session.get(BackgroundJob, job_id)
    if job is None or (job.created_by_id != current_user.id and current_user.role != Role.ADMIN.value):
        abort(404)
    return job


@bp.route("/<int:job_id>")
@require_role("viewer")
def show(job_id: int):
    job = _visible(job_id)
    waiting = (job.status == JobStatus.QUEUED.value and job.attempts == 0
               and clock.utcnow() - job.created_at > background.stale_after())
    shown = background.progress(job)
    return render_template("background/job.html", job=job, progress=shown, waiting=waiting,
                           stalled=background.is_stale(job, shown), form=ActionForm(formdata=None),
                           expired=background.result_expired(job))


@bp.route("/")
@require_role("admin")
def index():
    status = request.args.get("status") or ""
    query = sa.select(BackgroundJob).order_by(BackgroundJob.id.desc()).limit(PAGE)
    if status in {s.value for s in JobStatus}:
        query = query.where(BackgroundJob.status == status)
    else:
        status = ""
    jobs = db.session.scalars(query).all()
    people = {u.id: u for u in db.session.scalars(sa.select(User).where(
        User.id.in_({j.created_by_id for j in jobs if j.created_by_id} or {-1})))}
    counts = dict(db.session.execute(sa.select(BackgroundJob.status, sa.func.count()).group_by(BackgroundJob.status)).all())
    return render_template("background/index.html", jobs=jobs, people=people, counts=counts, status=status,
                           progress=background.progress_many(jobs), statuses=list(JobStatus), form=ActionForm(formdata=None))


@bp.route("/<int:job_id>/retry", methods=["POST"])
@require_role("admin")
def retry(job_id: int):
    job = db.session.get(BackgroundJob, job_id)
    if job is None:
        abort(404)
    if not ActionForm().validate_on_submit():
        flash("The form expired; try again.", "error")
    elif job.status != JobStatus.FAILED.value:
        flash(f"Job {job.id} is {job.status}, not failed: nothing to retry.", "info")
    else:
        background.requeue(job)
        flash(f"Job {job.id} queued again.", "success")
    return redirect(url_for("background.show", job_id=job.id))
