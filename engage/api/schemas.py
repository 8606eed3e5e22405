"""Marshmallow schemas of the JSON API: what each resource looks like, and what a request may send.

flask-smorest turns them into the OpenAPI document, and checks requests against them.
"""

from __future__ import annotations

from decimal import Decimal

from marshmallow import RAISE, Schema, fields, validate

from engage.models import (
    Direction,
    Escalation,
    InteractionKind,
    Outcome,
    ReminderStatus,
    RiskSource,
    Stage,
)
from engage.validators import DATE_MAX, DATE_MIN

#: Ids are database integers (engage.web.IdConverter refuses larger ones in URLs as well).
MAX_ID = 2**31 - 1


class WholeNumber(fields.Integer):
    """An integer; 1.5 is refused (marshmallow's Integer would quietly take it as 1), 2.0 is 2."""

    def _validated(self, value):
        if isinstance(value, float) and not value.is_integer():
            raise self.make_error("invalid")
        return super()._validated(value)


Id = lambda **kw: WholeNumber(validate=validate.Range(min=1, max=MAX_ID), **kw)  # noqa: E731


def _date(**kw):
    """A date within the range every form accepts (engage.validators.sane_date)."""
    return fields.Date(validate=validate.Range(min=DATE_MIN, max=DATE_MAX), **kw)


class DecimalText(fields.Decimal):
    """An exact decimal, written as a string ("1000.00") so no float rounding touches it."""

    def __init__(self, **kw):
        super().__init__(as_string=True, **kw)


def _text(maximum: int, **kw):
    return fields.String(validate=validate.Length(max=maximum), **kw)


class ProblemSchema(Schema):
    """An error (RFC 9457 problem details)."""

    type = fields.String()
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()),
                         metadata={"description": "Messages per field of the request."})


# --- list arguments ---------------------------------------------------------------------------

class ListArgs(Schema):
    """Paging and sorting shared by every list (`page` from 1, `per_page` up to the configured maximum)."""

    class Meta:
        unknown = RAISE  # a misspelt filter is refused, not ignored (which would list everything)

    page = WholeNumber(load_default=1, validate=validate.Range(min=1, max=100_000))
    per_page = WholeNumber(load_default=None, validate=validate.Range(min=1, max=500))
    dir = fields.String(load_default="asc", validate=validate.OneOf(["asc", "desc"]))


def _sort(choices, default):
    return fields.String(load_default=default, validate=validate.OneOf(choices))


class CompanyArgs(ListArgs):
    q = _text(100, metadata={"description": "Part of the name or an alias, or an exact ISIN or ticker."})
    sector = _text(80)
    country = fields.String(validate=validate.Length(equal=2))
    source = fields.String(validate=validate.OneOf(RiskSource.values()),
                           metadata={"description": "Only companies with a current flag from this list."})
    flagged = fields.Boolean(metadata={"description": "true: only companies with a current risk flag; "
                                                      "false: only those without."})
    sort = _sort(["name", "isin", "country", "sector"], "name")


class EngagementArgs(ListArgs):
    campaign = Id()
    company = Id()
    stage = fields.String(validate=validate.OneOf([*Stage.values(), "open"]))
    escalation = fields.String(validate=validate.OneOf(Escalation.values()))
    owner = fields.String(validate=validate.Regexp(r"^(me|none|[1-9][0-9]{0,8})$"),
                          metadata={"description": "A user id, `me` or `none`."})
    sector = _text(80)
    overdue = fields.Boolean()
    stale = fields.Boolean(metadata={"description": "No contact for STALE_AFTER_DAYS (open engagements)."})
    score_below = WholeNumber(validate=validate.Range(min=0, max=100))
    trend = fields.String(validate=validate.OneOf(["up", "down"]))
    sort = _sort(["company", "stage", "escalation", "opened", "next_step", "next_follow_up", "last_contact",
                  "score", "change"], "company")


