"""Saved views: a named set of filters and sort on a list page, kept for its owner or the team."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from engage.extensions import db
from engage.models.base import StrEnum, TimestampMixin, enum_check

#: Longest name a view may have (it is a menu entry, not a description).
VIEW_NAME_MAX = 80
#: Longest stored query string; the lists' filters cleaned to their known fields fit well within it.
VIEW_QUERY_MAX = 1000


class ViewList(StrEnum):
    """The list pages a view can be saved on."""

    ENGAGEMENTS = "engagements"
    COMPANIES = "companies"


class SavedView(TimestampMixin, db.Model):
    """One user's named filter set on one list; shared ones appear in every teammate's menu."""

    __tablename__ = "saved_views"
    __table_args__ = (
        sa.UniqueConstraint("owner_id", "list_kind", "name"),
        enum_check("list_kind", ViewList),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: Which list the view belongs to: a `ViewList` value.
    list_kind: Mapped[str] = mapped_column(sa.String(20))
    name: Mapped[str] = mapped_column(sa.String(VIEW_NAME_MAX))
    #: The list's query string, cleaned to the filters and sort the list knows (no page, no junk).
    query: Mapped[str] = mapped_column(sa.String(VIEW_QUERY_MAX), default="")
    #: Shown in the menu of every signed-in user, not only the owner's.
    shared: Mapped[bool] = mapped_column(default=False, index=True)

    owner = relationship("User")

    @property
    def kind_label(self) -> str:
        return ViewList(self.list_kind).label
