"""The monthly status export (state at month end, CSV and XLSX, formula safety) and reports."""

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from engage.exports import monthly
from engage.engagements import cycle
from engage.extensions import db
from engage.models import ExportRun, Fund, Holding, Interaction, Letter, Reminder, Score
from tests import factories

TODAY = dt.date(2026, 12, 10)


@pytest.fixture()
def frozen(freeze_clock):
    return freeze_clock(dt.datetime(2026, 12, 10, 9, 0))


def build_history(owner=None):
    """An engagement that moved in October and again in November."""
    engagement = factories.engagement(company=factories.company("October Co", isin="CNE100000PM8", sector="Solar"),
                                      opened_on=dt.date(2026, 9, 1), owner=owner)
    today = dt.date(2026, 12, 10)
    cycle.move_stage(engagement, "mapping_requested", on=dt.date(2026, 10, 5), today=today, actor_id=None)
    cycle.move_escalation(engagement, "follow_up", on=dt.date(2026, 10, 20), today=today, actor_id=None)
    db.session.add_all([
        Interaction(engagement=engagement, kind="letter", direction="outbound", occurred_on=dt.date(2026, 10, 5)),
        Interaction(engagement=engagement, kind="response", direction="inbound", occurred_on=dt.date(2026, 10, 25)),
        Interaction(engagement=engagement, kind="note", direction="internal", occurred_on=dt.date(2026, 10, 28)),
        Letter(engagement=engagement, kind="initial", subject="s", body="b", status="sent", sent_on=dt.date(2026, 10, 5)),
        Reminder(engagement=engagement, due_on=dt.date(2026, 11, 4), reason="reply due",
                 created_at=dt.datetime(2026, 10, 5)),
    ])
    from engage.models import Campaign, Rubric

    rubric = Rubric(campaign=db.session.get(Campaign, engagement.campaign_id), name="R", version=1)
    db.session.add_all([Score(engagement=engagement, rubric=rubric, scored_on=dt.date(2026, 9, 15), total=Decimal("20")),
                        Score(engagement=engagement, rubric=rubric, scored_on=dt.date(2026, 10, 26), total=Decimal("35"))])
    db.session.commit()
    return engagement


def csv_rows(export) -> list[dict]:
    out = io.StringIO()
    monthly.write_csv(export, out)
    text = out.getvalue()
    assert text.startswith("\ufeff") and "\r\n" in text
    return list(csv.DictReader(io.StringIO(text[1:])))


def test_export_shows_the_state_at_month_end(app, frozen):
    engagement = build_history()
    october = monthly.parse_month("2026-10", TODAY)
    rows = csv_rows(monthly.build(october))
    assert len(rows) == 1
    row = rows[0]
    assert (row["Stage at month end"], row["Escalation at month end"]) == ("mapping_requested", "follow_up")
    assert row["Last contact"] == "2026-10-25"  # notes are not contact
    assert (row["Letters sent"], row["Responses received"], row["Interactions in month"]) == ("1", "1", "3")
    assert (row["Latest score"], row["Score change in month"]) == ("35.00", "15.00")
    assert row["Next follow-up"] == "2026-11-04" and row["ISIN"] == "CNE100000PM8"
    before = csv_rows(monthly.build(october))

    # November: the company replies, the stage and score move, a reminder is completed
    cycle.move_stage(engagement, "acknowledged", on=dt.date(2026, 11, 10), today=TODAY, actor_id=None)
    cycle.move_stage(engagement, "closed", on=dt.date(2026, 12, 1), today=TODAY, actor_id=None, outcome="resolved")
    db.session.add(Interaction(engagement=engagement, kind="response", direction="inbound",
                               occurred_on=dt.date(2026, 11, 10)))
    db.session.commit()
    assert csv_rows(monthly.build(october)) == before
    november = csv_rows(monthly.build(monthly.parse_month("2026-11", TODAY)))[0]
    assert november["Stage at month end"] == "acknowledged" and november["Outcome"] == ""
    december = csv_rows(monthly.build(monthly.parse_month("2026-12", TODAY), cut_off=TODAY))[0]
    assert (december["Stage at month end"], december["Outcome"], december["Closed"]) == ("closed", "resolved", "2026-12-01")
    august = monthly.build(monthly.parse_month("2026-08", TODAY))
    assert august.rows == []  # not yet opened