class InteractionArgs(ListArgs):
    engagement = Id()
    kind = fields.String(validate=validate.OneOf(InteractionKind.values()))
    since = _date()
    until = _date()
    sort = _sort(["occurred_on", "id"], "occurred_on")


class ReminderArgs(ListArgs):
    engagement = Id()
    status = fields.String(validate=validate.OneOf(ReminderStatus.values()))
    due_before = _date()
    sort = _sort(["due_on", "id"], "due_on")


class ScoreArgs(ListArgs):
    engagement = Id()
    sort = _sort(["scored_on", "total", "id"], "scored_on")


class FundArgs(ListArgs):
    sort = _sort(["name", "id"], "name")


class HoldingArgs(ListArgs):
    fund = Id()
    company = Id()
    as_of = _date()
    sort = _sort(["as_of", "market_value", "id"], "as_of")


class RiskFlagArgs(ListArgs):
    company = Id()
    source = fields.String(validate=validate.OneOf(RiskSource.values()))
    current = fields.Boolean(metadata={"description": "true: flags not ended; false: ended ones."})
    sort = _sort(["effective_date", "id"], "id")


class ListEntryArgs(ListArgs):
    source = fields.String(validate=validate.OneOf(RiskSource.values()))
    version = Id()
    q = _text(100, metadata={"description": "Part of the entry's name."})
    sort = _sort(["name", "id"], "name")


class MonthArgs(Schema):
    class Meta:
        unknown = RAISE

    # The length too: "$" would let a trailing newline through, and \d other scripts' digits.
    month = fields.String(required=True, validate=[validate.Regexp(r"^[0-9]{4}-[0-9]{2}$"), validate.Length(equal=7)],
                          metadata={"description": "YYYY-MM"})
    format = fields.String(load_default="json", validate=validate.OneOf(["json", "csv"]))
    campaign = Id()
    owner = Id()
    fund = Id()


# --- resources ----------------------------------------------------------------------------------

class Page(Schema):
    page = fields.Integer()
    per_page = fields.Integer()
    total = fields.Integer()


class RiskFlagSchema(Schema):
    id = fields.Integer()
    company_id = fields.Integer()
    source = fields.String()
    section = fields.String(allow_none=True)
    effective_date = fields.Date(allow_none=True)
    citation = fields.String()
    citation_url = fields.String(allow_none=True)
    note = fields.String()
    link = fields.String()
    ended_on = fields.Date(allow_none=True)


class CompanySchema(Schema):
    id = fields.Integer()
    name = fields.String()
    aliases = fields.Function(lambda c: list(c.alias_names))
    isin = fields.String(allow_none=True)
    lei = fields.String(allow_none=True)
    ticker = fields.String(allow_none=True)
    exchange = fields.String(allow_none=True)
    country = fields.String(allow_none=True)
    sector = fields.String(allow_none=True)
    website = fields.String(allow_none=True)
    address = fields.String()
    description = fields.String()
    parent_id = fields.Integer(allow_none=True)
    flags = fields.Method("current_flags", metadata={"description": "Lists the company is currently flagged on."})

    def current_flags(self, company) -> list:
        return sorted({flag.source for flag in company.risk_flags if flag.ended_on is None})


def _figure(engagement, key: str):
    """One of the figures the list page shows beside an engagement (set by the API's views, one query a page)."""
    value = getattr(engagement, "api_figures", {}).get(key)
    if value is None:
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return f"{Decimal(str(value)).quantize(Decimal('0.01'))}"


