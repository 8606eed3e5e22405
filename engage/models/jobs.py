"""Background jobs: what the team sees of work run off the request (the queue itself is Huey's)."""

from __future__ import annotations

import datetime as dt
import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from engage.extensions import db
from engage.models.base import StrEnum, TimestampMixin, enum_check


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class BackgroundJob(TimestampMixin, db.Model):
    """One piece of long work (an import, a bulk document run...) handed to the job queue.

    The row is the job's public face: who asked for it, its progress, the link to its result, its
    error. The queue (Huey, engage.background) carries only the row's id. `key` makes a job
    idempotent: asking twice for the same work (a double click) finds the first job.
    """

    __tablename__ = "background_jobs"
    __table_args__ = (enum_check("status", JobStatus),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(40))
    key: Mapped[str] = mapped_column(sa.String(120), unique=True)
    #: What a person reads: "Holdings import: ishares_em.csv into Emerging Markets Fund".
    label: Mapped[str] = mapped_column(sa.String(300))
    #: The handler's arguments (JSON: ids, tokens, options; never a file's content).
    params: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    status: Mapped[str] = mapped_column(sa.String(16), default=JobStatus.QUEUED.value, index=True)
    done: Mapped[int] = mapped_column(default=0)
    total: Mapped[int | None]
    #: The latest progress line, then the result's summary.
    message: Mapped[str] = mapped_column(sa.Text, default="")
    result_url: Mapped[str | None] = mapped_column(sa.String(500))
    error: Mapped[str | None] = mapped_column(sa.Text)
    attempts: Mapped[int] = mapped_column(default=0)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"), index=True)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    #: When the job's stored result (a file) was deleted after JOB_RESULTS_KEEP_DAYS (engage.background.expire_results).
    expired_at: Mapped[dt.datetime | None]

    @property
    def finished(self) -> bool:
        return self.status in (JobStatus.DONE.value, JobStatus.FAILED.value)

    @property
    def percent(self) -> int | None:
        if not self.total:
            return None
        return max(0, min(100, round(100 * self.done / self.total)))
