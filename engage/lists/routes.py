"""The lists: versions, entries and diffs (viewers); importing a file with a preview of its diff, and the match review (analysts)."""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from engage import background
from engage.extensions import db
from engage.lists import jobs as list_jobs
from engage.lists import matching, review, service
from engage.lists import screening as list_screening
from engage.lists.forms import ConfirmForm, ListImportForm
from engage.lists.review_forms import DecisionForm, UndoForm
from engage.models import ListedEntity, ListVersion
from engage.security import require_role
from engage.web import own_upload_limit, paginate, refuse

bp = Blueprint("lists", __name__, url_prefix="/lists")
#: The list import keeps its uploads in the holdings import's stash, under its own kind.
KIND = service.STASH

#: Most diff lines a version page shows per kind (added, removed, changed).
DIFF_SHOWN = 200


@bp.route("/")
@require_role("viewer")
def index():
    """Each list with its latest version (two queries whatever the number of lists)."""
    latest = sorted(service.latest_versions().values(), key=lambda v: v.name)
    counts = dict(db.session.execute(sa.select(ListVersion.name, sa.func.count()).group_by(ListVersion.name)).all())
    return render_template("lists/index.html", latest=latest, counts=counts, to_review=review.pending_count())


@bp.route("/versions")
@require_role("viewer")
def versions():
    name = request.args.get("list") or None
    query = sa.select(ListVersion).order_by(ListVersion.id.desc())
    if name:
        query = query.where(ListVersion.name == name)
    return render_template("lists/versions.html", page=paginate(query), name=name)


@bp.route("/versions/<int:version_id>")
@require_role("viewer")
def version(version_id: int):
    item = db.get_or_404(ListVersion, version_id)
    entries = paginate(sa.select(ListedEntity).where(ListedEntity.version_id == version_id)
                       .order_by(ListedEntity.name, ListedEntity.id))
    diff = item.diff or {}
    return render_template("lists/version.html", version=item, entries=entries, shown=DIFF_SHOWN,
                           added=diff.get("added", []), removed=diff.get("removed", []),
                           changed=diff.get("changed", []), describe=service.describe_change)


def _options(form: ListImportForm) -> dict:
    return {"format": form.format.data or None, "list_name": (form.list_name.data or "").strip() or None,
            "sources": service.parse_sources(form.sources.data), "mapping": (form.mapping.data or "").strip() or None,
            "retrieved_on": form.retrieved_on.data.isoformat() if form.retrieved_on.data else None}


_read = service.read


def _upload_form():
    return render_template("lists/import.html", form=ListImportForm(formdata=None), errors=[])


# the list upload's own size limit (LISTS_MAX_UPLOAD_MB; other forms keep MAX_CONTENT_LENGTH)
own_upload_limit(bp, "lists.import_list", "LISTS_MAX_UPLOAD_MB", "a list file", _upload_form)


def _big(data: bytes) -> bool:
    """A file read and previewed by a job, not in the request (its confirmation is a job too)."""
    return len(data) >= current_app.config["LISTS_PREVIEW_JOB_BYTES"]


def _preview_page(token: str, preview: service.Preview, meta: dict, confirm: ConfirmForm | None = None,
                  status: int = 200):
    confirm = confirm or ConfirmForm(formdata=None, older=bool(meta.get("older")))
    return render_template("lists/preview.html", token=token, preview=preview, meta=meta, form=confirm,
                           shown=DIFF_SHOWN, describe_change=service.describe_change), status


@bp.errorhandler(service.StashUnsafe)
def stash_unsafe(error):
    current_app.logger.error("list upload stash refused: %s", error)
    flash(f"Uploads cannot be kept for confirmation: {error}.", "error")
    return render_template("lists/import.html", form=ListImportForm(formdata=None), errors=[]), 503


@bp.route("/import", methods=["GET", "POST"])
@require_role("analyst")
def import_list():
    """Upload and read a file; its diff is shown, nothing is saved until it is confirmed."""
    form = ListImportForm()
    if not form.validate_on_submit():
        return render_template("lists/import.html", form=form, errors=[]), 422 if form.errors else 200
    upload = form.file.data
    data = upload.read()
    meta = {"file_name": (upload.filename or "upload")[:255], **_options(form), "older": bool(form.older.data),
            "user": current_user.id}
    if _big(data):  # read by a job: its page, then the preview
        return _preview_in_background(data, meta)
    try:
        preview = _read(data, meta)
    except service.ListError as exc:
        status = refuse(form, service.for_the_form(exc))
        return render_template("lists/import.html", form=form, errors=exc.errors), status
    meta["entries"] = preview.entry_count  # a big file's confirm is a job
    token = service.stash_upload(data, meta, KIND)
    return _preview_page(token, preview, meta)


