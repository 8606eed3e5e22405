"""The dashboard's figures over whole tables, stored and refreshed off the request (issue 20).

Counting every engagement, reminder, contact and holding grows with the data whatever the index,
so the dashboard does not count on each request: the scheduler's `dashboard-figures` job counts
every DASHBOARD_REFRESH_SECONDS and stores the result in one row of `dashboard_figures` (kind
"dashboard"), which every web worker reads. A request counts itself only when that row is
missing, was counted for another day, or is older than DASHBOARD_MAX_AGE_SECONDS (the scheduler
is down); it then stores what it counted, so the next request is quick again. 0 means always
count in the request, nothing stored (the test suite's setting).

What is stored (`compute`), JSON:
- engagements per stage; open ones per escalation;
- waiting reminders per owner and group (overdue, today, week, later): "mine" is the user's entry,
  "team" the sum, so every user sees their own figures from the one row;
- the quiet engagements' and the next steps' totals (their first rows stay live LIMIT queries);
- the team view's figures per owner (names are read when the page is drawn);
- each fund's exposure (no detail rows) and the first HELD_AGAIN_SHOWN divested companies held
  again, with how many there are;
- for the screening pages (`screening_totals`): each fund's held-again count, and the newest
  holdings import's id, so a snapshot imported since (a new date or the same one again) is counted
  by the page itself rather than shown from an older count.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.dialects import postgresql, sqlite

from engage import clock, dbutil
from engage.engagements.queries import quiet_since
from engage.extensions import db
from engage.holdings import screening
from engage.holdings import stored as holdings_stored
from engage.main import team
from engage.models import DashboardFigures, Engagement, Escalation, Stage
from engage.models.holdings import HoldingImport
from engage.reminders import service as reminders

log = logging.getLogger("engage.dashboard")

KIND = "dashboard"
#: Divested companies held again listed on the dashboard (with how many there are; /holdings/screening/held-again lists all, paged).
HELD_AGAIN_SHOWN = 20
#: JSON keys are strings: engagements nobody owns are counted under this one.
NOBODY = "none"


# --- counting -------------------------------------------------------------------------------------

def compute(today: dt.date) -> dict:
    """Every whole-table figure of the dashboard for `today`, as plain JSON (one grouped query each)."""
    by_stage = dict(db.session.execute(
        sa.select(Engagement.stage, sa.func.count()).group_by(Engagement.stage)).all())
    by_escalation = dict(db.session.execute(
        sa.select(Engagement.escalation, sa.func.count()).where(Engagement.is_open)
        .group_by(Engagement.escalation)).all())
    by_owner = reminders.counts_by_owner(today)
    overdue = Counter({owner: groups["overdue"] for owner, groups in by_owner.items() if groups["overdue"]})
    cutoff = today - dt.timedelta(days=current_app.config["STALE_AFTER_DAYS"])
    quiet_total = db.session.scalar(sa.select(sa.func.count()).select_from(Engagement).where(quiet_since(cutoff)))
    snap = screening.snapshots()
    held, held_total = screening.held_again(snap, limit=HELD_AGAIN_SHOWN)
    # read before the exposures are counted: an import committed meanwhile makes the row unusable for the screening page
    import_id = _latest_import_id()
    exposure = screening.exposures()
    return {
        "day": today.isoformat(),
        "stages": {stage.value: by_stage.get(stage.value, 0) for stage in Stage},
        "escalations": {level.value: by_escalation.get(level.value, 0) for level in Escalation},
        "reminders": {_key(owner): groups for owner, groups in by_owner.items()},
        "quiet_total": quiet_total or 0,
        "next_steps_total": team.next_steps_total(today),
        "team": {name: {_key(owner): count for owner, count in counts.items() if count}
                 for name, counts in team.team_figures(today, overdue_reminders=overdue).items()},
        "exposure": [_exposure_json(e) for e in exposure],
        "held_again": {"rows": [_held_json(h) for h in held], "total": held_total},
        # the screening pages' counts over every holding (see screening_totals)
        "screening": {"import_id": import_id,
                      "held_again": {str(fund): n for fund, n in screening.held_again_counts(snap).items()}},
    }


def _latest_import_id() -> int:
    """The newest holdings import's id (0 before any): every import of a snapshot, a new date or the same one, adds one."""
    return db.session.scalar(sa.select(sa.func.max(HoldingImport.id))) or 0


