"""Admin pages: users and the audit trail."""

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from engage.admin import service
from engage.admin.forms import AuditFilterForm, NewUserForm, PasswordResetForm, UserForm
from engage.extensions import db
from engage.models import AuditEvent, User
from engage.security import require_role
from engage.web import field_error

bp = Blueprint("admin", __name__)


@bp.route("/")
@require_role("admin")
def index():
    return render_template("admin/index.html")


@bp.route("/users")
@require_role("admin")
def users():
    rows = db.session.scalars(sa.select(User).order_by(User.active.desc(), User.name)).all()
    return render_template("admin/users.html", users=rows)


@bp.route("/users/new", methods=["GET", "POST"])
@require_role("admin")
def new_user():
    form = NewUserForm()
    if form.validate_on_submit():
        try:
            user = service.create_user(form.email.data, form.name.data, form.role.data, form.password.data)
            user.active = form.active.data
            db.session.commit()
        except service.UserError as error:
            db.session.rollback()
            field_error(form, error.field, error.message)
        else:
            flash(f"User {user.email} created.", "success")
            return redirect(url_for("admin.users"))
    status = 422 if form.errors else 200
    return render_template("admin/user_form.html", form=form, user=None), status


@bp.route("/users/<int:user_id>/edit", methods=["GET", "POST"])
@require_role("admin")
def edit_user(user_id: int):
    user = db.get_or_404(User, user_id)
    form = UserForm(obj=user)
    password_form = PasswordResetForm(prefix="pw")
    if form.validate_on_submit():
        try:
            service.update_user(
                user,
                acting=current_user,
                email=form.email.data,
                name=form.name.data,
                role=form.role.data,
                active=form.active.data,
            )
            db.session.commit()
        except service.UserError as error:
            db.session.rollback()
            field_error(form, error.field, error.message)
        else:
            flash(f"User {user.email} saved.", "success")
            return redirect(url_for("admin.users"))
    status = 422 if form.errors else 200
    return render_template("admin/user_form.html", form=form, user=user, password_form=password_form), status


@bp.route("/users/<int:user_id>/password", methods=["POST"])
@require_role("admin")
def reset_password(user_id: int):
    user = db.get_or_404(User, user_id)
    password_form = PasswordResetForm(prefix="pw")
    if password_form.validate_on_submit():
        service.reset_password(user, password_form.password.data)
        db.session.commit()
        flash(f"Password of {user.email} reset.", "success")
        return redirect(url_for("admin.users"))
    form = UserForm(obj=user, formdata=None)
    return render_template("admin/user_form.html", form=form, user=user, password_form=password_form), 422


@bp.route("/audit")
@require_role("admin")
def audit_events():
    form = AuditFilterForm(request.args)
    if not form.validate():
        abort(400)
    query = sa.select(AuditEvent).order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
    if form.action.data:
        query = query.where(AuditEvent.action == form.action.data)
    if form.object_type.data:
        query = query.where(AuditEvent.object_type == form.object_type.data.strip())
    if form.actor.data:
        query = query.where(AuditEvent.actor_label.ilike(f"%{form.actor.data.strip()}%"))
    page = db.paginate(query, per_page=current_app.config["PAGE_SIZE"], max_per_page=200)
    return render_template("admin/audit.html", page=page, form=form)