def test_hostile_text_is_never_a_formula(app, frozen, tmp_path):
    hostile = ["=HYPERLINK(\"http://evil\",\"x\")", "+1+2", "-2+3", "@SUM(A1)", "\tTab Co", "\rCR Co"]
    for name in hostile:
        engagement = factories.engagement(company=factories.company(name), opened_on=dt.date(2026, 10, 1))
        db.session.add(Interaction(engagement=engagement, kind="email", direction="outbound",
                                   occurred_on=dt.date(2026, 10, 2), subject="=cmd|' /C calc'!A0"))
    db.session.commit()
    export = monthly.build(monthly.parse_month("2026-10", TODAY))
    companies = [row["Company"] for row in csv_rows(export)]
    assert sorted(companies) == sorted("'" + name for name in hostile)
    path = tmp_path / "export.xlsx"
    monthly.write_xlsx(export, str(path))
    workbook = load_workbook(path)
    assert workbook.sheetnames == ["Engagements", "Summary", "Activity"]
    for sheet in workbook.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (sheet.title, cell.coordinate, cell.value)
    names = [workbook["Engagements"].cell(row=r, column=1).value for r in range(3, 3 + len(hostile))]
    assert all(name.startswith("'") for name in names)
    assert workbook["Activity"].cell(row=3, column=5).value == "'=cmd|' /C calc'!A0"


def october_team_lead_data():
    """build_history's engagement, plus what the team lead's columns and blocks read."""
    engagement = build_history()
    engagement.next_step, engagement.next_step_on = "Call IR about the supplier list", dt.date(2026, 12, 15)
    note = db.session.scalar(sa.select(Interaction).where(Interaction.engagement_id == engagement.id,
                                                          Interaction.kind == "note"))
    note.summary = "Board replied.\n\n" + "The supplier list is promised for the AGM " * 20
    db.session.add(Reminder(engagement=engagement, due_on=dt.date(2026, 10, 20), reason="chase",
                            created_at=dt.datetime(2026, 10, 1)))
    rounded = factories.engagement(company=factories.company("Rounding Co"), opened_on=dt.date(2026, 9, 1))
    from engage.models import Campaign, Rubric

    rubric = Rubric(campaign=db.session.get(Campaign, rounded.campaign_id), name="R2", version=1)
    db.session.add(Score(engagement=rounded, rubric=rubric, scored_on=dt.date(2026, 10, 3), total=Decimal("62.50")))
    closed = factories.engagement(company=factories.company("Closed Co"), opened_on=dt.date(2026, 9, 1))
    cycle.move_stage(closed, "closed", on=dt.date(2026, 10, 12), today=TODAY, actor_id=None, outcome="resolved")
    earlier = factories.engagement(company=factories.company("Sold Co"), opened_on=dt.date(2026, 2, 1))
    cycle.move_stage(earlier, "closed", on=dt.date(2026, 3, 2), today=TODAY, actor_id=None, outcome="divested")
    fund = Fund(name="EM")
    db.session.add_all([fund, Holding(fund=fund, company=engagement.company, as_of=dt.date(2026, 10, 31),
                                      market_value=Decimal("300")),
                        Holding(fund=fund, company=factories.company("Other"), as_of=dt.date(2026, 10, 31),
                                market_value=Decimal("700"))])
    db.session.commit()
    return engagement


def table(sheet) -> dict[str, dict]:
    """A table sheet's rows by their first cell, each a dict by the header (row 2)."""
    header = [c.value for c in sheet[2]]
    return {row[0].value: {h: cell for h, cell in zip(header, row)} for row in sheet.iter_rows(min_row=3)}


