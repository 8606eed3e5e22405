"""The monthly export written as it is read (monthly.stream): the same workbook and CSV as the
in-memory export, batch after batch, with a fixed set of queries per batch (never per row).

The reference workbook, tests/data/monthly_export_reference.json, is every cell (value, number
format, bold), the frozen panes, the autofilter and the widths of each sheet of the XLSX that the
in-memory implementation (commit 2dbf96f, before the export streamed) wrote for `month_data()`:
made by running this file there with MONTHLY_REFERENCE_WRITE=1 (on SQLite; PostgreSQL's file was
the same). Nothing in it is typed by hand."""

import csv
import datetime as dt
import io
import json
import os
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import load_workbook

from engage.engagements import cycle
from engage.exports import monthly
from engage.extensions import db
from engage.models import Campaign, Fund, Holding, Interaction, Letter, Reminder, Rubric, Score
from tests import factories

TODAY = dt.date(2026, 12, 10)
REFERENCE = Path(__file__).parent / "data" / "monthly_export_reference.json"


@pytest.fixture()
def frozen(freeze_clock):
    return freeze_clock(dt.datetime(2026, 12, 10, 9, 0))


def month_data(make_user):
    """Nine engagements of seven companies in three campaigns, every kind of cell: states replayed
    from October's moves, a closing, scores and their change, letters, reminders overdue, notes cut
    short, hostile text, an engagement of a company engaged twice, a fund's holdings."""
    owner = make_user("analyst", email="olga.owner@example.org")
    campaigns = [Campaign(slug=f"stream-{n}", name=f"Stream campaign {n}") for n in range(3)]
    db.session.add_all(campaigns)
    rubrics = [Rubric(campaign=c, name=f"R{n}", version=1) for n, c in enumerate(campaigns)]
    db.session.add_all(rubrics)
    names = ["Alpha Solar", "=HYPERLINK(\"http://evil\",\"x\")", "beta metals", "Gamma Textiles", "Delta Cotton",
             "Epsilon Polysilicon", "+Zeta Batteries"]
    companies = [factories.company(name, isin=f"CNE10000{n:04d}", sector=["Solar", "Metals", "Textiles"][n % 3],
                                   country=["CN", "HK", "TW"][n % 3]) for n, name in enumerate(names)]
    engagements = []
    for n in range(9):
        engagement = factories.engagement(company=companies[n % len(companies)], campaign=campaigns[n % 3],
                                          opened_on=dt.date(2026, 8 + n % 3, 1 + n),
                                          owner=owner if n % 2 else None)
        engagements.append(engagement)
        if n % 3 == 0:
            cycle.move_stage(engagement, "mapping_requested", on=dt.date(2026, 10, 5 + n), today=TODAY, actor_id=None)
        if n % 4 == 1:
            cycle.move_escalation(engagement, "follow_up", on=dt.date(2026, 10, 20), today=TODAY, actor_id=None)
        if n == 4:
            cycle.move_stage(engagement, "closed", on=dt.date(2026, 10, 12), today=TODAY, actor_id=None,
                             outcome="resolved")
        if n == 7:  # moved after the month: October shows the state before
            cycle.move_stage(engagement, "mapping_requested", on=dt.date(2026, 11, 3), today=TODAY, actor_id=None)
        for k in range(n % 4):
            db.session.add(Interaction(
                engagement=engagement, kind=["letter", "response", "note", "email"][k],
                direction=["outbound", "inbound", "internal", "outbound"][k], occurred_on=dt.date(2026, 10, 2 + 3 * k + n),
                subject=f"@subject {n}.{k}" if n == 5 else f"Subject {n}.{k}",
                summary=("Board replied.\n\n" + "The supplier list is promised for the AGM " * 20) if k == 2 else None))
        if n % 3 == 1:
            db.session.add(Letter(engagement=engagement, kind="initial", subject="s", body="b", status="sent",
                                  sent_on=dt.date(2026, 10, 6)))
        if n % 2 == 0:
            db.session.add(Reminder(engagement=engagement, due_on=dt.date(2026, 10, 10 + n), reason="chase",
                                    created_at=dt.datetime(2026, 10, 1)))
        if n % 3 != 2:
            db.session.add_all([
                Score(engagement=engagement, rubric=rubrics[n % 3], scored_on=dt.date(2026, 9, 15),
                      total=Decimal("20.25") + n),
                Score(engagement=engagement, rubric=rubrics[n % 3], scored_on=dt.date(2026, 10, 26),
                      total=Decimal("62.50") + n)])
        engagement.next_step = f"-step {n}" if n == 7 else f"Step {n}"
        engagement.next_step_on = dt.date(2026, 12, 1 + n)
    fund = Fund(name="EM Stream")
    db.session.add_all([fund] + [Holding(fund=fund, company=company, as_of=dt.date(2026, 10, 31),
                                         market_value=Decimal(100 * (n + 1))) for n, company in enumerate(companies)])
    db.session.commit()
    return engagements


