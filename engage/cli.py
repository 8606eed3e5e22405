"""Flask CLI commands. Thin: parse, call a service, commit once, print.

Refused input exits non-zero with a one-line reason on stderr.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import ExitStack
from pathlib import Path

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import AppGroup

from engage import audit, clock, names
from engage.admin.service import UserError, create_user
from engage.cliutil import check_stored, recount_stored
from engage.auth.service import find_user, lift_pause
from engage.demo import load_demo
from engage.exports import monthly
from engage.extensions import db
from engage.formatting import format_date, format_datetime
from engage.holdings.screening import exposures
from engage.holdings import importer, parsing, screening_stored
from engage.holdings import service as holdings_service
from engage.holdings.parsing import ENCODINGS
from engage.lists import screening as list_screening
from engage.lists import service as lists_service
from engage.jobs import build_scheduler, dashboard_figures, housekeeping, jobs, reminders_tick
from engage.mailbox.cli import mail_cli
from engage.search.cli import search_cli
from engage.engagements.cli import engagements_cli
from engage.companies.cli import companies_cli
from engage.reminders import stored as reminder_counts
from engage.tracker.cli import tracker_cli
from engage.valuechain.cli import valuechain_cli
from engage.background.cli import jobs_cli
from engage.models import Fund, Role
from engage.seeding import SeedError, load_reference
from engage.synth import SynthError, planned_rows, synthesize
from engage.validators import parse_date, parse_datetime


def fail(message: str) -> None:
    """Print a one-line reason on stderr and exit with status 1."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


@click.command("seed")
@click.option("--demo", is_flag=True, help="Also load demo users, funds and engagements.")
def seed_command(demo: bool) -> None:
    """Load reference data from seeds/ (idempotent); with --demo, a demo data set too."""

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


@users_cli.command("unlock")
@click.argument("email")
def unlock_user_command(email: str) -> None:
    """Forget a user's failed sign-ins and lift any sign-in pause."""

    user = find_user(email)
    if user is None:
        fail(f"no user with the email {email.strip().lower()!r}")
    with audit.acting_as("cli"):
        lift_pause(user, "from the command line")
        db.session.commit()
    click.echo(f"Sign-in of {user.email} unpaused; failed attempts forgotten.")


reminders_cli = AppGroup("reminders", help="Follow-up reminders and their emails.")


def parse_now(value: str | None):
    """--now as an ISO date-time (UTC when no offset is given) in the accepted range, or the clock's now."""

    if value is None:
        return clock.utcnow()
    try:
        return parse_datetime(value, "--now")
    except ValueError as exc:
        fail(str(exc))


@reminders_cli.command("run")
@click.option("--now", "now_text", help="Run as if it were this UTC date-time (ISO 8601).")
def reminders_run_command(now_text: str | None) -> None:
    """One tick, the scheduler's reminders-tick job: apply the follow-up rules, notify owners, drain the outbox."""
    now = parse_now(now_text)
    with audit.acting_as("cli"):
        lines = reminders_tick(now)
    click.echo(f"Reminders tick at {format_datetime(now)}")
    for line in lines:
        click.echo(f"  {line}")


@reminders_cli.command("check-counts")
def reminders_check_counts_command() -> None:
    """Say whether the triggers are there and the stored counts per owner and day match the reminders (status 1 if not)."""
    check_stored(reminder_counts, "Stored reminder counts: triggers present, every count matches the waiting reminders.")


@reminders_cli.command("recount")
@click.option("--triggers", is_flag=True, help="Also (re)create the triggers that keep the counts.")
def reminders_recount_command(triggers: bool) -> None:
    """Rebuild the stored counts of waiting reminders per owner and day from the reminders."""
    wrong, made = recount_stored(reminder_counts, triggers)
    click.echo(f"{made}Recounted: {wrong} stored count(s) corrected.")


@click.command("housekeeping")
@click.option("--now", "now_text", help="Run as if it were this UTC date-time (ISO 8601).")
def housekeeping_command(now_text: str | None) -> None:
    """Delete import previews never confirmed and cache files past their age (the scheduler does it hourly)."""

    for line in housekeeping(parse_now(now_text)):
        click.echo(line)


