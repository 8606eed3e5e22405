"""Reminders page, manual reminders, snooze/complete and the calendar feed.

The calendar link itself is created on the account page (engage.account). Feeds handed out
before the feed moved under /reminders keep working: `old_calendar` answers the old address
with a permanent redirect (registered by the app factory, the one rule outside its package).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from icalendar import Calendar, Event
from sqlalchemy.orm import selectinload
from wtforms import SelectChoice

from engage import clock, idempotency
from engage.extensions import db, limiter
from engage.formatting import format_date
from engage.forms import ActionForm
from engage.models import Engagement, Relationship, Reminder, ReminderStatus, User
from engage.reminders import service
from engage.reminders.forms import BulkForm, ReminderForm, SnoozeForm
from engage.security import is_safe_redirect, public, require_role
from engage.web import REFUSED, refuse

bp = Blueprint("reminders", __name__, url_prefix="/reminders")


def _back(default: str) -> str:
    target = request.form.get("next") or ""
    return target if is_safe_redirect(target) else default


@bp.app_template_global()
def snooze_floor(due_on: dt.date, today: dt.date) -> dt.date | None:
    """Template global: the earliest date the snooze field offers for a reminder (after its due date)."""
    return service.snooze_floor(due_on, today)


@bp.app_template_global()
def snooze_suggestion(due_on: dt.date, today: dt.date) -> dt.date | None:
    """Template global: the date the snooze field suggests (a week after the due date, or after today)."""
    return service.snooze_suggestion(due_on, today)


def _who(value: str | None) -> str:
    who = value or ("mine" if current_user.can_edit else "all")
    if who not in ("mine", "all"):
        abort(400, "who must be 'mine' or 'all'.")
    return who


def _page(who: str, bulk_form: BulkForm | None = None, status: int = 200):
    """The page: mine or the team's reminders grouped into overdue, today, the next 7 days and later,
    each group counted for me and for the team; with the bulk form for analysts."""
    today = clock.today()
    query = service.pending_reminders().order_by(Reminder.due_on, Reminder.id)
    if who == "mine":
        query = query.where(Engagement.owner_id == current_user.id)
    limit = current_app.config["PAGE_SIZE"]
    # The first `limit` of each group (each walks the waiting reminders by due date and stops),
    # loaded together: one query for the four groups' rows, then one per related table.
    firsts = sa.union_all(*(
        sa.select(first.c.id).select_from(first) for first in (
            query.with_only_columns(Reminder.id).where(service.group_condition(key, today)).limit(limit)
            .subquery(f"first_{key}") for key in service.GROUPS))).subquery("firsts")
    rows = db.session.scalars(
        sa.select(Reminder).where(Reminder.id.in_(sa.select(firsts.c.id)))
        .options(selectinload(Reminder.engagement).selectinload(Engagement.company),
                 selectinload(Reminder.engagement).selectinload(Engagement.owner),
                 selectinload(Reminder.relationship_).selectinload(Relationship.counterparty))
        .order_by(Reminder.due_on, Reminder.id)).all()
    groups = {key: [] for key in service.GROUPS}
    for reminder in rows:  # the groups are disjoint ranges of due dates, in this order
        groups[service.group_of(reminder.due_on, today)].append(reminder)
    if bulk_form is None and current_user.can_edit:
        bulk_form = BulkForm(formdata=None, who=who)
    if bulk_form is not None:
        bulk_form.assignee_id.choices = [SelectChoice("", "choose a colleague")] + [
            SelectChoice(u.id, u.name) for u in service.assignees()]
    ticked = set(bulk_form.reminder_ids.data or []) if bulk_form is not None else set()
    return render_template("reminders/index.html", groups=groups, who=who, today=today, limit=limit,
                           counts=service.counts(today, current_user.id), bulk_form=bulk_form, ticked=ticked,
                           action_form=ActionForm(formdata=None), snooze_form=SnoozeForm(formdata=None)), status


@bp.route("")
@require_role("viewer")
def index():
    """Open reminders: mine or the team's, grouped into overdue, due today, this week and later."""
    return _page(_who(request.args.get("who")))


@bp.route("/bulk", methods=["POST"])
@require_role("analyst")
def bulk():
    """Mark done, snooze or reassign the ticked reminders: all of them, or none with the reason."""
    form = BulkForm()
    who = _who(form.who.data)
    back = url_for("reminders.index", who=who)
    if not form.validate_on_submit():
        return _page(who, form, REFUSED)
    try:
        claimed = idempotency.claim(form.form_token.data, "reminders.bulk", current_user.id)
    except idempotency.AlreadySubmitted as duplicate:
        db.session.rollback()
        return idempotency.answer_duplicate(duplicate, back)
    try:
        result = service.bulk(form.reminder_ids.data or [], form.action.data, today=clock.today(),
                              until=form.until.data, assignee_id=form.assignee_id.data)
        idempotency.record_result(claimed, back)
        message = result.message(form.until.data)  # before the commit expires the reminders it counts
        db.session.commit()
    except service.ReminderError as error:
        status = refuse(form, error)
        return _page(who, form, status)
    flash(message, "success")
    return redirect(back, code=303)


