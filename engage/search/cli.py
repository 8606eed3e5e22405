"""`flask search check` and `flask search rebuild`: the search indexes' health (engage.search.index)."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from engage.cliutil import report_problems
from engage.extensions import db
from engage.search import index

search_cli = AppGroup("search", help="The search indexes (companies, engagements, contacts, interactions).")


@search_cli.command("check")
def check_command() -> None:
    """Say whether every search index exists, follows its table and matches its rows (status 1 if not)."""
    found = index.problems()
    db.session.rollback()
    report_problems(found, "Search indexes: all present and current.")


@search_cli.command("rebuild")
def rebuild_command() -> None:
    """Rebuild every search index from its table's rows."""
    names = index.rebuild()
    db.session.commit()
    click.echo(f"Rebuilt {len(names)} search index(es): {', '.join(names) or 'none found'}.")
