from flask import Blueprint, flash, has_request_context, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from engage import audit
from engage.auth.browsers import known_user_ids, remember_browser
from engage.auth.forms import LoginForm, LogoutForm
from engage.auth.service import authenticate, replace_session_token
from engage.extensions import db, limiter
from engage.security import (
    acting_session_token,
    login_rate_limit,
    login_throttle_off,
    public,
    require_role,
    safe_next,
    signed_out_page,
)

bp = Blueprint("auth", __name__, url_prefix="/auth")

#: The one answer to every refused sign-in: it never tells whether the account exists or pauses.
GENERIC_FAILURE = ("That email and password do not match an active account. After several failed "
                   "attempts, sign-in to an account pauses for a few minutes.")


@bp.route("/login", methods=["GET", "POST"])
@public
@limiter.limit(login_rate_limit, methods=["POST"], exempt_when=login_throttle_off)
def login():
    """Sign in. Unknown email, wrong password and inactive account read the same."""
    form = LoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
        if current_user.is_authenticated:  # e.g. a double click's second answer, the first signed in
            return redirect(safe_next(form.next.data) or url_for("main.dashboard"))
    if form.validate_on_submit():
        user = authenticate(form.email.data, form.password.data, known_user_ids())
        if user is None:
            db.session.commit()
            flash(GENERIC_FAILURE, "error")
            return render_template("auth/login.html", form=form), 200
        session.clear()
        login_user(user, remember=form.remember.data)
        db.session.commit()
        response = redirect(safe_next(form.next.data) or url_for("main.dashboard"))
        return remember_browser(response, user.id)
    return render_template("auth/login.html", form=form)


@bp.app_context_processor
def sign_out_form() -> dict:
    """The sign-out button in every signed-in page's header (base.html) is a LogoutForm."""
    if not has_request_context() or not current_user.is_authenticated:
        return {}
    return {"logout_form": LogoutForm(formdata=None)}


@bp.route("/logout", methods=["POST"])
@require_role("viewer")
def logout():
    """Sign out: clear the session and replace the user's session token, ending all sessions.

    The calendar link keeps working (the account page's "Sign out everywhere else" ends it).
    A second click, arriving after the first replaced the token, is not signed in any more and
    gets the same answer (engage.security.unauthorized).
    """
    form = LogoutForm()
    if not form.validate_on_submit():
        flash("Sign-out did not go through; please try again.", "error")
        return redirect(url_for("main.dashboard"))
    user = current_user._get_current_object()
    # A copied session or remember-me cookie stops working too. When a concurrent request (the
    # other click) replaced the token first, the user is signed out already: nothing to record.
    if replace_session_token(user, acting_session_token()):
        audit.record("logout", f"{user.email} signed out (every session ended)", obj=user)
    db.session.commit()
    logout_user()
    return signed_out_page()