def test_xlsx_reads_as_is_labels_formats_title_and_widths(app, frozen, tmp_path):
    october_team_lead_data()
    path = tmp_path / "october.xlsx"
    monthly.write_file(monthly.build(monthly.parse_month("2026-10", TODAY)), "xlsx", path)
    workbook = load_workbook(path)
    assert workbook.sheetnames == ["Engagements", "Summary", "Activity"]
    for sheet in workbook.worksheets:  # every sheet: the title row, widths, one date format
        title = sheet["A1"].value
        assert title.startswith("Engage monthly status export, October 2026: state at the month's end, 31 Oct 2026 · ")
        assert title.endswith("Filters: none (every engagement open during the month)"), title
        assert sheet["A1"].font.b
        widths = {}  # column number -> width (one <col> element may cover neighbours of the same width)
        for dim in sheet.column_dimensions.values():
            widths.update(dict.fromkeys(range(dim.min, dim.max + 1), dim.width))
        used = {cell.column for row in sheet.iter_rows(min_row=2) for cell in row if cell.value is not None}
        assert used and all(widths.get(column, 0) > 8 for column in used), (sheet.title, widths, sorted(used))
        dates = [cell for row in sheet.iter_rows() for cell in row if isinstance(cell.value, dt.datetime)]
        assert dates and {cell.number_format for cell in dates} == {"dd mmm yyyy"}, sheet.title

    sheet = workbook["Engagements"]
    assert sheet.freeze_panes == "A3" and sheet.auto_filter.ref == "A2:Z5"  # the header row and 3 engagements
    rows = table(sheet)
    assert list(rows) == ["Closed Co", "October Co", "Rounding Co"]
    row = rows["October Co"]
    assert (row["Stage at month end"].value, row["Escalation at month end"].value) == ("Mapping requested", "Follow up")
    assert row["Opened"].value == dt.datetime(2026, 9, 1) and row["Opened"].number_format == "dd mmm yyyy"
    assert (row["Latest score"].value, row["Latest score"].number_format) == (35, "0")
    assert (row["Score change in month"].value, row["Score change in month"].number_format) == (15, "+0;-0;0")
    assert (row["Letters sent"].value, row["Letters sent"].number_format) == (1, "0")
    # the earliest reminder open at month end was due 20 Oct: 11 days late on 31 Oct
    assert row["Next follow-up"].value == dt.datetime(2026, 10, 20)
    assert (row["Days overdue"].value, row["Days overdue"].number_format) == (11, "0")
    assert row["Next step"].value == "Call IR about the supplier list"
    assert row["Next step by"].value == dt.datetime(2026, 12, 15)
    note = row["Latest note"].value
    whole = "Board replied. " + " ".join(["The supplier list is promised for the AGM"] * 20)
    assert note.endswith("…") and len(note) <= monthly.NOTE_MAX and "\n" not in note
    assert whole.startswith(note[:-1]) and whole[len(note) - 1] == " "  # cut between words, on one line
    assert rows["Rounding Co"]["Latest score"].value == 63  # 62.50 shows as 63, as on the page
    assert rows["Rounding Co"]["Days overdue"].value is None and rows["Rounding Co"]["Latest note"].value is None
    assert (rows["Closed Co"]["Stage at month end"].value, rows["Closed Co"]["Outcome"].value) == ("Closed", "Resolved")
    header = [c.value for c in sheet[2]]
    assert all(c.font.b for c in sheet[2]) and header[0] == "Company" and "Relationships disclosed" in header

    lines = [tuple(c.value for c in row[:3]) for row in workbook["Summary"].iter_rows()]
    summary = {line[0]: line[1:] for line in lines if line[0]}
    assert summary["Engagements"][0] == 3 and summary["Companies engaged"][0] == 3
    assert summary["Mapping requested"][0] == 1 and summary["Follow up"][0] == 1 and summary["Closed"][0] == 1
    assert "mapping_requested" not in summary and "mapping requested" not in summary
    # By outcome: closed in October, and closed by its end (the divestment in March too)
    assert summary["By outcome"] == ("Closed in the month", "Closed by the month's end")
    assert summary["Resolved"] == (1, 1) and summary["Divested"] == (0, 1) and summary["Dropped"] == (0, 0)
    share = next(row for row in workbook["Summary"].iter_rows() if row[0].value == "EM")
    assert share[1].value == dt.datetime(2026, 10, 31) and share[1].number_format == "dd mmm yyyy"
    assert (share[2].value, share[2].number_format) == (0.3, "0.0%")  # 300 of 1,000 under engagement

    activity = workbook["Activity"]
    assert activity.freeze_panes == "A3" and activity.auto_filter.ref.startswith("A2")
    assert [c.value for c in activity[2]] == ["Date", "Company", "Kind", "Direction", "Subject"]
    kinds = [(row[2].value, row[3].value) for row in activity.iter_rows(min_row=3) if row[1].value == "October Co"]
    assert kinds == [("Letter", "Outbound"), ("Response", "Inbound"), ("Note", "Internal")]


def test_by_outcome_is_left_out_when_nothing_ever_closed(app, frozen, tmp_path):
    build_history()
    path = tmp_path / "october.xlsx"
    monthly.write_file(monthly.build(monthly.parse_month("2026-10", TODAY)), "xlsx", path)
    labels = [row[0] for row in load_workbook(path)["Summary"].iter_rows(values_only=True)]
    assert "By outcome" not in labels and "Resolved" not in labels
    assert "By stage at month end" in labels


