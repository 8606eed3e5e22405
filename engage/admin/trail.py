"""The audit trail as a person reads it: one entry per change, each object named and linked.

`engage.audit` records a row per object touched; the rows of one change share a `group_id`
(one request, one transaction, or one `audit.grouped()` block; rows from before it existed have
"#<id>" and stand alone). This module pages through those groups, leads each with its main row
("Hikvision — engagement: stage Acknowledged → Value chain mapped"), counts the rest ("9 criterion
scores created") and names every object in bulk: one query per object type on the page, whatever
the number of rows. An object that no longer exists keeps the name its row recorded, unlinked.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import cache

import sqlalchemy as sa

from engage.extensions import db
from engage.formatting import format_date, format_datetime, format_month
from engage.models import (
    Attachment,
    AuditEvent,
    Campaign,
    Company,
    CompanyAlias,
    CompanyContact,
    Criterion,
    CriterionScore,
    DivestmentAlert,
    Engagement,
    EngagementEvent,
    Escalation,
    ExportRun,
    Fund,
    Holding,
    InboundMessage,
    Interaction,
    Investor,
    Letter,
    LetterBatch,
    LetterTemplate,
    LetterTemplateLanguage,
    LetterTemplateVersion,
    ListedEntity,
    ListVersion,
    MatchCandidate,
    OutboxEmail,
    Relationship,
    RelationshipStatusChange,
    Reminder,
    RiskFlag,
    RiskSource,
    Rubric,
    Score,
    Stage,
    User,
    ValueChainMap,
)
from engage.models.base import StrEnum

#: Rows shown per change; the others are counted ("4,990 more holdings created").
ROWS_PER_GROUP = 25
#: Fields shown in a row's one-line description; all of them are in its details.
FIELDS_IN_LINE = 3

DATA_ACTIONS = ("create", "update", "delete", "role_change")

#: Every action the application records, as the filter offers it and the page shows it.
ACTION_LABELS = {
    "create": "Created",
    "update": "Changed",
    "delete": "Deleted",
    "role_change": "Role changed",
    "login": "Signed in",
    "login_failed": "Sign-in failed",
    "login_backoff": "Sign-in paused",
    "login_unlock": "Sign-in pause lifted",
    "logout": "Signed out",
    "sessions_ended": "Sessions ended",
    "password_change": "Password changed",
    "password_change_failed": "Password change refused",
    "contact_erased": "Contact erased",
    "company_merge": "Companies merged",
    "holdings_import": "Holdings imported",
    "list_import": "List imported",
    "screening": "Screening run",
    "match_accepted": "Match accepted",
    "match_rejected": "Match rejected",
    "match_undone": "Match decision undone",
    "flag_removed": "Risk flag removed",
    "mail_received": "Email received",
    "mail_filed": "Email filed",
    "mail_discarded": "Email discarded",
}


def action_label(action: str) -> str:
    return ACTION_LABELS.get(action) or action.replace("_", " ").capitalize()


#: How a person calls an object type, where splitting the class name is not it.
KIND_LABELS = {
    "CompanyContact": "contact",
    "InboundMessage": "inbound email",
    "Relationship": "value-chain relationship",
    "RelationshipStatusChange": "relationship status change",
    "ValueChainMap": "value-chain map",
    "ListedEntity": "list entry",
    "ListVersion": "list version",
    "MatchCandidate": "possible match",
    "HoldingImport": "holdings import",
    "FormSubmission": "form submission",
}


def kind_label(object_type: str | None) -> str:
    """'CriterionScore' -> 'criterion score'."""
    if not object_type:
        return ""
    return KIND_LABELS.get(object_type) or re.sub(r"(?<!^)(?=[A-Z])", " ", object_type).lower()


_IRREGULAR = {"criterion": "criteria"}


def plural(label: str, count: int) -> str:
    if count == 1:
        return label
    if label.split()[-1] in _IRREGULAR:
        return " ".join(label.split()[:-1] + [_IRREGULAR[label.split()[-1]]])
    if label.endswith("y") and label[-2:-1] not in "aeiou":
        return label[:-1] + "ies"
    if label.endswith(("s", "x", "ch", "sh")):
        return label + "es"
    return label + "s"


def _mapped_classes() -> dict[str, type]:
    return {mapper.class_.__name__: mapper.class_ for mapper in db.Model.registry.mappers}


def object_type_choices() -> list[tuple[str, str]]:
    """(class name, label) of every audited object type, by label."""
    types = [name for name in _mapped_classes() if name not in ("AuditEvent", OutboxEmail.__name__)]
    return sorted(((name, kind_label(name).capitalize()) for name in types), key=lambda pair: pair[1])


def action_choices() -> list[tuple[str, str]]:
    """The known actions, and any other a row carries (one query)."""
    recorded = db.session.scalars(sa.select(AuditEvent.action).distinct()).all()
    actions = list(ACTION_LABELS) + sorted(set(recorded) - set(ACTION_LABELS))
    return [(action, action_label(action)) for action in actions]


# --- Values as the app shows them -------------------------------------------------------------

def _enum_classes(cls=StrEnum) -> list[type[StrEnum]]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_enum_classes(sub))
    return found


@cache
def _column_enums() -> dict[tuple[str, str], type[StrEnum]]:
    """(class name, column) -> the enum its CHECK constraint (`enum_check`) limits it to.

    Read from the constraints, so a new enum column is labelled without a line here; a constraint
    allowing a subset of an enum (a criterion's stage hint) takes the smallest enum holding it.
    """
    enums = _enum_classes()
    found = {}
    for name, cls in _mapped_classes().items():
        for constraint in cls.__table__.constraints:
            if not isinstance(constraint, sa.CheckConstraint):
                continue
            match = re.search(r"(\w+) IN \(([^)]*)\)", str(constraint.sqltext))
            if match is None:
                continue
            values = set(re.findall(r"'([^']*)'", match.group(2)))
            holding = [e for e in enums if values <= set(e.values())]
            if holding:
                found[(name, match.group(1))] = min(holding, key=lambda e: (len(e.values()), e.__name__))
    return found


@cache
def _foreign_keys() -> dict[tuple[str, str], str]:
    """(class name, column) -> the class name of the row it points at, for naming ids in changes."""
    by_table = {cls.__table__.name: name for name, cls in _mapped_classes().items() if hasattr(cls, "__table__")}
    found = {}
    for name, cls in _mapped_classes().items():
        for column in cls.__table__.columns:
            for key in column.foreign_keys:
                target = by_table.get(key.column.table.name)
                if target is not None:
                    found[(name, column.name)] = target
    return found


#: Columns whose values belong to an enum named by another column (an engagement event's move).
_VALUE_BY_KIND = {("EngagementEvent", "from_value"), ("EngagementEvent", "to_value")}
_EVENT_KINDS = {"stage": Stage, "escalation": Escalation}


def value_text(object_type: str | None, column: str, value, row_values: dict | None = None) -> str:
    """A stored value as the app shows it: enum labels, not codes; '∅' for nothing."""
    if value is None or value == "":
        return "∅"
    if isinstance(value, bool):
        return "yes" if value else "no"
    enum = _column_enums().get((object_type or "", column))
    if enum is None and (object_type, column) in _VALUE_BY_KIND:
        kind = (row_values or {}).get("kind")
        enum = _EVENT_KINDS.get(kind[1] if isinstance(kind, list) else kind)
    if enum is not None and isinstance(value, str):
        try:
            return enum(value).label
        except ValueError:
            return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\d(T\d\d:\d\d(:\d\d)?(\.\d+)?)?", value):
        moment = dt.datetime.fromisoformat(value)
        return format_date(moment) if "T" not in value else format_datetime(moment)
    if isinstance(value, str) and re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value) and column == "month":
        return format_month(dt.date.fromisoformat(value + "-01"))
    text = str(value)
    return text if len(text) <= 160 else text[:159] + "…"


def field_label(column: str) -> str:
    """'owner_id' -> 'owner', 'occurred_on' -> 'occurred on'."""
    return re.sub(r"_id$", "", column).replace("_", " ")


# --- Naming objects in bulk ----------------------------------------------------------------------

@dataclass(frozen=True)
class Named:
    name: str
    detail: str = ""
    endpoint: str | None = None
    args: tuple = ()  # (url parameter, value) pairs


def _company_of_engagement(model, detail, endpoint="engagements.show", arg=("engagement_id", None)):
    """A row of an engagement: named by the engagement's company, linked to `endpoint`."""

    def query(ids):
        link_value = arg[1] if arg[1] is not None else model.engagement_id
        return (sa.select(model.id, Company.name, detail if detail is not None else sa.literal(""), link_value)
                .join(Engagement, Engagement.id == model.engagement_id)
                .join(Company, Company.id == Engagement.company_id)
                .where(model.id.in_(ids)))

    return query, endpoint, arg[0]


def _company_child(model, detail, endpoint="companies.show", param="company_id", link=None):
    def query(ids):
        return (sa.select(model.id, Company.name, detail, link if link is not None else model.company_id)
                .join(Company, Company.id == model.company_id).where(model.id.in_(ids)))

    return query, endpoint, param


def _simple(model, name, endpoint, param, detail=None):
    def query(ids):
        return sa.select(model.id, name, detail if detail is not None else sa.literal(""), model.id).where(
            model.id.in_(ids))

    return query, endpoint, param


def _resolvers() -> dict:
    """object type -> (query(ids) giving (id, name, detail, link value), endpoint, url parameter)."""
    return {
        "Company": _simple(Company, Company.name, "companies.show", "company_id"),
        "Engagement": (lambda ids: sa.select(Engagement.id, Company.name, sa.literal(""), Engagement.id)
                       .join(Company, Company.id == Engagement.company_id).where(Engagement.id.in_(ids)),
                       "engagements.show", "engagement_id"),
        "EngagementEvent": _company_of_engagement(EngagementEvent, EngagementEvent.kind),
        "Interaction": _company_of_engagement(Interaction, Interaction.subject),
        "Reminder": _company_of_engagement(Reminder, Reminder.reason),
        "DivestmentAlert": _company_of_engagement(DivestmentAlert, None),
        "Letter": _company_of_engagement(Letter, Letter.subject, "letters.show", ("letter_id", Letter.id)),
        "Score": _company_of_engagement(Score, None, "scoring.show", ("score_id", Score.id)),
        "CriterionScore": (lambda ids: sa.select(CriterionScore.id, Company.name, Criterion.title, Score.id)
                           .join(Score, Score.id == CriterionScore.score_id)
                           .join(Criterion, Criterion.id == CriterionScore.criterion_id)
                           .join(Engagement, Engagement.id == Score.engagement_id)
                           .join(Company, Company.id == Engagement.company_id).where(CriterionScore.id.in_(ids)),
                           "scoring.show", "score_id"),
        "Attachment": (lambda ids: sa.select(Attachment.id, Company.name, Attachment.filename, Engagement.id)
                       .join(Interaction, Interaction.id == Attachment.interaction_id)
                       .join(Engagement, Engagement.id == Interaction.engagement_id)
                       .join(Company, Company.id == Engagement.company_id).where(Attachment.id.in_(ids)),
                       "engagements.show", "engagement_id"),
        "CompanyAlias": _company_child(CompanyAlias, CompanyAlias.alias),
        "RiskFlag": _company_child(RiskFlag, RiskFlag.source),
        "CompanyContact": _company_child(CompanyContact, CompanyContact.name),
        "MatchCandidate": _company_child(MatchCandidate, MatchCandidate.list_name),
        "ValueChainMap": _company_child(ValueChainMap, ValueChainMap.file_name),
        "Holding": _company_child(Holding, sa.cast(Holding.as_of, sa.String), "holdings.fund", "fund_id",
                                  Holding.fund_id),
        "Relationship": (lambda ids: sa.select(Relationship.id, Company.name, sa.literal(""), Company.id)
                         .join(Company, Company.id == Relationship.company_id).where(Relationship.id.in_(ids)),
                         "companies.show", "company_id"),
        "RelationshipStatusChange": (
            lambda ids: sa.select(RelationshipStatusChange.id, Company.name, RelationshipStatusChange.to_status,
                                  Company.id)
            .join(Relationship, Relationship.id == RelationshipStatusChange.relationship_id)
            .join(Company, Company.id == Relationship.company_id).where(RelationshipStatusChange.id.in_(ids)),
            "companies.show", "company_id"),
        "User": _simple(User, User.email, "admin.edit_user", "user_id"),
        "Campaign": _simple(Campaign, Campaign.name, "admin.edit_campaign", "campaign_id"),
        "Investor": _simple(Investor, Investor.name, "admin.edit_investor", "investor_id"),
        "Rubric": _simple(Rubric, Rubric.name, "scoring.edit_rubric", "rubric_id"),
        "Criterion": (lambda ids: sa.select(Criterion.id, Rubric.name, Criterion.title, Rubric.id)
                      .join(Rubric, Rubric.id == Criterion.rubric_id).where(Criterion.id.in_(ids)),
                      "scoring.edit_rubric", "rubric_id"),
        "Fund": _simple(Fund, Fund.name, "holdings.fund", "fund_id"),
        "LetterTemplate": _simple(LetterTemplate, LetterTemplate.name, "letters.edit_template", "template_id"),
        "LetterTemplateLanguage": (
            lambda ids: sa.select(LetterTemplateLanguage.id, LetterTemplate.name, LetterTemplateLanguage.language,
                                  LetterTemplate.id)
            .join(LetterTemplate, LetterTemplate.id == LetterTemplateLanguage.template_id)
            .where(LetterTemplateLanguage.id.in_(ids)), "letters.edit_template", "template_id"),
        "LetterTemplateVersion": (
            lambda ids: sa.select(LetterTemplateVersion.id, LetterTemplate.name,
                                  sa.cast(LetterTemplateVersion.version, sa.String), LetterTemplate.id)
            .join(LetterTemplate, LetterTemplate.id == LetterTemplateVersion.template_id)
            .where(LetterTemplateVersion.id.in_(ids)), "letters.edit_template", "template_id"),
        "LetterBatch": _simple(LetterBatch, sa.literal("Letter batch"), "letters.batch", "batch_id"),
        "ListVersion": _simple(ListVersion, ListVersion.name, "lists.version", "version_id", ListVersion.file_name),
        "ListedEntity": (lambda ids: sa.select(ListedEntity.id, ListedEntity.name, ListVersion.name, ListVersion.id)
                         .join(ListVersion, ListVersion.id == ListedEntity.version_id)
                         .where(ListedEntity.id.in_(ids)), "lists.version", "version_id"),
        "InboundMessage": _simple(InboundMessage, InboundMessage.subject, "mailbox.message", "inbound_id"),
        "ExportRun": _simple(ExportRun, ExportRun.filename, "exports.stored", "run_id"),
    }


_LABEL_COLUMNS = ("name", "email", "subject", "title", "reason", "filename", "file_name", "slug")


def _generic_resolver(cls):
    """A type without its own rule: named by its first label column, not linked."""
    columns = cls.__table__.c
    label = next((columns[c] for c in _LABEL_COLUMNS if c in columns), sa.literal(""))
    return (lambda ids: sa.select(columns.id, label, sa.literal(""), sa.literal(None)).where(columns.id.in_(ids)),
            None, None)


def _list_label(name: str | None) -> str:
    """A published list's label ("CBP Withhold Release Order"), or the team's own list's name."""
    return RiskSource(name).label if name in RiskSource.values() else (name or "")


def name_objects(refs: dict[str, set[int]]) -> dict[tuple[str, int], Named]:
    """Name the objects that still exist: one query per object type."""
    resolvers = _resolvers()
    classes = _mapped_classes()
    named: dict[tuple[str, int], Named] = {}
    for object_type, ids in refs.items():
        if not ids:
            continue
        if object_type in resolvers:
            query, endpoint, param = resolvers[object_type]
        elif object_type in classes and "id" in classes[object_type].__table__.c:
            query, endpoint, param = _generic_resolver(classes[object_type])
        else:
            continue
        for object_id, name, detail, link_value in db.session.execute(query(sorted(ids))):
            if object_type == "RiskFlag":
                detail = value_text("RiskFlag", "source", detail)
            elif object_type in ("ListVersion", "ListedEntity", "MatchCandidate"):
                name, detail = (_list_label(name) if object_type == "ListVersion" else name), _list_label(detail)
            elif object_type == "EngagementEvent":
                detail = field_label(detail or "")
            elif object_type == "RelationshipStatusChange":
                detail = value_text(object_type, "to_status", detail)
            args = ((param, link_value),) if endpoint and link_value is not None else ()
            named[(object_type, object_id)] = Named(name or f"#{object_id}", detail or "",
                                                    endpoint if args else None, args)
    return named


def _recorded_label(event: AuditEvent) -> str:
    """The name the row recorded for its object (`engage.audit` writes "<action> <Type> <label>")."""
    prefix = f"{event.action} {event.object_type}"
    if event.summary.startswith(prefix):
        return event.summary[len(prefix):].strip()
    for column in _LABEL_COLUMNS:
        value = (event.changes or {}).get(column)
        if isinstance(value, str) and value:
            return value
    return ""


# --- Rows and groups --------------------------------------------------------------------------------

@dataclass
class Row:
    event: AuditEvent
    kind: str
    name: str
    detail: str
    endpoint: str | None
    args: dict
    deleted: bool
    what: str
    fields: list[tuple[str, str]]

    @property
    def changed(self) -> bool:
        return self.event.action in ("update", "role_change")


@dataclass
class Group:
    rows: list[Row]
    counts: list[tuple[str, int]] = field(default_factory=list)  # ("9 criterion scores created", 9) beyond the head
    hidden: int = 0  # rows of the change not shown

    @property
    def head(self) -> Row:
        return self.rows[0]

    @property
    def rest(self) -> list[Row]:
        return self.rows[1:]


def _references(event: AuditEvent):
    """(class name, id) of every row the event's changes point at (owner_id, company_id...)."""
    keys = _foreign_keys()
    for column, value in (event.changes or {}).items():
        target = keys.get((event.object_type or "", column))
        if target is None:
            continue
        values = value if event.action in ("update", "role_change") and isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, int) and not isinstance(item, bool):
                yield target, item


