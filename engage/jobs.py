"""Periodic jobs: one list, fixed ids, run only by the `flask scheduler` process.

Each job is a plain function of `now` that the CLI and the tests can call directly. Web workers
never start a scheduler; running two schedulers by mistake is harmless because every job
claims its work in the database (see engage.reminders).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Callable

from apscheduler.schedulers.blocking import BlockingScheduler
from flask import Flask

from engage import audit, clock
from engage import housekeeping as cleanup
from engage.core import outbox
from engage.exports.service import run_monthly
from engage.extensions import db
from engage.mailbox.imap import MailboxUnavailable
from engage.main import figures
from engage.mailbox.service import fetch
from engage.mailbox.settings import enabled as mailbox_enabled
from engage.reminders.service import tick

log = logging.getLogger("engage.jobs")


def reminders_tick(now: dt.datetime) -> list[str]:
    """One reminders tick (rules, notifications, outbox): the job `flask reminders run` runs too."""
    return tick(now).lines()


def outbox_drain(now: dt.datetime) -> list[str]:
    return [f"outbox: {outbox.drain(now)}"]


def monthly_export(now: dt.datetime) -> list[str]:
    """On the 1st: the previous month's status export, stored and emailed once."""
    return [run_monthly(now)]


def housekeeping(now: dt.datetime) -> list[str]:
    """Import previews never confirmed, cache files past their age and old form tokens are deleted."""
    lines = cleanup.run(now)
    db.session.commit()
    return lines


def dashboard_figures(now: dt.datetime) -> list[str]:
    """Count the dashboard's figures over whole tables and store them for every web worker."""
    row = figures.refresh(now)
    return [f"dashboard figures counted in {row.seconds:.2f} s (CPU {row.cpu_seconds:.2f} s in this process)"]


def mail_fetch(now: dt.datetime) -> list[str]:
    """Read the engagement mailbox (same function as `flask mail fetch`); an outage is logged, nothing lost."""
    try:
        return fetch(now).lines()
    except MailboxUnavailable as exc:
        log.error("mail-fetch: mailbox unavailable: %s (the next run catches up)", exc)
        return []


@dataclass(frozen=True)
class Job:
    id: str
    func: Callable[[dt.datetime], list[str]]
    trigger: str
    trigger_args: dict


def jobs(app: Flask) -> list[Job]:
    return [
        Job("reminders-tick", reminders_tick, "interval", {"minutes": app.config["REMINDER_TICK_MINUTES"]}),
        Job("outbox-drain", outbox_drain, "interval", {"minutes": 1}),
        Job("monthly-export", monthly_export, "cron", {"day": 1, "hour": 6, "minute": 0}),
        Job("housekeeping", housekeeping, "interval", {"hours": 1}),
    ] + ([Job("dashboard-figures", dashboard_figures, "interval", {"seconds": app.config["DASHBOARD_REFRESH_SECONDS"]})]
         if app.config["DASHBOARD_REFRESH_SECONDS"] > 0 else []) + ([Job("mail-fetch", mail_fetch, "interval", {"minutes": app.config["MAIL_FETCH_MINUTES"]})]
         if mailbox_enabled(app.config) else [])


def run_job(app: Flask, job: Job) -> None:
    """Run one job in an app context with the real clock; errors are logged, never fatal."""
    with app.app_context(), audit.acting_as("scheduler"):
        try:
            for line in job.func(clock.utcnow()):
                log.info("%s: %s", job.id, line)
        except Exception:  # a failing job must not stop the scheduler; it runs again next time
            db.session.rollback()
            log.exception("job %s failed", job.id)
        finally:
            db.session.remove()


def build_scheduler(app: Flask, scheduler_class=None):
    """The scheduler with every job; `flask scheduler` runs it in the foreground (blocking)."""
    scheduler = (scheduler_class or BlockingScheduler)(
        timezone=dt.UTC,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
    )
    for job in jobs(app):
        # Interval jobs also run once at start-up, so a restart does not wait a whole interval.
        first = {"next_run_time": dt.datetime.now(dt.UTC)} if job.trigger == "interval" else {}
        scheduler.add_job(run_job, job.trigger, args=[app, job], id=job.id, name=job.id, replace_existing=True,
                          **job.trigger_args, **first)
    return scheduler