@click.command("dashboard-figures")
@click.option("--now", "now_text", help="Count as if it were this UTC date-time (ISO 8601).")
def dashboard_figures_command(now_text: str | None) -> None:
    """Count the dashboard's figures and store them: the scheduler's dashboard-figures job, once."""
    with audit.acting_as("cli"):
        for line in dashboard_figures(parse_now(now_text)):
            click.echo(line)


@click.command("scheduler")
def scheduler_command() -> None:
    """Run the periodic jobs (reminders, outbox, monthly export) in the foreground."""

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


holdings_cli = AppGroup("holdings", help="Fund holdings.")


@holdings_cli.command("check-screening")
def holdings_check_screening_command() -> None:
    """Say whether the screening pages' triggers are there and their stored figures, when in use, equal a count now (status 1 if not)."""
    conn = db.session.connection()
    found = [f"missing: {name}" for name in screening_stored.missing_triggers(conn)]
    found += [f"stored figures {kind} differ from a count now" for kind in screening_stored.drift()]
    db.session.rollback()
    if found:
        for line in found:
            click.echo(f"Error: {line}", err=True)
        sys.exit(1)
    click.echo("Screening pages: triggers present, the stored figures in use equal a count now.")


@holdings_cli.command("forget-screening")
@click.option("--triggers", is_flag=True, help="Also (re)create the triggers that tell when the stored figures may be used.")
def holdings_forget_screening_command(triggers: bool) -> None:
    """Forget the screening pages' stored figures: the next request counts them again."""
    if triggers:
        screening_stored.install(db.session.connection())
    forgotten = screening_stored.forget()
    db.session.commit()
    click.echo(f"{'Triggers created. ' if triggers else ''}{forgotten} stored screening figure(s) forgotten.")


@holdings_cli.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--fund", "fund_name", required=True, help="Fund name (created if --create-fund is given).")
@click.option("--as-of", "as_of_text", help="Holdings date YYYY-MM-DD when the file does not say.")
@click.option("--map", "mapping_text", help="Column mapping, e.g. isin=ISIN,name=Security,market_value=Value")
@click.option("--create-fund", is_flag=True, help="Create the fund if it does not exist.")
@click.option("--decimal", type=click.Choice(["point", "comma"]),
              help="The file's decimal separator (1,234.56 is point, 1.234,56 is comma); read from the values if not given.")
@click.option("--partial", is_flag=True,
              help="The file deliberately lists only part of the fund: do not refuse it for weights far below 100 % "
                   "or a missing provider trailer.")
@click.option("--encoding", type=click.Choice(list(ENCODINGS)),
              help="The text encoding of a CSV file; read from the bytes if not given (an ambiguous file is refused).")
