"""Scoring company responses against the campaign's rubric, and rubric versions.

`compute_total` is the one place a total is calculated. A score is a snapshot: re-scoring
adds a new one; a second scorer's independent score of the same response is kept beside it
(moderation) and their disagreement is flagged. A rubric version that scores use is never
edited: changes go into a new version.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

import sqlalchemy as sa
from flask import current_app

from engage import clock
from engage.errors import FieldError
from engage.formatting import round_half_up
from engage.extensions import db
from engage.models import (
    Campaign,
    Criterion,
    CriterionScore,
    Engagement,
    Interaction,
    InteractionKind,
    Rubric,
    Score,
    Stage,
)
from engage.validators import parse_decimal

MAX_LEVEL = 4
#: How `compute_total` turns levels into a total: weighted levels over the best possible, times
#: SCALE, rounded half up to PLACES decimals (stored); pages then show it at SHOWN_PLACES (half up
#: again, see engage.formatting.format_score). The scoring form renders these numbers, and the
#: criteria's weights, into data attributes so its running total follows the same rule.
TOTAL_SCALE = 100
TOTAL_PLACES = 2
SHOWN_PLACES = 0
#: A criterion's weight: positive, at most 1000, in the column's two decimal places (a smaller
#: weight would be stored as 0 and break the "weight > 0" rule).
WEIGHT_BOUNDS = {"minimum": Decimal("0.01"), "maximum": Decimal(1000), "places": 2}
EVIDENCE_FROM_LEVEL = 3
STAGE_ORDER = [s.value for s in Stage]


class ScoreError(FieldError):
    """A refused score or rubric change."""


class ScoreProblems(ScoreError):
    """A refused score with every problem found at once: `problems` maps form field → message."""

    def __init__(self, problems: dict[str, str]):
        field, message = next(iter(problems.items()))
        super().__init__(field, message)
        self.problems = problems


def level_points(level: int) -> int:
    """What a level counts in the total: its own number (0-4)."""
    return level


def compute_total(weights: Mapping[str, Decimal | int | float], levels: Mapping[str, int | None]) -> Decimal:
    """Weighted total on 0-100, rounded half up to 2 decimals.

    Every criterion of the rubric counts: one without a level counts as 0 ("no response or
    evidence"), so leaving a criterion out can never raise a total. Levels outside 0-4, levels
    for criteria the rubric does not have, and weights that are not positive are refused.
    """
    if not weights:
        raise ValueError("a rubric needs at least one criterion")
    unknown = set(levels) - set(weights)
    if unknown:
        raise ValueError(f"levels given for criteria the rubric does not have: {sorted(unknown)}")
    weighted = Decimal(0)
    total_weight = Decimal(0)
    for key, weight in weights.items():
        weight = Decimal(str(weight))
        if weight <= 0:
            raise ValueError(f"criterion {key!r} has weight {weight}; weights must be positive")
        level = levels.get(key)
        level = 0 if level is None else level
        if not isinstance(level, int) or not 0 <= level <= MAX_LEVEL:
            raise ValueError(f"criterion {key!r} has level {level!r}; levels run from 0 to {MAX_LEVEL}")
        weighted += weight * level_points(level)
        total_weight += weight
    best = total_weight * level_points(MAX_LEVEL)
    return (weighted * TOTAL_SCALE / best).quantize(Decimal(1).scaleb(-TOTAL_PLACES), rounding=ROUND_HALF_UP)


def total_rule(rubric: Rubric) -> dict:
    """The parameters of `compute_total` for this rubric, for the form's running total:
    the rounding, the points of each level and each criterion's exact weight (and its share)."""
    total_weight = sum((Decimal(c.weight) for c in rubric.criteria), Decimal(0))
    return {
        "scale": TOTAL_SCALE, "places": TOTAL_PLACES, "shown_places": SHOWN_PLACES,
        "best": level_points(MAX_LEVEL), "evidence_from": EVIDENCE_FROM_LEVEL,
        "points": [level_points(level) for level in range(MAX_LEVEL + 1)],
        "weights": {c.id: f"{Decimal(c.weight):f}" for c in rubric.criteria},
        "shares": {c.id: round_half_up(Decimal(c.weight) * 100 / total_weight) if total_weight else 0
                   for c in rubric.criteria},
    }


def current_rubric(campaign_id: int) -> Rubric | None:
    """The campaign's latest published rubric version."""
    return db.session.scalar(
        sa.select(Rubric).where(Rubric.campaign_id == campaign_id, Rubric.published_at.is_not(None))
        .order_by(Rubric.version.desc()).limit(1)
    )


@dataclass
class Entry:
    level: int | None
    evidence: str = ""
    evidence_url: str | None = None


def entry_problems(rubric: Rubric, entries: Mapping[int, Entry]) -> dict[str, str]:
    """Every criterion problem of a score at once: a missing level, a level out of range, a
    high level without its evidence note. Keyed by form field, in the rubric's order."""
    problems: dict[str, str] = {}
    for criterion in rubric.criteria:
        entry = entries.get(criterion.id)
        if entry is None or entry.level is None:
            problems[f"level-{criterion.id}"] = f"{criterion.title}: choose a level from 0 to {MAX_LEVEL}."
            continue
        if not 0 <= entry.level <= MAX_LEVEL:
            problems[f"level-{criterion.id}"] = f"{criterion.title}: levels run from 0 to {MAX_LEVEL}."
            continue
        if entry.level >= EVIDENCE_FROM_LEVEL and not entry.evidence.strip():
            problems[f"evidence-{criterion.id}"] = (f"{criterion.title}: a level of {entry.level} needs a note "
                                                    "on the evidence.")
    return problems


def date_problems(interaction: Interaction, scored_on: dt.date | None, today: dt.date) -> dict[str, str]:
    if scored_on is None or scored_on > today:
        return {"scored_on": "The scoring date must be given and cannot be in the future."}
    if scored_on < interaction.occurred_on:
        return {"scored_on": "The response cannot be scored before it was received."}
    return {}


def score_response(interaction: Interaction, *, scorer_id: int, scored_on: dt.date | None, today: dt.date,
                   entries: Mapping[int, Entry], note: str = "", moderates: Score | None = None) -> Score:
    """Score a company response (or moderate an earlier score of it), or raise ScoreError; a
    refused score raises ScoreProblems naming every problem, not only the first."""
    if interaction.kind != InteractionKind.RESPONSE.value:
        raise ScoreError("interaction", "Only company responses can be scored; this is a "
                                        f"{InteractionKind(interaction.kind).label.lower()}.")
    if moderates is not None:
        if moderates.interaction_id != interaction.id or not moderates.is_primary:
            raise ScoreError("interaction", "A moderation scores the same response as the first score.")
        if moderates.scorer_id == scorer_id:
            raise ScoreError("interaction", "Moderation needs a second scorer, not the first one again.")
        rubric = moderates.rubric
    else:
        rubric = current_rubric(interaction.engagement.campaign_id)
    if rubric is None:
        raise ScoreError("interaction", "The campaign has no published rubric to score against.")
    problems = entry_problems(rubric, entries) | date_problems(interaction, scored_on, today)
    if problems:
        raise ScoreProblems(problems)
    criterion_scores, levels = [], {}
    for criterion in rubric.criteria:
        entry = entries[criterion.id]
        levels[criterion.key] = entry.level
        criterion_scores.append(CriterionScore(criterion=criterion, level=entry.level,
                                               evidence=entry.evidence.strip(), evidence_url=entry.evidence_url))
    total = compute_total({c.key: c.weight for c in rubric.criteria}, levels)
    score = Score(engagement=interaction.engagement, interaction=interaction, rubric=rubric, scorer_id=scorer_id,
                  scored_on=scored_on, total=total, note=note.strip(), moderates=moderates,
                  criterion_scores=criterion_scores)
    db.session.add(score)
    return score


def disagreement(first: Score, second: Score) -> dict:
    """How far two scores of one response differ, and whether that needs a conversation."""
    threshold = Decimal(current_app.config["MODERATION_THRESHOLD"])
    levels = {cs.criterion_id: cs.level for cs in first.criterion_scores}
    criteria = [
        {"title": cs.criterion.title, "first": levels.get(cs.criterion_id), "second": cs.level}
        for cs in second.criterion_scores
        if levels.get(cs.criterion_id) is not None and abs(levels[cs.criterion_id] - cs.level) >= 2
    ]
    gap = abs(Decimal(first.total) - Decimal(second.total))
    return {"gap": gap, "criteria": criteria, "flagged": gap > threshold or bool(criteria)}


def stage_hints(engagement: Engagement, score: Score | None) -> list[dict]:
    """Stage moves the latest score suggests (a criterion at 3+ whose stage is still ahead)."""
    if score is None or not engagement.is_open:
        return []
    here = STAGE_ORDER.index(engagement.stage)
    hints = []
    for cs in score.criterion_scores:
        hint = cs.criterion.stage_hint
        if hint and cs.level >= EVIDENCE_FROM_LEVEL and STAGE_ORDER.index(hint) > here:
            hints.append({"stage": hint, "label": Stage(hint).label, "criterion": cs.criterion.title,
                          "level": cs.level})
    return sorted(hints, key=lambda h: STAGE_ORDER.index(h["stage"]))


# --- rubric versions ----------------------------------------------------------------------

def scores_using(rubric: Rubric) -> int:
    return db.session.scalar(sa.select(sa.func.count(Score.id)).where(Score.rubric_id == rubric.id))


def new_version(campaign: Campaign, actor_id: int | None = None) -> Rubric:
    """Copy the latest version into a new, unpublished one that can be edited."""
    latest = db.session.scalar(
        sa.select(Rubric).where(Rubric.campaign_id == campaign.id).order_by(Rubric.version.desc()).limit(1))
    if latest is not None and latest.published_at is None:
        raise ScoreError("version", f"Version {latest.version} is still a draft; edit or publish it first.")
    criteria = list(latest.criteria) if latest else []
    rubric = Rubric(campaign=campaign, version=(latest.version + 1) if latest else 1,
                    name=latest.name if latest else f"{campaign.name} rubric")
    db.session.add(rubric)
    for criterion in criteria:
        rubric.criteria.append(Criterion(key=criterion.key, title=criterion.title, guidance=criterion.guidance,
                                         weight=criterion.weight, levels=list(criterion.levels),
                                         position=criterion.position, stage_hint=criterion.stage_hint))
    return rubric


@dataclass
class CriterionInput:
    key: str
    title: str
    guidance: str
    weight: str
    levels: list[str]
    stage_hint: str | None


def update_criteria(rubric: Rubric, rows: list[CriterionInput]) -> None:
    """Replace the criteria of an unused version; a version that scores use is refused."""
    used = scores_using(rubric)
    if used:
        raise ScoreError("version", f"Version {rubric.version} is used by {used} score(s) and cannot change; "
                                    "create a new version to edit the rubric.")
    if not rows:
        raise ScoreError("criteria", "A rubric needs at least one criterion.")
    keys = set()
    parsed = []
    for index, row in enumerate(rows, start=1):
        key = row.key.strip()
        if not key or not key.replace("_", "").isalnum():
            raise ScoreError(f"key-{index}", f"Criterion {index}: the key must be letters, digits or underscores.")
        if key in keys:
            raise ScoreError(f"key-{index}", f"Criterion {index}: the key {key!r} is used twice.")
        keys.add(key)
        if not row.title.strip():
            raise ScoreError(f"title-{index}", f"Criterion {index}: a title is required.")
        try:
            weight = parse_decimal(row.weight, **WEIGHT_BOUNDS)
        except ValueError as exc:
            raise ScoreError(f"weight-{index}", f"Criterion {index}: the weight must be a positive number "
                                                f"({row.weight[:40]!r}: {exc})") from None
        if len(row.levels) != MAX_LEVEL + 1 or any(not text.strip() for text in row.levels):
            raise ScoreError(f"levels-{index}", f"Criterion {index}: describe every level from 0 to {MAX_LEVEL}.")
        if row.stage_hint and row.stage_hint not in STAGE_ORDER[2:6]:
            raise ScoreError(f"stage_hint-{index}", f"Criterion {index}: {row.stage_hint!r} is not a stage to suggest.")
        parsed.append(Criterion(key=key, title=row.title.strip()[:200], guidance=row.guidance.strip(),
                                weight=weight, levels=[t.strip() for t in row.levels], position=index - 1,
                                stage_hint=row.stage_hint or None))
    rubric.criteria.clear()
    db.session.flush()  # the old rows go before new ones take their keys
    rubric.criteria.extend(parsed)


def publish(rubric: Rubric) -> None:
    if rubric.published_at is not None:
        raise ScoreError("version", f"Version {rubric.version} is already published.")
    if not rubric.criteria:
        raise ScoreError("criteria", "A rubric needs at least one criterion before it is published.")
    rubric.published_at = clock.utcnow()
