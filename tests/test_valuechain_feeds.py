"""What the value chain feeds into the rest of Engage (issue 16): the engagement's timeline, exit
reminders, stage hints, score evidence, the monthly export's columns and the public report's
aggregates. Maps are imported with `flask valuechain import` (tests/fixtures/valuechain, see its
README); status changes go through engage.valuechain.service.change_status, as the tab's form does.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from engage.engagements import cycle
from engage.extensions import db
from engage.formatting import format_date as fd
from engage.models import Campaign, Engagement, Interaction, Relationship, Reminder, RiskFlag, ValueChainMap
from engage.valuechain import service
from tests import factories
from tests.test_valuechain import MAP, load_lists, maker, relationship_to

HOSHINE = "Hoshine Silicon Industry Co. Ltd."
DAQO = "Xinjiang Daqo New Energy Co. Ltd."
QUARTZ = "Tarim Fictional Quartz Mining Co."
#: Every counterparty name of the map file (none may reach the public report).
COUNTERPARTIES = [row["Supplier"] for row in csv.DictReader(io.StringIO(MAP.read_text(encoding="utf-8")))]


def import_map(runner, company, *extra: str, path=MAP):
    result = runner.invoke(args=["valuechain", "import", str(path), "--company", str(company.id),
                                 "--disclosed", "2026-05-02", "--source-ref", "Supplier list 2025, p. 41-43", *extra])
    assert result.exit_code == 0, result.output + str(result.stderr)
    return result


def second_map(folder, drop: str):
    """The map file without the row of `drop`, written into `folder` (map 2 of the company)."""
    lines = [line for line in MAP.read_text(encoding="utf-8").splitlines() if not line.startswith(drop)]
    path = folder / "solar_supplier_list_2026.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def text_of(html: str) -> str:
    """The page's text with tags dropped and spaces collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.fixture()
def engaged(runner, frozen_today, make_user):
    """The solar-module maker under an open engagement owned by an analyst, the lists loaded."""
    load_lists(runner)
    company = maker()
    owner = make_user("analyst")
    engagement = factories.engagement(company=company, owner=owner)
    return engagement


# --- timeline ------------------------------------------------------------------------------


def test_the_timeline_shows_each_map_and_status_change_in_constant_queries(client, login_as, runner, engaged,
                                                                          frozen_today, count_queries, tmp_path):
    analyst = login_as("analyst")
    page = f"/engagements/{engaged.id}"
    import_map(runner, engaged.company)
    # one change (with its exit reminder) and one map, then four changes and two maps
    service.change_status(relationship_to(DAQO), "exit_planned", frozen_today, target_date=dt.date(2026, 12, 31))
    db.session.commit()
    with count_queries() as one_map:
        first = client.get(page)
    assert first.status_code == 200
    text = text_of(first.get_data(as_text=True))
    assert "Value chain map 1 recorded : 12 relationships, 5 flagged" in text
    assert f"Value chain {DAQO} (sub-supplier) : Active → Exit planned" in text
    assert f"solar_supplier_list.csv, disclosed {fd(dt.date(2026, 5, 2))} · Supplier list 2025, p. 41-43" in text

    day = frozen_today
    service.change_status(relationship_to(HOSHINE), "under_review", day - dt.timedelta(days=40), actor_id=analyst.id)
    service.change_status(relationship_to(HOSHINE), "exit_planned", day - dt.timedelta(days=30),
                          target_date=dt.date(2026, 9, 30), actor_id=analyst.id)
    service.change_status(relationship_to(HOSHINE), "exited", day, evidence="Letter of 12 June 2026: contract ended",
                          actor_id=analyst.id)
    service.change_status(relationship_to(QUARTZ), "not_linked", day, reason="a trading office in Hotan, no mining")
    db.session.commit()
    import_map(runner, engaged.company, path=second_map(tmp_path, drop="Pacific Backsheet"))
    with count_queries() as more:
        response = client.get(page)
    html = response.get_data(as_text=True)
    text = text_of(html)
    assert len(more.statements) == len(one_map.statements)  # four changes and two maps cost what one map did
    assert f"Value chain {HOSHINE} (sub-supplier) : Under review → Exit planned" in text
    assert f"Target date of the exit: {fd(dt.date(2026, 9, 30))}" in text
    assert f"Value chain {HOSHINE} (sub-supplier) : Exit planned → Exited" in text
    assert "Evidence: Letter of 12 June 2026: contract ended" in text
    assert f"Value chain {QUARTZ} (sub-supplier) : Active → Not linked" in text
    assert "Reason: a trading office in Hotan, no mining" in text
    assert f"By {analyst.name}" in text
    # map 2 drops the backsheet maker: 11 relationships; the quartz miner's "not linked" carries over
    assert "Value chain map 2 recorded : 11 relationships, 4 flagged" in text
    assert "Value chain map 1 recorded : 12 relationships, 4 flagged" in text  # flagged as screened now
    # newest first: the exit before the plan, the plan before the review
    assert html.index("Exit planned → Exited") < html.index("Under review → Exit planned") < html.index(
        "Active → Under review")