def screening_totals(now: dt.datetime) -> tuple[dict[int, screening.SnapshotTotals], dt.datetime] | None:
    """The screening pages' counts over every holding of each fund's latest snapshot (positions, market
    value, holdings without a value, held again after divestment), from the stored figures, and when
    they were counted; None when they may not be used: none stored, too old for the dashboard
    (`usable`), counted before the newest holdings import, or stored by an older version without them.
    The screening page then counts them itself (and stores nothing: the scheduler's job does)."""
    row = stored()
    if not usable(row, now) or "screening" not in row.data:
        return None
    data = row.data["screening"]
    if data["import_id"] != _latest_import_id():
        return None
    held = data["held_again"]
    totals = {}
    for item in row.data["exposure"]:
        if item["as_of"] is None:
            continue
        totals[item["fund_id"]] = screening.SnapshotTotals(
            as_of=dt.date.fromisoformat(item["as_of"]), positions=item["positions"], total=Decimal(item["total"]),
            unknown=item["unknown"], held_again=held.get(str(item["fund_id"]), 0))
    return totals, row.computed_at


def _key(owner_id: int | None) -> str:
    return NOBODY if owner_id is None else str(owner_id)


def _owner(key: str) -> int | None:
    return None if key == NOBODY else int(key)


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


#: The exposures' JSON is the funds page's (engage.holdings.stored).
_exposure_json = holdings_stored.exposure_json


def _held_json(h: screening.HeldAgain) -> dict:
    return {"fund_id": h.fund_id, "fund": h.fund, "currency": h.currency, "as_of": h.as_of.isoformat(),
            "company_id": h.company_id, "company": h.company, "market_value": _money(h.market_value),
            "engagement_id": h.engagement_id, "owner_id": h.owner_id, "divested_on": h.divested_on.isoformat()}


def _held(data: dict) -> screening.HeldAgain:
    return screening.HeldAgain(
        fund_id=data["fund_id"], fund=data["fund"], currency=data["currency"],
        as_of=dt.date.fromisoformat(data["as_of"]), company_id=data["company_id"], company=data["company"],
        market_value=None if data["market_value"] is None else Decimal(data["market_value"]),
        engagement_id=data["engagement_id"], owner_id=data["owner_id"],
        divested_on=dt.date.fromisoformat(data["divested_on"]))


# --- storing --------------------------------------------------------------------------------------

def count(now: dt.datetime) -> dict:
    """The figures for `now`'s day as a row of `dashboard_figures`, with what counting them cost."""
    wall, cpu = time.perf_counter(), time.process_time()
    data = compute(now.date())
    return {"kind": KIND, "day": now.date(), "data": data, "computed_at": now,
            "seconds": round(time.perf_counter() - wall, 3), "cpu_seconds": round(time.process_time() - cpu, 3)}


def refresh(now: dt.datetime | None = None) -> DashboardFigures:
    """Count now and store the figures (the scheduler's job, the "Count again" button); commits.

    Two workers refreshing at once both succeed: the row is keyed by kind and written with an
    upsert, and an older count never replaces a newer one.
    """
    row = count(now or clock.utcnow())
    store(row)
    return DashboardFigures(**row)


def store(row: dict) -> None:
    """Upsert one row of figures and commit; a row counted later than `row` is kept as it is."""
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[db.engine.dialect.name]
    table = DashboardFigures.__table__
    statement = insert(table).values(**row)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.kind],
        set_={name: statement.excluded[name] for name in ("day", "data", "computed_at", "seconds", "cpu_seconds")},
        where=table.c.computed_at <= statement.excluded.computed_at,
    )
    db.session.execute(statement)
    db.session.commit()


