"""The dashboard: the funnel, escalations, what is due, what went quiet, exposure, divested held again."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from flask import Blueprint, current_app, render_template, url_for
from flask_login import current_user
from sqlalchemy.orm import selectinload

from engage import clock
from engage.engagements.queries import quiet_since
from engage.extensions import db
from engage.holdings import screening
from engage.main import team
from engage.reminders import service as reminders
from engage.models import (
    Campaign,
    Engagement,
    Escalation,
    Interaction,
    Reminder,
    ReminderStatus,
    Stage,
)
from engage.security import require_role

bp = Blueprint("main", __name__)

#: Reminder statuses still waiting; an IN list lets the (status, due_on) index serve the range.
PENDING = (ReminderStatus.OPEN.value, ReminderStatus.SNOOZED.value)
#: Divested companies held again listed on the dashboard (with how many there are; /holdings/screening/held-again lists all, paged).
HELD_AGAIN_SHOWN = 20


@bp.route("/")
@require_role("viewer")
def dashboard():
    """Where the team stands: the funnel, escalations, what is due, what went quiet, exposure, divested held again."""
    today = clock.today()
    by_stage = dict(
        db.session.execute(sa.select(Engagement.stage, sa.func.count()).group_by(Engagement.stage)).all()
    )
    by_escalation = dict(
        db.session.execute(
            sa.select(Engagement.escalation, sa.func.count())
            .where(Engagement.is_open)
            .group_by(Engagement.escalation)
        ).all()
    )
    due_week = today + dt.timedelta(days=7)
    # the reminders page's own counts (waiting reminders of open engagements), mine and the team's
    counts = reminders.counts(today, current_user.id)
    upcoming = db.session.scalars(
        reminders.pending_reminders()
        .where(Reminder.due_on <= due_week)
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
    stages = [(s, by_stage.get(s.value, 0)) for s in Stage]
    held_again, held_again_total = screening.held_again(screening.snapshots(), limit=HELD_AGAIN_SHOWN)
    return render_template(
        "main/dashboard.html",
        stages=stages,
        funnel=funnel_bars(stages),
        escalations=[(e, by_escalation.get(e.value, 0)) for e in Escalation],
        overdue={who: counts[who]["overdue"] for who in counts},
        due_this_week={who: counts[who]["today"] + counts[who]["week"] for who in counts},
        upcoming=upcoming,
        recent=recent,
        quiet=quiet_engagements(today),
        team=team.team_view(today),
        next_steps=team.next_steps_due(today),
        exposure=screening.exposures(),
        held_again=held_again,
        held_again_total=held_again_total,
        today=today,
        stale_days=current_app.config["STALE_AFTER_DAYS"],
        campaigns=db.session.scalars(sa.select(Campaign).where(Campaign.active.is_(True)).order_by(Campaign.name)).all(),
    )


def funnel_bars(stages) -> list[dict]:
    """The funnel's bars (templates/_charts.html draws them): each stage links to its engagements."""
    return [
        {"label": stage.label, "count": count, "href": url_for("engagements.index", stage=stage.value),
         "muted": stage is Stage.CLOSED}
        for stage, count in stages
    ]


def quiet_engagements(today: dt.date, limit: int = 10):
    """Open engagements with no contact (or, without any, opened) more than STALE_AFTER_DAYS ago.

    One query: the total comes from a window count beside the first rows.
    """

    cutoff = today - dt.timedelta(days=current_app.config["STALE_AFTER_DAYS"])
    # The stored last contact (engage.engagements.stored): the quiet ones come from the partial
    # index ix_engagements_open_last_contact, not from a pass over every open engagement's contacts.
    last = sa.func.coalesce(Engagement.last_contact_on, Engagement.opened_on)
    rows = db.session.execute(
        sa.select(Engagement, last.label("last_contact"), sa.func.count().over().label("total"))
        .where(quiet_since(cutoff))
        .options(selectinload(Engagement.company))
        .order_by(last, Engagement.id)
        .limit(limit)
    ).all()
    return {"rows": [(row[0], row[1]) for row in rows], "total": rows[0][2] if rows else 0}