class EngagementSchema(Schema):
    id = fields.Integer()
    company_id = fields.Integer()
    company_name = fields.Function(lambda e: e.company.name)
    campaign_id = fields.Integer()
    campaign_name = fields.Function(lambda e: e.campaign.name)
    owner_id = fields.Integer(allow_none=True)
    stage = fields.String()
    escalation = fields.String()
    outcome = fields.String(allow_none=True)
    objectives = fields.String()
    opened_on = fields.Date()
    closed_on = fields.Date(allow_none=True)
    next_step = fields.String()
    next_step_on = fields.Date(allow_none=True)
    version = fields.Integer(metadata={"description": "Optimistic lock; the ETag changes with it (and with the figures shown)."})
    next_follow_up = fields.Function(lambda e: _figure(e, "next_follow_up"), metadata={
        "type": ["string", "null"], "format": "date", "description": "The earliest reminder not done."})
    last_contact = fields.Function(lambda e: _figure(e, "last_contact"), metadata={
        "type": ["string", "null"], "format": "date", "description": "The latest interaction that is not a note."})
    latest_score = fields.Function(lambda e: _figure(e, "latest_score"), metadata={
        "type": ["string", "null"], "format": "decimal", "description": "Total of the latest primary score."})
    score_change = fields.Function(lambda e: _figure(e, "score_change"), metadata={
        "type": ["string", "null"], "format": "decimal", "description": "Latest score minus the one before."})


class InteractionSchema(Schema):
    id = fields.Integer()
    engagement_id = fields.Integer()
    kind = fields.String()
    direction = fields.String()
    occurred_on = fields.Date()
    subject = fields.String()
    summary = fields.String()
    participants = fields.String()
    created_by_id = fields.Integer(allow_none=True)


class ReminderSchema(Schema):
    id = fields.Integer()
    engagement_id = fields.Integer()
    due_on = fields.Date()
    reason = fields.String()
    kind = fields.String()
    status = fields.String()
    notified_at = fields.DateTime(allow_none=True)


class CriterionScoreSchema(Schema):
    criterion_id = fields.Integer()
    level = fields.Integer()
    evidence = fields.String()
    evidence_url = fields.String(allow_none=True)


class ScoreSchema(Schema):
    id = fields.Integer()
    engagement_id = fields.Integer()
    rubric_id = fields.Integer()
    scorer_id = fields.Integer(allow_none=True)
    scored_on = fields.Date()
    total = DecimalText(metadata={"description": "0 to 100, two decimals."})
    note = fields.String()
    moderates_id = fields.Integer(allow_none=True)
    criteria = fields.List(fields.Nested(CriterionScoreSchema), attribute="criterion_scores")


class FundSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    provider = fields.String(allow_none=True)
    base_currency = fields.String()
    benchmark = fields.String(allow_none=True)


class HoldingSchema(Schema):
    id = fields.Integer()
    fund_id = fields.Integer()
    company_id = fields.Integer()
    as_of = fields.Date()
    shares = DecimalText(allow_none=True)
    market_value = DecimalText(allow_none=True)
    weight = DecimalText(allow_none=True)


class ListEntrySchema(Schema):
    id = fields.Integer()
    version_id = fields.Integer()
    key = fields.String()
    source = fields.String()
    name = fields.String()
    aliases = fields.List(fields.String())
    identifiers = fields.Dict(keys=fields.String())
    country = fields.String(allow_none=True)
    section = fields.String(allow_none=True)
    kind = fields.String()
    status = fields.String()
    effective_date = fields.Date(allow_none=True)
    citation = fields.String()
    citation_url = fields.String(allow_none=True)


def page_of(item_schema):
    """A page of a list: its items and where it is."""
    return type(f"{item_schema.__name__.removesuffix('Schema')}Page", (Page,),
                {"items": fields.List(fields.Nested(item_schema))})


class MonthlyExportSchema(Schema):
    month = fields.String()
    state_on = fields.Date(metadata={"description": "The day the state is taken at."})
    rows = fields.List(fields.Dict(keys=fields.String()))


class EngagementExportSchema(Schema):
    month = fields.String()
    rows = fields.List(fields.Nested(EngagementSchema))


# --- writes -------------------------------------------------------------------------------------

