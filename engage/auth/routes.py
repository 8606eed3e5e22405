from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from engage import audit
from engage.auth.forms import LoginForm, LogoutForm
from engage.auth.service import authenticate
from engage.extensions import db, limiter
from engage.security import is_safe_redirect, public, require_role

bp = Blueprint("auth", __name__)

GENERIC_FAILURE = "That email and password do not match an active account."


def _login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


@bp.route("/login", methods=["GET", "POST"])
@public
@limiter.limit(_login_limit, methods=["POST"], exempt_when=lambda: not current_app.config["LOGIN_THROTTLE"])
def login():
    """Sign in. Unknown email, wrong password and inactive account read the same."""
    form = LoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
        if current_user.is_authenticated:
            return redirect(url_for("main.dashboard"))
    if form.validate_on_submit():
        user = authenticate(form.email.data, form.password.data)
        if user is None:
            db.session.commit()
            flash(GENERIC_FAILURE, "error")
            return render_template("auth/login.html", form=form), 200
        session.clear()
        login_user(user, remember=form.remember.data)
        db.session.commit()
        target = form.next.data
        return redirect(target if is_safe_redirect(target) else url_for("main.dashboard"))
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
@require_role("viewer")
def logout():
    """Sign out and clear the whole session."""
    form = LogoutForm()
    if not form.validate_on_submit():
        flash("Sign-out did not go through; please try again.", "error")
        return redirect(url_for("main.dashboard"))
    audit.record("logout", f"{current_user.email} signed out", obj=current_user._get_current_object())
    db.session.commit()
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))
