"""The tracker import: resolve a parsed tracker against Engage, show what it would write, write it once.

`preview()` reads the file (engage.tracker.parsing) and plans every row: the company (matched by
ISIN, ticker, name or alias, as the holdings import matches; else a new one), the campaign, the
owner (by email or name; one not found is listed, the engagement is imported without an owner), and
the engagement, new or already there (a TrackerRow from an earlier import of the same row, or the
company's open engagement in the campaign). Then its history: each dated letter, reply and meeting
becomes an interaction on its own date, and the stage and escalation are reached by cycle moves
(engage.engagements.cycle) dated from those columns, so the engagement's history is the tracker's
and the monthly export of a past month replays it.

`save()` plans again and writes the plan in the caller's transaction (one commit). Rows already
imported are not written twice: an interaction already there (same kind, date and subject) is not
added again and a stage already reached is not moved, so importing the same file again changes
nothing. A file with refused rows is refused whole unless `skip_refused`; a status or escalation
word nobody has mapped refuses it always (the mapping step maps it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa

from engage import audit
from engage.engagements import cycle
from engage.engagements import service as engagements
from engage.extensions import db
from engage.holdings.importer import Matcher
from engage.holdings.parsing import RowError
from engage.models import (
    Campaign,
    Company,
    CompanyAlias,
    Direction,
    Engagement,
    EngagementEvent,
    Escalation,
    Interaction,
    InteractionKind,
    Letter,
    LetterKind,
    LetterStatus,
    Outcome,
    Rubric,
    Score,
    Stage,
    TrackerRow,
    TrackerValueMapping,
    User,
    normalize_name,
)
from engage.tracker import parsing
from engage.tracker.parsing import IGNORE, TrackerRefused, label

STAGES = cycle.STAGES
#: The dated columns that become interactions: field -> (kind, direction, subject, letter kind).
HISTORY = {
    "letter_on": (InteractionKind.LETTER.value, Direction.OUTBOUND.value, "Initial letter (from the tracker)",
                  LetterKind.INITIAL.value),
    "follow_up_on": (InteractionKind.LETTER.value, Direction.OUTBOUND.value, "Follow-up letter (from the tracker)",
                     LetterKind.FOLLOW_UP.value),
    "reply_on": (InteractionKind.RESPONSE.value, Direction.INBOUND.value, "Reply from the company (from the tracker)",
                 None),
    "meeting_on": (InteractionKind.MEETING.value, Direction.OUTBOUND.value, "Meeting (from the tracker)", None),
}
NOTES_SUBJECT = "Notes from the tracker"
WHAT = {"letter_on": "the letter", "follow_up_on": "the follow-up letter", "reply_on": "the reply",
        "meeting_on": "the meeting", "status_on": "the status date", "closed_on": "the closing date",
        "opened_on": "the opening date"}


class TrackerError(ValueError):
    """The import is refused: a message, and the rows (RowError) that refused it."""

    def __init__(self, message: str, errors: list[RowError] | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or []


@dataclass
class Options:
    """What the importer chose: column mapping, the team's words, default campaign, date order, refused rows."""

    mapping: dict[str, str] | str | None = None
    #: kind -> {label(word): target}, given for this import (remembered for the next).
    values: dict[str, dict[str, str]] = field(default_factory=lambda: {"status": {}, "escalation": {}})
    campaign_id: int | None = None
    day_first: bool = True
    skip_refused: bool = False
    #: Headers of columns not to read (remembered as such for the next import).
    ignore: list[str] = field(default_factory=list)
    #: The XLSX sheet to read (the first visible one when None).
    sheet: str | None = None

    def as_json(self) -> dict:
        return {"mapping": self.mapping, "values": self.values, "campaign_id": self.campaign_id,
                "day_first": self.day_first, "skip_refused": self.skip_refused, "ignore": self.ignore,
                "sheet": self.sheet}

    @classmethod
    def from_json(cls, data: dict) -> Options:
        return cls(data.get("mapping"), data.get("values") or {"status": {}, "escalation": {}},
                   data.get("campaign_id"), bool(data.get("day_first", True)), bool(data.get("skip_refused")),
                   list(data.get("ignore") or []), data.get("sheet") or None)


@dataclass
class Step:
    """One thing a row writes: an interaction (with a letter for a letter), a cycle move, a score."""

    what: str  # interaction, stage, escalation, close, score
    on: dt.date
    target: str = ""
    outcome: str | None = None
    source: str = ""  # the date field it comes from

    def describe(self) -> str:
        if self.what == "interaction":
            return f"{HISTORY[self.source][2].split(' (')[0] if self.source in HISTORY else NOTES_SUBJECT} {self.on}"
        if self.what == "stage":
            return f"stage {Stage(self.target).label} {self.on}"
        if self.what == "close":
            return f"closed ({Outcome(self.outcome).label.lower()}) {self.on}"
        if self.what == "escalation":
            return f"escalation {Escalation(self.target).label} {self.on}"
        return f"score {self.target} {self.on}"


