"""The engagement cycle: the ordered stages, the escalation ladder, and the allowed moves.

This module is the one place that decides whether a move is allowed and performs it. Views,
services and the CLI ask `stage_moves()`/`escalation_moves()` what to offer and call
`move_stage()`/`move_escalation()`; the Engagement model knows nothing of these rules.

Rules (DESIGN.md, "The engagement cycle"):
- a forward stage move records a date, an optional note and evidence URL;
- a backward move needs a reason;
- closing needs an outcome (resolved, divested, dropped); closing as divested also puts the
  escalation at `divested`;
- a closed engagement can only be reopened, with a reason;
- a divested company is readmitted (reopened, or de-escalated from `divested`) only on
  recorded evidence of change in practice, not plans;
- escalating goes up the ladder freely; de-escalating needs a reason;
- no move is dated in the future or before the engagement was opened.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from urllib.parse import urlsplit

import sqlalchemy as sa

from engage.errors import FieldError
from engage.formatting import format_date
from engage.models.base import Escalation, Outcome, Stage
from engage.models.engagements import Engagement, EngagementEvent, event_divesting

STAGES: list[str] = [s.value for s in Stage]
OPEN_STAGES: list[str] = STAGES[:-1]
LADDER: list[str] = [e.value for e in Escalation]
#: Where a readmitted company goes on the escalation ladder: watched, not cleared.
READMITTED_ESCALATION = Escalation.OBSERVATION.value


class MoveError(FieldError):
    """A refused move; `field` names the form field the message belongs to."""


@dataclass(frozen=True)
class Move:
    """A move the UI may offer from the current state."""

    kind: str  # forward, backward, close, reopen, escalate, de-escalate
    target: str
    label: str
    needs_reason: bool = False
    needs_outcome: bool = False
    needs_evidence: bool = False


def _stage_label(value: str) -> str:
    return Stage(value).label


def _level_label(value: str) -> str:
    return Escalation(value).label


def is_divested(engagement: Engagement) -> bool:
    return engagement.is_divested


def divested_on():
    """SQL for an engagement's divestment date: the latest event that made it divested.

    That is the escalation to `divested` or the close with outcome `divested`; an engagement set
    divested without events (imported history) falls back to its closing, then opening date.
    Holdings dated after it are the company "held again after divestment".
    """
    event = (
        sa.select(sa.func.max(EngagementEvent.occurred_on))
        .where(EngagementEvent.engagement_id == Engagement.id, event_divesting())
        .correlate(Engagement)
        .scalar_subquery()
    )
    return sa.func.coalesce(event, Engagement.closed_on, Engagement.opened_on, type_=sa.Date)


def divesting_events():
    """Subquery (engagement_id, occurred_on): per engagement, the date of the latest event that divested it.

    One grouped pass over the divesting events (the partial index ix_engagement_events_divesting)
    for a query over many engagements; `divested_on` is the same date for one engagement.
    """
    return (
        sa.select(EngagementEvent.engagement_id, sa.func.max(EngagementEvent.occurred_on).label("occurred_on"))
        .where(event_divesting())
        .group_by(EngagementEvent.engagement_id)
        .subquery("divesting_events")
    )


def stage_moves(engagement: Engagement) -> list[Move]:
    """Every stage move allowed from the engagement's current state, in cycle order."""
    if not engagement.is_open:
        evidence = is_divested(engagement)
        return [Move("reopen", s, f"Reopen at {_stage_label(s)}", needs_reason=True, needs_evidence=evidence)
                for s in OPEN_STAGES]
    here = STAGES.index(engagement.stage)
    moves = []
    for index, stage in enumerate(OPEN_STAGES):
        if index > here:
            moves.append(Move("forward", stage, _stage_label(stage)))
        elif index < here:
            moves.append(Move("backward", stage, f"Back to {_stage_label(stage)}", needs_reason=True))
    moves.append(Move("close", Stage.CLOSED.value, "Close", needs_outcome=True))
    return moves


def escalation_moves(engagement: Engagement) -> list[Move]:
    """Every escalation change allowed now; none while the engagement is closed."""
    if not engagement.is_open:
        return []
    here = LADDER.index(engagement.escalation)
    moves = []
    for index, level in enumerate(LADDER):
        if index > here:
            moves.append(Move("escalate", level, _level_label(level)))
        elif index < here:
            readmission = engagement.escalation == Escalation.DIVESTED.value
            moves.append(Move("de-escalate", level, f"Back to {_level_label(level)}", needs_reason=True,
                              needs_evidence=readmission))
    return moves


def proposed_stage(engagement: Engagement) -> str | None:
    """The stage the move form starts at: the next one forward, not the first one back.

    A closed engagement is proposed the stage it was closed at (reopening picks up where it stopped).
    """
    if engagement.is_open:
        return next((m.target for m in stage_moves(engagement) if m.kind == "forward"), None)
    closes = [e for e in engagement.events if e.kind == "close" and e.from_value in OPEN_STAGES]
    last = max(closes, key=lambda e: (e.occurred_on, e.id or 0), default=None)
    return last.from_value if last else None


