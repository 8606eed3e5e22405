"""The monthly status export: one row source, two writers (CSV and XLSX).

Each row is an engagement open at any time in the month, with its stage and escalation *as they
were at the month's end* (replayed from the engagement's events, not read from today's state),
its latest score at month end and the change over the month, the month's activity, and the
figures of the company's latest value-chain map (relationships disclosed, flagged, exited, overdue
exits; blank when the company disclosed no map), days overdue, the next step and the latest note.
The rows are read in batches of BATCH_ROWS engagements through one streamed query (a server-side
cursor on PostgreSQL), each batch's related facts with a fixed set of grouped queries for its ids
(never per row), and written as they are read (`stream`): memory holds one batch, whatever the
number of engagements. `build` keeps the same rows in lists (the page's small downloads, the API).

The XLSX is written for people (labels, the app's rounding of scores, Excel dates and number
formats, a title row naming the month and filters); the CSV for programs (codes, ISO dates,
exact scores, the header on line 1). README, "Monthly status export".
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import os
import re
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from engage.errors import FieldError
from engage.extensions import db
from engage.formatting import XLSX_DATE_FORMAT, format_date, format_month, one_line, round_half_up, shown_score
from engage.validators import DATE_MAX, DATE_MIN, whole_number
from engage.valuechain import figures
from engage.holdings import screening
from engage.models import (
    Campaign,
    Company,
    Direction,
    Engagement,
    EngagementEvent,
    Escalation,
    Fund,
    Holding,
    Interaction,
    InteractionKind,
    Letter,
    LetterStatus,
    Outcome,
    Reminder,
    ReminderStatus,
    Score,
    Stage,
    User,
)
from engage.models.holdings import in_snapshot, latest_snapshots
from engage.models.scoring import primary_scores

MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Column:
    """One column of the Engagements sheet (and of the CSV): its row key, title, kind and XLSX width.

    Kinds: text; label (a code such as `value_chain_mapped`, written as its label in the XLSX and
    as the code in the CSV); date; int; score and change (the XLSX shows the number the app shows,
    the CSV keeps the exact two-decimal value).
    """

    key: str
    title: str
    kind: str = "text"
    width: float = 14


COLUMN_SPECS = [
    Column("company", "Company", width=32), Column("isin", "ISIN", width=14), Column("sector", "Sector", width=18),
    Column("country", "Country", width=9), Column("campaign", "Campaign", width=24), Column("owner", "Owner", width=18),
    Column("stage", "Stage at month end", "label", 20), Column("escalation", "Escalation at month end", "label", 22),
    Column("outcome", "Outcome", "label", 11), Column("opened_on", "Opened", "date", 12),
    Column("closed_on", "Closed", "date", 12), Column("last_contact", "Last contact", "date", 13),
    Column("next_follow_up", "Next follow-up", "date", 14),
    # The earliest reminder open at month end, when it was due before: days late at month end.
    Column("days_overdue", "Days overdue", "int", 9),
    Column("next_step", "Next step", width=40), Column("next_step_on", "Next step by", "date", 13),
    Column("score", "Latest score", "score", 9), Column("score_change", "Score change in month", "change", 11),
    Column("letters_sent", "Letters sent", "int", 9), Column("responses", "Responses received", "int", 11),
    Column("interactions", "Interactions in month", "int", 12),
    # The company's latest value-chain map (engage.valuechain.figures); blank when it has none.
    Column("vc_disclosed", "Relationships disclosed", "int", 13), Column("vc_flagged", "Relationships flagged", "int", 13),
    Column("vc_exited", "Relationships exited", "int", 13), Column("vc_overdue", "Overdue exits", "int", 10),
    # The latest interaction's summary (or subject) up to the month's end, on one line, shortened.
    Column("latest_note", "Latest note", width=70),
]
COLUMNS = [(column.key, column.title) for column in COLUMN_SPECS]
LABELS = {"stage": Stage, "escalation": Escalation, "outcome": Outcome}
VALUE_CHAIN_COLUMNS = {"vc_disclosed": "disclosed", "vc_flagged": "flagged", "vc_exited": "exited",
                       "vc_overdue": "overdue"}
STAGE_KINDS = ("stage", "close", "reopen")
#: The latest note is cut to this many characters, at a word, with an ellipsis.
NOTE_MAX = 240
#: One date format in every sheet, the one the pages use (engage.formatting.DATE_FORMAT, 05 Oct 2026).
XLSX_DATE = XLSX_DATE_FORMAT
XLSX_FORMATS = {"date": XLSX_DATE, "int": "0", "score": "0", "change": "+0;-0;0", "percent": "0.0%",
                "money": "#,##0"}


def label_of(kind: str, value: str | None) -> str | None:
    """The label a page shows for a stage, escalation, outcome, interaction kind or direction code."""
    if not value:
        return value
    enum = {**LABELS, "kind": InteractionKind, "direction": Direction}[kind]
    try:
        return enum(value).label
    except ValueError:  # a code this version does not know: shown as stored, never dropped
        return value


class ExportError(FieldError):
    """A refused export request (month, filter or output path)."""


@dataclass(frozen=True, order=True)
class Month:
    year: int
    month: int

    @property
    def first(self) -> dt.date:
        return dt.date(self.year, self.month, 1)

    @property
    def last(self) -> dt.date:
        return dt.date(self.year, self.month, calendar.monthrange(self.year, self.month)[1])

    @property
    def previous(self) -> Month:
        return Month(self.year - 1, 12) if self.month == 1 else Month(self.year, self.month - 1)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


#: The sane range of months (the export also reads the month before the one asked for).
EARLIEST_MONTH = Month(DATE_MIN.year, DATE_MIN.month)
LATEST_MONTH = Month(DATE_MAX.year, DATE_MAX.month)


def parse_month(text: str | None, today: dt.date) -> Month:
    """A month the export can cover: YYYY-MM between EARLIEST_MONTH and LATEST_MONTH, already started."""
    match = MONTH.match((text or "").strip())
    if not match:
        raise ExportError("month", f"The month must look like 2026-10, not {text!r}.")
    month = Month(int(match.group(1)), int(match.group(2)))
    if not EARLIEST_MONTH <= month <= LATEST_MONTH:
        raise ExportError("month", f"{month} is outside the months Engage exports ({format_month(EARLIEST_MONTH.first)} "
                                   f"to {format_month(LATEST_MONTH.first)}).")
    if month.first > today:
        raise ExportError("month", f"{format_month(month.first)} has not started yet.")
    return month


def neutralise(value):
    """Text a spreadsheet would read as a formula gets a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