class CompanyWrite(Schema):
    """A company's fields; the same checks as the company form (ISIN and LEI check digits, unique)."""

    name = fields.String(validate=validate.Length(min=1, max=200))
    aliases = fields.List(fields.String(validate=validate.Length(max=200)), validate=validate.Length(max=100))
    isin = fields.String(allow_none=True, validate=validate.Length(max=20))
    lei = fields.String(allow_none=True, validate=validate.Length(max=30))
    parent = fields.String(allow_none=True, validate=validate.Length(max=300),
                           metadata={"description": "The parent company: its name, ISIN, LEI or #id."})
    ticker = fields.String(allow_none=True, validate=validate.Length(max=20))
    exchange = fields.String(allow_none=True, validate=validate.Length(max=40))
    country = fields.String(allow_none=True, validate=validate.Length(max=2))
    sector = fields.String(allow_none=True, validate=validate.Length(max=80))
    website = fields.String(allow_none=True, validate=validate.Length(max=500))
    address = _text(2000, allow_none=True)
    description = _text(5000, allow_none=True)


class CompanyCreate(CompanyWrite):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))


class RiskFlagCreate(Schema):
    source = fields.String(required=True, validate=validate.OneOf(RiskSource.values()))
    section = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=40))
    effective_date = _date(load_default=None, allow_none=True)
    citation = fields.String(required=True, validate=validate.Length(min=1, max=500))
    citation_url = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=500))
    note = _text(5000, load_default="")


class CriterionEntry(Schema):
    criterion_id = Id(required=True)
    level = WholeNumber(required=True, validate=validate.Range(min=0, max=4))
    evidence = _text(5000, load_default="")
    evidence_url = _text(500, load_default=None, allow_none=True)


class ScoreCreate(Schema):
    """A scored company response: one level (and evidence from level 3) per criterion of the rubric."""

    interaction_id = Id(required=True, metadata={"description": "The company response scored."})
    scored_on = _date(required=True)
    note = _text(5000, load_default="")
    moderates_id = Id(load_default=None, allow_none=True,
                      metadata={"description": "Moderate this earlier score of the response (a second scorer)."})
    criteria = fields.List(fields.Nested(CriterionEntry), required=True, validate=validate.Length(max=100))


class FundCreate(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    provider = _text(120, load_default=None, allow_none=True)
    base_currency = fields.String(load_default="USD", validate=validate.Regexp(r"^[A-Za-z]{3}$"))
    benchmark = _text(200, load_default=None, allow_none=True)


class EngagementOpen(Schema):
    company_id = Id(required=True)
    campaign_id = Id(required=True)
    owner_id = Id(load_default=None, allow_none=True)
    objectives = _text(5000, load_default="")
    opened_on = _date(required=True)


class EngagementPatch(Schema):
    """Only the fields sent change (owner_id null: unassigned)."""

    owner_id = Id(allow_none=True)
    objectives = _text(5000)
    next_step = _text(200)
    next_step_on = _date(allow_none=True)


class StageMove(Schema):
    target = fields.String(required=True, validate=validate.OneOf(Stage.values()))
    occurred_on = _date(required=True)
    note = _text(5000, load_default="")
    reason = _text(5000, load_default="")
    evidence = _text(5000, load_default="")
    evidence_url = _text(500, load_default=None, allow_none=True)
    outcome = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(Outcome.values()))


class EscalationMove(Schema):
    target = fields.String(required=True, validate=validate.OneOf(Escalation.values()))
    occurred_on = _date(required=True)
    note = _text(5000, load_default="")
    reason = _text(5000, load_default="")
    evidence = _text(5000, load_default="")
    evidence_url = _text(500, load_default=None, allow_none=True)


class InteractionCreate(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(InteractionKind.values()))
    direction = fields.String(load_default=Direction.OUTBOUND.value, validate=validate.OneOf(Direction.values()))
    occurred_on = _date(required=True)
    subject = _text(300, load_default="")
    summary = _text(20000, load_default="")
    participants = _text(1000, load_default="")


class ReminderCreate(Schema):
    engagement_id = Id(required=True)
    due_on = _date(required=True)
    reason = fields.String(required=True, validate=validate.Length(min=1, max=300))


class ReminderPatch(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["done", "snoozed"]))
    until = _date(load_default=None, allow_none=True,
                  metadata={"description": "For snoozed: the new due date."})