def proposed_level(engagement: Engagement) -> str | None:
    """The escalation level the form starts at: the next one up the ladder."""
    return next((m.target for m in escalation_moves(engagement) if m.kind == "escalate"), None)


def closed_refusal(engagement: Engagement, what: str) -> str:
    """Why a move prepared before the engagement was closed is refused now."""
    since = f" on {format_date(engagement.closed_on)}" if engagement.closed_on else ""
    if what == "escalation":
        return f"The engagement was closed{since}; reopen it before changing its escalation."
    return f"The engagement was closed{since}; it can only be reopened (choose a stage to reopen at)."


def _check_url(value: str | None) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise MoveError("evidence_url", "The evidence link must be a full http:// or https:// address.")
    if len(value) > 500:
        raise MoveError("evidence_url", "The evidence link is longer than 500 characters.")
    return value


def _check_date(engagement: Engagement, on: dt.date | None, today: dt.date) -> dt.date:
    if on is None:
        raise MoveError("occurred_on", "Give the date the move happened.")
    if on > today:
        raise MoveError("occurred_on", f"{format_date(on)} is in the future; record a move once it has happened.")
    if engagement.opened_on and on < engagement.opened_on:
        raise MoveError("occurred_on",
                        f"{format_date(on)} is before the engagement was opened ({format_date(engagement.opened_on)}).")
    return on


def _find(moves: list[Move], target: str, what: str, current: str) -> Move:
    for move in moves:
        if move.target == target:
            return move
    raise MoveError("target", f"Moving the {what} from {current} to {target} is not allowed.")


def _require(move: Move, reason: str, evidence: str, outcome: str | None) -> None:
    if move.needs_reason and not reason.strip():
        raise MoveError("reason", f"{move.label}: give a reason for this move.")
    if move.needs_evidence and not evidence.strip():
        raise MoveError("evidence", "A divested company is readmitted only on recorded evidence of change in "
                                    "practice (not plans): describe the evidence.")
    if move.needs_outcome and outcome not in Outcome.values():
        raise MoveError("outcome", f"Closing needs an outcome: one of {', '.join(Outcome.values())}.")


def move_stage(engagement: Engagement, target: str, *, on: dt.date | None, today: dt.date, actor_id: int | None,
               note: str = "", reason: str = "", evidence: str = "", evidence_url: str | None = None,
               outcome: str | None = None) -> EngagementEvent:
    """Perform a stage move (forward, backward, close or reopen) or raise MoveError."""
    if target not in STAGES:
        raise MoveError("target", f"{target!r} is not a stage of the cycle.")
    if target == engagement.stage:
        raise MoveError("target", f"The engagement is already at {_stage_label(target)}.")
    move = _find(stage_moves(engagement), target, "stage", _stage_label(engagement.stage))
    _require(move, reason, evidence, outcome)
    on = _check_date(engagement, on, today)
    url = _check_url(evidence_url)
    event = EngagementEvent(kind={"close": "close", "reopen": "reopen"}.get(move.kind, "stage"),
                            from_value=engagement.stage, to_value=target, occurred_on=on, note=note.strip(),
                            reason=reason.strip(), evidence=evidence.strip(), evidence_url=url, actor_id=actor_id)
    if move.kind == "close":
        event.outcome = outcome
        engagement.outcome = outcome
        engagement.closed_on = on
        if outcome == Outcome.DIVESTED.value:
            engagement.escalation = Escalation.DIVESTED.value
    elif move.kind == "reopen":
        if is_divested(engagement):
            engagement.escalation = READMITTED_ESCALATION
        engagement.outcome = None
        engagement.closed_on = None
    engagement.stage = target
    engagement.events.append(event)
    return event


def move_escalation(engagement: Engagement, target: str, *, on: dt.date | None, today: dt.date,
                    actor_id: int | None, note: str = "", reason: str = "", evidence: str = "",
                    evidence_url: str | None = None) -> EngagementEvent:
    """Move up or down the escalation ladder or raise MoveError."""
    if target not in LADDER:
        raise MoveError("target", f"{target!r} is not an escalation level.")
    if not engagement.is_open:
        raise MoveError("target", closed_refusal(engagement, "escalation"))
    if target == engagement.escalation:
        raise MoveError("target", f"The escalation is already {_level_label(target)}.")
    move = _find(escalation_moves(engagement), target, "escalation", _level_label(engagement.escalation))
    _require(move, reason, evidence, None)
    on = _check_date(engagement, on, today)
    url = _check_url(evidence_url)
    event = EngagementEvent(kind="escalation", from_value=engagement.escalation, to_value=target, occurred_on=on,
                            note=note.strip(), reason=reason.strip(), evidence=evidence.strip(), evidence_url=url,
                            actor_id=actor_id)
    engagement.escalation = target
    engagement.events.append(event)
    return event