def cells(path) -> dict:
    """Every sheet of a workbook as JSON-able data: its cells (value, number format, bold), frozen
    panes, autofilter and column widths."""
    workbook = load_workbook(path)
    out = {"sheets": workbook.sheetnames}
    for sheet in workbook.worksheets:
        values = {}
        for row in sheet.iter_rows():
            for cell in row:
                if cell.value is not None:
                    value = cell.value.isoformat() if isinstance(cell.value, dt.datetime) else cell.value
                    values[cell.coordinate] = [value, cell.number_format, bool(cell.font.b)]
        out[sheet.title] = {"cells": values, "freeze": sheet.freeze_panes, "filter": sheet.auto_filter.ref,
                            "widths": {key: dim.width for key, dim in sorted(sheet.column_dimensions.items())}}
    return json.loads(json.dumps(out))


def test_streamed_workbook_is_the_in_memory_one_cell_by_cell(app, frozen, make_user, tmp_path, monkeypatch):
    month_data(make_user)
    october = monthly.parse_month("2026-10", TODAY)
    if os.environ.get("MONTHLY_REFERENCE_WRITE"):  # run at commit 2dbf96f to make the reference (see above)
        monthly.write_xlsx(monthly.build(october), str(tmp_path / "reference.xlsx"))
        REFERENCE.parent.mkdir(exist_ok=True)
        REFERENCE.write_text(json.dumps(cells(tmp_path / "reference.xlsx"), indent=1, ensure_ascii=False) + "\n")
        pytest.fail(f"wrote {REFERENCE}: run again without MONTHLY_REFERENCE_WRITE")
    reference = json.loads(REFERENCE.read_text())
    assert len(reference["Engagements"]["cells"]) > 150 and len(reference["Activity"]["cells"]) > 60
    monkeypatch.setattr(monthly, "BATCH_ROWS", 2)  # nine engagements: five batches
    batches = []
    export = monthly.stream(october, on_batch=batches.append)
    monthly.write_file(export, "xlsx", tmp_path / "streamed.xlsx")
    assert batches == [2, 4, 6, 8, 9] and export.row_count == 9
    streamed = cells(tmp_path / "streamed.xlsx")
    for sheet in reference:
        assert streamed[sheet] == reference[sheet], sheet
    # the in-memory export (the page's download) writes the same workbook
    monthly.write_xlsx(monthly.build(october), str(tmp_path / "built.xlsx"))
    assert cells(tmp_path / "built.xlsx") == reference


def test_streamed_csv_is_the_in_memory_one(app, frozen, make_user, tmp_path, monkeypatch):
    month_data(make_user)
    october = monthly.parse_month("2026-10", TODAY)
    built = io.StringIO()
    monthly.write_csv(monthly.build(october), built)
    monkeypatch.setattr(monthly, "BATCH_ROWS", 4)
    monthly.write_file(monthly.stream(october), "csv", tmp_path / "streamed.csv")
    streamed = (tmp_path / "streamed.csv").read_bytes().decode("utf-8")
    assert streamed == built.getvalue()
    rows = list(csv.DictReader(io.StringIO(streamed[1:])))
    assert len(rows) == 9 and {row["Stage at month end"] for row in rows} >= {"mapping_requested", "closed"}


def test_queries_grow_with_batches_never_with_rows(app, frozen, count_queries, tmp_path, monkeypatch):
    """A fixed set of queries per batch of engagements: 1, 2 and 3 batches of 3 rows cost a, a + b
    and a + 2b statements; more rows within a batch cost nothing more."""
    october = monthly.parse_month("2026-10", TODAY)
    monkeypatch.setattr(monthly, "BATCH_ROWS", 3)

    def add(n):
        for k in range(n):
            engagement = factories.engagement(opened_on=dt.date(2026, 9, 1))
            db.session.add_all([
                Interaction(engagement=engagement, kind="email", direction="outbound",
                            occurred_on=dt.date(2026, 10, 2), summary=f"Sent {k}"),
                Reminder(engagement=engagement, due_on=dt.date(2026, 10, 3), reason="r",
                         created_at=dt.datetime(2026, 10, 1))])
            cycle.move_stage(engagement, "mapping_requested", on=dt.date(2026, 10, 5), today=TODAY, actor_id=None)
        db.session.commit()

    def measure(fmt):
        db.session.expire_all()
        with count_queries() as counted:
            export = monthly.stream(october)
            monthly.write_file(export, fmt, tmp_path / f"x.{fmt}")
        return export.row_count, len(counted.statements)

    statements = {"xlsx": [], "csv": []}
    added = 0
    for rows in (1, 3, 6, 9):  # 1 batch, 1 batch (full), 2 batches, 3 batches
        add(rows - added)
        added = rows
        for fmt, counts in statements.items():
            counts.append(measure(fmt))
    for fmt, counts in statements.items():
        assert [rows for rows, _ in counts] == [1, 3, 6, 9]
        (_, one), (_, full), (_, two), (_, three) = counts
        assert one == full, fmt  # more rows in the same batch: no more queries
        per_batch = two - full
        assert 0 < per_batch <= 10 and three - two == per_batch, (fmt, counts)