@click.option("--sheet", "sheet_name", help="The XLSX sheet to read; the first visible sheet if not given.")
def holdings_import_command(path, fund_name, as_of_text, mapping_text, create_fund, decimal, partial, encoding,
                            sheet_name):
    """Import a holdings file (iShares CSV, SPDR XLSX, or CSV/XLSX with a mapping) in one transaction.

    It replaces the fund's snapshot for that date, if there is one, and says which import it replaces.
    """
    file = Path(path)
    if not file.is_file():
        fail(f"{path}: no such file")
    as_of = None
    if as_of_text:
        try:
            as_of = parse_date(as_of_text, "--as-of")
        except ValueError as exc:
            fail(str(exc))
    if db.session.scalar(sa.select(Fund.id).where(Fund.name == fund_name)) is None and not create_fund:
        fail(f"no fund called {fund_name!r}; add --create-fund to create it")
    limit = current_app.config["HOLDINGS_MAX_BYTES"]
    if file.stat().st_size > limit:
        fail(f"{path}: larger than the {limit // (1024 * 1024)} MB limit for holdings files")
    try:
        options = holdings_service.ReadOptions(mapping=parsing.parse_mapping(mapping_text), decimal=decimal, partial=partial,
                                      as_of=as_of, encoding=encoding, sheet=sheet_name)
    except parsing.FileRefused as exc:
        fail(f"{path}: {exc}")
    data = file.read_bytes()
    with audit.acting_as("cli"):
        try:
            with ExitStack() as stack:
                bars = []

                def progress(count, total):
                    if not bars:  # the bar starts once the file is read and checked
                        bars.append(stack.enter_context(click.progressbar(length=total, label="Importing",
                                                                          file=sys.stderr)))
                    bars[0].update(count - bars[0].pos)

                result = holdings_service.import_file(data, file.name, options, fund_name=fund_name, create_fund=create_fund,
                                             given="--as-of", progress=progress)
            db.session.commit()
        except holdings_service.ImportRefused as exc:
            db.session.rollback()
            for error in exc.errors[:50]:
                click.echo(f"{path}: {error}", err=True)
            if exc.errors:
                more = len(exc.errors) - 50
                fail(f"{path}: {len(exc.errors)} problem(s){f' ({more} not shown)' if more > 0 else ''}; "
                     f"nothing imported")
            fail(f"{path}: {exc.message}")
        except importer.ImportBusy as exc:
            db.session.rollback()
            fail(f"{path}: {exc}")
        except sa.exc.SQLAlchemyError as exc:
            db.session.rollback()
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
            fail(f"{path}: the database refused the import ({reason}); nothing was imported")
    for line in result.lines():
        click.echo(line)
    for line in result.warnings():
        click.echo(f"Warning: {line}", err=True)


lists_cli = AppGroup("lists", help="Public lists used for screening.")


@lists_cli.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--format", "format_", type=click.Choice(lists_service.FORMATS),
              help="The file's layout; told from its content when omitted.")
@click.option("--list", "list_name", help="A team's own list: its name (csv). An OpenSanctions file: the list it is.")
@click.option("--sources", help='Consolidated Screening List sources to load, e.g. "Entity List,MEU,SDN" (default: all known).')
@click.option("--retrieved", help="The day the file was downloaded, YYYY-MM-DD (default: today).")
@click.option("--mapping", help="A team's CSV: target=Column pairs, e.g. name=Company,aliases=Other names,date=Added.")
@click.option("--older", is_flag=True, help="The file was retrieved before the loaded version: load it anyway.")
def lists_import_command(path, format_, list_name, sources, retrieved, mapping, older):
    """Load a list file as published (a new version of each list it holds), print its diff, then screen."""

    file = Path(path)
    if not file.is_file():
        fail(f"{path}: no such file")
    retrieved_on = None
    if retrieved:
        try:
            retrieved_on = parse_date(retrieved, "--retrieved")
        except ValueError as exc:
            fail(str(exc))
    size = file.stat().st_size
    if size > current_app.config["MAX_LIST_FILE_BYTES"]:
        fail(f"{path}: {size} bytes; list files of at most {current_app.config['MAX_LIST_FILE_BYTES']} bytes are read")
    with audit.acting_as("cli"):
        try:
            shown, saved = lists_service.save(file.read_bytes(), file.name, format_, list_name,
                                              lists_service.parse_sources(sources), mapping, retrieved_on, older=older)
            db.session.commit()
        except lists_service.ListError as exc:
            db.session.rollback()
            for error in exc.errors[:50]:
                click.echo(f"{path}: {error}", err=True)
            fail(f"{path}: {exc.message}")
    for diff, version in zip(shown.diffs, saved):
        click.echo(f"Version {version.id}: {diff.summary()}")
        for line in diff.lines()[:200]:
            click.echo(line)
    for what, count in shown.parsed.skipped.items():
        click.echo(f"Skipped {count} {what}")
    with audit.acting_as("cli"):
        result = list_screening.after_import(saved)
        db.session.commit()
    _print_screening(result)