def _preview_in_background(data: bytes, meta: dict, token: str | None = None):
    """A big file is read and previewed by the job worker: its page shows the progress, then leads
    to the preview (`show_preview`). `token`: the stash read again (its preview gone stale); None for
    a new upload, stashed here.

    The same user sending the same file with the same options while its reading is still queued or
    running (a double click on Upload, a second tab) gets that job, not another."""
    asked = [current_user.id, hashlib.sha256(data).hexdigest(),
             {key: meta.get(key) for key in (*service.READ_OPTIONS, "older")}]
    job = background.submit_unless_running(
        list_jobs.PREVIEW_KIND, asked, label=f"List file check: {meta.get('file_name') or 'upload'}",
        user_id=current_user.id, start=lambda: {"token": token or service.stash_upload(data, meta, KIND)})
    return redirect(url_for("background.show", job_id=job.id))


@bp.route("/import/<token>", methods=["GET"])
@require_role("analyst")
def show_preview(token: str):
    """The preview of a stashed upload (where the preview job leads), or its refusal: kept by the job
    for a big file; read again (by a job for a big file) when another version was loaded since."""
    if not service.TOKEN.match(token):
        abort(404)
    stashed = service.load_upload(token, KIND)
    if stashed is not None and stashed[1].get("user") != current_user.id:
        abort(404)  # another user's upload: not even that it exists
    if stashed is None:
        return _no_longer_waiting(token)
    data, meta = stashed
    shown = service.kept_preview(token, service.preview_fingerprint(data, meta))
    if shown is None and _big(data):
        return _preview_in_background(data, meta, token)
    if shown is None:
        try:
            shown = _read(data, meta)
        except service.ListError as exc:
            shown = service.for_the_form(exc)
    if isinstance(shown, service.ListError):
        form = ListImportForm(formdata=None, format=meta.get("format") or "", list_name=meta.get("list_name"),
                              sources=", ".join(meta.get("sources") or []), retrieved_on=service.parse_day(
                                  meta.get("retrieved_on")), older=bool(meta.get("older")))
        return render_template("lists/import.html", form=form, errors=shown.errors), refuse(form, shown)
    return _preview_page(token, shown, meta)


def _no_longer_waiting(token: str):
    """Back to the lists, saying what became of a stashed upload that is no longer waiting."""
    state, lines = service.upload_state(token)
    if state == "done":
        flash("This file was confirmed already and saved once: " + "; ".join(lines[:3]), "info")
    elif state == "importing":
        flash("This file is being saved by an earlier click; it is saved once.", "info")
    else:
        flash("That import is no longer waiting; upload the file again.", "error")
    return redirect(url_for("lists.index"))


def _stashed(token: str):
    """The stash of `token` if it is a list upload of this user, else None."""
    stashed = service.load_upload(token, KIND)
    if stashed is None or stashed[1].get("user") != current_user.id:
        return None
    return stashed


@bp.route("/import/<token>", methods=["POST"])
@require_role("analyst")
def confirm_import(token: str):
    """Save the stashed file exactly as its preview showed it (the form names that preview), once."""
    form = ConfirmForm()
    if not form.validate_on_submit():
        flash("The form expired; upload the file again.", "error")
        return redirect(url_for("lists.import_list"))
    asked = background.find(f"{list_jobs.KIND}:{token}")
    if asked is not None and asked.status != "failed" and asked.created_by_id == current_user.id:
        return redirect(url_for("background.show", job_id=asked.id))  # confirmed already, handed to the job worker
    waiting = _stashed(token)
    if waiting is not None and ((waiting[1].get("entries") or 0) >= current_app.config["LISTS_JOB_ENTRIES"]
                                or _big(waiting[0])):
        return _import_in_background(token, waiting, form)
    if waiting is None:
        return _no_longer_waiting(token)
    claimed = service.claim_upload(token, KIND)
    if claimed is None:
        flash("This file is being saved by an earlier click; it is saved once.", "info")
        return redirect(url_for("lists.index"))
    data, meta = claimed
    meta["older"] = bool(form.older.data)
    try:
        shown, saved = service.save(data, meta["file_name"], meta["format"], meta["list_name"], meta["sources"],
                                    meta["mapping"], service.parse_day(meta["retrieved_on"]), older=meta["older"],
                                    expected_digest=request.form.get("preview", ""), imported_by_id=current_user.id)
        db.session.commit()
    except service.ListError as exc:
        db.session.rollback()
        service.release_upload(token)
        changed = isinstance(exc, service.PreviewChanged)
        flash(f"Not saved: {service.for_the_form(exc).message}.", "error")
        try:
            preview = _read(data, meta)
        except service.ListError as again:
            again = service.for_the_form(again)
            flash(f"{again.message[0].upper()}{again.message[1:]}.", "error")
            service.discard_upload(token)
            return redirect(url_for("lists.import_list"))
        return _preview_page(token, preview, meta, form, status=409 if changed else 422)
    except Exception:
        db.session.rollback()
        service.release_upload(token)
        raise
    lines = list_jobs.version_lines(shown, saved)
    service.finish_upload(token, lines)
    for line in lines:
        flash(line, "success")
    result = list_screening.after_import(saved)
    db.session.commit()
    flash(list_jobs.screening_line(result), "info")
    return redirect(url_for("lists.version", version_id=saved[0].id))