@bp.route("/add/<int:engagement_id>", methods=["POST"])
@require_role("analyst")
def add(engagement_id: int):
    engagement = db.get_or_404(Engagement, engagement_id)
    form = ReminderForm()
    back = url_for("engagements.show", engagement_id=engagement_id, tab="reminders") + "#reminders"
    if not form.validate_on_submit():
        flash("Reminder not added: " + "; ".join(f"{getattr(form, k).label.text}: {' '.join(v)}"
                                               for k, v in form.errors.items()), "error")
        return redirect(back)
    try:
        service.add_manual(engagement, due_on=form.due_on.data, reason=form.reason.data, today=clock.today(),
                           actor_id=current_user.id)
        db.session.commit()
    except service.ReminderError as error:
        db.session.rollback()
        flash(f"Reminder not added: {error.message}", "error")
        return redirect(back)
    flash("Reminder added.", "success")
    return redirect(back)


@bp.route("/<int:reminder_id>/snooze", methods=["POST"])
@require_role("analyst")
def snooze(reminder_id: int):
    reminder = db.get_or_404(Reminder, reminder_id)
    form = SnoozeForm()
    if not form.validate_on_submit():
        flash("Not snoozed: " + " ".join(form.until.errors or ["give a valid date."]), "error")
    else:
        try:
            service.snooze(reminder, form.until.data, clock.today())
            db.session.commit()
            flash(f"Snoozed until {format_date(form.until.data)}.", "success")
        except service.ReminderError as error:
            db.session.rollback()
            flash(error.message, "error")
    return redirect(_back(url_for("reminders.index")))


@bp.route("/<int:reminder_id>/complete", methods=["POST"])
@require_role("analyst")
def complete(reminder_id: int):
    reminder = db.get_or_404(Reminder, reminder_id)
    if ActionForm().validate_on_submit():
        try:
            service.complete(reminder)
            db.session.commit()
            flash("Reminder done.", "success")
        except service.ReminderError as error:
            db.session.rollback()
            flash(error.message, "error")
    return redirect(_back(url_for("reminders.index")))


@public
@limiter.limit("60 per minute")
def old_calendar(token: str):
    """/calendar/<token>.ics, the feed's address until it moved: subscriptions already made follow it."""
    return redirect(url_for("reminders.calendar", token=token), 301)


@bp.route("/calendar/<token>.ics")
@public
@limiter.limit("60 per minute")
def calendar(token: str):
    """The user's open reminders as an iCalendar feed; the secret token is the only credential."""
    if len(token) < 32:
        abort(404)
    user = db.session.scalar(sa.select(User).where(User.calendar_token == token, User.active.is_(True)))
    if user is None:
        abort(404)
    reminders = db.session.scalars(
        sa.select(Reminder).join(Engagement, Engagement.id == Reminder.engagement_id)
        .where(Engagement.owner_id == user.id, Reminder.status != ReminderStatus.DONE.value,
               Engagement.is_open)
        .options(selectinload(Reminder.engagement).selectinload(Engagement.company))
        .order_by(Reminder.due_on)
    ).all()
    base = current_app.config["ENGAGE_BASE_URL"].rstrip("/")
    cal = Calendar()
    cal.add("prodid", "-//Engage//reminders//EN")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", f"Engage follow-ups ({user.name})")
    stamp = clock.utcnow().replace(tzinfo=dt.UTC)
    for reminder in reminders:
        event = Event()
        event.add("uid", f"reminder-{reminder.id}@engage")
        event.add("dtstamp", stamp)
        event.add("dtstart", reminder.due_on)
        if reminder.due_on < dt.date.max:  # a stored date at the very end of the calendar: no DTEND,
            event.add("dtend", reminder.due_on + dt.timedelta(days=1))  # which RFC 5545 reads as one day
        event.add("summary", f"{reminder.engagement.company.name}: {reminder.reason}")
        event.add("url", f"{base}/engagements/{reminder.engagement_id}")
        event.add("description", f"{reminder.reason}\n{base}/engagements/{reminder.engagement_id}")
        cal.add_component(event)
    return Response(cal.to_ical(), mimetype="text/calendar",
                    headers={"Content-Disposition": 'inline; filename="engage-reminders.ics"',
                             "Cache-Control": "private, max-age=300"})