@lists_cli.command("versions")
@click.option("--list", "list_name", help="Only this list.")
def lists_versions_command(list_name):
    """The versions of each list, newest first: file, retrieved date, SHA-256, entries and changes."""

    found = lists_service.versions(list_name)
    if not found:
        click.echo(f"No versions of {list_name}." if list_name else "No list loaded yet.")
        return
    for v in found:
        click.echo(f"{v.name} version {v.id}: {v.file_name} ({v.format}), retrieved {format_date(v.retrieved_on)}, "
                   f"sha256 {v.sha256[:12]}, {v.entry_count} entries, +{v.added_count} -{v.removed_count} "
                   f"~{v.changed_count}" + (f", after version {v.previous_id}" if v.previous_id else ""))


@lists_cli.command("name-forms")
@click.option("--write", is_flag=True, help="Rewrite the stale or missing readings (else only report them).")
def lists_name_forms_command(write):
    """Check the matching's stored readings of names (companies, aliases, list entries); exit 1 if any is stale.

    A stale reading is never used (the name is read again each time), only slower: after an upgrade
    of the name-reading code or its libraries, `--write` stores them again."""
    found = names.refresh(db.session.connection(), write=write)
    stale = 0
    for table, (count, total) in found.items():
        stale += count
        click.echo(f"{table}: {total} rows, {count} {'rewritten' if write else 'stale or missing'}")
    if write:
        db.session.commit()
    elif stale:
        sys.exit(1)


@click.command("screen")
@click.option("--fund", "fund_name", help="Only companies this fund holds.")
def screen_command(fund_name):
    """Screen companies against the lists; print the flagged holdings, the totals per fund and list, what is new."""

    fund = None
    if fund_name:
        fund = db.session.scalar(sa.select(Fund).where(Fund.name == fund_name))
        if fund is None:
            fail(f"no fund called {fund_name!r}")
    with audit.acting_as("cli"):
        result = list_screening.screen(fund)
        db.session.commit()
    _print_screening(result)
    new_ids = {flag.id for flag in list_screening.new_since_last_screening(fund)}
    for e in exposures([fund.id] if fund else None, detail=True):
        _print_exposure(e, new_ids)


def _print_screening(result) -> None:
    """What a screening changed: flags gained and ended, questions for the match review, emails."""
    click.echo(f"Screened {result.companies_checked} companies: {len(result.created)} new risk flag(s), "
               f"{len(result.ended)} ended, {len(result.queued)} new possible match(es) to review"
               + (f", {result.emails} email(s) queued" if result.emails else ""))
    for change in result.gained:
        via = f", linked via {change.linked_via}" if change.linked_via else ""
        click.echo(f"  {change.company}: {change.source} ({change.citation}; entry “{change.entry}”{via}; "
                   f"version {change.version})")
    for change in result.lost:
        click.echo(f"  ended: {change.company}: {change.source} ({change.citation}; entry “{change.entry}”; "
                   f"version {change.version})")


def _print_exposure(e, new_ids: set[int]) -> None:
    """One fund's totals per list (direct, then linked apart, then signals) and its flagged holdings."""
    currency = e.fund.base_currency

    def part(p):
        share = f" = {p.share} % of the fund" if p.share is not None else ""
        value = f"{p.value:,.2f} {currency}" if p.value_known else ""
        unknown = f"value unknown for {p.unknown}" if p.unknown else ""
        also = f" ({p.also_official} also on an official list)" if p.also_official else ""
        return (f"{p.positions} compan{'y' if p.positions == 1 else 'ies'}, "
                f"{', '.join(filter(None, (value, unknown)))}{share}{also}")

    click.echo(f"{e.fund.name} ({format_date(e.as_of) if e.as_of else 'no holdings'}): "
               f"on an official list: {part(e.official)}")
    if e.unknown:
        click.echo(f"  value unknown for {e.unknown} of the fund's {e.positions} positions" +
                   ("" if e.value_known else ": no share can be given"))
    for p in e.lists:
        if p.positions:
            click.echo(f"  {p.label}: {part(p)}")
    for p in e.linked:
        if p.positions:
            click.echo(f"  linked through a listed parent, not counted as exposure: {p.label}: {part(p)}")
    for p in e.signals:
        if p.positions:
            click.echo(f"  not counted as exposure: {p.label}: {part(p)}")
    rows = [(row, row.official_flags) for row in e.rows] + [(row, row.linked_flags) for row in e.linked_rows]
    if rows:
        click.echo("  flagged holdings:")
    for row, flags in rows:
        value = f"{row.holding.market_value:,.2f} {currency}" if row.holding.market_value is not None else "value unknown"
        weight = f"{row.holding.weight:.3f} %" if row.holding.weight is not None else "weight unknown"
        for flag in flags:
            how = f"linked via {flag.linked_via.name}" if flag.is_linked and flag.linked_via else flag.link
            version = list_screening.version_label(flag.version) if flag.version else "no list version (entered by hand)"
            new = " [new since the last screening]" if flag.id in new_ids else ""
            click.echo(f"    {row.company.name}: {flag.source_label} ({how}), {value}, {weight}, version {version}{new}")
    new_here = sum(1 for row, flags in rows for flag in flags if flag.id in new_ids)
    if e.as_of is not None:
        click.echo(f"  new since the last screening: {new_here} flagged holding(s)")


