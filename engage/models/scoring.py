"""Scores: snapshots of a company response measured against a rubric version."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.hybrid import hybrid_property
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

    @hybrid_property
    def is_primary(self) -> bool:
        """The score of record: not a second scorer's moderation of another score."""
        return self.moderates_id is None

    @is_primary.inplace.expression
    @classmethod
    def _is_primary_expression(cls):
        return cls.moderates_id.is_(None)

    @classmethod
    def newest_first(cls) -> tuple:
        """The order that decides which score is an engagement's latest: by date, then by entry."""
        return cls.scored_on.desc(), cls.id.desc()


def primary_scores(*where):
    """SELECT of the primary scores (oldest first per engagement) matching `where`."""
    return (sa.select(Score).where(Score.is_primary, *where)
            .order_by(Score.engagement_id, Score.scored_on, Score.id))


def ranked_scores(partition, *where, columns=()):
    """Subquery of the primary scores numbered newest first (`rank` 1 is the latest) per `partition`.

    One pass over the scores (a window function), joined to the engagement so that `partition`
    and `where` may name engagement columns (company, campaign).
    """
    primary = Score.is_primary
    if where and db.session.get_bind().dialect.name == "sqlite":
        # Nearly every score is primary: told so, SQLite reads the scores of the engagements
        # `where` names through their index instead of every primary score through the
        # moderates_id index (the companies page's 50 companies: 36 ms -> under 1 ms at 100,000).
        primary = sa.func.likelihood(primary, sa.literal_column("0.9"))
    return (
        sa.select(Score.id.label("id"), Score.engagement_id.label("engagement_id"), Score.total.label("total"),
                  *columns,
                  sa.func.row_number().over(partition_by=partition, order_by=Score.newest_first()).label("rank"))
        .join(Engagement, Engagement.id == Score.engagement_id)
        .where(primary, *where)
        .subquery("ranked_scores")
    )


def latest_score_of_engagement(offset: int = 0):
    """Correlated scalar subquery: the total of each engagement's latest primary score (`offset` 1: the one before)."""
    return (
        sa.select(Score.total)
        .where(Score.engagement_id == Engagement.id, Score.is_primary)
        .order_by(*Score.newest_first())
        .limit(1).offset(offset)
        .correlate(Engagement)
        .scalar_subquery()
    )


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