def _import_in_background(token: str, waiting: tuple[bytes, dict], form: ConfirmForm):
    """A big file is saved and screened by the job worker: its page shows the progress, then the summary
    and a link to the new version. A second click (or a second tab) confirming the same upload finds the same job."""
    data, meta = waiting
    label = (f"List import: {meta.get('file_name') or 'upload'} ({meta.get('entries') or 0:,} entries), "
             "then screening every company")
    job = background.submit(list_jobs.KIND, key=f"{list_jobs.KIND}:{token}", label=label,
                            params={"token": token, "digest": request.form.get("preview", ""),
                                    "older": bool(form.older.data), "sha256": hashlib.sha256(data).hexdigest()},
                            user_id=current_user.id)
    return redirect(url_for("background.show", job_id=job.id))


# --- the match review: possible matches an analyst accepts or rejects (engage/lists/review.py) ---

@bp.route("/review")
@require_role("viewer")
def review_queue():
    page = paginate(review.pending_query())
    return render_template("lists/review.html", page=page, form=DecisionForm(formdata=None),
                           flag_score=matching.FLAG_SCORE)


@bp.route("/review/decided")
@require_role("viewer")
def review_decided():
    status = request.args.get("status", "")
    page = paginate(review.decided_query(status or None))
    return render_template("lists/decided.html", page=page, status=status if status in review.DECIDED else "",
                           notes=review.notes_for(page.items), form=UndoForm(formdata=None))


@bp.route("/review/<int:candidate_id>/decide", methods=["POST"])
@require_role("analyst")
def review_decide(candidate_id: int):
    form = DecisionForm()
    if not form.validate_on_submit() or bool(form.accept.data) == bool(form.reject.data):
        flash("Not saved: " + ("; ".join(form.note.errors) or "the form expired, or said neither or both of accept "
                               "and reject; reload the page and decide again."), "error")
        return redirect(url_for("lists.review_queue"))
    try:
        result = review.decide(candidate_id, bool(form.accept.data), current_user._get_current_object(),
                               form.note.data or "")
        db.session.commit()
    except review.ReviewError as error:
        db.session.rollback()
        flash(error.message, "info")
        return redirect(url_for("lists.review_queue"))
    name = result.candidate.company.name
    if not form.accept.data:
        flash(f"Rejected: {name} is not that entry; it will not be asked again.", "success")
    elif result.entry_gone:
        flash(f"Accepted for {name}; the entry is no longer active on its list, so no flag was made.", "info")
    else:
        linked = sum(1 for flag in result.flags if flag.is_linked)
        reach = f"; {linked} subsidiar{'y' if linked == 1 else 'ies'} flagged as linked" if linked else ""
        flash(f"Accepted: {name} flagged on {service.label(result.candidate.list_name)}{reach}. "
              f"It shows on the screening page and on the company's page.", "success")
    return redirect(url_for("lists.review_queue"))


@bp.route("/review/<int:candidate_id>/undo", methods=["POST"])
@require_role("analyst")
def review_undo(candidate_id: int):
    form = UndoForm()
    if not form.validate_on_submit():
        flash("Not saved: the form expired or was altered; reload the page.", "error")
        return redirect(url_for("lists.review_decided"))
    try:
        result = review.undo(candidate_id, form.status.data, current_user._get_current_object(), form.note.data or "")
        db.session.commit()
    except review.ReviewError as error:
        db.session.rollback()
        flash(error.message, "info")
        return redirect(url_for("lists.review_decided"))
    deleted = f"; {len(result.flags)} flag(s) it made deleted" if result.flags else ""
    flash(f"Decision undone: {result.candidate.company.name} is back in the review{deleted}.", "success")
    return redirect(url_for("lists.review_decided"))


@bp.app_template_global()
def list_label(name: str) -> str:
    return service.label(name)