def stored() -> DashboardFigures | None:
    return db.session.get(DashboardFigures, KIND, populate_existing=True)


def usable(row: DashboardFigures | None, now: dt.datetime) -> bool:
    """Stored figures the page may show: counted today and at most DASHBOARD_MAX_AGE_SECONDS ago."""
    max_age = current_app.config["DASHBOARD_MAX_AGE_SECONDS"]
    return (row is not None and max_age > 0 and row.day == now.date()
            and (now - row.computed_at).total_seconds() <= max_age)


def current(now: dt.datetime) -> DashboardFigures:
    """The figures the dashboard shows now: the stored ones if usable, else counted now (and stored)."""
    if current_app.config["DASHBOARD_MAX_AGE_SECONDS"] <= 0:  # always live: counted, not stored
        return DashboardFigures(kind=KIND, day=now.date(), data=compute(now.date()), computed_at=now,
                                seconds=0.0, cpu_seconds=0.0)
    row = stored()
    if usable(row, now):
        return row
    log.info("dashboard figures %s: counted in the request", "missing" if row is None else "stale")
    counted = count(now)
    dbutil.store_if_possible(lambda: store(counted), "dashboard figures")
    return DashboardFigures(**counted)


# --- showing --------------------------------------------------------------------------------------

@dataclass
class Shown:
    """The stored figures as the template uses them, for one user."""

    computed_at: dt.datetime
    stages: list[tuple[Stage, int]]
    escalations: list[tuple[Escalation, int]]
    overdue: dict[str, int]
    due_this_week: dict[str, int]
    quiet_total: int
    next_steps_total: int
    team: team.TeamView
    exposure: list[screening.FundExposure]
    held_again: list[screening.HeldAgain]
    held_again_total: int


def shown(row: DashboardFigures, user_id: int | None) -> Shown:
    """The figures for the page: "mine" is `user_id`'s entry; names and funds are read now (a query each)."""
    data = row.data
    by_owner = {_owner(key): groups for key, groups in data["reminders"].items()}
    team_groups = Counter()
    for groups in by_owner.values():
        team_groups.update(groups)
    mine = by_owner.get(user_id, {}) if user_id is not None else {}
    day = dt.date.fromisoformat(data["day"])
    figures = {name: Counter({_owner(key): count for key, count in counts.items()})
               for name, counts in data["team"].items()}
    return Shown(
        computed_at=row.computed_at,
        stages=[(stage, data["stages"].get(stage.value, 0)) for stage in Stage],
        escalations=[(level, data["escalations"].get(level.value, 0)) for level in Escalation],
        overdue={"team": team_groups["overdue"], "mine": mine.get("overdue", 0)},
        due_this_week={"team": team_groups["today"] + team_groups["week"],
                       "mine": mine.get("today", 0) + mine.get("week", 0)},
        quiet_total=data["quiet_total"],
        next_steps_total=data["next_steps_total"],
        team=team.build_view(team.Periods.of(day), figures),
        exposure=_exposures(data["exposure"]),
        held_again=[_held(h) for h in data["held_again"]["rows"]],
        held_again_total=data["held_again"]["total"],
    )


def _exposures(items: list[dict]) -> list[screening.FundExposure]:
    """The stored exposures with their funds read now (one query); a fund deleted since is left out."""
    return holdings_stored.from_json(items)


def age_in_words(computed_at: dt.datetime, now: dt.datetime) -> str:
    """How old the figures are, as people say it: "just now", "4 minutes ago", "2 hours ago"."""
    seconds = max(0, int((now - computed_at).total_seconds()))
    if seconds < 60:
        return "just now"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} minute{'s' if minutes != 1 else ''} ago"
    hours = minutes // 60
    return f"{hours} hour{'s' if hours != 1 else ''} ago"


def every_in_words(seconds: int) -> str:
    """The refresh interval as people say it: "2 minutes", "minute", "30 seconds"."""
    if seconds % 60:
        return f"{seconds} seconds"
    minutes = seconds // 60
    return "minute" if minutes == 1 else f"{minutes} minutes"
