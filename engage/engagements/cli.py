"""`flask engagements check-dates` and `flask engagements recount`: the stored next follow-up and
last contact of each engagement (engage.engagements.stored)."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from engage.cliutil import check_stored, recount_stored
from engage.engagements import stored

engagements_cli = AppGroup("engagements", help="Engagements: their stored next follow-up and last contact.")


@engagements_cli.command("check-dates")
def check_dates_command() -> None:
    """Say whether the triggers are there and every engagement's stored dates match its rows (status 1 if not)."""
    check_stored(stored, "Stored follow-up and contact dates: triggers present, every engagement matches its rows.")


@engagements_cli.command("recount")
@click.option("--triggers", is_flag=True, help="Also (re)create the triggers that keep the dates.")
def recount_command(triggers: bool) -> None:
    """Recompute every engagement's stored next follow-up and last contact from its rows."""
    changed, made = recount_stored(stored, triggers)
    click.echo(f"{made}Recounted: {changed['next_follow_up_on']} next follow-up(s) and "
               f"{changed['last_contact_on']} last contact(s) corrected.")
