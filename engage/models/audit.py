"""The audit trail: who changed what, when, with the values before and after."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from engage import clock
from engage.extensions import db
from engage.models.users import User


class AuditEvent(db.Model):
    __tablename__ = "audit_events"
    __table_args__ = (
        sa.Index("ix_audit_events_object", "object_type", "object_id"),
        sa.Index("ix_audit_events_action_created", "action", "created_at"),
        # The audit page pages through changes: GROUP BY group_id, newest max(id) first, from this index alone.
        sa.Index("ix_audit_events_group", "group_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    #: Who acted, kept as text so it survives the user row ("cli", "scheduler", an email).
    actor_label: Mapped[str] = mapped_column(sa.String(254), default="system")
    #: create, update, delete, login, login_failed, logout, role_change...
    action: Mapped[str] = mapped_column(sa.String(32))
    object_type: Mapped[str | None] = mapped_column(sa.String(60))
    object_id: Mapped[int | None]
    summary: Mapped[str] = mapped_column(sa.String(500), default="")
    #: {field: [before, after]} for updates; {field: value} for creates and deletes.
    changes: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    ip_address: Mapped[str | None] = mapped_column(sa.String(45))
    #: The rows of one change share it (`engage.audit.current_group_id`): one request, one transaction
    #: outside requests, or one `audit.grouped()` block. Rows recorded before it existed have "#<id>",
    #: a group of their own; a row added without one gets a fresh id, a group of its own too.
    group_id: Mapped[str] = mapped_column(sa.String(32), default=lambda: uuid.uuid4().hex)

    actor: Mapped[User | None] = relationship()
