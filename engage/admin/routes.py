"""Admin pages: users, campaigns, investors, the audit trail and the outbox."""

import sqlalchemy as sa
from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from engage import clock
from engage.admin import service, trail
from engage.admin.forms import (
    AuditFilterForm,
    CampaignForm,
    InvestorForm,
    NewUserForm,
    PasswordResetForm,
    UnlockForm,
    UserForm,
)
from engage.auth.service import KNOWN_BROWSERS, OTHER_BROWSERS, lift_pause, paused_until
from engage.core import outbox
from engage.extensions import db
from engage.forms import ActionForm
from engage.models import Campaign, Investor, OutboxEmail, OutboxStatus, User
from engage.security import require_role
from engage.web import field_error, paginate, refuse

bp = Blueprint("admin", __name__, url_prefix="/admin")


def backoff_state(user: User) -> dict:
    """Failed sign-ins of `user` and when a pause ends (per budget), for the edit page."""
    now = clock.utcnow()
    return {
        "failures": user.failed_logins + user.device_failed_logins,
        "paused_until": max(filter(None, (paused_until(user, now, b) for b in (OTHER_BROWSERS, KNOWN_BROWSERS))),
                            default=None),
    }


@bp.route("/")
@require_role("admin")
def index():
    return render_template("admin/index.html")


@bp.route("/users")
@require_role("admin")
def users():
    rows = db.session.scalars(sa.select(User).order_by(User.active.desc(), User.name)).all()
    return render_template("admin/users.html", users=rows, now=clock.utcnow())


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
            refuse(form, error)
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
            refuse(form, error)
        else:
            flash(f"User {user.email} saved.", "success")
            return redirect(url_for("admin.users"))
    status = 422 if form.errors else 200
    return render_template("admin/user_form.html", form=form, user=user, password_form=password_form,
                           backoff=backoff_state(user), unlock_form=UnlockForm(formdata=None)), status


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
    return render_template("admin/user_form.html", form=form, user=user, password_form=password_form,
                           backoff=backoff_state(user), unlock_form=UnlockForm(formdata=None)), 422


@bp.route("/users/<int:user_id>/unlock", methods=["POST"])
@require_role("admin")
def unlock_user(user_id: int):
    """Forget the user's failed sign-ins and lift any pause (e.g. after a guessing attack)."""
    user = db.get_or_404(User, user_id)
    if UnlockForm().validate_on_submit():
        lift_pause(user, f"by {current_user.email}")
        db.session.commit()
        flash(f"Failed sign-ins of {user.email} forgotten; {user.email} can sign in again now.", "success")
    return redirect(url_for("admin.edit_user", user_id=user.id))


@bp.route("/audit")
@require_role("admin")
def audit_events():
    """The audit trail, one entry per change (engage.admin.trail); bad filters are shown on the page (400)."""
    form = AuditFilterForm(request.args, actions=trail.action_choices(), object_types=trail.object_type_choices())
    if not form.validate():
        # Said once, above the filters: the layout's "Not saved." list (`refusals`) is for edits.
        problems = [f"{field.label.text}: {message}" for field in form for message in field.errors]
        invalid = {field.name for field in form if field.errors}
        for field in form:
            field.errors = []
        return render_template("admin/audit.html", page=None, groups=[], form=form, problems=problems,
                               invalid=invalid), 400
    page = paginate(trail.groups_query(trail.conditions(form.data)))
    groups = trail.load_groups(list(page.items), trail.conditions(form.data))
    return render_template("admin/audit.html", page=page, groups=groups, form=form, problems=[], invalid=set())


@bp.route("/campaigns")
@require_role("admin")
def campaigns():
    items = db.session.scalars(sa.select(Campaign).order_by(Campaign.name)).all()
    return render_template("admin/campaigns.html", campaigns=items)


@bp.route("/campaigns/<int:campaign_id>", methods=["GET", "POST"])
@require_role("admin")
def edit_campaign(campaign_id: int):
    campaign = db.get_or_404(Campaign, campaign_id)
    investors = db.session.scalars(sa.select(Investor).order_by(Investor.name)).all()
    form = CampaignForm(obj=campaign, investors=[(i.id, i.name) for i in investors])
    if request.method == "GET":
        form.signatory_ids.data = [i.id for i in campaign.signatories]
    if form.validate_on_submit():
        for field in ("name", "summary", "letterhead", "paper_size", "call_to_action", "response_window_days",
                      "follow_up_interval_days", "follow_ups_before_escalation", "warn_days_before"):
            value = getattr(form, field).data
            setattr(campaign, field, value.strip() if isinstance(value, str) else value)
        campaign.call_to_action_url = form.call_to_action_url.data or None
        campaign.sender_email = (form.sender_email.data or "").strip().lower() or None
        campaign.cover_note = (form.cover_note.data or "").strip()
        chosen = set(form.signatory_ids.data or [])
        campaign.signatories = [i for i in investors if i.id in chosen]
        db.session.commit()
        flash("Campaign saved.", "success")
        return redirect(url_for("admin.campaigns"))
    return render_template("admin/campaign_form.html", form=form, campaign=campaign), 422 if form.errors else 200


