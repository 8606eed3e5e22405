"""The engagements list: its filters, sorting and query (shared by the list page and bulk letters)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from flask import current_app
from flask_login import current_user

from engage.engagements import service
from engage.engagements.forms import EngagementFilterForm
from engage.extensions import db
from engage.formatting import SHOWN_CHANGE, shown_below
from engage.keyset import DATE, NUMBER, TEXT, Order
from engage.models import Company, Engagement, Role, User, engagement_open

SORTS = {
    "company": Company.normalized_name,
    "stage": Engagement.stage,
    "escalation": Engagement.escalation,
    "opened": Engagement.opened_on,
    "next_step": Engagement.next_step_on,
}


def owner_choices(include_none: bool = True):
    users = db.session.scalars(
        sa.select(User).where(User.active.is_(True), User.role.in_([Role.ANALYST.value, Role.ADMIN.value]))
        .order_by(User.name)
    ).all()
    choices = [("", "Unassigned")] if include_none else []
    return choices + [(u.id, u.name) for u in users]


#: Columns computed per engagement that the list can also sort by.
COMPUTED_SORTS = ("next_follow_up", "last_contact", "score", "change")
#: Per sort: whether its value may be NULL (those rows come last) and its kind (how a page link's
#: cursor is read back).
SORT_KINDS = {"company": (False, TEXT), "stage": (False, TEXT), "escalation": (False, TEXT),
              "opened": (False, DATE), "next_step": (True, DATE), "next_follow_up": (True, DATE),
              "last_contact": (True, DATE), "score": (True, NUMBER), "change": (True, NUMBER)}


def filter_form(formdata) -> EngagementFilterForm:
    """The list's filters from the query string, or from the same fields posted by the bulk action."""
    return EngagementFilterForm(formdata, sorts=[*SORTS, *COMPUTED_SORTS])


def engagement_filters(formdata) -> dict:
    """The list's checked filters; a bad value is a 400 saying which."""
    return filter_form(formdata).values_or_400()


def quiet_since(cutoff: dt.date):
    """SQL: open, and the last contact (or, without any, the opening) before `cutoff`.

    Said with the stored last contact and the open condition as the partial index
    ix_engagements_open_last_contact spells it, so either planner can read the quiet ones from it.
    """
    return sa.and_(engagement_open(), sa.or_(Engagement.last_contact_on < cutoff,
                                             sa.and_(Engagement.last_contact_on.is_(None), Engagement.opened_on < cutoff)))


def quiet_firsts(cutoff: dt.date, limit: int) -> list[sa.Select]:
    """`quiet_since` as two queries of at most `limit` rows each, read in order from a partial index:
    contacted ones by last contact (ix_engagements_open_contacted), never contacted ones by opening
    (ix_engagements_open_uncontacted). Each selects (engagement, its date); merged by (date, id),
    their first `limit` rows are the first quiet engagements, with no sort over every quiet one."""
    return [
        sa.select(Engagement, Engagement.last_contact_on)
        .where(engagement_open(), Engagement.last_contact_on < cutoff)
        .order_by(Engagement.last_contact_on, Engagement.id).limit(limit),
        sa.select(Engagement, Engagement.opened_on)
        .where(engagement_open(), Engagement.last_contact_on.is_(None), Engagement.opened_on < cutoff)
        .order_by(Engagement.opened_on, Engagement.id).limit(limit),
    ]


def engagement_query(f: dict, today: dt.date):
    """The engagements matching the filters, in the list's order (bulk letters, the API)."""
    query, order = engagement_keyset(f, today)
    column = order.column.desc() if order.descending else order.column.asc()
    return query.order_by(column.nulls_last(), Engagement.id)


def engagement_keyset(f: dict, today: dt.date) -> tuple[sa.Select, Order]:
    """The engagements matching the filters (no order) and the list's order, for keyset paging."""
    # Only the engagements are selected: the per-row figures are computed for the page alone
    # (`_rows`), so a deep page does not compute them for every row it skips.
    query = sa.select(Engagement).join(Engagement.company)
    if f["campaign"]:
        query = query.where(Engagement.campaign_id == int(f["campaign"]))
    if f["stage"] == "open":
        query = query.where(Engagement.is_open)
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
        overdue = service.next_follow_up_query() < today
        if db.session.get_bind().dialect.name == "sqlite":
            # Most engagements of a busy team are overdue on something (three in four of the
            # synthetic 100,000): told so, SQLite walks the companies in name order and stops at
            # the page instead of fetching every overdue engagement through the date index
            # (1.5 s -> 1 ms for the page's rows at 100,000 companies).
            overdue = sa.func.likelihood(overdue, sa.literal_column("0.9"))
        query = query.where(overdue)
    if f["stale"]:
        cutoff = today - dt.timedelta(days=current_app.config["STALE_AFTER_DAYS"])
        query = query.where(quiet_since(cutoff))
    if f["score_below"]:
        query = query.where(service.latest_score_query() < shown_below(int(f["score_below"])))
    if f["trend"] == "up":  # a change shown as +1 or more; "+0" is no trend
        query = query.where(service.score_change_query() >= SHOWN_CHANGE)
    elif f["trend"] == "down":
        query = query.where(service.score_change_query() <= -SHOWN_CHANGE)
    computed = {"next_follow_up": service.next_follow_up_query, "last_contact": service.last_contact_query,
                "score": service.latest_score_query, "change": service.score_change_query}
    # The next follow-up and last contact are stored columns (engage.engagements.stored), indexed
    # with the id: sorting by them reads the index in order instead of computing every engagement's.
    column = SORTS[f["sort"]] if f["sort"] in SORTS else computed[f["sort"]]()
    nullable, kind = SORT_KINDS[f["sort"]]
    return query, Order(f["sort"], column, Engagement.id, descending=f["dir"] == "desc", nullable=nullable, kind=kind)
