"""The tracker import on the web: upload, the mapping step with its preview, confirm once.

The file waits in the holdings import's upload stash (under its own kind) between the steps; the
choices of the mapping step are kept with it. The confirmation claims the stash (so a double click
imports once) and writes only if planning again gives the preview that was shown.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from engage import clock
from engage.extensions import db
from engage.holdings.service import (
    StashUnsafe,
    claim_upload,
    discard_upload,
    finish_upload,
    load_upload,
    release_upload,
    save_upload_meta,
    stash_upload,
    upload_state,
)
from engage.models import Campaign
from engage.security import require_role
from engage.validators import whole_number
from engage.tracker import parsing, service
from engage.tracker.forms import TrackerConfirmForm, TrackerMappingForm, TrackerUploadForm

bp = Blueprint("tracker", __name__, url_prefix="/tracker")
KIND = "tracker"
#: Largest tracker taken on the web.
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
EXTENSIONS = ("csv", "txt", "tsv", "xlsx")
#: Most columns or words the mapping step's form may send.
MAX_CHOICES = 1000
#: Rows the preview lists (all are counted).
SHOWN = 500


@bp.errorhandler(StashUnsafe)
def stash_unsafe(error):
    current_app.logger.error("tracker upload stash refused: %s", error)
    flash(f"Uploads cannot be kept for confirmation: {error}.", "error")
    return redirect(url_for("main.dashboard"))


def _campaigns():
    return db.session.scalars(sa.select(Campaign).order_by(Campaign.name)).all()


@bp.route("/import", methods=["GET", "POST"])
@require_role("analyst")
def upload():
    """Upload a tracker; the mapping step and the preview follow, nothing is written until it is confirmed."""
    form = TrackerUploadForm(_campaigns())
    if not form.validate_on_submit():
        return _upload_page(form, status=422 if form.errors else 200)
    file = form.file.data
    data = file.read()
    name = (file.filename or "tracker")[:255]
    suffix = PurePosixPath(name.lower()).suffix.lstrip(".")
    if suffix and suffix not in EXTENSIONS:
        form.file.errors = [f"{name}: a .{suffix} file is not a tracker; save it as XLSX or CSV"]
        return _upload_page(form, status=422)
    if len(data) > MAX_UPLOAD_BYTES:
        form.file.errors = [f"{name}: larger than the {MAX_UPLOAD_BYTES // (1024 * 1024)} MB limit on the web; "
                            f"import it with `flask tracker import`"]
        return _upload_page(form, status=422)
    options = service.Options(mapping=(form.mapping.data or "").strip() or None,
                              campaign_id=form.campaign_id.data or None, day_first=form.date_order.data == "day",
                              sheet=(form.sheet.data or "").strip() or None)
    try:
        service.preview(data, name, options, today=clock.today())
    except service.TrackerError as exc:
        db.session.rollback()
        form.file.errors = [exc.message]
        return _upload_page(form, status=422)
    token = stash_upload(data, {"file_name": name, "user": current_user.id, "options": options.as_json()}, KIND)
    return redirect(url_for("tracker.mapping", token=token))


def _upload_page(form, status: int = 200):
    return render_template("tracker/import.html", form=form, max_mb=MAX_UPLOAD_BYTES // (1024 * 1024)), status


def _stashed(token: str):
    """The stash of `token` if it is this user's tracker upload, else None."""
    stashed = load_upload(token, KIND)
    if stashed is None or stashed[1].get("user") != current_user.id:
        return None
    return stashed


@bp.route("/import/<token>", methods=["GET", "POST"])
@require_role("analyst")
def mapping(token: str):
    """The mapping step: what each column and each of the team's words means, and the preview it gives."""
    stashed = _stashed(token)
    if stashed is None:
        return _gone(token)
    data, meta = stashed
    options = service.Options.from_json(meta["options"])
    form = TrackerMappingForm(_campaigns(), data={"campaign_id": options.campaign_id or 0,
                                                  "date_order": "day" if options.day_first else "month",
                                                  "skip_refused": options.skip_refused, "sheet": options.sheet or ""}
                              if request.method == "GET" else None)
    problem = None
    if request.method == "POST":
        if not form.validate_on_submit():
            return _mapping_page(token, data, meta, options, form, status=422)
        try:
            chosen = _chosen(form, options)
            service.preview(data, meta["file_name"], chosen, today=clock.today())
        except (parsing.TrackerRefused, service.TrackerError) as exc:
            db.session.rollback()
            problem = exc.message if isinstance(exc, service.TrackerError) else str(exc)
        else:
            save_upload_meta(token, {**meta, "options": chosen.as_json()}, KIND)
            return redirect(url_for("tracker.mapping", token=token))
    return _mapping_page(token, data, meta, options, form, problem=problem, status=422 if problem else 200)