@bp.route("/investors")
@require_role("admin")
def investors():
    items = db.session.scalars(sa.select(Investor).order_by(Investor.name)).all()
    return render_template("admin/investors.html", investors=items)


@bp.route("/investors/new", methods=["GET", "POST"])
@bp.route("/investors/<int:investor_id>", methods=["GET", "POST"])
@require_role("admin")
def edit_investor(investor_id: int | None = None):
    investor = db.get_or_404(Investor, investor_id) if investor_id else None
    form = InvestorForm(obj=investor)
    if form.validate_on_submit():
        name = form.name.data.strip()
        clash = db.session.scalar(sa.select(Investor.id).where(Investor.name == name,
                                                               Investor.id != (investor.id if investor else -1)))
        if clash:
            field_error(form, "name", f"An investor called {name} already exists.")
        else:
            target = investor or Investor()
            target.name = name
            target.kind = form.kind.data
            target.aum_usd = form.aum_usd.data
            target.contact_name = form.contact_name.data or None
            target.contact_email = (form.contact_email.data or "").strip().lower() or None
            target.website = form.website.data or None
            db.session.add(target)
            db.session.commit()
            flash(f"Investor {target.name} saved.", "success")
            return redirect(url_for("admin.investors"))
    return render_template("admin/investor_form.html", form=form, investor=investor), 422 if form.errors else 200


@bp.route("/outbox", endpoint="outbox")
@require_role("admin")
def outbox_page():
    status = request.args.get("status") or ""
    if status and status not in OutboxStatus.values():
        abort(400, f"Unknown status {status!r}.")
    query = sa.select(OutboxEmail).order_by(OutboxEmail.id.desc())
    if status:
        query = query.where(OutboxEmail.status == status)
    counts = dict(db.session.execute(sa.select(OutboxEmail.status, sa.func.count()).group_by(OutboxEmail.status)).all())
    page = paginate(query)
    return render_template("admin/outbox.html", page=page, status=status, counts=counts,
                           statuses=list(OutboxStatus), action_form=ActionForm(formdata=None))


@bp.route("/outbox/<int:email_id>")
@require_role("admin")
def outbox_email(email_id: int):
    """One email as it is (or was) sent: headers, text and attachments, built from its outbox row."""
    email = db.get_or_404(OutboxEmail, email_id)
    try:
        message, problem = outbox.build_message(email), None
    except (OSError, outbox.Unsendable) as exc:  # an attachment file is gone, or a header is not sendable
        message, problem = None, f"The message cannot be built: {exc}"
    headers = [(k, str(v)) for k, v in message.items()] if message else []
    body = message.get_body(("plain",)).get_content() if message else email.body_text
    files = [(part.get_filename(), part.get_content_type(), len(part.get_payload(decode=True) or b""))
             for part in message.iter_attachments()] if message else []
    return render_template("admin/outbox_email.html", email=email, headers=headers, body=body, files=files,
                           problem=problem, eml=outbox.eml_path(email) if current_app.config["MAIL_BACKEND"] == "file"
                           else None)


@bp.route("/outbox/<int:email_id>.eml")
@require_role("admin")
def outbox_eml(email_id: int):
    """The whole message as an .eml file, to open in a mail program."""
    email = db.get_or_404(OutboxEmail, email_id)
    try:
        data = outbox.build_message(email).as_bytes()
    except (OSError, outbox.Unsendable) as exc:
        abort(410, f"The message cannot be built: {exc}")
    return Response(data, mimetype="message/rfc822",
                    headers={"Content-Disposition": f'attachment; filename="email-{email.id}.eml"'})


@bp.route("/outbox/<int:email_id>/retry", methods=["POST"])
@require_role("admin")
def retry_email(email_id: int):
    email = db.get_or_404(OutboxEmail, email_id)
    if ActionForm().validate_on_submit():
        try:
            outbox.retry(email, clock.utcnow())
            db.session.commit()
            flash("The email is queued again; the next outbox run sends it.", "success")
        except ValueError as error:
            flash(str(error), "error")
    return redirect(url_for("admin.outbox"))