def _fields(event: AuditEvent, named: dict[tuple[str, int], Named]) -> list[tuple[str, str]]:
    changes = event.changes or {}
    keys = _foreign_keys()
    shown = []

    def text_of(column, value):
        target = keys.get((event.object_type or "", column))
        if target is not None and isinstance(value, int):
            found = named.get((target, value))
            # A child row is best known by its own words (a criterion's title, a letter's subject).
            return (found.detail or found.name) if found is not None else f"#{value} (deleted)"
        return value_text(event.object_type, column, value, changes)

    for column, value in changes.items():
        if column == "id":
            continue  # the row is named already
        if event.action in ("update", "role_change") and isinstance(value, list) and len(value) == 2:
            text = f"{text_of(column, value[0])} → {text_of(column, value[1])}"
        elif isinstance(value, dict) and ("added" in value or "removed" in value):
            text = "; ".join(f"{how} {', '.join(map(str, value.get(how) or [])) or '∅'}"
                             for how in ("added", "removed") if value.get(how))
        else:
            text = text_of(column, value)
        shown.append((field_label(column), text))
    return shown


def _what(event: AuditEvent, fields: list[tuple[str, str]]) -> str:
    if event.action in ("update", "role_change"):
        line = "; ".join(f"{name} {text}" for name, text in fields[:FIELDS_IN_LINE])
        more = len(fields) - FIELDS_IN_LINE
        return line + (f"; {more} more field{'s' if more > 1 else ''}" if more > 0 else "") or "changed"
    if event.action == "create":
        return "created"
    if event.action == "delete":
        return "deleted"
    return action_label(event.action)


