"""Scores: snapshots of a company response measured against a rubric version."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from engage.extensions import db
from engage.models.base import TimestampMixin
from engage.models.campaigns import Criterion, Rubric
from engage.models.engagements import Engagement, Interaction
from engage.models.users import User


class Score(TimestampMixin, db.Model):
    __tablename__ = "scores"
    __table_args__ = (
        sa.CheckConstraint("total >= 0 AND total <= 100", name="total_range"),
        sa.Index("ix_scores_engagement_scored_on", "engagement_id", "scored_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    engagement_id: Mapped[int] = mapped_column(sa.ForeignKey("engagements.id", ondelete="CASCADE"))
    #: The company response that was scored.
    interaction_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("interactions.id", ondelete="SET NULL"), index=True
    )
    rubric_id: Mapped[int] = mapped_column(sa.ForeignKey("rubrics.id", ondelete="RESTRICT"))
    scorer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    scored_on: Mapped[dt.date]
    #: Weighted total on 0-100.
    total: Mapped[Decimal] = mapped_column(sa.Numeric(5, 2))
    note: Mapped[str] = mapped_column(sa.Text, default="")
    #: Set on a second, independent score of the same response (moderation).
    moderates_id: Mapped[int | None] = mapped_column(sa.ForeignKey("scores.id", ondelete="CASCADE"), index=True)

    engagement: Mapped[Engagement] = relationship()
    interaction: Mapped[Interaction | None] = relationship()
    rubric: Mapped[Rubric] = relationship()
    scorer: Mapped[User | None] = relationship()
    criterion_scores: Mapped[list[CriterionScore]] = relationship(
        back_populates="score", cascade="all, delete-orphan"
    )
    moderates: Mapped[Score | None] = relationship(remote_side="Score.id", back_populates="moderations")
    moderations: Mapped[list[Score]] = relationship(back_populates="moderates", cascade="all, delete-orphan")


class CriterionScore(TimestampMixin, db.Model):
    __tablename__ = "criterion_scores"
    __table_args__ = (
        sa.UniqueConstraint("score_id", "criterion_id"),
        sa.CheckConstraint("level >= 0 AND level <= 4", name="level_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    score_id: Mapped[int] = mapped_column(sa.ForeignKey("scores.id", ondelete="CASCADE"))
    criterion_id: Mapped[int] = mapped_column(sa.ForeignKey("criteria.id", ondelete="RESTRICT"))
    level: Mapped[int]
    evidence: Mapped[str] = mapped_column(sa.Text, default="")
    evidence_url: Mapped[str | None] = mapped_column(sa.String(500))

    score: Mapped[Score] = relationship(back_populates="criterion_scores")
    criterion: Mapped[Criterion] = relationship()
