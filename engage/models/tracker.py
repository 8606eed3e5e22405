"""What an onboarding import of a team's own tracker leaves behind: the team's words it learnt, and
which tracker row made which engagement (so that importing the same file again changes nothing)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from engage.extensions import db
from engage.models.base import TimestampMixin

#: What a remembered mapping maps: a column header to a field, or one of the team's words to a stage
#: (or `closed:<outcome>`) or an escalation level.
TRACKER_MAPPING_KINDS = ("column", "status", "escalation")


class TrackerValueMapping(TimestampMixin, db.Model):
    """One of the team's words (or column headers) and what it means in Engage, kept for the next import."""

    __tablename__ = "tracker_value_mappings"
    __table_args__ = (
        sa.UniqueConstraint("kind", "value"),
        sa.CheckConstraint("kind IN ('column', 'status', 'escalation')", name="kind_valid"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: column, status or escalation.
    kind: Mapped[str] = mapped_column(sa.String(16))
    #: The team's header or word as it is compared: lower case, single spaces ("letter sent").
    value: Mapped[str] = mapped_column(sa.String(200))
    #: A field ("company"), a stage ("mapping_requested"), "closed:divested", an escalation level, or
    #: "ignore" (a column not read).
    target: Mapped[str] = mapped_column(sa.String(40))
    #: The team's spelling, as last seen ("Letter sent").
    label: Mapped[str] = mapped_column(sa.String(200), default="")
    updated_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))


class TrackerRow(TimestampMixin, db.Model):
    """A tracker row imported: its key and the engagement it became."""

    __tablename__ = "tracker_rows"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: "id:<the tracker's own id>" or "company:<company id>:campaign:<campaign id>".
    row_key: Mapped[str] = mapped_column(sa.String(240), unique=True)
    engagement_id: Mapped[int] = mapped_column(sa.ForeignKey("engagements.id", ondelete="CASCADE"), index=True)
    #: The file it was first imported from.
    file_name: Mapped[str] = mapped_column(sa.String(255), default="")
