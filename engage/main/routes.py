"""Read pages: dashboard, companies, engagements and reminders."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, render_template, request
from sqlalchemy.orm import selectinload

from engage import clock
from engage.extensions import db
from engage.models import (
    Company,
    CompanyAlias,
    Engagement,
    Escalation,
    Interaction,
    Reminder,
    ReminderStatus,
    RiskFlag,
    RiskSource,
    Stage,
)
from engage.security import require_role

bp = Blueprint("main", __name__)


def _page_size() -> int:
    return current_app.config["PAGE_SIZE"]


@bp.route("/")
@require_role("viewer")
def dashboard():
    """Where the team stands: engagements by stage and escalation, what is due, what happened."""
    today = clock.today()
    by_stage = dict(
        db.session.execute(sa.select(Engagement.stage, sa.func.count()).group_by(Engagement.stage)).all()
    )
    by_escalation = dict(
        db.session.execute(
            sa.select(Engagement.escalation, sa.func.count())
            .where(Engagement.stage != Stage.CLOSED.value)
            .group_by(Engagement.escalation)
        ).all()
    )
    due_week = today + dt.timedelta(days=7)
    reminder_counts = db.session.execute(
        sa.select(
            sa.func.count().filter(Reminder.due_on < today),
            sa.func.count().filter(Reminder.due_on.between(today, due_week)),
        ).where(Reminder.status != ReminderStatus.DONE.value)
    ).one()
    upcoming = db.session.scalars(
        sa.select(Reminder)
        .where(Reminder.status != ReminderStatus.DONE.value, Reminder.due_on <= due_week)
        .options(selectinload(Reminder.engagement).selectinload(Engagement.company))
        .order_by(Reminder.due_on)
        .limit(10)
    ).all()
    recent = db.session.scalars(
        sa.select(Interaction)
        .options(selectinload(Interaction.engagement).selectinload(Engagement.company))
        .order_by(Interaction.occurred_on.desc(), Interaction.id.desc())
        .limit(10)
    ).all()
    return render_template(
        "main/dashboard.html",
        stages=[(s, by_stage.get(s.value, 0)) for s in Stage],
        escalations=[(e, by_escalation.get(e.value, 0)) for e in Escalation],
        overdue=reminder_counts[0],
        due_this_week=reminder_counts[1],
        upcoming=upcoming,
        recent=recent,
        today=today,
    )


@bp.route("/companies")
@require_role("viewer")
def companies():
    q = (request.args.get("q") or "").strip()[:100]
    source = request.args.get("source") or ""
    if source and source not in RiskSource.values():
        abort(400, f"Unknown risk list {source!r}.")
    query = sa.select(Company).order_by(Company.normalized_name, Company.id)
    if q:
        like = f"%{q.lower()}%"
        alias_match = sa.select(CompanyAlias.company_id).where(sa.func.lower(CompanyAlias.alias).like(like))
        query = query.where(
            sa.or_(
                sa.func.lower(Company.name).like(like),
                Company.isin == q.upper(),
                sa.func.upper(Company.ticker) == q.upper(),
                Company.id.in_(alias_match),
            )
        )
    if source:
        query = query.where(Company.id.in_(sa.select(RiskFlag.company_id).where(RiskFlag.source == source)))
    query = query.options(selectinload(Company.risk_flags), selectinload(Company.aliases))
    page = db.paginate(query, per_page=_page_size(), max_per_page=200)
    return render_template("main/companies.html", page=page, q=q, source=source, sources=list(RiskSource))


@bp.route("/companies/<int:company_id>")
@require_role("viewer")
def company(company_id: int):
    item = db.get_or_404(Company, company_id)
    engagements = db.session.scalars(
        sa.select(Engagement)
        .where(Engagement.company_id == item.id)
        .options(selectinload(Engagement.campaign), selectinload(Engagement.owner))
        .order_by(Engagement.opened_on.desc())
    ).all()
    return render_template("main/company.html", company=item, engagements=engagements)


@bp.route("/engagements")
@require_role("viewer")
def engagements():
    stage = request.args.get("stage") or ""
    escalation = request.args.get("escalation") or ""
    if stage and stage not in Stage.values():
        abort(400, f"Unknown stage {stage!r}.")
    if escalation and escalation not in Escalation.values():
        abort(400, f"Unknown escalation level {escalation!r}.")
    query = (
        sa.select(Engagement)
        .join(Engagement.company)
        .options(
            selectinload(Engagement.company), selectinload(Engagement.campaign), selectinload(Engagement.owner)
        )
        .order_by(Company.normalized_name, Engagement.id)
    )
    if stage:
        query = query.where(Engagement.stage == stage)
    if escalation:
        query = query.where(Engagement.escalation == escalation)
    page = db.paginate(query, per_page=_page_size(), max_per_page=200)
    return render_template(
        "main/engagements.html", page=page, stage=stage, escalation=escalation,
        stages=list(Stage), escalations=list(Escalation),
    )


@bp.route("/engagements/<int:engagement_id>")
@require_role("viewer")
def engagement(engagement_id: int):
    item = db.session.scalar(
        sa.select(Engagement)
        .where(Engagement.id == engagement_id)
        .options(
            selectinload(Engagement.company).selectinload(Company.risk_flags),
            selectinload(Engagement.campaign),
            selectinload(Engagement.owner),
            selectinload(Engagement.interactions).selectinload(Interaction.created_by),
            selectinload(Engagement.reminders),
        )
    )
    if item is None:
        abort(404)
    timeline = sorted(item.interactions, key=lambda i: (i.occurred_on, i.id), reverse=True)
    return render_template("main/engagement.html", engagement=item, timeline=timeline)


@bp.route("/reminders")
@require_role("viewer")
def reminders():
    show = request.args.get("show", "open")
    if show not in ("open", "all"):
        abort(400, "show must be 'open' or 'all'.")
    query = (
        sa.select(Reminder)
        .options(
            selectinload(Reminder.engagement).selectinload(Engagement.company),
            selectinload(Reminder.engagement).selectinload(Engagement.owner),
        )
        .order_by(Reminder.due_on, Reminder.id)
    )
    if show == "open":
        query = query.where(Reminder.status != ReminderStatus.DONE.value)
    page = db.paginate(query, per_page=_page_size(), max_per_page=200)
    return render_template("main/reminders.html", page=page, show=show, today=clock.today())
