"""Shared column helpers and the enumerations the models check."""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from engage import clock


class TimestampMixin:
    #: Set once when the row is inserted (UTC).
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.utcnow, nullable=False)
    #: Bumped on every update (UTC).
    updated_at: Mapped[dt.datetime] = mapped_column(
        default=clock.utcnow, onupdate=clock.utcnow, nullable=False
    )


def enum_check(column: str, enum_cls: type[enum.Enum], name: str | None = None) -> sa.CheckConstraint:
    """A CHECK constraint that limits `column` to the values of a str Enum."""
    values = ", ".join(f"'{member.value}'" for member in enum_cls)
    return sa.CheckConstraint(f"{column} IN ({values})", name=name or f"{column}_valid")


class StrEnum(str, enum.Enum):
    def __str__(self) -> str:
        return self.value

    @classmethod
    def values(cls) -> list[str]:
        return [member.value for member in cls]

    @property
    def label(self) -> str:
        return self.value.replace("_", " ").capitalize()


class Role(StrEnum):
    VIEWER = "viewer"
    ANALYST = "analyst"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return ["viewer", "analyst", "admin"].index(self.value)


class Stage(StrEnum):
    IDENTIFIED = "identified"
    MAPPING_REQUESTED = "mapping_requested"
    ACKNOWLEDGED = "acknowledged"
    VALUE_CHAIN_MAPPED = "value_chain_mapped"
    DISENGAGING = "disengaging"
    DISCLOSED = "disclosed"
    CLOSED = "closed"


class Escalation(StrEnum):
    NONE = "none"
    FOLLOW_UP = "follow_up"
    CALL_TO_ACTION = "call_to_action"
    COLLECTIVE = "collective"
    OBSERVATION = "observation"
    DIVESTMENT_RECOMMENDED = "divestment_recommended"
    DIVESTED = "divested"


class ContactRole(StrEnum):
    INVESTOR_RELATIONS = "investor_relations"
    COMPANY_SECRETARY = "company_secretary"
    SUSTAINABILITY = "sustainability"
    BOARD_CHAIR = "board_chair"
    OTHER = "other"


class Outcome(StrEnum):
    RESOLVED = "resolved"
    DIVESTED = "divested"
    DROPPED = "dropped"


class InteractionKind(StrEnum):
    LETTER = "letter"
    EMAIL = "email"
    CALL = "call"
    MEETING = "meeting"
    RESPONSE = "response"
    NOTE = "note"


class Direction(StrEnum):
    OUTBOUND = "outbound"
    INBOUND = "inbound"
    INTERNAL = "internal"


class RiskSource(StrEnum):
    US_ENTITY_LIST = "us_entity_list"
    UFLPA_ENTITY_LIST = "uflpa_entity_list"
    CBP_WRO = "cbp_wro"
    GPFG_EXCLUSION = "gpfg_exclusion"
    GPFG_OBSERVATION = "gpfg_observation"
    US_MEU_LIST = "us_meu_list"
    OFAC_SDN = "ofac_sdn"
    TEAM_LIST = "team_list"
    SECTOR_RISK = "sector_risk"
    ANALYST = "analyst"

    @property
    def label(self) -> str:
        return {
            "us_entity_list": "US Entity List",
            "uflpa_entity_list": "UFLPA Entity List",
            "cbp_wro": "CBP Withhold Release Order",
            "gpfg_exclusion": "GPFG exclusion",
            "gpfg_observation": "GPFG observation",
            "us_meu_list": "US Military End-User List",
            "ofac_sdn": "OFAC SDN List",
            "team_list": "Team list",
            "sector_risk": "Sector risk",
            "analyst": "Analyst note",
        }[self.value]

    @classmethod
    def official(cls) -> list[RiskSource]:
        """The official lists: published by a government or a fund's ethics council.

        Exposure is measured against these only; sector risk and analyst notes are signals, shown
        apart and never summed in. A team's own list is a signal too: it is not published.
        """
        return [cls.US_ENTITY_LIST, cls.UFLPA_ENTITY_LIST, cls.CBP_WRO, cls.GPFG_EXCLUSION, cls.GPFG_OBSERVATION,
                cls.US_MEU_LIST, cls.OFAC_SDN]

    @property
    def is_official(self) -> bool:
        return self in RiskSource.official()


class FlagLink(StrEnum):
    """How a flag reaches its company: the list names it, or it names the company's parent."""

    DIRECT = "direct"
    LINKED = "linked"


class CandidateStatus(StrEnum):
    """A possible match between a company and a list entry, as the match review left it."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class LetterKind(StrEnum):
    INITIAL = "initial"
    FOLLOW_UP = "follow_up"
    CALL_TO_ACTION = "call_to_action"
    ESCALATION = "escalation"
    OTHER = "other"


class LetterStatus(StrEnum):
    DRAFT = "draft"
    SENT = "sent"


class ReminderStatus(StrEnum):
    OPEN = "open"
    DONE = "done"
    SNOOZED = "snoozed"


class ReminderKind(StrEnum):
    REPLY = "reply"  # a reply is due to a letter we sent
    ESCALATION = "escalation"  # follow-ups went unanswered: consider escalating
    MANUAL = "manual"  # added by an analyst
    EXIT = "exit"  # a value-chain relationship's planned exit is due (engage.valuechain.feeds)


class OutboxStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class InvestorKind(StrEnum):
    INVESTOR = "investor"
    NGO = "ngo"
    NETWORK = "network"


class RelationshipKind(StrEnum):
    """How a counterparty is linked to the engaged company in its disclosed value chain."""

    SUPPLIER = "supplier"
    SUB_SUPPLIER = "sub_supplier"
    CUSTOMER = "customer"
    JOINT_VENTURE = "joint_venture"
    SUBSIDIARY = "subsidiary"
    OTHER = "other"


class RelationshipStatus(StrEnum):
    """Where the engaged company stands with a (flagged) relationship: towards exit, or not linked."""

    ACTIVE = "active"
    UNDER_REVIEW = "under_review"
    REMEDIATION_PLAN = "remediation_plan"
    EXIT_PLANNED = "exit_planned"
    EXITED = "exited"
    NOT_LINKED = "not_linked"


class MapSourceKind(StrEnum):
    """Where the company disclosed a value-chain map."""

    LETTER_REPLY = "letter_reply"
    REPORT = "report"
    ATTACHMENT = "attachment"
    LINK = "link"
    MANUAL = "manual"