def test_a_change_under_another_engagement_stays_off_this_timeline(client, login_as, runner, engaged, frozen_today):
    login_as("viewer")
    import_map(runner, engaged.company)
    engaged.closed_on, engaged.stage, engaged.outcome = frozen_today, "closed", "dropped"
    db.session.commit()
    service.change_status(relationship_to(HOSHINE), "under_review", frozen_today)  # no engagement open
    db.session.commit()
    text = text_of(client.get(f"/engagements/{engaged.id}").get_data(as_text=True))
    assert "Value chain map 1 recorded" in text and "Active → Under review" not in text


# --- exit reminders ------------------------------------------------------------------------


def open_exit_reminders() -> list[Reminder]:
    return db.session.scalars(sa.select(Reminder).where(Reminder.kind == "exit", Reminder.status != "done")
                              .order_by(Reminder.id)).all()


def test_an_exit_plan_makes_a_reminder_that_moves_and_closes(client, login_as, runner, engaged, frozen_today,
                                                             tmp_path):
    analyst = login_as("analyst")
    import_map(runner, engaged.company)
    day = frozen_today
    link = relationship_to(HOSHINE)
    service.change_status(link, "exit_planned", day, target_date=dt.date(2026, 9, 30), actor_id=analyst.id)
    db.session.commit()
    [reminder] = open_exit_reminders()
    assert (reminder.engagement_id, reminder.due_on, reminder.reason, reminder.relationship_id,
            reminder.created_by_id) == (engaged.id, dt.date(2026, 9, 30), f"Exit of {HOSHINE} due", link.id, analyst.id)
    tab_page = f'href="/value-chain/engagements/{engaged.id}#flagged"'
    for page in (f"/engagements/{engaged.id}", "/reminders?who=all"):
        html = client.get(page).get_data(as_text=True)
        assert tab_page in html and re.search(rf"Exit of <a [^>]+>{re.escape(HOSHINE)}</a> due", html), page

    # a new target date moves the reminder (and it is notified again); the same date is refused
    reminder.notified_at = dt.datetime(2026, 6, 15, 8, 0)
    db.session.commit()
    with pytest.raises(service.FieldError, match="already exit planned"):
        service.change_status(link, "exit_planned", day, target_date=dt.date(2026, 9, 30))
    db.session.rollback()
    service.change_status(link, "exit_planned", day, target_date=dt.date(2026, 12, 31))
    db.session.commit()
    [moved] = open_exit_reminders()
    assert (moved.id, moved.due_on, moved.notified_at) == (reminder.id, dt.date(2026, 12, 31), None)

    # the next map carries the plan over; the exit recorded on map 2's relationship closes the reminder
    import_map(runner, engaged.company, path=second_map(tmp_path, drop=DAQO))
    carried = relationship_to(HOSHINE, number=2)
    assert (carried.status, carried.target_date) == ("exit_planned", dt.date(2026, 12, 31))
    service.change_status(carried, "exited", day, evidence="Supplier list 2026 without Hoshine")
    db.session.commit()
    assert open_exit_reminders() == []
    assert db.session.get(Reminder, reminder.id).status == "done"


@pytest.mark.parametrize("then", [dict(new="under_review"), dict(new="not_linked", reason="another Hoshine"),
                                  dict(new="remediation_plan")])
def test_leaving_the_exit_plan_for_another_status_closes_the_reminder(runner, engaged, frozen_today, then):
    import_map(runner, engaged.company)
    link = relationship_to(HOSHINE)
    service.change_status(link, "exit_planned", frozen_today, target_date=dt.date(2026, 9, 30))
    db.session.commit()
    assert len(open_exit_reminders()) == 1
    service.change_status(link, on=frozen_today, **then)
    db.session.commit()
    assert open_exit_reminders() == []