@dataclass
class Filters:
    campaign: Campaign | None = None
    owner: User | None = None
    fund: Fund | None = None


FORMATS = ("csv", "xlsx")
#: How a filter value names its row: the page sends ids, the CLI a campaign's slug, an owner's
#: email (any case) or a fund's name.
FILTER_KEYS = {
    "campaign": (Campaign, {"id": Campaign.id, "name": Campaign.slug}),
    "owner": (User, {"id": User.id, "name": User.email}),
    "fund": (Fund, {"id": Fund.id, "name": Fund.name}),
}


@dataclass
class ExportRequest:
    month: Month
    fmt: str
    filters: Filters


def parse_request(values, today: dt.date, *, names: bool = False) -> ExportRequest:
    """The one parser of an export request (page and CLI): month, format and filters, or ExportError.

    `values` maps month, format, campaign, owner and fund to text; filters are ids, or with
    `names` the CLI's slug, email and fund name. An unknown filter is refused, never ignored.
    """
    month = parse_month(values.get("month"), today)
    fmt = (values.get("format") or "xlsx").strip()
    if fmt not in FORMATS:
        raise ExportError("format", "The format must be csv or xlsx.")
    filters = Filters()
    for key, (model, columns) in FILTER_KEYS.items():
        raw = (values.get(key) or "").strip()
        if raw:
            setattr(filters, key, _filter_row(key, model, columns["name" if names else "id"], raw))
    return ExportRequest(month, fmt, filters)


def _filter_row(key: str, model, column, raw: str):
    if column.key == "id":
        if (number := whole_number(raw)) is None or (item := db.session.get(model, number)) is None:
            raise ExportError(key, f"Unknown {key} {raw!r}.")
        return item
    value = raw.lower() if column is User.email else raw
    item = db.session.scalar(sa.select(model).where(column == value))
    if item is None:
        raise ExportError(key, f"Unknown {key} {raw!r}.")
    return item


class _Heading:
    """The title row of every sheet: the month, the day the state is taken at, and the filters."""

    month: Month
    filters: Filters
    #: The day the state is taken at: the month's last day, or the cut-off (today) in a month not over.
    end: dt.date | None

    @property
    def title(self) -> str:
        month_name = format_month(self.month.first)
        end = self.end or self.month.last
        state = f"state at the month's end, {format_date(end)}" if end >= self.month.last \
            else f"month not over, state on {format_date(end)}"
        return f"Engage monthly status export, {month_name}: {state} · Filters: {self.filters_text}"

    @property
    def filters_text(self) -> str:
        f = self.filters
        parts = [f"campaign {f.campaign.name}" if f.campaign is not None else "",
                 f"owner {f.owner.name}" if f.owner is not None else "",
                 f"fund {f.fund.name}" if f.fund is not None else ""]
        return "; ".join(p for p in parts if p) or "none (every engagement open during the month)"


@dataclass
class MonthlyExport(_Heading):
    """Every row, the activity and the summary in memory (`build`): the page, the API, the tests.

    The writers read it as they read a `StreamedExport` (batches of rows, then the summary)."""

    month: Month
    filters: Filters
    rows: list[dict] = field(default_factory=list)
    activity: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    end: dt.date | None = None

    @property
    def row_count(self) -> int:
        return len(self.rows)

    def batches(self) -> Iterator[list[dict]]:
        yield self.rows

    def activity_rows(self) -> Iterator[dict]:
        return iter(self.activity)


