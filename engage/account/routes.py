"""The signed-in user's own account: password, sessions and the calendar link."""

import datetime as dt

from flask import Blueprint, current_app, flash, redirect, render_template, url_for
from flask_login import current_user

from engage import clock, idempotency
from engage.account import service
from engage.account.forms import PasswordChangeForm, TokenForm
from engage.api import tokens
from engage.extensions import db, limiter
from engage.forms import ActionForm
from engage.security import acting_session_token, login_rate_limit, login_throttle_off, require_role
from engage.web import refuse

bp = Blueprint("account", __name__, url_prefix="/account")


def _token_form() -> TokenForm:
    return TokenForm(formdata=None, expires_on=clock.today() + dt.timedelta(days=90), can_write=current_user.can_edit)


def _page(password_form: PasswordChangeForm | None = None, status: int = 200, token_form: TokenForm | None = None,
          new_token: str | None = None):
    return render_template("account/index.html", password_form=password_form or PasswordChangeForm(formdata=None),
                           action_form=ActionForm(formdata=None), token_form=token_form or _token_form(),
                           api_tokens=tokens.tokens_of(current_user), new_token=new_token, today=clock.today(),
                           scope_labels=tokens.SCOPE_LABELS), status


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


@bp.route("/tokens", methods=["POST"])
@require_role("viewer")
def create_token():
    """Create a personal access token for the JSON API; its secret is shown on this answer only."""
    form = TokenForm(can_write=current_user.can_edit)
    if form.validate_on_submit():
        here = url_for("account.index") + "#tokens"
        try:
            # A reload of the answer sends the form again: it makes no second token.
            claimed = idempotency.claim(form.form_token.data, "account.token", current_user.id)
            _, secret = tokens.create(current_user, name=form.name.data, scope=form.scope.data,
                                      expires_on=form.expires_on.data, today=clock.today(),
                                      max_days=current_app.config["API_TOKEN_MAX_DAYS"])
            idempotency.record_result(claimed, here)
        except idempotency.AlreadySubmitted as duplicate:
            db.session.rollback()
            return idempotency.answer_duplicate(duplicate, here)
        except tokens.TokenError as error:
            db.session.rollback()
            refuse(form, error)
        else:
            db.session.commit()
            # Rendered, not redirected: the secret must not travel in a (signed, readable) session cookie.
            return _page(new_token=secret)
    return _page(token_form=form, status=422)


@bp.route("/tokens/<int:token_id>/revoke", methods=["POST"])
@require_role("viewer")
def revoke_token(token_id: int):
    """Revoke one of one's own tokens; it stops working at once."""
    if ActionForm().validate_on_submit():
        try:
            token = tokens.revoke(current_user, token_id, clock.utcnow())
        except tokens.TokenError:
            db.session.rollback()
            flash("No such token of yours.", "error")
        else:
            db.session.commit()
            flash(f"Token {token.name!r} revoked.", "success")
    return redirect(url_for("account.index") + "#tokens")