def _chosen(form: TrackerMappingForm, options: service.Options) -> service.Options:
    """The options the mapping step's form gives: the columns' fields, the words' targets, the choices."""
    mapping, ignore = {}, []
    for index in range(_count("columns")):
        header = request.form.get(f"header-{index}", "")
        target = request.form.get(f"column-{index}", "")
        if not header:
            continue
        if target == parsing.IGNORE:
            ignore.append(header)
        elif target:
            if target in mapping:
                raise parsing.TrackerRefused(f"two columns are mapped to {target}: “{mapping[target]}” and "
                                             f"“{header}”; map one of them to another field or to “not read”")
            mapping[target] = header
    parsing.parse_mapping(mapping)
    values: dict[str, dict[str, str]] = {"status": {}, "escalation": {}}
    for kind in values:
        for index in range(_count(f"{kind}-count")):
            word = request.form.get(f"{kind}-word-{index}", "")
            target = request.form.get(f"{kind}-{index}", "")
            if target:
                parsing.check_target(kind, target, word)
                values[kind][parsing.label(word)] = target
    return service.Options(mapping=mapping or None, values=values, campaign_id=form.campaign_id.data or None,
                           day_first=form.date_order.data == "day", skip_refused=bool(form.skip_refused.data),
                           ignore=ignore, sheet=(form.sheet.data or "").strip() or None)


def _count(name: str) -> int:
    """How many columns or words the form lists (a count out of range or not a number: none)."""
    return whole_number(request.form.get(name, ""), maximum=MAX_CHOICES) or 0


def _mapping_page(token, data, meta, options, form, problem=None, status: int = 200):
    try:
        shown = service.preview(data, meta["file_name"], options, today=clock.today())
    except service.TrackerError as exc:
        db.session.rollback()
        discard_upload(token)
        upload_form = TrackerUploadForm(_campaigns(), formdata=None)
        upload_form.file.errors = [exc.message]
        return _upload_page(upload_form, status=422)
    return render_template("tracker/preview.html", token=token, preview=shown, form=form, problem=problem,
                           confirm=TrackerConfirmForm(formdata=None), columns=service.column_choices(shown),
                           words=service.word_choices(shown), counts=shown.counts(), shown_rows=shown.rows[:SHOWN],
                           fields=parsing.FIELDS, status_targets=parsing.STATUS_TARGETS,
                           escalation_targets=parsing.ESCALATION_TARGETS, target_label=parsing.target_label), status


@bp.route("/import/<token>/confirm", methods=["POST"])
@require_role("analyst")
def confirm(token: str):
    """Write the stashed tracker exactly as its preview showed it, once."""
    form = TrackerConfirmForm()
    if not form.validate_on_submit():
        flash("The form expired; check the preview again.", "error")
        return redirect(url_for("tracker.mapping", token=token))
    if _stashed(token) is None:
        return _gone(token)
    claimed = claim_upload(token, KIND)
    if claimed is None:
        return _gone(token)
    data, meta = claimed
    options = service.Options.from_json(meta["options"])
    try:
        saved = service.save(data, meta["file_name"], options, today=clock.today(), actor_id=current_user.id,
                             expected_digest=request.form.get("preview", ""))
        db.session.commit()
    except service.TrackerError as exc:
        db.session.rollback()
        release_upload(token)
        flash(f"Not imported: {exc.message}", "error")
        return redirect(url_for("tracker.mapping", token=token))
    except sa.exc.IntegrityError:
        db.session.rollback()
        release_upload(token)
        flash("Not imported: another import wrote some of these engagements at the same moment; the preview below "
              "is read again, check it and import again.", "error")
        return redirect(url_for("tracker.mapping", token=token))
    except Exception:
        db.session.rollback()
        release_upload(token)
        raise
    line = saved.summary()
    finish_upload(token, {"user": current_user.id, "lines": [line]})
    flash(line, "success")
    return redirect(url_for("engagements.index"))


def _gone(token: str):
    """A token that is not (or no longer) this user's waiting upload: its result if it was imported."""
    state, result = upload_state(token)
    if state == "done" and isinstance(result, dict) and result.get("user") == current_user.id:
        flash("This tracker was imported already, once: " + " ".join(result.get("lines") or []), "info")
        return redirect(url_for("engagements.index"))
    if state == "importing":
        flash("This tracker is being imported by an earlier click; it is imported once.", "info")
        return redirect(url_for("engagements.index"))
    abort(404)