def test_no_open_engagement_no_reminder_and_the_owner_is_emailed(runner, engaged, frozen_today, app):
    import_map(runner, engaged.company)
    service.change_status(relationship_to(DAQO), "exit_planned", frozen_today, target_date=frozen_today)
    db.session.commit()
    result = runner.invoke(args=["reminders", "run"])
    assert result.exit_code == 0, result.output
    from engage.models import OutboxEmail

    emails = db.session.scalars(sa.select(OutboxEmail).where(OutboxEmail.recipient == engaged.owner.email)).all()
    assert len(emails) == 1 and f"Exit of {DAQO} due" in emails[0].body_text

    engaged.closed_on, engaged.stage, engaged.outcome = frozen_today, "closed", "dropped"
    db.session.commit()
    service.change_status(relationship_to(HOSHINE), "exit_planned", frozen_today, target_date=dt.date(2026, 9, 30))
    db.session.commit()
    assert [r.relationship_.counterparty.name for r in open_exit_reminders()] == [DAQO]

    # under a new engagement, planning Daqo's exit again moves its reminder there (a closed one notifies nobody)
    newer = factories.engagement(company=engaged.company, owner=engaged.owner, opened_on=frozen_today)
    service.change_status(relationship_to(DAQO), "exit_planned", frozen_today, target_date=dt.date(2026, 8, 31))
    db.session.commit()
    [moved] = open_exit_reminders()
    assert (moved.engagement_id, moved.due_on) == (newer.id, dt.date(2026, 8, 31))


# --- stage hints ---------------------------------------------------------------------------


def hints_on(client, engagement) -> str:
    html = client.get(f"/engagements/{engagement.id}").get_data(as_text=True)
    box = re.search(r'<div class="hint-box".*?</div>', html, re.S)
    return text_of(box.group(0)) if box else ""


def test_a_map_and_the_first_exit_plan_suggest_stage_moves(client, login_as, runner, engaged, frozen_today):
    login_as("analyst")
    assert hints_on(client, engaged) == ""
    import_map(runner, engaged.company)
    hints = hints_on(client, engaged)
    assert (f"The value chain: map 1 recorded on {fd(frozen_today)}, disclosed {fd(dt.date(2026, 5, 2))}: 12 "
            "relationships. Consider moving the stage to Value chain mapped") in hints
    assert "Disengaging" not in hints

    service.change_status(relationship_to(HOSHINE), "exit_planned", dt.date(2026, 6, 1), target_date=dt.date(2026, 9, 30))
    service.change_status(relationship_to(DAQO), "exit_planned", frozen_today, target_date=dt.date(2026, 10, 31))
    db.session.commit()
    hints = hints_on(client, engaged)
    assert f"exit of {HOSHINE} planned on {fd(dt.date(2026, 6, 1))} (target {fd(dt.date(2026, 9, 30))})" in hints
    assert "Consider moving the stage to Disengaging" in hints and DAQO not in hints

    # a suggestion only: the stage has not moved; once it is mapped, only disengaging is suggested
    assert db.session.get(Engagement, engaged.id).stage == "identified"
    cycle.move_stage(engaged, "value_chain_mapped", on=frozen_today, today=frozen_today, actor_id=None)
    db.session.commit()
    hints = hints_on(client, engaged)
    assert "Value chain mapped" not in hints and "Disengaging" in hints
    cycle.move_stage(engaged, "disengaging", on=frozen_today, today=frozen_today, actor_id=None)
    db.session.commit()
    assert hints_on(client, engaged) == ""


def test_a_closed_engagement_gets_no_value_chain_hint(client, login_as, runner, engaged, frozen_today):
    login_as("analyst")
    import_map(runner, engaged.company)
    engaged.closed_on, engaged.stage, engaged.outcome = frozen_today, "closed", "dropped"
    db.session.commit()
    assert hints_on(client, engaged) == ""


# --- score evidence ------------------------------------------------------------------------


