"""What the `check` and `recount` commands of the stored figures (and the search indexes) share:
reporting what is wrong with status 1, and a repair in one transaction."""

from __future__ import annotations

import sys
from typing import Iterable

import click

from engage.extensions import db


def report_problems(found: Iterable[str], all_right: str) -> None:
    """Print each problem as an error and exit with status 1; print `all_right` when there is none."""
    found = list(found)
    if found:
        for line in found:
            click.echo(f"Error: {line}", err=True)
        sys.exit(1)
    click.echo(all_right)


def check_stored(module, all_right: str) -> None:
    """`module.problems(conn)` read in a transaction that writes nothing, then reported."""
    found = module.problems(db.session.connection())
    db.session.rollback()
    report_problems(found, all_right)


def recount_stored(module, triggers: bool):
    """`module.recount(conn)` (after `module.install(conn)` when `triggers`), committed; returns
    what the recount returned and the sentence's start saying whether the triggers were made."""
    conn = db.session.connection()
    if triggers:
        module.install(conn)
    changed = module.recount(conn)
    db.session.commit()
    return changed, "Triggers created. " if triggers else ""
