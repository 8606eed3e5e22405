"""`flask companies check-scores` and `flask companies recount-scores`: the stored score and change
of each company (engage.companies.stored)."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from engage.companies import stored
from engage.extensions import db

companies_cli = AppGroup("companies", help="Companies: their stored score and change.")


@companies_cli.command("check-scores")
def check_scores_command() -> None:
    """Say whether the triggers are there and every company's stored score matches its scores (status 1 if not)."""
    found = stored.problems(db.session.connection())
    db.session.rollback()
    if found:
        for line in found:
            click.echo(f"Error: {line}", err=True)
        sys.exit(1)
    click.echo("Stored company scores: triggers present, every company matches its scores.")


@companies_cli.command("recount-scores")
@click.option("--triggers", is_flag=True, help="Also (re)create the triggers that keep the scores.")
def recount_scores_command(triggers: bool) -> None:
    """Recompute every company's stored score and change from its scores."""
    conn = db.session.connection()
    if triggers:
        stored.install(conn)
    changed = stored.recount(conn)
    db.session.commit()
    made = "Triggers created. " if triggers else ""
    click.echo(f"{made}Recounted: {changed['latest_score']} score(s) and {changed['score_change']} change(s) corrected.")