@dataclass
class PlannedRow:
    item: parsing.TrackerItem
    key: str
    company_id: int | None
    company_name: str
    #: ISIN, ticker, name, or new
    company_how: str
    campaign_id: int
    campaign_name: str
    owner_id: int | None
    engagement_id: int | None
    opened_on: dt.date
    steps: list[Step] = field(default_factory=list)
    #: What the preview should say about the row (dates missing, a state left as Engage has it).
    notes: list[str] = field(default_factory=list)
    set_owner: bool = False

    @property
    def action(self) -> str:
        if self.engagement_id is None:
            return "create"
        return "update" if self.steps or self.set_owner else "unchanged"

    def as_json(self) -> list:
        return [self.item.row, self.key, self.company_name, self.company_how, self.campaign_id, self.owner_id,
                self.engagement_id, str(self.opened_on), [s.describe() for s in self.steps], self.notes,
                self.set_owner, self.item.notes, str(self.item.score)]


@dataclass
class Preview:
    file_name: str
    sha256: str
    options: Options
    parsed: parsing.ParsedTracker
    rows: list[PlannedRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    #: the owner as written -> rows, for owners not found (or not allowed to own an engagement)
    owners_missing: dict[str, list[int]] = field(default_factory=dict)
    #: why an owner is missing, by the owner as written
    owner_reasons: dict[str, str] = field(default_factory=dict)
    #: kind -> {the team's word (label()): target} the preview read with (given, remembered, Engage's own)
    known_words: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def unmapped(self) -> dict[str, dict[str, list[int]]]:
        return self.parsed.unmapped

    @property
    def has_unmapped(self) -> bool:
        return any(self.parsed.unmapped.values())

    @property
    def can_import(self) -> bool:
        return not self.has_unmapped and (not self.errors or self.options.skip_refused) and bool(self.rows)

    def counts(self) -> dict[str, int]:
        rows = self.rows
        new_companies = {r.company_name for r in rows if r.company_how == "new"}
        return {"rows": len(rows), "refused": len({e.row for e in self.errors}),
                "companies": len(new_companies),
                "create": sum(r.action == "create" for r in rows), "update": sum(r.action == "update" for r in rows),
                "unchanged": sum(r.action == "unchanged" for r in rows),
                "interactions": sum(s.what == "interaction" for r in rows for s in r.steps),
                "moves": sum(s.what in ("stage", "escalation", "close") for r in rows for s in r.steps),
                "owners_missing": sum(len(v) for v in self.owners_missing.values()),
                "headings": len(self.parsed.table.headings)}

    def digest(self) -> str:
        """What the preview showed; the confirmation writes only if planning again gives the same."""
        payload = {"sha256": self.sha256, "options": self.options.as_json(), "rows": [r.as_json() for r in self.rows],
                   "errors": [str(e) for e in self.errors]}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Saved:
    preview: Preview
    engagements: list[int]
    companies: int

    def summary(self) -> str:
        c = self.preview.counts()
        return (f"Imported {self.preview.file_name}: {c['create']} engagement(s) created, {c['update']} updated, "
                f"{c['unchanged']} unchanged; {self.companies} new compan{'y' if self.companies == 1 else 'ies'}, "
                f"{c['interactions']} interaction(s), {c['moves']} dated move(s)"
                + (f"; {c['refused']} refused row(s) left out" if c['refused'] else "") + ".")


# --- remembered mappings ---------------------------------------------------------------------

def remembered() -> dict[str, dict[str, str]]:
    """kind (column, status, escalation) -> {the team's header or word (label()): target}."""
    result: dict[str, dict[str, str]] = {"column": {}, "status": {}, "escalation": {}}
    for kind, value, target in db.session.execute(
            sa.select(TrackerValueMapping.kind, TrackerValueMapping.value, TrackerValueMapping.target)):
        result[kind][value] = target
    return result


def remember(kind: str, word: str, target: str, user_id: int | None) -> None:
    """Keep (or change) what one of the team's headers or words means, for the next import."""
    key = label(word)[:200]
    row = db.session.scalar(sa.select(TrackerValueMapping).where(TrackerValueMapping.kind == kind,
                                                                 TrackerValueMapping.value == key))
    if row is None:
        db.session.add(TrackerValueMapping(kind=kind, value=key, target=target, label=word[:200],
                                           updated_by_id=user_id))
    elif row.target != target:
        row.target, row.label, row.updated_by_id = target, word[:200], user_id


# --- planning --------------------------------------------------------------------------------

def preview(data: bytes, file_name: str, options: Options, *, today: dt.date) -> Preview:
    """Read and plan the tracker; nothing is written. TrackerError when the file cannot be read at all."""
    try:
        return _preview(data, file_name, options, today)
    except TrackerRefused as exc:
        raise TrackerError(f"{file_name}: {exc}") from exc


def _preview(data: bytes, file_name: str, options: Options, today: dt.date) -> Preview:
    known = remembered()
    mapping = parsing.parse_mapping(options.mapping or {})
    # a column mapped now wins over the remembered meaning of its header
    columns = {k: v for k, v in known["column"].items() if v not in mapping}
    columns.update({label(header): IGNORE for header in options.ignore})
    values = {kind: {**known[kind], **(options.values or {}).get(kind, {})} for kind in ("status", "escalation")}
    for kind, words in (options.values or {}).items():
        for word, target in words.items():
            if target != IGNORE:
                parsing.check_target(kind, target, word)
    parsed = parsing.read(data, mapping, values, remembered_columns=columns, day_first=options.day_first, today=today,
                          sheet=options.sheet)
    shown = Preview(file_name=file_name, sha256=hashlib.sha256(data).hexdigest(), options=options, parsed=parsed,
                    errors=list(parsed.errors),
                    known_words={"status": {**parsing.status_words(), **values["status"]},
                                 "escalation": {**parsing.escalation_words(), **values["escalation"]}})
    _plan(shown, today)
    shown.errors.sort(key=lambda e: (e.row, e.column))
    return shown


@dataclass
class _Lookups:
    matcher: Matcher
    by_ticker: dict[str, int | None]
    campaigns: dict[str, Campaign]
    default_campaign: Campaign | None
    users_by_email: dict[str, User]
    users_by_name: dict[str, list[User]]
    #: campaign id -> its latest rubric's id
    rubrics: dict[int, int]
    #: a normalized name (or alias) that more than one company has -> their ids
    ambiguous: dict[str, set[int]] = field(default_factory=dict)
    #: label() of a company's name that normalizing leaves nothing of ("A Co") -> its id
    by_plain_name: dict[str, int] = field(default_factory=dict)


def _lookups(options: Options) -> _Lookups:
    matcher = Matcher.load()
    by_ticker: dict[str, int | None] = {}
    for (ticker, _exchange), company_id in matcher.by_ticker.items():
        by_ticker[ticker] = company_id if by_ticker.get(ticker, company_id) == company_id else None
    campaigns = {}
    all_campaigns = db.session.scalars(sa.select(Campaign).order_by(Campaign.id)).all()
    for campaign in all_campaigns:
        campaigns[label(campaign.name)] = campaigns[label(campaign.slug)] = campaign
    default = db.session.get(Campaign, options.campaign_id) if options.campaign_id else None
    if default is None and len(all_campaigns) == 1:
        default = all_campaigns[0]
    users = db.session.scalars(sa.select(User)).all()
    by_name: dict[str, list[User]] = defaultdict(list)
    for user in users:
        by_name[label(user.name)].append(user)
    named: dict[str, set[int]] = defaultdict(set)
    for normalized, company_id in db.session.execute(
            sa.union_all(sa.select(Company.normalized_name, Company.id),
                         sa.select(CompanyAlias.normalized_alias, CompanyAlias.company_id))):
        if normalized:
            named[normalized].add(company_id)
    return _Lookups(matcher, by_ticker, campaigns, default, {u.email.lower(): u for u in users}, by_name, _rubrics(),
                    {name: ids for name, ids in named.items() if len(ids) > 1},
                    {label(name): company_id for company_id, (name, _isin) in sorted(matcher.companies.items())
                     if not normalize_name(name)})


def _company(item: parsing.TrackerItem, look: _Lookups) -> tuple[int | None, str, str]:
    m = look.matcher
    if item.isin and item.isin in m.by_isin:
        company_id = m.by_isin[item.isin]
        return company_id, m.companies[company_id][0], "ISIN"
    if item.ticker and look.by_ticker.get(item.ticker):
        company_id = look.by_ticker[item.ticker]
        return company_id, m.companies[company_id][0], "ticker"
    normalized = normalize_name(item.company) if item.company else ""
    if normalized in look.ambiguous:
        return None, ", ".join(sorted(m.companies[i][0] for i in look.ambiguous[normalized])), "ambiguous"
    if normalized and normalized in m.by_name:
        company_id = m.by_name[normalized]
        return company_id, m.companies[company_id][0], "name"
    if item.company and not normalized and label(item.company) in look.by_plain_name:
        company_id = look.by_plain_name[label(item.company)]
        return company_id, m.companies[company_id][0], "name"
    return None, item.company or item.isin or item.ticker, "new"


def _plan(shown: Preview, today: dt.date) -> None:
    look = _lookups(shown.options)
    table = shown.parsed.table
    labels = table.labels
    planned = []
    #: ISIN of a company new in this file -> the name it is created with (two spellings, one company)
    new_by_isin: dict[str, str] = {}
    for item in shown.parsed.items:
        def error(name: str, value: str, reason: str, item=item) -> None:
            shown.errors.append(RowError(item.row, labels.get(name, ""), value, reason))

        company_id, company_name, how = _company(item, look)
        if how == "ambiguous":
            error("company", item.company, f"{len(look.ambiguous[normalize_name(item.company)])} companies in Engage "
                                           f"go by this name ({company_name}); give the row the company's ISIN or "
                                           f"ticker")
            continue
        if how == "new" and item.isin and item.isin in new_by_isin:
            company_name = new_by_isin[item.isin]
        elif how == "new" and not item.company:
            error("isin" if item.isin else "ticker", item.isin or item.ticker or "",
                  "no company in Engage has this identifier, and the row gives no name to create it with")
            continue
        elif how == "new" and item.isin:
            new_by_isin[item.isin] = company_name
        if item.campaign:
            campaign = look.campaigns.get(label(item.campaign))
            if campaign is None:
                names = ", ".join(sorted({c.name for c in look.campaigns.values()})) or "none yet"
                error("campaign", item.campaign, f"no campaign of that name (the campaigns are: {names})")
                continue
        elif look.default_campaign is not None:
            campaign = look.default_campaign
        else:
            error("campaign", "", "no campaign: add a Campaign column or choose the campaign of the whole tracker")
            continue
        if item.score is not None and campaign.id not in look.rubrics:
            error("score", str(item.score), f"the campaign {campaign.name} has no rubric to record a score on")
            continue
        owner = None
        if item.owner:
            owner = _owner(item.owner, look, shown)
            if owner is None:
                shown.owners_missing.setdefault(item.owner, []).append(item.row)
        if item.key:
            key = f"id:{label(item.key)}"
        else:
            key = f"company:{company_id if company_id else 'new:' + _name_key(company_name)}:campaign:{campaign.id}"
        planned.append(PlannedRow(item=item, key=key, company_id=company_id, company_name=company_name,
                                  company_how=how, campaign_id=campaign.id, campaign_name=campaign.name,
                                  owner_id=owner.id if owner else None, engagement_id=None, opened_on=today))
    _find_engagements(planned, shown, labels)
    for row in planned:
        if row.engagement_id is None:
            problem = _history_new(row, today)
        else:
            problem = None  # filled below with the engagements' state in a few queries
        if problem:
            shown.errors.append(RowError(row.item.row, labels.get(problem[0], ""), problem[1], problem[2]))
            row.steps = None
    _plan_updates([r for r in planned if r.engagement_id is not None and r.steps is not None], shown, labels, today)
    refused = {e.row for e in shown.errors}
    shown.rows = [r for r in planned if r.steps is not None and r.item.row not in refused]


def _name_key(name: str) -> str:
    """How rows naming a new company are grouped: its normalized name, or the name itself when nothing is left
    of it normalized ("A Co", "Ltd": words the matching drops), so that two such names are two companies."""
    return normalize_name(name)[:200] or "=" + label(name)[:200]


def _owner(text: str, look: _Lookups, shown: Preview) -> User | None:
    user = look.users_by_email.get(text.lower()) if "@" in text else None
    if user is None and "@" not in text:
        found = look.users_by_name.get(label(text), [])
        if len(found) > 1:
            shown.owner_reasons[text] = f"{len(found)} users have this name; write the owner's email"
            return None
        user = found[0] if found else None
    if user is None:
        shown.owner_reasons.setdefault(text, "no user with this email or name")
        return None
    if not user.active or not user.can_edit:
        shown.owner_reasons[text] = f"{user.name} cannot own an engagement (an inactive user or a viewer)"
        return None
    return user


def _find_engagements(planned: list[PlannedRow], shown: Preview, labels: dict[str, str]) -> None:
    """The engagement each row already is (an earlier import's TrackerRow, or the company's open
    engagement in the campaign); refuses rows that would open a second engagement, or reopen a divested one."""
    keys = [r.key for r in planned]
    imported, imported_as = {}, {}
    if keys:
        for key, engagement_id, company_id, company_name, file_name in db.session.execute(
                sa.select(TrackerRow.row_key, TrackerRow.engagement_id, Engagement.company_id, Company.name,
                          TrackerRow.file_name)
                .join(Engagement, Engagement.id == TrackerRow.engagement_id)
                .join(Company, Company.id == Engagement.company_id).where(TrackerRow.row_key.in_(keys))):
            imported[key], imported_as[key] = engagement_id, (company_id, company_name, file_name)
    company_ids = {r.company_id for r in planned if r.company_id}
    open_ones, divested = {}, {}
    if company_ids:
        for engagement_id, company_id, campaign_id, is_open, is_divested in db.session.execute(
                sa.select(Engagement.id, Engagement.company_id, Engagement.campaign_id, Engagement.is_open,
                          Engagement.is_divested).where(Engagement.company_id.in_(company_ids))):
            if is_open:
                open_ones[(company_id, campaign_id)] = engagement_id
            if is_divested:
                divested[company_id] = engagement_id
    taken: dict[tuple, int] = {}
    for row in planned:
        if row.key in imported_as and imported_as[row.key][0] != row.company_id:
            # another tracker's row with the same id, or the company changed: never update the wrong engagement
            _company_id, name, file_name = imported_as[row.key]
            shown.errors.append(RowError(row.item.row, labels.get("key", ""), row.item.key,
                                         f"this id was imported before as {name} (from {file_name}), not "
                                         f"{row.company_name}; give the row its own id, or leave the id column out"))
            row.steps = None
            continue
        row.engagement_id = imported.get(row.key)
        pair = (row.company_id or f"new:{_name_key(row.company_name)}", row.campaign_id)
        if row.engagement_id is None:
            row.engagement_id = open_ones.get(pair) if row.company_id else None
        if row.engagement_id is None and row.company_id in divested and row.company_id:
            shown.errors.append(RowError(row.item.row, labels.get("company", ""), row.item.company or row.company_name,
                                         f"{row.company_name} was divested (engagement #{divested[row.company_id]}); "
                                         f"it is readmitted only by reopening that engagement on evidence, not by "
                                         f"an import"))
            row.steps = None
            continue
        if pair in taken and row.steps is not None:
            shown.errors.append(RowError(row.item.row, labels.get("company", ""), row.item.company or row.company_name,
                                         f"row {taken[pair]} is the same company in the same campaign; one engagement "
                                         f"per company and campaign"))
            row.steps = None
            continue
        taken[pair] = row.item.row


def _targets(item: parsing.TrackerItem) -> tuple[str, str | None, str]:
    """(stage, outcome, escalation) the row ends at: its mapped words, else what its dates say."""
    dates = item.dates
    if item.stage and item.stage.startswith("closed:"):
        stage, outcome = Stage.CLOSED.value, item.stage.split(":", 1)[1]
    elif item.stage:
        stage, outcome = item.stage, None
    elif "reply_on" in dates:
        stage, outcome = Stage.ACKNOWLEDGED.value, None
    elif "letter_on" in dates or "follow_up_on" in dates:
        stage, outcome = Stage.MAPPING_REQUESTED.value, None
    else:
        stage, outcome = Stage.IDENTIFIED.value, None
    escalation = item.escalation or (Escalation.FOLLOW_UP.value if "follow_up_on" in dates else Escalation.NONE.value)
    return stage, outcome, escalation


def _interactions(row: PlannedRow, latest: dt.date) -> list[Step]:
    item = row.item
    steps = [Step("interaction", item.dates[name], source=name) for name in HISTORY if name in item.dates]
    if item.notes:
        steps.append(Step("interaction", item.dates.get("status_on", latest), source="notes"))
    if item.score is not None:
        steps.append(Step("score", item.dates.get("status_on", latest), target=str(item.score)))
    return steps


def _moves(row: PlannedRow, stage_now: str, escalation_now: str, since: dt.date, latest: dt.date,
           since_what: str) -> tuple[list[Step], tuple[str, str, str] | None]:
    """The dated cycle moves from the state now to the row's targets, or (field, value, reason) refusing the row.

    No move is dated before `since` (the opening, or the last move Engage has: `since_what` says which)."""
    item, dates = row.item, row.item.dates
    stage, outcome, escalation = _targets(item)
    steps: list[Step] = []
    here = STAGES.index(stage_now)
    goal = STAGES.index(stage)
    last_on, last_what = since, since_what
    if stage_now == Stage.CLOSED.value:
        if stage != Stage.CLOSED.value:
            row.notes.append(f"the engagement is closed in Engage; the tracker says {target_word(stage, outcome)}: "
                             f"left as Engage has it")
        return steps, None
    chain = []
    if goal >= STAGES.index(Stage.MAPPING_REQUESTED.value) and ("letter_on" in dates or "follow_up_on" in dates):
        source = "letter_on" if "letter_on" in dates else "follow_up_on"
        chain.append((Stage.MAPPING_REQUESTED.value, source))
    if goal >= STAGES.index(Stage.ACKNOWLEDGED.value) and "reply_on" in dates:
        chain.append((Stage.ACKNOWLEDGED.value, "reply_on"))
    if stage != Stage.CLOSED.value and not any(s == stage for s, _ in chain):
        chain.append((stage, "status_on"))
    for target, source in chain:
        if STAGES.index(target) <= here:
            continue
        on = dates.get(source) or dates.get("status_on") or latest
        if on < last_on:
            return steps, (source, str(on), f"{WHAT.get(source, source)} ({on}) is before the {last_what} ({last_on})")
        steps.append(Step("stage", on, target=target, source=source))
        here, last_on, last_what = STAGES.index(target), on, WHAT.get(source, source).removeprefix("the ")
    if stage != Stage.CLOSED.value and goal < STAGES.index(stage_now):
        row.notes.append(f"Engage has it at {Stage(stage_now).label}; the tracker says {Stage(stage).label}: "
                         f"left as Engage has it")
    # escalation: follow-up on its letter's date, a level above that on the status date
    level_now = cycle.LADDER.index(escalation_now)
    wanted = cycle.LADDER.index(escalation)
    final: str | None = escalation
    if stage == Stage.CLOSED.value and outcome == Outcome.DIVESTED.value and escalation == Escalation.DIVESTED.value:
        final = None  # closing as divested makes it divested
    ladder_last = since
    if wanted >= cycle.LADDER.index(Escalation.FOLLOW_UP.value) and "follow_up_on" in dates \
            and level_now < cycle.LADDER.index(Escalation.FOLLOW_UP.value):
        on = dates["follow_up_on"]
        if on < ladder_last:
            return steps, ("follow_up_on", str(on), f"the follow-up letter ({on}) is before the {since_what} "
                                                    f"({ladder_last})")
        steps.append(Step("escalation", on, target=Escalation.FOLLOW_UP.value, source="follow_up_on"))
        level_now, ladder_last = cycle.LADDER.index(Escalation.FOLLOW_UP.value), on
    if final is not None and wanted > level_now:
        on = max(dates.get("status_on") or latest, ladder_last)
        steps.append(Step("escalation", on, target=final, source="status_on"))
    elif wanted < level_now and escalation != Escalation.NONE.value:
        row.notes.append(f"Engage has escalation {Escalation(escalation_now).label}; the tracker says "
                         f"{Escalation(escalation).label}: left as Engage has it")
    if stage == Stage.CLOSED.value:
        on = dates.get("closed_on") or dates.get("status_on") or latest
        if on < last_on:
            return steps, ("closed_on", str(on), f"the closing date ({on}) is before the {last_what} ({last_on})")
        steps.append(Step("close", on, target=Stage.CLOSED.value, outcome=outcome, source="closed_on"))
    if not dates and steps:
        row.notes.append(f"the row has no dates: its moves are recorded as of {latest}")
    return steps, None


def target_word(stage: str, outcome: str | None) -> str:
    return f"Closed ({Outcome(outcome).label.lower()})" if outcome else Stage(stage).label


def _history_new(row: PlannedRow, today: dt.date):
    """Plan a new engagement's history: opened on its opening date (else its earliest date, else today)."""
    dates = row.item.dates
    earliest = min(dates.values()) if dates else today
    opened = dates.get("opened_on", earliest)
    if opened > earliest:
        name, on = min(((n, d) for n, d in dates.items()), key=lambda pair: pair[1])
        return name, str(on), f"{WHAT.get(name, name)} ({on}) is before the opening date ({opened})"
    row.opened_on = opened
    if not dates:
        row.notes.append(f"the row has no dates: the engagement is opened as of {today}")
    latest = max(dates.values()) if dates else today
    moves, problem = _moves(row, Stage.IDENTIFIED.value, Escalation.NONE.value, opened, latest, "opening date")
    if problem:
        return problem
    row.steps = sorted(_interactions(row, latest) + moves, key=_order)
    return None


def _order(step: Step):
    """Interactions, then stage moves, then escalations, then the close: each chain in its own date order."""
    return ({"interaction": 0, "score": 1, "stage": 2, "escalation": 3, "close": 4}[step.what], step.on)


def _plan_updates(rows: list[PlannedRow], shown: Preview, labels: dict[str, str], today: dt.date) -> None:
    """Plan the rows whose engagement exists: only what it lacks (a few queries for all of them)."""
    if not rows:
        return
    ids = {r.engagement_id for r in rows}
    engagements = {e.id: e for e in db.session.scalars(sa.select(Engagement).where(Engagement.id.in_(ids)))}
    have = defaultdict(set)
    #: engagement -> subject of a tracker column -> its dates; engagement -> the tracker notes it has
    dated, noted = defaultdict(lambda: defaultdict(set)), defaultdict(set)
    subjects = [subject for _kind, _direction, subject, _letter in HISTORY.values()]
    for engagement_id, kind, on, subject, summary in db.session.execute(
            sa.select(Interaction.engagement_id, Interaction.kind, Interaction.occurred_on, Interaction.subject,
                      sa.case((Interaction.subject == NOTES_SUBJECT, Interaction.summary), else_=None))
            .where(Interaction.engagement_id.in_(ids))):
        have[engagement_id].add((kind, on, subject))
        if subject in subjects:
            dated[engagement_id][subject].add(on)
        elif summary is not None:
            noted[engagement_id].add(summary)
    scored = defaultdict(set)
    #: engagement -> the total of its latest score
    latest_score: dict[int, Decimal] = {}
    for engagement_id, on, total in db.session.execute(
            sa.select(Score.engagement_id, Score.scored_on, Score.total).where(Score.engagement_id.in_(ids))
            .order_by(Score.scored_on, Score.id)):
        scored[engagement_id].add((on, Decimal(total).quantize(Decimal("0.01"))))
        latest_score[engagement_id] = Decimal(total).quantize(Decimal("0.01"))
    last_move = dict(db.session.execute(
        sa.select(EngagementEvent.engagement_id, sa.func.max(EngagementEvent.occurred_on))
        .where(EngagementEvent.engagement_id.in_(ids)).group_by(EngagementEvent.engagement_id)).all())
    for row in rows:
        engagement = engagements[row.engagement_id]
        row.opened_on = engagement.opened_on
        dates = row.item.dates
        latest = max(dates.values()) if dates else engagement.opened_on
        since = max(engagement.opened_on, last_move.get(engagement.id) or engagement.opened_on)
        moves, problem = _moves(row, engagement.stage, engagement.escalation, since, latest,
                                "opening date" if since == engagement.opened_on else "last move recorded in Engage")
        early = [(n, d) for n, d in dates.items() if d < engagement.opened_on and n in HISTORY]
        if problem is None and early:
            name, on = early[0]
            problem = (name, str(on), f"{WHAT[name]} ({on}) is before the engagement was opened in Engage "
                                      f"({engagement.opened_on})")
        if problem:
            shown.errors.append(RowError(row.item.row, labels.get(problem[0], ""), problem[1], problem[2]))
            row.steps = None
            continue
        steps = []
        for step in _interactions(row, latest):
            if step.what == "score":
                # the score cell unchanged (its date moved with the row's latest date) is no new score
                if (step.on, Decimal(step.target)) not in scored[engagement.id] \
                        and latest_score.get(engagement.id) != Decimal(step.target):
                    steps.append(step)
                continue
            if step.source == "notes":
                # the same notes on a later date (the row's latest date moved) are not a new note
                if row.item.notes not in noted[engagement.id]:
                    steps.append(step)
                continue
            kind, _direction, subject, _letter = HISTORY[step.source]
            if (kind, step.on, subject) in have[engagement.id]:
                continue
            other = sorted(dated[engagement.id][subject])
            if other:
                # one date per column: another one is the tracker's date corrected, not a second letter or reply
                row.notes.append(f"Engage has {WHAT[step.source]} from the tracker on "
                                 f"{', '.join(map(str, other))}; the tracker now says {step.on}: left as Engage "
                                 f"has it")
                continue
            steps.append(step)
        row.steps = sorted(steps + moves, key=_order)
        if row.owner_id and engagement.owner_id is None:
            row.set_owner = True
        elif row.owner_id and engagement.owner_id != row.owner_id:
            row.notes.append("Engage has another owner: left as Engage has it")


# --- saving ----------------------------------------------------------------------------------

def save(data: bytes, file_name: str, options: Options, *, today: dt.date, actor_id: int | None,
         expected_digest: str | None = None) -> Saved:
    """Plan the tracker again and write it in the session's transaction (the caller commits).

    TrackerError when it cannot be imported (refused rows without skip_refused, unmapped words) or,
    with `expected_digest`, when the plan is no longer the one the preview showed."""
    shown = preview(data, file_name, options, today=today)
    if expected_digest is not None and shown.digest() != expected_digest:
        raise TrackerError("what the tracker would write changed since the preview; check the preview again")
    refuse_unless_importable(shown)
    companies: dict[str, Company] = {}
    campaigns = {c.id: c for c in db.session.scalars(sa.select(Campaign))}
    rubrics = _rubrics()
    engagement_ids = []
    for row in shown.rows:
        if row.action == "unchanged":
            continue
        engagement = _write_row(row, shown, companies, campaigns, rubrics, today, actor_id)
        engagement_ids.append(engagement.id)
    _remember_options(shown, actor_id)
    counts = shown.counts()
    if engagement_ids:
        audit.record("tracker.import", f"tracker {file_name}: {counts['create']} engagement(s) created, "
                                       f"{counts['update']} updated, {len(companies)} new companies",
                     changes={"file": file_name, "sha256": shown.sha256, **counts})
    db.session.flush()
    return Saved(shown, engagement_ids, len(companies))


def refuse_unless_importable(shown: Preview) -> None:
    if shown.has_unmapped:
        words = [f"{kind} “{shown.parsed.words[kind][w]}” (rows {', '.join(map(str, rows[:5]))}"
                 f"{'…' if len(rows) > 5 else ''})" for kind, found in shown.unmapped.items() for w, rows in found.items()]
        raise TrackerError(f"{len(words)} word(s) of the tracker mean nothing yet in Engage; map them: "
                           + "; ".join(words[:20]))
    if shown.errors and not shown.options.skip_refused:
        raise TrackerError(f"{len({e.row for e in shown.errors})} row(s) refused; correct them, or import the "
                           f"other rows leaving them out", shown.errors)
    if not shown.rows:
        raise TrackerError("no row of the tracker can be imported", shown.errors)


def _rubrics() -> dict[int, int]:
    """campaign id -> the id of its latest rubric (imported scores are on it)."""
    result = {}
    for rubric_id, campaign_id in db.session.execute(sa.select(Rubric.id, Rubric.campaign_id)
                                                     .order_by(Rubric.campaign_id, Rubric.version)):
        result[campaign_id] = rubric_id
    return result


def _write_row(row: PlannedRow, shown: Preview, companies: dict, campaigns: dict, rubrics: dict, today: dt.date,
               actor_id: int | None) -> Engagement:
    item = row.item
    where = f"{shown.file_name}, row {item.row}"
    if row.engagement_id is None:
        if row.company_id is not None:
            company = db.session.get(Company, row.company_id)
        else:
            name_key = _name_key(row.company_name)
            company = companies.get(name_key)
            if company is None:
                company = Company(name=row.company_name, isin=item.isin, ticker=item.ticker,
                                  origin=f"tracker import: {shown.file_name}"[:200])
                db.session.add(company)
                db.session.flush()
                companies[name_key] = company
        if row.key.startswith("company:new:"):  # the key the next import finds it by
            row.key = f"company:{company.id}:campaign:{row.campaign_id}"
        owner = db.session.get(User, row.owner_id) if row.owner_id else None
        engagement = engagements.open_engagement(company, campaigns[row.campaign_id], owner=owner, objectives="",
                                                 opened_on=row.opened_on, today=today, actor_id=actor_id)
        db.session.flush()
    else:
        engagement = db.session.get(Engagement, row.engagement_id)
        if row.set_owner:
            engagement.owner_id = row.owner_id
    for step in row.steps:
        note = f"From the tracker ({where})"
        if step.what == "interaction":
            _write_interaction(engagement, step, item, where, actor_id)
        elif step.what == "score":
            rubric_id = rubrics.get(engagement.campaign_id)
            if rubric_id is None:
                raise TrackerError(f"row {item.row}: the campaign {campaigns[engagement.campaign_id].name} has no "
                                   f"rubric to record the score on")
            db.session.add(Score(engagement=engagement, rubric_id=rubric_id, scorer_id=None, scored_on=step.on,
                                 total=Decimal(step.target), note=note))
        elif step.what in ("stage", "close"):
            cycle.move_stage(engagement, step.target, on=step.on, today=today, actor_id=actor_id, note=note,
                             outcome=step.outcome)
        else:
            cycle.move_escalation(engagement, step.target, on=step.on, today=today, actor_id=actor_id, note=note)
    if db.session.scalar(sa.select(TrackerRow.id).where(TrackerRow.row_key == row.key)) is None:
        db.session.add(TrackerRow(row_key=row.key, engagement_id=engagement.id, file_name=shown.file_name[:255]))
    return engagement


def _write_interaction(engagement: Engagement, step: Step, item: parsing.TrackerItem, where: str,
                       actor_id: int | None) -> None:
    if step.source == "notes":
        db.session.add(Interaction(engagement=engagement, kind=InteractionKind.NOTE.value,
                                   direction=Direction.INTERNAL.value, occurred_on=step.on, subject=NOTES_SUBJECT,
                                   summary=item.notes, created_by_id=actor_id))
        return
    kind, direction, subject, letter_kind = HISTORY[step.source]
    summary = f"Recorded from the team's tracker ({where}); its text is not in the tracker."
    db.session.add(Interaction(engagement=engagement, kind=kind, direction=direction, occurred_on=step.on,
                               subject=subject, summary=summary, created_by_id=actor_id))
    if letter_kind:  # the monthly export counts letters sent from the letters
        db.session.add(Letter(engagement=engagement, kind=letter_kind, subject=subject, body=summary,
                              status=LetterStatus.SENT.value, sent_on=step.on, created_by_id=actor_id,
                              channel="tracker import"))


def _remember_options(shown: Preview, actor_id: int | None) -> None:
    """The columns mapped and the words given for this import mean the same at the next."""
    options = shown.options
    for name, column in parsing.parse_mapping(options.mapping or {}).items():
        remember("column", column, name, actor_id)
    for header in options.ignore:
        remember("column", header, IGNORE, actor_id)
    for kind in ("status", "escalation"):
        for word, target in (options.values or {}).get(kind, {}).items():
            written = shown.parsed.words[kind].get(word, word)
            remember(kind, written, target, actor_id)


# --- the mapping step's choices ------------------------------------------------------------------

def column_choices(shown: Preview) -> list[tuple[str, str]]:
    """(header, the field it is read as or "ignore" or "") for every column of the header, in order."""
    table = shown.parsed.table
    read_as = {position: name for name, position in table.columns.items()}
    return [(header, read_as.get(position, IGNORE if header else "")) for position, header in enumerate(table.header)
            if header]


def word_choices(shown: Preview) -> dict[str, list[tuple[str, str | None, int]]]:
    """kind -> (the team's word as written, what it means now or None, how many rows) for every word found."""
    result = {}
    for kind in ("status", "escalation"):
        rows = Counter()
        position = shown.parsed.table.columns.get(kind)
        if position is not None:
            for _number, row in shown.parsed.table.rows:
                if position < len(row) and row[position].strip():
                    rows[label(row[position])] += 1
        result[kind] = [(written, shown.known_words[kind].get(word), rows[word])
                        for word, written in sorted(shown.parsed.words[kind].items())]
    return result