def describe(event: AuditEvent, named: dict[tuple[str, int], Named]) -> Row:
    fields = _fields(event, named)
    kind = kind_label(event.object_type)
    found = named.get((event.object_type, event.object_id)) if event.object_id is not None else None
    if found is not None and event.action != "delete":
        return Row(event, kind, found.name, found.detail, found.endpoint, dict(found.args), False,
                   _what(event, fields), fields)
    if event.object_type is None:
        return Row(event, "", "", "", None, {}, False, _what(event, fields), fields)  # a screening run, a failed sign-in
    recorded = _recorded_label(event) or (f"#{event.object_id}" if event.object_id is not None else "")
    return Row(event, kind, recorded, "", None, {}, True, _what(event, fields), fields)


def _head_rank():
    """Which row leads a change: a named action (an import, a sign-in), then the main object."""
    order = ["Engagement", "Score", "Letter", "LetterBatch", "Interaction", "ValueChainMap", "ListVersion",
             "Company", "Fund", "User", "Campaign", "Rubric", "LetterTemplate", "InboundMessage"]
    return sa.case(
        (AuditEvent.action.not_in(DATA_ACTIONS), 0),
        *((AuditEvent.object_type == name, i + 1) for i, name in enumerate(order)),
        else_=len(order) + 1,
    )


