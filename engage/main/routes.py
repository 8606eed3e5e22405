"""The dashboard: the funnel, escalations, what is due, what went quiet, exposure, divested held again."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from flask import Blueprint, current_app, flash, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy.orm import selectinload

from engage import clock
from engage.engagements.queries import quiet_firsts, quiet_since
from engage.extensions import db
from engage.forms import ActionForm
from engage.main import figures, team
from engage.reminders import service as reminders
from engage.models import (
    Campaign,
    Engagement,
    Interaction,
    Reminder,
    ReminderStatus,
    Stage,
)
from engage.security import require_role

bp = Blueprint("main", __name__)

#: Reminder statuses still waiting; an IN list lets the (status, due_on) index serve the range.
PENDING = (ReminderStatus.OPEN.value, ReminderStatus.SNOOZED.value)


@bp.route("/")
@require_role("viewer")
def dashboard():
    """Where the team stands: the funnel, escalations, what is due, what went quiet, exposure, divested held again.

    The counts over whole tables come from the stored figures (engage.main.figures, kept by the
    scheduler); the short lists are live LIMIT queries read from their indexes.
    """
    now = clock.utcnow()
    today = now.date()
    row = figures.current(now)
    shown = figures.shown(row, current_user.id)
    upcoming = db.session.scalars(
        reminders.pending_reminders()
        .where(Reminder.due_on <= today + dt.timedelta(days=7))
        .options(selectinload(Reminder.engagement).selectinload(Engagement.company))
        .order_by(Reminder.due_on)
        .limit(10)
    ).all()
    recent = db.session.scalars(
        sa.select(Interaction)
        .where(Interaction.occurred_on <= today)
        .options(selectinload(Interaction.engagement).selectinload(Engagement.company))
        .order_by(Interaction.occurred_on.desc(), Interaction.id.desc())
        .limit(10)
    ).all()
    quiet = quiet_engagements(today, total=False)
    quiet["total"] = shown.quiet_total
    next_steps = team.next_steps_due(today, total=False)
    next_steps["total"] = shown.next_steps_total
    return render_template(
        "main/dashboard.html",
        stages=shown.stages,
        funnel=funnel_bars(shown.stages),
        escalations=shown.escalations,
        overdue=shown.overdue,
        due_this_week=shown.due_this_week,
        upcoming=upcoming,
        recent=recent,
        quiet=quiet,
        team=shown.team,
        next_steps=next_steps,
        exposure=shown.exposure,
        held_again=shown.held_again,
        held_again_total=shown.held_again_total,
        today=today,
        stale_days=current_app.config["STALE_AFTER_DAYS"],
        campaigns=db.session.scalars(sa.select(Campaign).where(Campaign.active.is_(True)).order_by(Campaign.name)).all(),
        figures_at=row.computed_at,
        figures_age=figures.age_in_words(row.computed_at, now),
        figures_live=current_app.config["DASHBOARD_MAX_AGE_SECONDS"] <= 0,
        refresh_every=figures.every_in_words(current_app.config["DASHBOARD_REFRESH_SECONDS"]),
        action_form=ActionForm(formdata=None),
    )


@bp.route("/main/count-again", methods=["POST"])
@require_role("analyst")
def count_again():
    """Count the dashboard's figures now (after a change), unless they were counted moments ago.

    Counting takes a few seconds at 100,000 companies (README, Dashboard figures): a
    second press within DASHBOARD_COUNT_AGAIN_SECONDS of the last count does not count again.
    """
    if not ActionForm().validate_on_submit():
        flash("Not counted again: the form had expired. Reload the page and try again.", "error")
        return redirect(url_for("main.dashboard"))
    now = clock.utcnow()
    row = figures.stored()
    wait = current_app.config["DASHBOARD_COUNT_AGAIN_SECONDS"]
    if row is not None and row.day == now.date() and 0 <= (now - row.computed_at).total_seconds() < wait:
        flash(f"The figures were counted at {row.computed_at:%H:%M} UTC, {figures.age_in_words(row.computed_at, now)}: "
              "they already include changes made before then.", "info")
        return redirect(url_for("main.dashboard"))
    row = figures.refresh(now)
    flash(f"Figures counted again: as of {row.computed_at:%H:%M} UTC.", "success")
    return redirect(url_for("main.dashboard"))


def funnel_bars(stages) -> list[dict]:
    """The funnel's bars (templates/_charts.html draws them): each stage links to its engagements."""
    return [
        {"label": stage.label, "count": count, "href": url_for("engagements.index", stage=stage.value),
         "muted": stage is Stage.CLOSED}
        for stage, count in stages
    ]


def quiet_engagements(today: dt.date, limit: int = 10, *, total: bool = True):
    """Open engagements with no contact (or, without any, opened) more than STALE_AFTER_DAYS ago.

    The first `limit` by that date (then id) come from two index-ordered queries (`quiet_firsts`:
    contacted, never contacted), merged here; `total` adds how many there are (a count over every
    quiet engagement: the dashboard takes it from its stored figures instead).
    """
    cutoff = today - dt.timedelta(days=current_app.config["STALE_AFTER_DAYS"])
    found = [row for query in quiet_firsts(cutoff, limit)
             for row in db.session.execute(query.options(selectinload(Engagement.company))).all()]
    rows = sorted(((row[0], row[1]) for row in found), key=lambda pair: (pair[1], pair[0].id))[:limit]
    count = db.session.scalar(sa.select(sa.func.count()).select_from(Engagement).where(quiet_since(cutoff))) \
        if total else None
    return {"rows": rows, "total": (count or 0) if total else None}
