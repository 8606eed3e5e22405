"""`flask engagements check-dates` and `flask engagements recount`: the stored next follow-up and
last contact of each engagement (engage.engagements.stored)."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from engage.engagements import stored
from engage.extensions import db

engagements_cli = AppGroup("engagements", help="Engagements: their stored next follow-up and last contact.")


@engagements_cli.command("check-dates")
def check_dates_command() -> None:
    """Say whether the triggers are there and every engagement's stored dates match its rows (status 1 if not)."""
    found = stored.problems(db.session.connection())
    db.session.rollback()
    if found:
        for line in found:
            click.echo(f"Error: {line}", err=True)
        sys.exit(1)
    click.echo("Stored follow-up and contact dates: triggers present, every engagement matches its rows.")


@engagements_cli.command("recount")
@click.option("--triggers", is_flag=True, help="Also (re)create the triggers that keep the dates.")
def recount_command(triggers: bool) -> None:
    """Recompute every engagement's stored next follow-up and last contact from its rows."""
    conn = db.session.connection()
    if triggers:
        stored.install(conn)
    changed = stored.recount(conn)
    db.session.commit()
    made = "Triggers created. " if triggers else ""
    click.echo(f"{made}Recounted: {changed['next_follow_up_on']} next follow-up(s) and "
               f"{changed['last_contact_on']} last contact(s) corrected.")
