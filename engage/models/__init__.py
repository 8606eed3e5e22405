"""All models, importable as `from engage.models import Company`."""

from engage.models.api import ApiToken
from engage.models.audit import AuditEvent
from engage.models.base import (
    CandidateStatus,
    FlagLink,
    ContactRole,
    Direction,
    Escalation,
    InteractionKind,
    InvestorKind,
    MapSourceKind,
    RelationshipKind,
    RelationshipStatus,
    LetterKind,
    LetterStatus,
    OutboxStatus,
    Outcome,
    ReminderKind,
    ReminderStatus,
    RiskSource,
    Role,
    Stage,
)
from engage.models.campaigns import Campaign, Criterion, Investor, PaperSize, Rubric, campaign_signatories
from engage.models.companies import Company, CompanyAlias, RiskFlag, normalize_name
from engage.models.contacts import ERASED, LANGUAGES, CompanyContact
from engage.models.dashboard import DashboardFigures, WriteCounter, WriteLog
from engage.models.engagements import (
    Attachment,
    Engagement,
    EngagementEvent,
    Interaction,
    Reminder,
    ReminderCount,
    event_divesting,
    engagement_open,
    reminder_pending,
)
from engage.models.holdings import DivestmentAlert, Fund, Holding
from engage.models.jobs import BackgroundJob, JobStatus
from engage.models.lists import ACTIVE_STATUSES, ListedEntity, ListVersion, MatchCandidate
from engage.models.mailbox import InboundMessage, InboundStatus
from engage.models.letters import Letter, LetterBatch, LetterTemplate, LetterTemplateLanguage, LetterTemplateVersion
from engage.models.outbox import ExportRun, OutboxEmail
from engage.models.scoring import CriterionScore, Score
from engage.models.submissions import FormSubmission
from engage.models.tracker import TrackerRow, TrackerValueMapping
from engage.models.users import User
from engage.models.valuechain import Relationship, RelationshipStatusChange, ValueChainMap
from engage.models.views import VIEW_NAME_MAX, VIEW_QUERY_MAX, SavedView, ViewList

__all__ = [
    "event_divesting",
    "engagement_open",
    "reminder_pending",
    "BackgroundJob", "JobStatus",
    "DashboardFigures", "WriteCounter", "WriteLog",
    "ApiToken",
    "ACTIVE_STATUSES", "CandidateStatus", "FlagLink", "ListVersion", "MatchCandidate",
    "Attachment", "AuditEvent", "Campaign", "Company", "CompanyAlias", "CompanyContact", "ContactRole", "Criterion",
    "CriterionScore", "Direction", "DivestmentAlert", "Engagement", "EngagementEvent", "ExportRun", "Escalation",
    "FormSubmission", "Fund", "Holding", "InboundMessage", "InboundStatus", "Interaction",
    "InteractionKind", "Investor", "InvestorKind", "PaperSize", "Letter", "LetterKind", "LetterStatus",
    "LetterBatch", "ListedEntity", "LetterTemplate", "LetterTemplateLanguage", "LetterTemplateVersion", "OutboxEmail", "OutboxStatus", "Outcome",
    "Reminder", "ReminderCount", "ReminderKind", "ReminderStatus", "RiskFlag", "RiskSource", "Role", "Rubric", "Score", "Stage",
    "User", "MapSourceKind", "Relationship", "RelationshipKind", "RelationshipStatus", "RelationshipStatusChange",
    "ValueChainMap", "TrackerRow", "TrackerValueMapping", "campaign_signatories", "normalize_name", "ERASED", "LANGUAGES",
    "SavedView", "ViewList", "VIEW_NAME_MAX", "VIEW_QUERY_MAX",
]