#: Engagements read (and written) per batch by a streamed export: their related facts are read
#: for the batch's ids in a fixed set of queries, so the queries grow with the batches, never per
#: row, and memory holds one batch (README, "Monthly status export").
BATCH_ROWS = 1000


class StreamedExport(_Heading):
    """The export read in batches while it is written (`stream`): memory holds one batch of rows.

    `batches()` reads the engagements through one streamed query (a server-side cursor on
    PostgreSQL) and each batch's related facts by its ids; the summary's counts are tallied on the
    way and `summary` is ready once the batches are exhausted. `activity_rows()` streams the month's
    interactions. Each can be read once."""

    def __init__(self, month: Month, filters: Filters, end: dt.date, on_batch: Callable[[int], None] | None = None):
        self.month, self.filters, self.end = month, filters, end
        self.row_count = 0
        self.summary: dict | None = None
        self.on_batch = on_batch

    def batches(self) -> Iterator[list[dict]]:
        tally = _Tally()
        query = _engagements_query(self.month, self.filters, self.end)
        result = db.session.execute(query, execution_options={"yield_per": BATCH_ROWS})
        try:
            for records in result.partitions():
                rows = _rows(records, self.month, self.end)
                tally.add(rows)
                self.row_count += len(rows)
                if self.on_batch is not None:
                    self.on_batch(self.row_count)
                yield rows
        finally:
            result.close()
        self.summary = tally.summary(self.filters, self.end)

    def activity_rows(self) -> Iterator[dict]:
        result = db.session.execute(_activity_query(self.month, self.filters, self.end),
                                    execution_options={"yield_per": BATCH_ROWS})
        try:
            for occurred_on, company, kind, direction, subject in result:
                yield {"date": occurred_on, "company": company, "kind": kind, "direction": direction,
                       "subject": subject}
        finally:
            result.close()


def _end_of(month: Month, cut_off: dt.date | None) -> dt.date:
    return min(month.last, cut_off) if cut_off else month.last


def stream(month: Month, filters: Filters | None = None, cut_off: dt.date | None = None,
           on_batch: Callable[[int], None] | None = None) -> StreamedExport:
    """The export of `month` to be written as it is read (the CLI, the job, the scheduler): bounded memory."""
    return StreamedExport(month, filters or Filters(), _end_of(month, cut_off), on_batch)


def build(month: Month, filters: Filters | None = None, cut_off: dt.date | None = None) -> MonthlyExport:
    """Every row and the summary for `month` (state at the month's end, or `cut_off` if earlier), in memory.

    The same rows as `stream` (it reads them through it), kept in lists: for the page's small
    downloads, the API's JSON and the tests."""
    streamed = stream(month, filters, cut_off)
    result = MonthlyExport(month=month, filters=streamed.filters, end=streamed.end)
    result.rows = [row for rows in streamed.batches() for row in rows]
    result.activity = list(streamed.activity_rows())
    result.summary = streamed.summary
    return result


def _rows(records, month: Month, end: dt.date) -> list[dict]:
    """The rows of one batch of engagements: their related facts read for the batch's ids only
    (a fixed set of grouped queries per batch: events, interactions, letters, reminders, scores,
    latest notes and the companies' value-chain figures)."""
    ids = [record[0] for record in records]
    states = _replay_events(ids, end)
    facts = _month_facts(ids, month, end)
    chain = figures.for_companies(sorted({record[6] for record in records}), today=end)
    return [_row(record, states, facts, chain, end) for record in records]


def count(month: Month, filters: Filters | None = None, cut_off: dt.date | None = None) -> int:
    """How many engagements (rows) `build` would export, in one query: decides whether the web makes it in a job."""
    filters = filters or Filters()
    end = _end_of(month, cut_off)
    chosen = _engagements_query(month, filters, end).with_only_columns(Engagement.id).order_by(None).subquery()
    return db.session.scalar(sa.select(sa.func.count()).select_from(chosen)) or 0


def _engagements_query(month: Month, filters: Filters, end: dt.date) -> sa.Select:
    """One line per engagement open at any time in the month, with its company, campaign and owner."""
    query = (
        sa.select(Engagement.id, Engagement.opened_on, Engagement.closed_on, Engagement.stage, Engagement.escalation,
                  Engagement.outcome, Company.id, Company.name, Company.isin, Company.sector, Company.country,
                  Campaign.name, User.name, Engagement.next_step, Engagement.next_step_on)
        .join(Company, Company.id == Engagement.company_id)
        .join(Campaign, Campaign.id == Engagement.campaign_id)
        .outerjoin(User, User.id == Engagement.owner_id)
        .where(Engagement.open_during(month.first, end))
        .order_by(Company.normalized_name, Engagement.id)
    )
    return _filtered(query, filters, end)