def test_the_scoring_form_shows_the_figures_beside_mapping_and_disengagement(client, login_as, runner, frozen_today):
    assert runner.invoke(args=["seed"]).exit_code == 0
    campaign = db.session.scalar(sa.select(Campaign).where(Campaign.slug == "xuar"))
    company = factories.company("Fictional Solar Modules Co.")
    engagement = factories.engagement(company=company, campaign=campaign)
    reply = Interaction(engagement=engagement, kind="response", direction="inbound", occurred_on=dt.date(2026, 6, 1),
                        subject="Reply")
    db.session.add(reply)
    db.session.commit()
    login_as("analyst")
    form = f"/scoring/interactions/{reply.id}"
    assert text_of(client.get(form).get_data(as_text=True)).count("No value-chain map recorded") == 2

    import_map(runner, company)
    service.change_status(relationship_to(HOSHINE), "exit_planned", dt.date(2026, 5, 1), target_date=dt.date(2026, 6, 1))
    service.change_status(relationship_to(DAQO), "exited", frozen_today, evidence="Supplier list without Daqo")
    db.session.commit()
    html = client.get(form).get_data(as_text=True)
    line = f"Map 1, disclosed {fd(dt.date(2026, 5, 2))}: 12 relationships, 5 flagged, 1 exit planned, 1 exited, 1 overdue"
    assert text_of(html).count(line) == 2
    rubric = campaign.rubrics[-1]
    for criterion in rubric.criteria:  # beside the mapping and disengagement criteria only
        fieldset = re.search(rf'<legend>{re.escape(criterion.title)} .*?</fieldset>', html, re.S).group(0)
        assert (line in text_of(fieldset)) == (criterion.stage_hint in ("value_chain_mapped", "disengaging")), \
            criterion.key


# --- monthly export ------------------------------------------------------------------------


