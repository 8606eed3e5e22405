"""The engagements list: its filters, sorting and query (shared by the list page and bulk letters)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from flask import abort, current_app
from flask_login import current_user

from engage.engagements import service
from engage.extensions import db
from engage.formatting import SHOWN_CHANGE, shown_below
from engage.models import Company, Engagement, Escalation, Role, Stage, User
from engage.validators import whole_number

SORTS = {
    "company": Company.normalized_name,
    "stage": Engagement.stage,
    "escalation": Engagement.escalation,
    "opened": Engagement.opened_on,
}


def owner_choices(include_none: bool = True):
    users = db.session.scalars(
        sa.select(User).where(User.active.is_(True), User.role.in_([Role.ANALYST.value, Role.ADMIN.value]))
        .order_by(User.name)
    ).all()
    choices = [("", "Unassigned")] if include_none else []
    return choices + [(u.id, u.name) for u in users]


def engagement_filters(args) -> dict:
    f = {key: (args.get(key) or "").strip() for key in
         ("campaign", "stage", "escalation", "owner", "sector", "overdue", "stale", "score_below", "trend",
          "sort", "dir")}
    f["sort"] = f["sort"] or "company"
    f["dir"] = f["dir"] or "asc"
    if f["stage"] and f["stage"] not in Stage.values() and f["stage"] != "open":
        abort(400, f"Unknown stage {f['stage']!r}.")
    if f["escalation"] and f["escalation"] not in Escalation.values():
        abort(400, f"Unknown escalation level {f['escalation']!r}.")
    if f["campaign"] and whole_number(f["campaign"]) is None:
        abort(400, "campaign must be a campaign number.")
    if f["owner"] and f["owner"] not in ("me", "none") and whole_number(f["owner"]) is None:
        abort(400, "owner must be a user number, 'me' or 'none'.")
    if f["overdue"] not in ("", "yes") or f["stale"] not in ("", "yes"):
        abort(400, "overdue and stale take the value 'yes'.")
    if f["score_below"] and whole_number(f["score_below"], maximum=100) is None:
        abort(400, "score_below must be a whole number from 0 to 100.")
    if f["trend"] not in ("", "up", "down"):
        abort(400, "trend must be 'up' or 'down'.")
    if f["sort"] not in SORTS and f["sort"] not in ("next_follow_up", "last_contact", "score", "change") \
            or f["dir"] not in ("asc", "desc"):
        abort(400, f"Cannot sort by {f['sort']!r} {f['dir']!r}.")
    return f


def engagement_query(f: dict, today: dt.date):
    # Only the engagements are selected: the per-row figures are computed for the page alone
    # (`_rows`), so a deep page does not compute them for every row it skips.
    query = sa.select(Engagement).join(Engagement.company)
    if f["campaign"]:
        query = query.where(Engagement.campaign_id == int(f["campaign"]))
    if f["stage"] == "open":
        query = query.where(Engagement.stage != Stage.CLOSED.value)
    elif f["stage"]:
        query = query.where(Engagement.stage == f["stage"])
    if f["escalation"]:
        query = query.where(Engagement.escalation == f["escalation"])
    if f["owner"] == "me":
        query = query.where(Engagement.owner_id == current_user.id)
    elif f["owner"] == "none":
        query = query.where(Engagement.owner_id.is_(None))
    elif f["owner"]:
        query = query.where(Engagement.owner_id == int(f["owner"]))
    if f["sector"]:
        query = query.where(Company.sector == f["sector"])
    if f["overdue"]:
        query = query.where(service.next_follow_up_query() < today)
    if f["stale"]:
        cutoff = today - dt.timedelta(days=current_app.config["STALE_AFTER_DAYS"])
        query = query.where(Engagement.stage != Stage.CLOSED.value,
                            sa.func.coalesce(service.last_contact_query(), Engagement.opened_on) < cutoff)
    if f["score_below"]:
        query = query.where(service.latest_score_query() < shown_below(int(f["score_below"])))
    if f["trend"] == "up":  # a change shown as +1 or more; "+0" is no trend
        query = query.where(service.score_change_query() >= SHOWN_CHANGE)
    elif f["trend"] == "down":
        query = query.where(service.score_change_query() <= -SHOWN_CHANGE)
    computed = {"next_follow_up": service.next_follow_up_query, "last_contact": service.last_contact_query,
                "score": service.latest_score_query, "change": service.score_change_query}
    column = SORTS[f["sort"]] if f["sort"] in SORTS else computed[f["sort"]]()
    order = column.desc() if f["dir"] == "desc" else column.asc()
    return query.order_by(order.nulls_last(), Engagement.id)
