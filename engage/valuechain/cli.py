"""`flask valuechain import`: read a company's disclosed map, print what resolved, flagged and changed."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import sqlalchemy as sa
from flask.cli import AppGroup

from engage import audit
from engage.errors import FieldError
from engage.extensions import db
from engage.formatting import counted
from engage.identifiers import compact_isin
from engage.models import Company, MapSourceKind
from engage.validators import parse_date, whole_number
from engage.valuechain import service

valuechain_cli = AppGroup("valuechain", help="Companies' disclosed value chains.")
#: Largest map file read (bytes).
MAX_FILE_BYTES = 20 * 1024 * 1024


def _fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


def _company(text: str) -> Company | None:
    if text.isascii() and text.isdigit():  # an id past any column's range is no company (not an overflow)
        number = whole_number(text)
        return db.session.get(Company, number) if number is not None else None
    return db.session.scalar(sa.select(Company).where(Company.isin == compact_isin(text.upper())))


@valuechain_cli.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--company", "company_ref", required=True, help="The engaged company: its ISIN or id.")
@click.option("--map", "mapping", help="field=Column pairs, e.g. name=Vendor,tier=Level (fields: "
                                       + ", ".join(service.parsing.FIELDS) + ").")
@click.option("--source-kind", type=click.Choice(MapSourceKind.values()), default=MapSourceKind.ATTACHMENT.value,
              show_default=True, help="Where the company disclosed the map.")
@click.option("--source-ref", default="", help='Where exactly: "Annual report 2024, p. 112" or a URL.')
@click.option("--disclosed", help="The day the company disclosed it, YYYY-MM-DD.")
@click.option("--accept-possible", is_flag=True, help="Take possible matches (review band) as the company they may be.")
@click.option("--dry-run", is_flag=True, help="Show the preview; write nothing.")
def valuechain_import_command(path, company_ref, mapping, source_kind, source_ref, disclosed, accept_possible, dry_run):
    """Import a disclosed value-chain map (CSV, XLSX or a PDF's tables) of a company as its next version, then screen."""
    file = Path(path)
    if not file.is_file():
        _fail(f"{path}: no such file")
    if file.stat().st_size > MAX_FILE_BYTES:
        _fail(f"{path}: larger than the {MAX_FILE_BYTES // (1024 * 1024)} MB limit for value-chain maps")
    company = _company(company_ref.strip())
    if company is None:
        _fail(f"no company with ISIN or id {company_ref!r}")
    disclosed_on = None
    if disclosed:
        try:
            disclosed_on = parse_date(disclosed, "--disclosed")
        except ValueError as exc:
            _fail(str(exc))
    data = file.read_bytes()
    with audit.acting_as("cli"):
        try:
            if dry_run:
                shown, saved = service.preview(company, data, file.name, mapping, accept_possible=accept_possible), None
            else:
                saved = service.save(company, data, file.name, mapping, source_kind=source_kind, source_ref=source_ref,
                                     disclosed_on=disclosed_on, accept_possible=accept_possible)
                shown = saved.preview
                db.session.commit()
        except service.ValueChainError as exc:
            db.session.rollback()
            for error in exc.errors[:50]:
                click.echo(f"{path}: {error}", err=True)
            if len(exc.errors) > 50:
                click.echo(f"{path}: ... and {len(exc.errors) - 50} more", err=True)
            _fail(exc.message)
        except FieldError as exc:
            db.session.rollback()
            _fail(exc.message)
    _print(shown, saved)


def _print(shown: service.Preview, saved: service.Saved | None) -> None:
    rows = shown.rows
    existing = sum(r.resolution == service.EXISTING for r in rows)
    possible = sum(r.resolution == service.POSSIBLE for r in rows)
    head = (f"Map {saved.map.number} of {shown.company.name} saved" if saved
            else f"Dry run: map of {shown.company.name} (nothing written)")
    click.echo(f"{head}: {counted(len(rows), 'relationship')}; {existing} resolved to existing companies, "
               f"{len(rows) - existing} new" + (f" ({possible} with a possible match)" if possible else ""))
    if shown.ignored_columns:
        click.echo(f"Columns not read: {', '.join(shown.ignored_columns)} (no field of a map; --map field=Column "
                   f"reads a column under another name)")
    flagged = shown.flagged
    click.echo(f"Flagged: {len(flagged)}")
    for row in flagged:  # the flagged links first, with the reason
        item = row.item
        click.echo(f"  {item.name} [{item.source_ref}] → {row.describe()}")
        for note in row.flags:
            click.echo(f"    list: {note}")
        if row.region_reason:
            click.echo(f"    in the Uyghur Region: {row.region_reason}")
    click.echo("Resolved:")
    for row in rows:
        if not row.flagged:
            click.echo(f"  {row.item.name} [{row.item.source_ref}] → {row.describe()}")
    click.echo(shown.diff.summary())
    for line in shown.diff.as_json()["lines"][:200]:
        click.echo(f"  {line}")
    if saved and saved.screening is not None:
        result = saved.screening
        click.echo(f"Screened {counted(result.companies_checked, 'company', 'companies')}: "
                   f"{counted(len(result.created), 'new risk flag')}, "
                   f"{counted(len(result.queued), 'new possible match', 'new possible matches')} to review")
        for change in result.gained:
            via = f", linked via {change.linked_via}" if change.linked_via else ""
            click.echo(f"  {change.company}: {change.source} ({change.citation}; entry “{change.entry}”{via})")