def test_the_monthly_export_has_the_value_chain_columns_in_every_format(client, login_as, runner, engaged,
                                                                        frozen_today, tmp_path, count_queries):
    login_as("viewer")
    factories.engagement(company=factories.company("Unmapped Co."))
    import_map(runner, engaged.company)
    service.change_status(relationship_to(HOSHINE), "exit_planned", dt.date(2026, 5, 1), target_date=dt.date(2026, 6, 1))
    service.change_status(relationship_to(DAQO), "exited", frozen_today, evidence="Supplier list without Daqo")
    db.session.commit()

    response = client.get("/exports/monthly?month=2026-06&format=csv")
    rows = {r["Company"]: r for r in csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff")))}
    columns = ("Relationships disclosed", "Relationships flagged", "Relationships exited", "Overdue exits")
    assert [rows[engaged.company.name][c] for c in columns] == ["12", "5", "1", "1"]
    assert [rows["Unmapped Co."][c] for c in columns] == ["", "", "", ""]  # no map: blank, not 0

    # a past month is replayed to its end: in May this map had not been imported yet
    may = client.get("/exports/monthly?month=2026-05&format=csv")
    may_rows = {r["Company"]: r for r in csv.DictReader(io.StringIO(may.get_data(as_text=True).lstrip("\ufeff")))}
    assert [may_rows[engaged.company.name][c] for c in columns] == ["", "", "", ""]

    out = tmp_path / "june.xlsx"
    result = runner.invoke(args=["export", "monthly", "--month", "2026-06", "--format", "xlsx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    book = load_workbook(out)
    sheet = book["Engagements"]
    header = [c.value for c in sheet[2]]  # row 1 is the title row
    by_company = {row[0]: row for row in sheet.iter_rows(min_row=3, values_only=True)}
    assert [by_company[engaged.company.name][header.index(c)] for c in columns] == [12, 5, 1, 1]
    assert [by_company["Unmapped Co."][header.index(c)] for c in columns] == [None] * 4
    summary = {row[0]: row[1] for row in book["Summary"].iter_rows(values_only=True) if row[0]}
    assert summary["Companies with a disclosed map"] == 1 and summary["Relationships disclosed"] == 12
    assert (summary["Relationships flagged"], summary["Relationships exited"], summary["Overdue exits"]) == (5, 1, 1)

    # the figures cost the same queries for more engagements with maps
    from engage.exports import monthly

    with count_queries() as few:
        monthly.build(monthly.parse_month("2026-06", frozen_today))
    for name in ("Second Solar Co.", "Third Solar Co."):
        company = factories.company(name)
        factories.engagement(company=company)
        import_map(runner, company)
    with count_queries() as many:
        export = monthly.build(monthly.parse_month("2026-06", frozen_today))
    assert len(export.rows) == 4 and len(many.statements) == len(few.statements)


def monthly_rows(client, month: str) -> dict[str, dict]:
    response = client.get(f"/exports/monthly?month={month}&format=csv")
    assert response.status_code == 200
    return {r["Company"]: r for r in csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff")))}


def test_a_past_months_export_shows_the_value_chain_as_it_stood_at_that_months_end(client, login_as, runner,
                                                                                   freeze_clock, make_user):
    """Each month's figures are those the team had at its end: the map imported by then, each link's status
    then (from its dated changes) and the list flags recorded by then; a later map, exit or flag is not read
    back into an earlier month."""
    freeze_clock(dt.datetime(2026, 5, 2, 9, 0))
    load_lists(runner, retrieved="2026-05-02")
    company = maker()
    factories.engagement(company=company, owner=make_user("analyst"))
    import_map(runner, company)
    freeze_clock(dt.datetime(2026, 5, 4, 9, 0))
    service.change_status(relationship_to(HOSHINE), "exit_planned", dt.date(2026, 5, 4), target_date=dt.date(2026, 6, 1))
    freeze_clock(dt.datetime(2026, 7, 6, 9, 0))
    service.change_status(relationship_to(DAQO), "exited", dt.date(2026, 7, 6), evidence="Supplier list without Daqo")
    service.change_status(relationship_to(QUARTZ), "not_linked", dt.date(2026, 7, 6), reason="no mining")
    db.session.commit()
    login_as("viewer")

    columns = ("Relationships disclosed", "Relationships flagged", "Relationships exited", "Overdue exits")

    def figures(month):
        row = monthly_rows(client, month)[company.name]
        return [row[c] for c in columns]

    assert figures("2026-04") == ["", "", "", ""]  # before the map: blank, not 0
    assert figures("2026-05") == ["12", "5", "0", "0"]  # exit planned for 1 June: not yet overdue on 31 May
    assert figures("2026-06") == ["12", "5", "0", "1"]  # overdue on 30 June, Daqo not yet exited
    assert figures("2026-07") == ["12", "4", "1", "1"]  # this month: Daqo exited, the quarry not linked

    # a flag recorded after a month's end is not read back into that month; one ended by then no longer counts
    freeze_clock(dt.datetime(2026, 8, 3, 9, 0))
    glass = relationship_to("Brightfield Module Glass Co. (fictional)")
    db.session.add(RiskFlag(company_id=glass.counterparty_id, source="team_list", citation="a test's flag"))
    db.session.commit()
    assert figures("2026-07") == ["12", "4", "1", "1"]
    assert figures("2026-08") == ["12", "5", "1", "1"]


# --- public report -------------------------------------------------------------------------


def test_the_public_report_has_value_chain_totals_and_no_counterparty_name(client, login_as, runner, engaged,
                                                                           frozen_today):
    from pypdf import PdfReader

    login_as("viewer")
    factories.engagement(company=factories.company("Unmapped Co."), campaign=engaged.campaign)
    import_map(runner, engaged.company)
    service.change_status(relationship_to(DAQO), "exited", frozen_today, evidence="Supplier list without Daqo")
    service.change_status(relationship_to(QUARTZ), "not_linked", frozen_today, reason="no mining")
    db.session.commit()
    page = client.get(f"/exports/campaigns/{engaged.campaign_id}/report").get_data(as_text=True)
    body = page.split("<main")[1]
    pdf = client.get(f"/exports/campaigns/{engaged.campaign_id}/report.pdf")
    pdf_text = re.sub(r"\s+", " ", "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.data)).pages))
    expected = ("1 of 2 companies have disclosed a map of their value chain to us. Their latest maps list 12 "
                "relationships (suppliers, customers, joint ventures); 4 were flagged, with a listed counterparty or "
                "in the Uyghur Region, and 1 of those has been exited.")
    assert expected in text_of(body) and expected in pdf_text
    names = COUNTERPARTIES + [n.split(" Co")[0] for n in COUNTERPARTIES] + ["Hoshine", "Daqo", "Tarim"]
    for name in names:
        assert name not in body and name not in pdf_text, name
    # the names are in the database (the test would pass vacuously otherwise)
    assert db.session.scalar(sa.select(sa.func.count(Relationship.id))) == 12
    assert db.session.scalar(sa.select(sa.func.count(ValueChainMap.id))) == 1
