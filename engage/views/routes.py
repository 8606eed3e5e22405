"""Saved views: save a list's filters under a name, open, rename, share and delete views."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user

from engage.extensions import db
from engage.forms import ActionForm
from engage.security import require_role
from engage.views import service
from engage.views.forms import EditViewForm, SaveViewForm
from engage.web import refuse

bp = Blueprint("views", __name__, url_prefix="/views")


def list_url(view) -> str:
    """The list page with the view's filters applied."""
    base = url_for(service.LISTS[view.list_kind].endpoint)
    return f"{base}?{view.query}" if view.query else base


@bp.app_template_global()
def saved_view_url(view) -> str:
    return list_url(view)


@bp.app_template_global()
def saved_view_filters(view) -> list[tuple[str, str]]:
    return service.describe(view)


@bp.route("")
@require_role("viewer")
def index():
    views = service.visible_views(current_user)
    return render_template(
        "views/index.html", views=views, action_form=ActionForm(formdata=None),
        mine=[v for v in views if v.owner_id == current_user.id],
        team=[v for v in views if v.owner_id != current_user.id],
    )


@bp.route("", methods=["POST"])
@require_role("viewer")
def create():
    # Viewers too: a view changes no engagement data, only what its owner's menu offers.
    form = SaveViewForm()
    if form.validate_on_submit():
        try:
            view = service.save_view(current_user, form.kind.data, form.name.data, form.query.data or "",
                                     bool(form.shared.data))
            db.session.commit()
        except service.ViewError as error:
            status = refuse(form, error)
        else:
            flash(f"View “{view.name}” saved{' and shared with the team' if view.shared else ''}.", "success")
            return redirect(list_url(view))
    else:
        status = 422 if form.errors else 400
    if form.kind.data not in service.LISTS:
        abort(400, "Views can be saved on the engagements or companies list only.")
    return render_template("views/save.html", form=form,
                           back=url_for(service.LISTS[form.kind.data].endpoint) + _query_suffix(form)), status


def _query_suffix(form) -> str:
    try:
        query = service.clean_query(form.kind.data, form.query.data or "")
    except service.ViewError:
        return ""
    return f"?{query}" if query else ""


def _visible_or_404(view_id: int):
    view = service.visible_view(view_id, current_user)
    if view is None:
        abort(404)
    return view


@bp.route("/<int:view_id>")
@require_role("viewer")
def show(view_id: int):
    """Open a view: its list with its filters."""
    return redirect(list_url(_visible_or_404(view_id)))


@bp.route("/<int:view_id>/edit", methods=["GET", "POST"])
@require_role("viewer")
def edit(view_id: int):
    view = _visible_or_404(view_id)
    if view.owner_id != current_user.id:
        abort(403, "Only the owner of a view can rename it or change its sharing.")
    form = EditViewForm(obj=view)
    status = 200
    if form.validate_on_submit():
        try:
            service.edit_view(view, current_user, form.name.data, bool(form.shared.data))
            db.session.commit()
        except service.ViewError as error:
            status = refuse(form, error)
        else:
            flash(f"View “{view.name}” saved.", "success")
            return redirect(url_for("views.index"))
    elif form.errors:
        status = 422
    return render_template("views/edit.html", form=form, view=view), status


@bp.route("/<int:view_id>/delete", methods=["POST"])
@require_role("viewer")
def delete(view_id: int):
    view = _visible_or_404(view_id)
    if not ActionForm().validate_on_submit():
        abort(400, "The form expired; reload the page and try again.")
    if not service.can_delete(view, current_user):
        abort(403, "Only the owner of this view, or an admin for a shared view, can delete it.")
    name = view.name
    service.delete_view(view, current_user)
    db.session.commit()
    flash(f"View “{name}” deleted.", "success")
    return redirect(url_for("views.index"))