def _filtered(query: sa.Select, filters: Filters, end: dt.date) -> sa.Select:
    """`query` (on engagements) limited to the campaign, owner and fund filters."""
    if filters.campaign is not None:
        query = query.where(Engagement.campaign_id == filters.campaign.id)
    if filters.owner is not None:
        query = query.where(Engagement.owner_id == filters.owner.id)
    if filters.fund is not None:
        snapshot = latest_snapshots([filters.fund.id], on=end)
        query = query.where(Engagement.company_id.in_(
            sa.select(Holding.company_id).join(snapshot, in_snapshot(snapshot))))
    return query


def _outcomes_to_date(filters: Filters, end: dt.date) -> Counter:
    """Engagements (of the filters) closed by `end` and not reopened since, by outcome: one grouped query.

    Outcomes are rare in a single month; this count fills the "By outcome" block with the team's
    record so far. It reads today's state (closed, with its closing date), not a replay.
    """
    query = _filtered(
        sa.select(Engagement.outcome, sa.func.count())
        .where(Engagement.stage == Stage.CLOSED.value, Engagement.closed_on <= end), filters, end)
    return Counter(dict(db.session.execute(query.group_by(Engagement.outcome)).all()))


@dataclass
class _States:
    """Stage, escalation, outcome and closing date at month end, replayed from the events."""

    stage: dict = field(default_factory=dict)
    escalation: dict = field(default_factory=dict)
    outcome: dict = field(default_factory=dict)
    closed: dict = field(default_factory=dict)
    #: (engagement id, "stage" or "escalation") -> the value before its first event
    first_seen: dict[tuple[int, str], str] = field(default_factory=dict)


def _among(column, ids: list[int]):
    """`column` is one of a batch's `ids`: on PostgreSQL one array parameter (`= ANY`), as an IN of a
    thousand parameters costs more to render, send and parse than the query takes to run; on SQLite
    (no arrays) an IN list."""
    if db.session.get_bind().dialect.name == "postgresql":
        return column == sa.any_(sa.bindparam(None, ids, type_=postgresql.ARRAY(sa.Integer)))
    return column.in_(ids)


def _replay_events(chosen: list[int], end: dt.date) -> _States:
    states = _States()
    for engagement_id, kind, before, after, outcome, occurred_on in db.session.execute(
        sa.select(EngagementEvent.engagement_id, EngagementEvent.kind, EngagementEvent.from_value,
                  EngagementEvent.to_value, EngagementEvent.outcome, EngagementEvent.occurred_on)
        .where(_among(EngagementEvent.engagement_id, chosen))
        .order_by(EngagementEvent.engagement_id, EngagementEvent.occurred_on, EngagementEvent.id)
    ):
        group = "stage" if kind in STAGE_KINDS else "escalation"
        states.first_seen.setdefault((engagement_id, group), before)
        if occurred_on > end:
            continue
        if group == "stage":
            states.stage[engagement_id] = after
            states.outcome[engagement_id] = outcome if kind == "close" else None
            states.closed[engagement_id] = occurred_on if kind == "close" else None
        else:
            states.escalation[engagement_id] = after
    return states


@dataclass
class _Facts:
    """Per engagement: last contact, the month's interactions by kind, letters sent, next due, scores."""

    last_contact: dict
    in_month: defaultdict
    letters: dict
    next_due: dict
    score_at: dict
    score_before: dict
    latest_note: dict = field(default_factory=dict)


def _month_facts(chosen: list[int], month: Month, end: dt.date) -> _Facts:
    end_of_day = dt.datetime.combine(end, dt.time.max)
    last_contact = dict(db.session.execute(
        sa.select(Interaction.engagement_id, sa.func.max(Interaction.occurred_on))
        .where(_among(Interaction.engagement_id, chosen), Interaction.occurred_on <= end,
               Interaction.kind != InteractionKind.NOTE.value)
        .group_by(Interaction.engagement_id)).all())
    in_month = defaultdict(Counter)
    for engagement_id, kind, count in db.session.execute(
        sa.select(Interaction.engagement_id, Interaction.kind, sa.func.count())
        .where(_among(Interaction.engagement_id, chosen), Interaction.occurred_on.between(month.first, end))
        .group_by(Interaction.engagement_id, Interaction.kind)
    ):
        in_month[engagement_id][kind] += count
    letters = dict(db.session.execute(
        sa.select(Letter.engagement_id, sa.func.count())
        .where(_among(Letter.engagement_id, chosen), Letter.status == LetterStatus.SENT.value,
               Letter.sent_on.between(month.first, end))
        .group_by(Letter.engagement_id)).all())
    next_due = dict(db.session.execute(
        sa.select(Reminder.engagement_id, sa.func.min(Reminder.due_on))
        .where(_among(Reminder.engagement_id, chosen), Reminder.created_at <= end_of_day,
               sa.or_(Reminder.status != ReminderStatus.DONE.value, Reminder.updated_at > end_of_day))
        .group_by(Reminder.engagement_id)).all())
    score_at, score_before = {}, {}
    previous_end = month.previous.last
    for engagement_id, total, scored_on in db.session.execute(
        primary_scores(_among(Score.engagement_id, chosen), Score.scored_on <= end)
        .with_only_columns(Score.engagement_id, Score.total, Score.scored_on)
    ):
        score_at[engagement_id] = total
        if scored_on <= previous_end:
            score_before[engagement_id] = total
    return _Facts(last_contact, in_month, letters, next_due, score_at, score_before, _latest_notes(chosen, end))


