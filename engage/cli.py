"""Flask CLI commands. Thin: parse, call a service, commit once, print.

Refused input exits non-zero with a one-line reason on stderr.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from engage import audit
from engage.extensions import db


def fail(message: str) -> None:
    """Print a one-line reason on stderr and exit with status 1."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


@click.command("seed")
@click.option("--demo", is_flag=True, help="Also load demo users, funds and engagements.")
def seed_command(demo: bool) -> None:
    """Load reference data from seeds/ (idempotent); with --demo, a demo data set too."""
    from engage.demo import load_demo
    from engage.seeding import SeedError, load_reference

    with audit.acting_as("seed"):
        try:
            added = load_reference(Path(current_app.config["SEEDS_DIR"]))
            login = load_demo(os.environ.get("ENGAGE_DEMO_PASSWORD") or None) if demo else None
            db.session.commit()
        except (SeedError, ValueError) as exc:
            db.session.rollback()
            fail(str(exc))
    summary = ", ".join(f"{count} {what}" for what, count in added.items() if count) or "nothing new"
    click.echo(f"Seeded: {summary}.")
    if login:
        click.echo(f"Demo login: {login[0]} {login[1]}")


users_cli = AppGroup("users", help="Manage user accounts.")


@users_cli.command("create")
@click.argument("email")
@click.option("--name", required=True, help="Full name shown in the app.")
@click.option("--role", required=True, help="admin, analyst or viewer.")
def create_user_command(email: str, name: str, role: str) -> None:
    """Create a user; the password is read from standard input (prompted on a terminal)."""
    from engage.admin.service import UserError, create_user
    from engage.models import Role

    if role not in Role.values():
        fail(f"--role must be one of {', '.join(Role.values())}, not {role!r}")
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    with audit.acting_as("cli"):
        try:
            user = create_user(email, name, role, password)
            db.session.commit()
        except UserError as exc:
            db.session.rollback()
            fail(f"{exc.field}: {exc.message}")
    click.echo(f"Created {user.role} {user.email}.")


reminders_cli = AppGroup("reminders", help="Follow-up reminders and their emails.")


def parse_now(value: str | None):
    """--now as an ISO date-time (UTC when no offset is given), or the clock's now."""
    import datetime as dt

    from engage import clock

    if value is None:
        return clock.utcnow()
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        fail(f"--now must be an ISO date-time such as 2026-11-21T09:00, not {value!r}")
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


@reminders_cli.command("run")
@click.option("--now", "now_text", help="Run as if it were this UTC date-time (ISO 8601).")
def reminders_run_command(now_text: str | None) -> None:
    """One tick: apply the follow-up rules, notify owners of due reminders, drain the outbox."""
    from engage.reminders.service import tick

    now = parse_now(now_text)
    with audit.acting_as("cli"):
        result = tick(now)
    click.echo(f"Reminders tick at {now.isoformat(timespec='minutes')} UTC")
    for line in result.lines():
        click.echo(f"  {line}")


@click.command("scheduler")
def scheduler_command() -> None:
    """Run the periodic jobs (reminders, outbox, monthly export) in the foreground."""
    import logging

    from engage.jobs import build_scheduler, jobs

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = current_app._get_current_object()
    scheduler = build_scheduler(app)
    for job in jobs(app):
        click.echo(f"job {job.id}: {job.trigger} {job.trigger_args}")
    click.echo("Scheduler running; Ctrl+C to stop.")
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        scheduler.shutdown(wait=False)


def register(app: Flask) -> None:
    app.cli.add_command(seed_command)
    app.cli.add_command(users_cli)
    app.cli.add_command(reminders_cli)
    app.cli.add_command(scheduler_command)