def test_csv_stays_machine_readable_with_the_new_columns(app, frozen):
    october_team_lead_data()
    rows = {r["Company"]: r for r in csv_rows(monthly.build(monthly.parse_month("2026-10", TODAY)))}
    row = rows["October Co"]
    # codes, ISO dates and exact scores: what a program reads back (the XLSX is for people)
    assert (row["Stage at month end"], row["Escalation at month end"]) == ("mapping_requested", "follow_up")
    assert (row["Days overdue"], row["Next follow-up"]) == ("11", "2026-10-20")
    assert (row["Next step"], row["Next step by"]) == ("Call IR about the supplier list", "2026-12-15")
    assert row["Latest note"].startswith("Board replied. The supplier") and row["Latest note"].endswith("…")
    assert rows["Rounding Co"]["Latest score"] == "62.50" and rows["Rounding Co"]["Days overdue"] == ""
    assert rows["Closed Co"]["Outcome"] == "resolved"
    assert list(row)[:2] == ["Company", "ISIN"]  # the header is line 1: no title row in the CSV


def test_title_row_names_the_filters_and_a_month_not_over(client, login_as, frozen, make_user):
    login_as("viewer")
    owner = make_user("analyst")
    engagement = build_history(owner=owner)
    from engage.models import Campaign

    campaign = db.session.get(Campaign, engagement.campaign_id)
    response = client.get(f"/exports/monthly?month=2026-12&format=xlsx&owner={owner.id}&campaign={campaign.id}")
    title = load_workbook(io.BytesIO(response.data))["Summary"]["A1"].value
    assert title == (f"Engage monthly status export, December 2026: month not over, state on 10 Dec 2026 · "
                     f"Filters: campaign {campaign.name}; owner {owner.name}")


def test_export_queries_do_not_grow_with_rows(app, frozen, count_queries, tmp_path):
    october_team_lead_data()
    october = monthly.parse_month("2026-10", TODAY)

    def measure():
        db.session.expire_all()
        with count_queries() as counted:
            export = monthly.build(october)
            monthly.write_xlsx(export, str(tmp_path / "x.xlsx"))
        return len(export.rows), len(counted.statements)

    rows_before, few = measure()
    for n in range(6):
        more = factories.engagement(company=factories.company(f"More {n}"), opened_on=dt.date(2026, 9, 1))
        more.next_step, more.next_step_on = f"Step {n}", dt.date(2026, 11, n + 1)
        db.session.add_all([Interaction(engagement=more, kind="email", direction="outbound",
                                        occurred_on=dt.date(2026, 10, 2), summary=f"Sent {n}"),
                            Reminder(engagement=more, due_on=dt.date(2026, 10, 3), reason="r",
                                     created_at=dt.datetime(2026, 10, 1))])
    db.session.commit()
    rows_after, many = measure()
    assert rows_after == rows_before + 6 and many == few


def test_filters(app, frozen, make_user):
    me = make_user("analyst")
    mine = build_history(owner=me)
    other = factories.engagement(company=factories.company("Other Co"), opened_on=dt.date(2026, 10, 1))
    fund = Fund(name="Holder")
    db.session.add_all([fund, Holding(fund=fund, company=other.company, as_of=dt.date(2026, 10, 31))])
    db.session.commit()
    october = monthly.parse_month("2026-10", TODAY)

    def companies(**filters):
        return [r["company"] for r in monthly.build(october, monthly.Filters(**filters)).rows]

    assert companies() == ["October Co", "Other Co"]
    assert companies(owner=me) == ["October Co"]
    assert companies(fund=fund) == ["Other Co"]
    from engage.models import Campaign

    assert companies(campaign=db.session.get(Campaign, mine.campaign_id)) == ["October Co"]


