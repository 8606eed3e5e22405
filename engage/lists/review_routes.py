"""The match review queue: /lists/review (pending), /lists/review/decided; accept, reject, undo."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user

from engage.extensions import db
from engage.lists import review
from engage.lists.review_forms import DecisionForm, UndoForm
from engage.security import require_role
from engage.web import paginate

bp = Blueprint("review", __name__, url_prefix="/lists/review")


@bp.route("")
@require_role("viewer")
def index():
    page = paginate(review.pending_query())
    return render_template("lists/review.html", page=page, form=DecisionForm(formdata=None))


@bp.route("/decided")
@require_role("viewer")
def decided():
    status = request.args.get("status", "")
    page = paginate(review.decided_query(status or None))
    return render_template("lists/decided.html", page=page, status=status if status in review.DECIDED else "",
                           notes=review.notes_for(page.items), form=UndoForm(formdata=None))


@bp.route("/<int:candidate_id>/decide", methods=["POST"])
@require_role("analyst")
def decide(candidate_id: int):
    form = DecisionForm()
    if not form.validate_on_submit() or not (form.accept.data or form.reject.data):
        flash("Not saved: " + ("; ".join(form.note.errors) or "the form expired; reload the page and decide again."),
              "error")
        return redirect(url_for("review.index"))
    try:
        result = review.decide(candidate_id, bool(form.accept.data), current_user._get_current_object(),
                               form.note.data or "")
        db.session.commit()
    except review.ReviewError as error:
        db.session.rollback()
        flash(error.message, "info")
        return redirect(url_for("review.index"))
    name = result.candidate.company.name
    if not form.accept.data:
        flash(f"Rejected: {name} is not that entry; it will not be asked again.", "success")
    elif result.entry_gone:
        flash(f"Accepted for {name}; the entry is no longer active on its list, so no flag was made.", "info")
    else:
        flash(f"Accepted: {name} flagged ({len(result.flags)} flag(s), subsidiaries included).", "success")
    return redirect(url_for("review.index"))


@bp.route("/<int:candidate_id>/undo", methods=["POST"])
@require_role("analyst")
def undo(candidate_id: int):
    form = UndoForm()
    if not form.validate_on_submit():
        flash("Not saved: the form expired or was altered; reload the page.", "error")
        return redirect(url_for("review.decided"))
    try:
        result = review.undo(candidate_id, form.status.data, current_user._get_current_object(), form.note.data or "")
        db.session.commit()
    except review.ReviewError as error:
        db.session.rollback()
        flash(error.message, "info")
        return redirect(url_for("review.decided"))
    deleted = f"; {len(result.flags)} flag(s) it made deleted" if result.flags else ""
    flash(f"Decision undone: {result.candidate.company.name} is back in the review{deleted}.", "success")
    return redirect(url_for("review.decided"))