def conditions(filters: dict) -> list:
    """SQL conditions on audit rows from the checked filters (`AuditFilterForm.data`).

    Dates are whole UTC days, both ends included.
    """
    found = []
    if filters.get("action"):
        found.append(AuditEvent.action == filters["action"])
    if filters.get("object_type"):
        found.append(AuditEvent.object_type == filters["object_type"])
    if filters.get("object_id"):
        found.append(AuditEvent.object_id == int(filters["object_id"]))
    if filters.get("actor"):
        found.append(AuditEvent.actor_label.icontains(filters["actor"].strip(), autoescape=True))
    if filters.get("date_from"):
        found.append(AuditEvent.created_at >= dt.datetime.combine(filters["date_from"], dt.time()))
    if filters.get("date_to") and filters["date_to"] < dt.date.max:
        found.append(AuditEvent.created_at < dt.datetime.combine(filters["date_to"] + dt.timedelta(days=1), dt.time()))
    return found


def groups_query(conditions: list) -> sa.Select:
    """The changes matching `conditions`, newest first, as their keys (to page through)."""
    key = AuditEvent.group_id
    return (sa.select(key).where(*conditions).group_by(key)
            .order_by(sa.func.max(AuditEvent.id).desc()))  # ids grow with time; by index alone


def load_groups(keys: list[str], conditions: list) -> list[Group]:
    """The groups of `keys` in that order: their leading rows named and linked, the rest counted.

    Two queries and one per object type named, however many rows the groups hold.
    """
    if not keys:
        return []
    key = AuditEvent.group_id
    ranked = (sa.select(AuditEvent.id.label("id"), key.label("key"),
                        sa.func.row_number().over(partition_by=key, order_by=(_head_rank(), AuditEvent.id))
                        .label("n"))
              .where(*conditions, key.in_(keys)).subquery())
    rows = db.session.scalars(
        sa.select(AuditEvent).join(ranked, ranked.c.id == AuditEvent.id)
        .where(ranked.c.n <= ROWS_PER_GROUP).order_by(ranked.c.key, ranked.c.n)).all()
    tallies = db.session.execute(
        sa.select(key, AuditEvent.object_type, AuditEvent.action, sa.func.count())
        .where(*conditions, key.in_(keys)).group_by(key, AuditEvent.object_type, AuditEvent.action)).all()

    refs: dict[str, set[int]] = defaultdict(set)
    for event in rows:
        if event.object_type and event.object_id is not None:
            refs[event.object_type].add(event.object_id)
        for target, object_id in _references(event):
            refs[target].add(object_id)
    named = name_objects(refs)

    by_key: dict[str, list[Row]] = defaultdict(list)
    for event in rows:
        by_key[event.group_id].append(describe(event, named))
    counted: dict[str, Counter] = defaultdict(Counter)
    for event_key, object_type, action, count in tallies:
        counted[event_key][(object_type, action)] += count

    groups = []
    for group_id in keys:
        shown = by_key.get(group_id)
        if not shown:
            continue
        counter = counted[group_id]
        head = shown[0].event
        counter[(head.object_type, head.action)] -= 1
        total = sum(counter.values())
        counts = [(f"{n:,} {plural(kind_label(t), n)} {action_label(a).lower()}" if a in DATA_ACTIONS
                   else f"{action_label(a).lower()}" + (f" ×{n:,}" if n > 1 else ""), n)
                  for (t, a), n in sorted(counter.items(), key=lambda item: (-item[1], str(item[0]))) if n > 0]
        groups.append(Group(shown, counts, hidden=max(total - (len(shown) - 1), 0)))  # rows beyond ROWS_PER_GROUP
    return groups