def test_cli_export_and_its_refusals(runner, app, frozen, tmp_path):
    build_history()
    out = tmp_path / "october.xlsx"
    result = runner.invoke(args=["export", "monthly", "--month", "2026-10", "--format", "xlsx", "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert "Wrote 1 engagements for 2026-10" in result.output
    assert load_workbook(out)["Engagements"].max_row == 3  # title, header, one engagement
    cases = [
        (["--month", "Oct 2026", "--format", "csv", "--out", str(tmp_path / "a.csv")], "must look like 2026-10"),
        (["--month", "2027-01", "--format", "csv", "--out", str(tmp_path / "a.csv")], "has not started yet"),
        (["--month", "2026-10", "--format", "csv", "--out", str(tmp_path / "nope" / "a.csv")], "does not exist"),
        (["--month", "2026-10", "--format", "csv", "--out", str(tmp_path / "a.csv"), "--campaign", "zzz"],
         "unknown campaign 'zzz'"),
        (["--month", "2026-10", "--format", "csv", "--out", str(tmp_path / "a.csv"), "--owner", "x@example.org"],
         "unknown owner"),
    ]
    for args, message in cases:
        refused = runner.invoke(args=["export", "monthly", *args])
        assert refused.exit_code == 1 and message in refused.stderr, (args, refused.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["october.xlsx"]  # nothing partial left behind


def test_exports_page_downloads(client, login_as, frozen):
    login_as("viewer")
    build_history()
    page = client.get("/exports").get_data(as_text=True)
    assert 'value="2026-11"' in page  # last month by default
    response = client.get("/exports/monthly?month=2026-10&format=csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "October Co" in response.get_data(as_text=True)
    xlsx = client.get("/exports/monthly?month=2026-10&format=xlsx")
    assert load_workbook(io.BytesIO(xlsx.data))["Engagements"].cell(row=3, column=1).value == "October Co"
    assert client.get("/exports/monthly?month=2026-13").status_code == 400
    assert client.get("/exports/monthly?month=2026-10&campaign=999").status_code == 400


def test_monthly_job_stores_and_emails_once(app, smtp, frozen):
    from engage.exports.service import run_monthly
    from engage.core import outbox

    build_history()
    app.config["MONTHLY_EXPORT_RECIPIENTS"] = "committee@example.org, chair@example.org"
    try:
        now = dt.datetime(2026, 11, 1, 6, 0)
        assert "2026-10: 1 engagements, emailed to 2" in run_monthly(now)
        assert "already made" in run_monthly(now + dt.timedelta(minutes=1))
        assert len(outbox.drain(now).sent) == 2
    finally:
        app.config["MONTHLY_EXPORT_RECIPIENTS"] = ""
    assert db.session.scalar(sa.select(sa.func.count(ExportRun.id))) == 1
    assert len(smtp.inbox.messages) == 2
    message = smtp.inbox.messages[0]
    attachments = [part for part in message.walk() if part.get_filename()]
    assert attachments[0].get_filename() == "engage-status-2026-10.xlsx"
    workbook = load_workbook(io.BytesIO(attachments[0].get_payload(decode=True)))
    assert workbook["Engagements"].cell(row=3, column=1).value == "October Co"


def test_public_report_has_no_confidential_field(client, login_as, frozen, make_user):
    from pypdf import PdfReader

    login_as("viewer")
    owner = make_user("analyst", email="secret.owner@example.org")
    engagement = build_history(owner=owner)
    engagement.objectives = "CONFIDENTIAL OBJECTIVE"
    db.session.add(Interaction(engagement=engagement, kind="call", direction="outbound", occurred_on=dt.date(2026, 11, 2),
                               summary="PRIVATE CALL NOTES", participants="Ms Contact, IR"))
    db.session.commit()
    page = client.get(f"/exports/campaigns/{engagement.campaign_id}/report").get_data(as_text=True)
    pdf = client.get(f"/exports/campaigns/{engagement.campaign_id}/report.pdf")
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.data)).pages)
    assert "1 companies" in page and "Solar" in page and "+15.0 points" in page
    for secret in ("CONFIDENTIAL OBJECTIVE", "PRIVATE CALL NOTES", "Ms Contact", owner.name, owner.email, "October Co"):
        assert secret not in page.split("<main")[1]  # the report body (the header shows who is signed in)
        assert secret not in text


@pytest.mark.parametrize("month", ["0001-01", "0000-12", "1989-12", "2101-01", "9999-12"])
def test_months_outside_the_sane_range_are_refused_with_a_message(client, login_as, frozen, month):
    login_as("viewer")
    response = client.get(f"/exports/monthly?month={month}&format=csv")
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert f"{month} is outside the months Engage exports (January 1990 to December 2100)." in page
    assert f'value="{month}"' in page  # the input is kept in the form


def test_range_edges_and_oversized_ids_on_the_exports_page(client, login_as, frozen):
    login_as("viewer")
    assert client.get("/exports/monthly?month=1990-01&format=csv").status_code == 200  # the first month of the range
    for key in ("campaign", "owner", "fund"):
        for raw in ("99999999999999999999999", str(2**63 - 1), str(2**31)):
            response = client.get(f"/exports/monthly?month=2026-10&format=csv&{key}={raw}")
            assert response.status_code == 400 and f"Unknown {key}" in response.get_data(as_text=True), (key, raw)


def test_cli_refuses_out_of_range_months_and_writes_nothing(runner, frozen, tmp_path):
    for month in ("0001-01", "1989-12", "2101-01"):
        out = tmp_path / f"{month}.csv"
        refused = runner.invoke(args=["export", "monthly", "--month", month, "--format", "csv", "--out", str(out)])
        assert refused.exit_code == 1, refused.output
        lines = refused.stderr.strip().splitlines()
        assert lines[-1] == f"Error: {month} is outside the months Engage exports (January 1990 to December 2100).", lines
        assert "Traceback" not in refused.stderr
    assert list(tmp_path.iterdir()) == []
