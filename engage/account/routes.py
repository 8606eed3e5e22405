"""The signed-in user's own account: password, sessions and the calendar link."""

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user

from engage.account import service
from engage.account.forms import PasswordChangeForm
from engage.extensions import db, limiter
from engage.forms import ActionForm
from engage.security import acting_session_token, login_rate_limit, login_throttle_off, require_role
from engage.web import refuse

bp = Blueprint("account", __name__, url_prefix="/account")


def _page(password_form: PasswordChangeForm | None = None, status: int = 200):
    return render_template("account/index.html", password_form=password_form or PasswordChangeForm(formdata=None),
                           action_form=ActionForm(formdata=None)), status


@bp.route("")
@require_role("viewer")
def index():
    return _page()


@bp.route("/password", methods=["POST"])
@require_role("viewer")
@limiter.limit(login_rate_limit, exempt_when=login_throttle_off)
def change_password():
    """Change one's own password; this browser stays signed in, every other session ends."""
    form = PasswordChangeForm()
    if form.validate_on_submit():
        user = current_user._get_current_object()
        had_link = user.calendar_token is not None
        try:
            service.change_password(user, acting_session_token(), form.current_password.data,
                                    form.new_password.data)
        except service.AccountError as error:
            db.session.commit()  # the failed attempt counts towards the backoff and is audited
            refuse(form, error)
        except service.SessionReplaced:
            db.session.rollback()
            return redirect(url_for("account.index"))  # signed out meanwhile: that page asks to sign in
        else:
            db.session.commit()
            flash("Password changed. Every other session is signed out"
                  + ("; your calendar link was revoked: create a new one below." if had_link else "."), "success")
            return redirect(url_for("account.index"))
    problems = [error for field in form for error in field.errors]
    flash("Password not changed: " + " ".join(problems or ["the form expired; try again."]), "error")
    return _page(form, 422)


@bp.route("/sessions", methods=["POST"])
@require_role("viewer")
def sign_out_everywhere():
    """End every other session, remember-me cookie and the calendar link of the user.

    The second click of a double click finds the token replaced by the first and changes
    nothing; its answer writes no cookie, so the browser keeps the one the first click earned.
    """
    if ActionForm().validate_on_submit():
        user = current_user._get_current_object()
        had_link = user.calendar_token is not None
        if service.sign_out_everywhere(user, acting_session_token()):
            db.session.commit()
            flash("You are signed out everywhere else; this browser stays signed in."
                  + (" Your calendar link was revoked: create a new one below." if had_link else ""), "success")
    return redirect(url_for("account.index"))


@bp.route("/calendar", methods=["POST"])
@require_role("viewer")
def reset_calendar():
    """Create or replace the secret calendar link; the old one stops working at once."""
    if ActionForm().validate_on_submit():
        service.new_calendar_token(current_user)
        db.session.commit()
        flash("New calendar link created; subscribe to it in your calendar.", "success")
    return redirect(url_for("account.index"))