export_cli = AppGroup("export", help="Exports for the committee.")


@export_cli.command("monthly")
@click.option("--month", required=True, help="YYYY-MM")
@click.option("--format", "fmt", type=click.Choice(["csv", "xlsx"]), required=True)
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="File to write.")
@click.option("--campaign", "campaign_slug", help="Only this campaign (its slug, e.g. xuar).")
@click.option("--owner", "owner_email", help="Only engagements this user owns (email).")
@click.option("--fund", "fund_name", help="Only companies this fund holds.")
def export_monthly_command(month, fmt, out_path, campaign_slug, owner_email, fund_name):
    """Write the monthly status export; the file appears only once it is complete."""

    try:
        asked = monthly.parse_request({"month": month, "format": fmt, "campaign": campaign_slug, "owner": owner_email,
                                       "fund": fund_name}, clock.today(), names=True)
    except monthly.ExportError as exc:
        fail(exc.message if exc.field in ("month", "format") else f"--{exc.field}: {exc.message[0].lower()}{exc.message[1:]}")
    parsed = asked.month
    with click.progressbar(length=3, label=f"Exporting {parsed}", file=sys.stderr) as bar:
        export = monthly.stream(parsed, asked.filters, cut_off=clock.today())  # read while it is written
        bar.update(1)
        try:
            monthly.write_file(export, fmt, out_path)
        except monthly.ExportError as exc:
            fail(exc.message)
        bar.update(2)
    click.echo(f"Wrote {export.row_count} engagements for {parsed} to {out_path}")


@click.command("synth")
@click.option("--companies", default=10_000, show_default=True, type=int, help="How many companies.")
@click.option("--seed", default=1, show_default=True, type=int, help="Random seed (same seed, same data).")
def synth_command(companies, seed):
    """Build a synthetic data set at scale (for benchmarks), in bulk."""

    with click.progressbar(length=planned_rows(companies), label="Synthesising", file=sys.stderr) as bar:
        try:
            counts = synthesize(companies, seed, progress=bar.update)
        except SynthError as exc:
            db.session.rollback()
            fail(str(exc))
    click.echo("Synthesised: " + ", ".join(f"{n:,} {what}" for what, n in counts.items()))


def register(app: Flask) -> None:
    app.cli.add_command(seed_command)
    app.cli.add_command(users_cli)
    app.cli.add_command(reminders_cli)
    app.cli.add_command(scheduler_command)
    app.cli.add_command(housekeeping_command)
    app.cli.add_command(dashboard_figures_command)
    app.cli.add_command(holdings_cli)
    app.cli.add_command(lists_cli)
    app.cli.add_command(screen_command)
    app.cli.add_command(search_cli)
    app.cli.add_command(engagements_cli)
    app.cli.add_command(companies_cli)
    app.cli.add_command(export_cli)
    app.cli.add_command(synth_command)
    app.cli.add_command(mail_cli)
    app.cli.add_command(valuechain_cli)
    app.cli.add_command(jobs_cli)
    app.cli.add_command(tracker_cli)
