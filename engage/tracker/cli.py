"""`flask tracker import`: onboard a team's own tracker (CSV or XLSX); a dry run shows what it would write."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import sqlalchemy as sa
from flask.cli import AppGroup

from engage import audit, clock
from engage.extensions import db
from engage.models import Campaign
from engage.tracker import parsing, service

tracker_cli = AppGroup("tracker", help="Onboarding from a team's own engagement tracker.")
#: Largest tracker file read (bytes).
MAX_FILE_BYTES = 20 * 1024 * 1024
#: Rows of each list printed (the rest are counted).
SHOWN = 200


def _fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


@tracker_cli.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--map", "mapping", multiple=True,
              help="field=Column pairs, comma separated, e.g. company=Investee,status=State (fields: "
                   + ", ".join(parsing.FIELDS) + "). Remembered for the next import.")
@click.option("--value", "values", multiple=True,
              help='What one of the team\'s words means, e.g. "status:Letter sent=mapping_requested", '
                   '"status:Excluded=closed:divested", "escalation:No reply - 2nd letter=follow_up". '
                   "Remembered for the next import.")
@click.option("--ignore", "ignore", multiple=True, help="A column not to read (its header).")
@click.option("--campaign", "campaign_ref", help="The campaign (slug or name) of rows without a campaign column.")
@click.option("--sheet", help="The XLSX sheet to read (the first visible one by default).")
@click.option("--month-first", is_flag=True,
              help="Read 03/02/2024 as 2 March (when the file's own dates do not tell); day first by default.")
@click.option("--skip-refused", is_flag=True, help="Import the other rows when some are refused.")
@click.option("--dry-run", is_flag=True, help="Show the preview; write nothing.")
def tracker_import_command(path, mapping, values, ignore, campaign_ref, sheet, month_first, skip_refused, dry_run):
    """Import a team's tracker (CSV or XLSX) as engagements with their dated history."""
    file = Path(path)
    if not file.is_file():
        _fail(f"{path}: no such file")
    if file.stat().st_size > MAX_FILE_BYTES:
        _fail(f"{path}: larger than the {MAX_FILE_BYTES // (1024 * 1024)} MB limit for a tracker")
    campaign_id = None
    if campaign_ref:
        campaign = db.session.scalar(sa.select(Campaign).where(sa.or_(Campaign.slug == campaign_ref.strip(),
                                                                      Campaign.name == campaign_ref.strip())))
        if campaign is None:
            _fail(f"--campaign: no campaign with slug or name {campaign_ref!r}")
        campaign_id = campaign.id
    try:
        options = service.Options(mapping=",".join(mapping) or None, values=parsing.parse_value_mapping(values),
                                  campaign_id=campaign_id, day_first=not month_first, skip_refused=skip_refused,
                                  ignore=[i.strip() for i in ignore if i.strip()], sheet=(sheet or "").strip() or None)
        parsing.parse_mapping(options.mapping)
    except parsing.TrackerRefused as exc:
        _fail(f"--map/--value: {exc}")
    data = file.read_bytes()
    today = clock.today()
    with audit.acting_as("cli"):
        try:
            if dry_run:
                shown, saved = service.preview(data, file.name, options, today=today), None
            else:
                saved = service.save(data, file.name, options, today=today, actor_id=None)
                shown = saved.preview
                db.session.commit()
        except sa.exc.IntegrityError:
            db.session.rollback()
            _fail("another import wrote some of these engagements at the same moment; nothing was written, run "
                  "the import again")
        except service.TrackerError as exc:
            db.session.rollback()
            for error in exc.errors[:50]:
                click.echo(f"{path}: {error}", err=True)
            if len(exc.errors) > 50:
                click.echo(f"{path}: ... and {len(exc.errors) - 50} more", err=True)
            _fail(exc.message)
    _print(shown, saved)


def _print(shown: service.Preview, saved: service.Saved | None) -> None:
    c = shown.counts()
    table = shown.parsed.table
    head = saved.summary() if saved else f"Dry run of {shown.file_name} (nothing written)"
    click.echo(head)
    if table.sheet:
        others = f"; other sheets, not read: {', '.join(table.other_sheets)} (--sheet NAME reads one)" \
            if table.other_sheets else ""
        click.echo(f"Sheet read: {table.sheet}{others}")
    click.echo(f"Header on row {table.header_row}; columns: "
               + ", ".join(f"{f} <- {c_!r}" for f, c_ in table.labels.items()))
    if table.ignored:
        click.echo(f"Columns not read: {', '.join(table.ignored)}")
    click.echo(f"Dates with a day and month in numbers read {'day' if shown.parsed.day_first else 'month'} first "
               f"({shown.parsed.day_first_why})")
    click.echo(f"Rows: {c['rows']} to import ({c['create']} new engagements, {c['update']} to update, "
               f"{c['unchanged']} unchanged), {c['refused']} refused, {c['headings']} heading row(s) skipped; "
               f"{c['companies']} new compan{'y' if c['companies'] == 1 else 'ies'}, {c['interactions']} "
               f"interaction(s), {c['moves']} dated move(s)")
    for kind, found in shown.unmapped.items():
        for word, rows in found.items():
            click.echo(f"Unmapped {kind}: {shown.parsed.words[kind][word]!r} (rows {', '.join(map(str, rows[:10]))}"
                       f"{', …' if len(rows) > 10 else ''}); map it with --value \"{kind}:"
                       f"{shown.parsed.words[kind][word]}=...\"")
    for owner, rows in shown.owners_missing.items():
        click.echo(f"Owner not found: {owner!r} ({shown.owner_reasons.get(owner, '')}; rows "
                   f"{', '.join(map(str, rows[:10]))}): imported without an owner")
    for error in shown.errors[:SHOWN]:
        click.echo(f"Refused: {error}")
    for row in shown.rows[:SHOWN]:
        if row.action == "unchanged" and not row.notes:
            continue
        company = f"{row.company_name} ({'new company' if row.company_how == 'new' else 'by ' + row.company_how})"
        steps = "; ".join(s.describe() for s in row.steps) or "nothing new"
        notes = f" [{'; '.join(row.notes)}]" if row.notes else ""
        click.echo(f"  row {row.item.row}: {row.action} {company}, {row.campaign_name}: {steps}{notes}")
    if len(shown.rows) > SHOWN:
        click.echo(f"  ... and {len(shown.rows) - SHOWN} more rows")
    if not saved and not shown.can_import:
        click.echo("This tracker cannot be imported as it is: map the words above"
                   + (", correct the refused rows or give --skip-refused" if shown.errors else ""))