def _latest_notes(chosen: list[int], end: dt.date) -> dict[int, str]:
    """Each engagement's latest interaction up to `end` (any kind, notes included): its summary, or subject.

    One query: a window numbers each engagement's interactions newest first and keeps the first;
    the summary is cut in SQL to what a note can show.
    """
    ranked = (
        sa.select(Interaction.engagement_id, Interaction.subject,
                  sa.func.substr(Interaction.summary, 1, NOTE_MAX * 4).label("summary"),
                  sa.func.row_number().over(partition_by=Interaction.engagement_id,
                                            order_by=(Interaction.occurred_on.desc(), Interaction.id.desc()))
                  .label("rank"))
        .where(_among(Interaction.engagement_id, chosen), Interaction.occurred_on <= end)
        .subquery()
    )
    return {engagement_id: shorten(summary if (summary or "").strip() else subject)
            for engagement_id, subject, summary in db.session.execute(
                sa.select(ranked.c.engagement_id, ranked.c.subject, ranked.c.summary).where(ranked.c.rank == 1))}


def shorten(text: str | None, limit: int = NOTE_MAX) -> str:
    """One line of at most `limit` characters, cut at a word with "…" when longer (Markdown marks kept)."""
    line = one_line(text, 10 * limit)
    if len(line) <= limit:
        return line
    cut = line[:limit - 1]
    if " " in cut[limit // 2:]:
        cut = cut[:cut.rindex(" ")]
    return cut.rstrip(" ,;:.-") + "…"


def _row(record, states: _States, facts: _Facts, chain: dict[int, figures.Figures], end: dt.date) -> dict:
    """One engagement's row: its state at month end (today's if it never moved) and the month's facts.

    The next step is the one saved when the export is made (it has no history to replay)."""
    (engagement_id, opened_on, closed_on, stage_now, escalation_now, outcome_now, company_id, company, isin,
     sector, country, campaign, owner, next_step, next_step_on) = record
    if (engagement_id, "stage") in states.first_seen:
        stage = states.stage.get(engagement_id, states.first_seen[(engagement_id, "stage")])
        outcome, closed = states.outcome.get(engagement_id), states.closed.get(engagement_id)
    else:  # never moved: its stage is what it has always been
        stage, outcome, closed = stage_now, outcome_now, closed_on
    escalation = states.escalation.get(
        engagement_id, states.first_seen.get((engagement_id, "escalation"), escalation_now))
    score = facts.score_at.get(engagement_id)
    before = facts.score_before.get(engagement_id)
    counts = facts.in_month[engagement_id]
    next_due = facts.next_due.get(engagement_id)
    return {
        "engagement_id": engagement_id, "company_id": company_id,
        "company": company, "isin": isin, "sector": sector, "country": country, "campaign": campaign,
        "owner": owner, "stage": stage, "escalation": escalation, "outcome": outcome,
        "opened_on": opened_on, "closed_on": closed if stage == Stage.CLOSED.value else None,
        "last_contact": facts.last_contact.get(engagement_id), "next_follow_up": next_due,
        "days_overdue": (end - next_due).days if next_due is not None and next_due < end else None,
        "next_step": next_step or None, "next_step_on": next_step_on,
        "latest_note": facts.latest_note.get(engagement_id) or None,
        "score": score, "score_change": (score - before) if score is not None and before is not None else None,
        "letters_sent": facts.letters.get(engagement_id, 0), "responses": counts[InteractionKind.RESPONSE.value],
        "interactions": sum(counts.values()),
        **_value_chain_cells(chain.get(company_id)),
    }


def _value_chain_cells(item: figures.Figures | None) -> dict:
    """The value-chain columns: the latest map's counts, blank (not 0) for a company with no map.

    Blank says "nothing disclosed", which 0 would confuse with a disclosed map without relationships
    or flags. The map and statuses are those when the export is made; overdue is counted at the
    month's end (or the cut-off)."""
    if item is None:
        return dict.fromkeys(VALUE_CHAIN_COLUMNS)
    row = item.as_row()
    return {column: row[key] for column, key in VALUE_CHAIN_COLUMNS.items()}


def _activity_query(month: Month, filters: Filters, end: dt.date) -> sa.Select:
    """Every interaction of the month of the export's engagements, oldest first, for the Activity sheet.

    The engagements are the export's conditions as a subquery, never a list of ids."""
    chosen = _engagements_query(month, filters, end).with_only_columns(Engagement.id).order_by(None).scalar_subquery()
    return (
        sa.select(Interaction.occurred_on, Company.name, Interaction.kind, Interaction.direction, Interaction.subject)
        .join(Engagement, Engagement.id == Interaction.engagement_id)
        .join(Company, Company.id == Engagement.company_id)
        .where(Engagement.id.in_(chosen), Interaction.occurred_on.between(month.first, end))
        .order_by(Interaction.occurred_on, Interaction.id))


class _Tally:
    """The Summary sheet's counts, added up batch by batch as the rows go by (a few integers per
    company, no rows kept)."""

    def __init__(self):
        self.engagements = 0
        self.stage, self.escalation, self.outcome = Counter(), Counter(), Counter()
        #: company id -> interactions of its engagements in the month
        self.interactions: Counter = Counter()
        #: companies with an engagement not closed at month end
        self.engaged: set[int] = set()
        #: company id -> its latest map's figures (each company counted once)
        self.chain: dict[int, tuple] = {}

    def add(self, rows: list[dict]) -> None:
        for row in rows:
            self.engagements += 1
            company_id = row["company_id"]
            self.stage[row["stage"]] += 1
            self.escalation[row["escalation"]] += 1
            if row["outcome"]:
                self.outcome[row["outcome"]] += 1
            self.interactions[company_id] += row["interactions"]
            if row["stage"] != "closed":
                self.engaged.add(company_id)
            if row["vc_disclosed"] is not None:
                self.chain[company_id] = tuple(row[column] for column in VALUE_CHAIN_COLUMNS)

    def summary(self, filters: Filters, end: dt.date) -> dict:
        bands = Counter("none" if n == 0 else "1" if n == 1 else "2–3" if n <= 3 else "more than 3"
                        for n in self.interactions.values())
        fund_ids = [filters.fund.id] if filters.fund is not None else None
        return {
            # Each fund's exposure per official list at its last snapshot of the month (analyst notes apart).
            "exposure": [e for e in screening.exposures(fund_ids, on=end) if e.as_of is not None],
            "stage": self.stage,
            "escalation": self.escalation,
            "outcome": self.outcome,
            "companies": len(self.interactions),
            "interactions_per_company": bands,
            "funds": _fund_shares(fund_ids, self.engaged, end),
            "value_chain": {"companies": len(self.chain),
                            **{column: sum(values[i] for values in self.chain.values())
                               for i, column in enumerate(VALUE_CHAIN_COLUMNS)}},
            "outcome_to_date": _outcomes_to_date(filters, end),
        }


def _fund_shares(fund_ids: list[int] | None, engaged_companies: set[int], end: dt.date) -> list[dict]:
    """Each fund's last snapshot of the month (all funds in one query): the share of its market value
    in companies under engagement at month end."""
    snap = screening.snapshots(fund_ids, on=end)
    # (fund id, name, as of) -> [total, engaged]: added up as the holdings stream by, none kept
    sums: dict[tuple[int, str, dt.date], list] = {}
    result = db.session.execute(
        sa.select(Fund.id, Fund.name, snap.c.as_of, Holding.company_id, Holding.market_value)
        .join(snap, snap.c.fund_id == Fund.id)
        .join(Holding, sa.and_(Holding.fund_id == Fund.id, Holding.as_of == snap.c.as_of))
        .order_by(Fund.name, Fund.id), execution_options={"yield_per": BATCH_ROWS})
    for fund_id, name, as_of, company_id, value in result:
        item = sums.setdefault((fund_id, name, as_of), [Decimal(0), Decimal(0)])
        if value:
            item[0] += value
            if company_id in engaged_companies:
                item[1] += value
    return [{"fund": name, "as_of": as_of, "total": total, "engaged": engaged,
             "share": round_half_up(engaged * 100 / total, 1) if total else None}
            for (_, name, as_of), (total, engaged) in sums.items()]


def _csv_value(column: Column, value):
    """The CSV keeps what a program reads back: codes, ISO dates, exact scores, plain integers."""
    if value is None:
        return ""
    if isinstance(value, dt.date):
        return value.isoformat()
    return neutralise(value)


#: What the writers read: rows in batches, the summary once they are read, the activity.
Export = MonthlyExport | StreamedExport


def write_csv(export: Export, out) -> None:
    """UTF-8 with BOM (Excel opens it right), RFC 4180 quoting, CRLF line ends, the header on line 1.

    Machine-readable on purpose (README, "Monthly status export"): no title row, stage, escalation
    and outcome as their codes, dates as YYYY-MM-DD, scores with their two stored decimals. The
    XLSX is the file for people."""
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([column.title for column in COLUMN_SPECS])
    for rows in export.batches():
        writer.writerows([_csv_value(column, row[column.key]) for column in COLUMN_SPECS] for row in rows)


def write_xlsx(export: Export, path: str) -> None:
    """Engagements, Summary and Activity sheets, read as they are: labels, the app's scores, typed cells.

    Every sheet starts with the title row (month, state date, filters); the tables have their header
    below it, frozen, with an autofilter. Dates are Excel dates in one format (05 Oct 2026), shares
    percentages, counts integers, and every column has a width. Constant memory (each row goes to
    the sheet's file as it is written, strings inline), so a streamed export holds one batch of
    rows: the Engagements sheet is written first, then the Summary from the counts tallied on the
    way, then the Activity; no formulas or URLs from text."""
    # xlsxwriter takes about 60 ms to import: only a request or command that writes an XLSX pays it.
    import xlsxwriter

    workbook = xlsxwriter.Workbook(path, {"constant_memory": True, "strings_to_formulas": False,
                                          "strings_to_urls": False, "strings_to_numbers": False})
    workbook.set_properties({"title": export.title, "author": "Engage"})
    styles = _Styles(title=workbook.add_format({"bold": True, "font_size": 13}),
                     bold=workbook.add_format({"bold": True}),
                     header=workbook.add_format({"bold": True, "text_wrap": True, "valign": "top", "bottom": 1}),
                     formats={kind: workbook.add_format({"num_format": code}) for kind, code in XLSX_FORMATS.items()})
    _engagements_sheet(workbook.add_worksheet("Engagements"), export, styles)
    _summary_sheet(_SummarySheet(workbook.add_worksheet("Summary"), styles), export)
    _activity_sheet(workbook.add_worksheet("Activity"), export, styles)
    workbook.close()


@dataclass
class _Styles:
    title: object
    bold: object
    header: object
    #: number formats by kind: date, int, score, change, percent, money
    formats: dict

    @property
    def date(self):
        return self.formats["date"]


def _excel_date(value: dt.date) -> dt.datetime:
    return dt.datetime.combine(value, dt.time())


def _table_header(sheet, styles: _Styles, title: str, columns: list[tuple[str, float]]) -> None:
    """Title row 1, header row 2 (frozen below), the column widths; `_table_filter` once the rows are written."""
    sheet.write_string(0, 0, neutralise(title), styles.title)
    for col, (name, width) in enumerate(columns):
        sheet.write_string(1, col, name, styles.header)
        sheet.set_column(col, col, width)
    sheet.freeze_panes(2, 0)


def _table_filter(sheet, rows: int, columns: int) -> None:
    """The autofilter over the header and the `rows` written below it."""
    sheet.autofilter(1, 0, max(rows, 1) + 1, columns - 1)


def _engagements_sheet(sheet, export: Export, styles: _Styles) -> None:
    _table_header(sheet, styles, export.title, [(c.title, c.width) for c in COLUMN_SPECS])
    cells = [(col, column.key, column.kind) for col, column in enumerate(COLUMN_SPECS)]
    write_string, write_number, write_datetime = sheet.write_string, sheet.write_number, sheet.write_datetime
    date, formats = styles.date, styles.formats
    r = 2
    for rows in export.batches():
        for row in rows:
            for col, key, kind in cells:
                value = row[key]
                if value is None:
                    continue
                if kind == "text":
                    write_string(r, col, neutralise(str(value)))
                elif kind == "date":
                    write_datetime(r, col, _excel_date(value), date)
                elif kind == "int":
                    write_number(r, col, value, formats["int"])
                elif kind == "label":
                    write_string(r, col, label_of(key, value))
                else:  # score and change: the number the app shows (format_score's rounding)
                    write_number(r, col, float(shown_score(value)), formats[kind])
            r += 1
    _table_filter(sheet, r - 2, len(COLUMN_SPECS))


class _SummarySheet:
    """The Summary sheet written line by line: a label in column A, its value in column B (C for a second)."""

    def __init__(self, sheet, styles: _Styles):
        self.sheet, self.styles, self.line = sheet, styles, 0

    def put(self, label, *values, style=None, kinds: tuple[str, ...] = ()) -> None:
        """`kinds`: the number format of each value (int when not given; dates are always dates)."""
        self.sheet.write_string(self.line, 0, neutralise(str(label)), style)
        for col, value in enumerate(values, start=1):
            self.cell(col, value, kinds[col - 1] if col <= len(kinds) else "int")
        self.line += 1

    def cell(self, col: int, value, kind: str = "int") -> None:
        if value is None:
            return
        if isinstance(value, dt.date):
            self.sheet.write_datetime(self.line, col, _excel_date(value), self.styles.date)
        elif isinstance(value, (int, float, Decimal)):
            self.sheet.write_number(self.line, col, float(value) if isinstance(value, Decimal) else value,
                                    self.styles.formats[kind])
        else:
            self.sheet.write_string(self.line, col, neutralise(str(value)))

    def heading(self, title: str, *columns: str) -> None:
        """A blank line, then a bold title (and the titles of its value columns)."""
        self.line += 1
        self.sheet.write_string(self.line, 0, title, self.styles.bold)
        for col, name in enumerate(columns, start=1):
            self.sheet.write_string(self.line, col, name, self.styles.header)
        self.line += 1


def _summary_sheet(out: _SummarySheet, export: Export) -> None:
    s = export.summary
    sheet = out.sheet
    for col, width in enumerate((46, 16, 22, 12, 16, 11, 18)):
        sheet.set_column(col, col, width)
    sheet.write_string(0, 0, neutralise(export.title), out.styles.title)
    out.line = 2
    out.put("Engagements", export.row_count)
    out.put("Companies engaged", s["companies"])
    for title, key, enum in (("By stage at month end", "stage", Stage),
                             ("By escalation at month end", "escalation", Escalation)):
        out.heading(title, "Engagements")
        for member in enum:  # every stage or level in the cycle's order, zeros included
            out.put(member.label, s[key].get(member.value, 0))
        for code in sorted(set(s[key]) - set(enum.values())):  # a code this version does not know
            out.put(code, s[key][code])
    _outcome_block(out, s)
    out.heading("Interactions per company in the month", "Companies")
    for band in ("none", "1", "2–3", "more than 3"):
        out.put(band, s["interactions_per_company"].get(band, 0))
    chain = s["value_chain"]
    out.heading("Value chain (each company's latest map)", "Count")
    out.put("Companies with a disclosed map", chain["companies"])
    for column, title in COLUMNS:
        if column in VALUE_CHAIN_COLUMNS:
            out.put(title, chain[column])
    if s["funds"]:
        out.heading("Share of each fund's holdings under engagement", "Holdings as of", "Under engagement")
        for item in s["funds"]:
            share = item["share"] / 100 if item["share"] is not None else "–"
            out.put(item["fund"], item["as_of"], share, kinds=("date", "percent"))
    if s["exposure"]:
        _exposure_table(out, s["exposure"])


def _outcome_block(out: _SummarySheet, s: dict) -> None:
    """Outcomes: closed in the month, and closed by the month's end (the record so far). Left out when none."""
    in_month, to_date = s["outcome"], s.get("outcome_to_date", Counter())
    if not in_month and not to_date:
        return
    out.heading("By outcome", "Closed in the month", "Closed by the month's end")
    for member in Outcome:
        out.put(member.label, in_month.get(member.value, 0), to_date.get(member.value, 0))


def _exposure_table(out: _SummarySheet, exposures: list) -> None:
    """Per fund, one line per official list, the official total in bold, then the signals and linked holdings apart."""
    sheet, bold, styles = out.sheet, out.styles.bold, out.styles
    out.heading("Exposure to official lists (holdings at month end)")
    for col, title in enumerate(("Fund", "Holdings as of", "List", "Companies", "Market value", "% of fund",
                                 "Companies without a market value")):
        sheet.write_string(out.line, col, title, styles.header)
    out.line += 1
    for e in exposures:
        parts = [(p, p.label, None) for p in e.lists] + [(e.official, e.official.label, bold)] + \
            [(p, f"{p.label} (not counted as exposure)", None) for p in e.signals] + \
            [(p, f"{p.label}, linked through a listed parent (not counted as exposure)", None)
             for p in e.linked if p.positions]
        for part, label, style in parts:
            sheet.write_string(out.line, 0, neutralise(e.fund.name))
            sheet.write_datetime(out.line, 1, _excel_date(e.as_of), styles.date)
            sheet.write_string(out.line, 2, label, style)
            sheet.write_number(out.line, 3, part.positions, styles.formats["int"])
            if part.value_known:  # a blank, not 0, when no holding of the part has a value
                sheet.write_number(out.line, 4, float(part.value), styles.formats["money"])
            if part.share is not None:  # the page's one-decimal percent, as a fraction shown "8.0%"
                sheet.write_number(out.line, 5, float(part.share / 100), styles.formats["percent"])
            sheet.write_number(out.line, 6, part.unknown, styles.formats["int"])
            out.line += 1


ACTIVITY_COLUMNS = [("Date", 12), ("Company", 32), ("Kind", 12), ("Direction", 11), ("Subject", 60)]


def _activity_sheet(sheet, export: Export, styles: _Styles) -> None:
    _table_header(sheet, styles, export.title, ACTIVITY_COLUMNS)
    r = 2
    for item in export.activity_rows():
        sheet.write_datetime(r, 0, _excel_date(item["date"]), styles.date)
        sheet.write_string(r, 1, neutralise(item["company"] or ""))
        sheet.write_string(r, 2, label_of("kind", item["kind"]) or "")
        sheet.write_string(r, 3, label_of("direction", item["direction"]) or "")
        sheet.write_string(r, 4, neutralise(item["subject"] or ""))
        r += 1
    _table_filter(sheet, r - 2, len(ACTIVITY_COLUMNS))


def write_file(export: Export, fmt: str, out_path: str | os.PathLike) -> Path:
    """Write atomically: a temporary file in the target folder, renamed when complete."""
    target = Path(out_path)
    if fmt not in ("csv", "xlsx"):
        raise ExportError("format", f"The format must be csv or xlsx, not {fmt!r}.")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise ExportError("out", f"The folder {folder} does not exist.")
    if not os.access(folder, os.W_OK):
        raise ExportError("out", f"The folder {folder} is not writable.")
    handle, temp_name = tempfile.mkstemp(prefix=".export-", suffix=f".{fmt}", dir=folder)
    try:
        if fmt == "csv":
            with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
                write_csv(export, out)
        else:
            os.close(handle)
            write_xlsx(export, temp_name)
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return target
