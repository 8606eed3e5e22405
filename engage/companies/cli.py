"""`flask companies check-scores` and `flask companies recount-scores`: the stored score and change
of each company (engage.companies.stored)."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from engage.cliutil import check_stored, recount_stored
from engage.companies import stored

companies_cli = AppGroup("companies", help="Companies: their stored score and change.")


@companies_cli.command("check-scores")
def check_scores_command() -> None:
    """Say whether the triggers are there and every company's stored score matches its scores (status 1 if not)."""
    check_stored(stored, "Stored company scores: triggers present, every company matches its scores.")


@companies_cli.command("recount-scores")
@click.option("--triggers", is_flag=True, help="Also (re)create the triggers that keep the scores.")
def recount_scores_command(triggers: bool) -> None:
    """Recompute every company's stored score and change from its scores."""
    changed, made = recount_stored(stored, triggers)
    click.echo(f"{made}Recounted: {changed['latest_score']} score(s) and {changed['score_change']} change(s) corrected.")
