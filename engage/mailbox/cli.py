"""`flask mail fetch`: read the engagement mailbox once (the scheduler runs the same function)."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from engage import audit
from engage.mailbox.imap import MailboxUnavailable
from engage.mailbox.service import MailboxNotConfigured, fetch

mail_cli = AppGroup("mail", help="The engagement mailbox.")


@mail_cli.command("fetch")
def mail_fetch_command() -> None:
    """Read the engagement mailbox once: file replies on their engagements, the rest to triage."""
    with audit.acting_as("cli"):
        try:
            result = fetch()
        except MailboxNotConfigured as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)
        except MailboxUnavailable as exc:
            click.echo(f"Error: mailbox unavailable: {exc}. Nothing was lost: messages not flagged "
                       "as filed are read again by the next run.", err=True)
            sys.exit(2)
    for line in result.lines():
        click.echo(line)
    if result.errors:
        sys.exit(1)
