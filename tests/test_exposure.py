"""Honest figures: exposure per official list, and divested companies held again (issue 13)."""

import datetime as dt
import io
from decimal import Decimal
from email.header import decode_header, make_header

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from engage.exports import monthly
from engage.engagements import cycle
from engage.extensions import db
from engage.holdings import screening
from engage.models import (
    Company,
    DivestmentAlert,
    Engagement,
    Fund,
    Holding,
    OutboxEmail,
    RiskFlag,
)
from tests import factories

AS_OF = dt.date(2026, 10, 31)
MILLION = Decimal(1_000_000)


@pytest.fixture()
def frozen(freeze_clock):
    return freeze_clock(dt.datetime(2026, 11, 15, 9, 0))


def flagged(name: str, *sources: str) -> Company:
    company = factories.company(name)
    for number, source in enumerate(sources):
        company.risk_flags.append(RiskFlag(source=source, citation=f"{source} citation {number}"))
    return company


def honest_fund(name: str = "Honest Fund", as_of: dt.date = AS_OF) -> Fund:
    """90 % in analyst-noted companies, 8 % on official lists (one company on two lists), 2 % unflagged."""
    fund = Fund(name=name)
    db.session.add(fund)
    positions = [
        (flagged(f"{name} Noted", "analyst"), 90),
        (flagged(f"{name} Listed", "us_entity_list", "sector_risk"), 5),
        # two UFLPA flags and a CBP order: one holding, counted once in the total
        (flagged(f"{name} Twice Listed", "uflpa_entity_list", "uflpa_entity_list", "cbp_wro"), 3),
        (factories.company(f"{name} Plain"), 2),
    ]
    for company, millions in positions:
        db.session.add(Holding(fund=fund, company=company, as_of=as_of, market_value=millions * MILLION))
    db.session.commit()
    return fund


def test_exposure_counts_official_lists_only_and_each_holding_once(app):
    fund = honest_fund()
    e = screening.exposure(fund)
    assert (e.as_of, e.total, e.positions) == (AS_OF, 100 * MILLION, 4)
    assert (e.official.positions, e.official.value, e.official.share) == (2, 8 * MILLION, Decimal("8.0"))
    parts = {p.source: (p.positions, p.value, p.share) for p in e.lists}
    assert parts == {
        "us_entity_list": (1, 5 * MILLION, Decimal("5.0")),
        "uflpa_entity_list": (1, 3 * MILLION, Decimal("3.0")),  # two flags on one list: one holding
        "cbp_wro": (1, 3 * MILLION, Decimal("3.0")),
        "gpfg_exclusion": (0, 0, Decimal("0.0")),
        "gpfg_observation": (0, 0, Decimal("0.0")),
        "us_meu_list": (0, 0, Decimal("0.0")),
        "ofac_sdn": (0, 0, Decimal("0.0")),
    }
    signals = {p.source: (p.positions, p.share) for p in e.signals}
    assert signals == {"analyst": (1, Decimal("90.0")), "sector_risk": (1, Decimal("5.0")), "team_list": (0, Decimal("0.0"))}
    assert [r.company.name for r in e.rows] == ["Honest Fund Listed", "Honest Fund Twice Listed"]
    assert [r.company.name for r in e.noted] == ["Honest Fund Noted"]
    # the per-list parts of a company on two lists add up to more than the total: the total is not a sum
    assert sum(p.value for p in e.lists) == 11 * MILLION and e.official.value == 8 * MILLION


def test_pages_cli_and_export_show_eight_percent_not_ninety_eight(client, login_as, runner, frozen, tmp_path):
    fund = honest_fund()
    login_as("viewer")
    dashboard = client.get("/").get_data(as_text=True)
    row = dashboard.split("Exposure to official lists")[1]
    assert '<td class="num">8.0 %</td>' in row and "USD 8.00 million" in row
    assert "US Entity List: USD 5.00 million (5.0 %)" in row and "UFLPA Entity List: USD 3.00 million (3.0 %)" in row
    assert "CBP Withhold Release Order: USD 3.00 million (3.0 %)" in row
    assert "Analyst note on 1 company (USD 90.00 million, 90.0 %)" in row  # shown apart
    assert "98" not in row and "100.0 %" not in row

    funds = client.get("/holdings/funds").get_data(as_text=True)
    assert "USD 8.00 million (8.0 %)" in funds and "USD 98" not in funds

    page = client.get(f"/holdings/funds/{fund.id}").get_data(as_text=True)
    assert "USD 8.00 million (8.0 % of the fund, 2 companies)" in page
    assert ('<tr><td>UFLPA Entity List</td><td class="num">1</td><td class="num">USD 3.00 million</td>'
            '<td class="num">3.0 %</td></tr>') in page
    official_only = client.get(f"/holdings/funds/{fund.id}?flagged=yes").get_data(as_text=True)
    assert "Honest Fund Twice Listed" in official_only and "Honest Fund Noted" not in official_only

    screening_page = client.get("/holdings/screening").get_data(as_text=True)
    listed_table, noted_table = screening_page.split("Holdings on an official list")[1].split("analyst notes or sector risk only")
    assert "Honest Fund Listed" in listed_table and "Honest Fund Noted" not in listed_table
    assert "Honest Fund Noted" in noted_table
    assert '<strong>8</strong>' not in screening_page and "<strong>USD 8.00 million</strong>" in screening_page

    result = runner.invoke(args=["screen", "--fund", "Honest Fund"])
    assert "on an official list: 2 companies, 8,000,000.00 USD = 8.0 % of the fund" in result.output
    assert "  UFLPA Entity List: 1 company, 3,000,000.00 USD = 3.0 % of the fund" in result.output
    assert "  not counted as exposure: Analyst note: 1 company, 90,000,000.00 USD = 90.0 % of the fund" in result.output

    out = tmp_path / "october.xlsx"
    assert runner.invoke(args=["export", "monthly", "--month", "2026-10", "--format", "xlsx",
                               "--out", str(out)]).exit_code == 0
    summary = list(load_workbook(out)["Summary"].iter_rows(values_only=True))
    by_label = {row[2]: row for row in summary if row[0] == "Honest Fund"}
    # the share is a percentage cell (0.08 shown as 8.0%)
    assert by_label["On any official list"][3:6] == (2, 8_000_000, 0.08)
    assert by_label["US Entity List"][3:6] == (1, 5_000_000, 0.05)
    assert by_label["Analyst note (not counted as exposure)"][3:6] == (1, 90_000_000, 0.9)


def test_export_uses_each_funds_snapshot_of_the_month(app, frozen):
    honest_fund(as_of=dt.date(2026, 10, 31))
    fund = db.session.scalar(sa.select(Fund))
    listed = db.session.scalar(sa.select(Company).where(Company.name == "Honest Fund Listed"))
    db.session.add(Holding(fund=fund, company=listed, as_of=dt.date(2026, 9, 30), market_value=MILLION))
    db.session.add(Holding(fund=fund, company=factories.company("September Plain"), as_of=dt.date(2026, 9, 30),
                           market_value=3 * MILLION))
    db.session.commit()
    september = monthly.build(monthly.parse_month("2026-09", frozen))
    [e] = september.summary["exposure"]
    assert (e.as_of, e.official.share) == (dt.date(2026, 9, 30), Decimal("25.0"))
    [e] = monthly.build(monthly.parse_month("2026-10", frozen)).summary["exposure"]
    assert (e.as_of, e.official.share) == (AS_OF, Decimal("8.0"))


def test_exposure_pages_and_export_query_count_does_not_grow_with_funds(client, login_as, count_queries, frozen):
    login_as("analyst")

    def add_funds(start, n):
        for i in range(start, start + n):
            fund = honest_fund(f"Fund {i:02d}")
            listed = db.session.scalar(sa.select(Company).where(Company.name == f"Fund {i:02d} Listed"))
            engagement = factories.engagement(company=listed, opened_on=dt.date(2026, 1, 5))
            cycle.move_stage(engagement, "closed", on=dt.date(2026, 3, 10), today=frozen, actor_id=None, outcome="divested")
            db.session.add(Holding(fund=fund, company=listed, as_of=dt.date(2026, 9, 30), market_value=MILLION))
            db.session.commit()

    def measure():
        counts = {}
        for url in ("/", "/holdings/funds", "/holdings/screening"):
            with count_queries() as counter:
                assert client.get(url).status_code == 200
            counts[url] = counter.count
        with count_queries() as counter:
            export = monthly.build(monthly.parse_month("2026-10", frozen))
        counts["export"] = counter.count
        return counts, export

    add_funds(0, 2)
    small, export = measure()
    assert len(export.summary["exposure"]) == 2
    add_funds(2, 6)
    large, export = measure()
    assert len(export.summary["exposure"]) == 8
    assert large == small
    page = client.get("/holdings/screening").get_data(as_text=True)
    assert page.count("held again after divestment</span>") == 8


# Divested companies held again --------------------------------------------------------------

HOLDINGS = ("Ticker,Name,Market Value,Weight (%),Exchange\n"
            "\"MPF\",\"Meiya Pico Forensics\",\"2,500,000\",\"2.5\",\"Shenzhen Stock Exchange\"\n"
            "\"ZZZ\",\"Unlisted Harmless Co\",\"6,000,000\",\"6.0\",\"NASDAQ\"\n")


@pytest.fixture()
def divested(make_user, frozen):
    """An engagement closed as divested on 10 Mar 2026, owned by owner@example.org; the company is listed."""
    owner = make_user("analyst", email="owner@example.org")
    company = flagged("Meiya Pico Forensics", "us_entity_list")
    engagement = factories.engagement(company=company, owner=owner, opened_on=dt.date(2026, 1, 5))
    cycle.move_stage(engagement, "closed", on=dt.date(2026, 3, 10), today=frozen, actor_id=None, outcome="divested",
                     note="Sold after the divestment recommendation.")
    db.session.commit()
    return engagement


def import_cli(runner, tmp_path, as_of="2026-10-31", fund="EM Fund"):
    path = tmp_path / "holdings.csv"
    path.write_text(HOLDINGS)
    return runner.invoke(args=["holdings", "import", str(path), "--fund", fund, "--create-fund", "--as-of", as_of, "--partial"])


def import_web(client, fund_id, as_of="2026-10-31"):
    preview = client.post("/holdings/import", data={"fund_id": fund_id, "as_of": as_of, "partial": "y",
                                                    "file": (io.BytesIO(HOLDINGS.encode()), "holdings.csv")},
                          content_type="multipart/form-data")
    assert preview.status_code == 200, preview.get_data(as_text=True)
    token = preview.get_data(as_text=True).split("/holdings/import/")[1].split('"')[0]
    return client.post(f"/holdings/import/{token}", data=factories.confirmation(preview.get_data(as_text=True)),
                       follow_redirects=True)


def outbox():
    return db.session.scalars(sa.select(OutboxEmail).order_by(OutboxEmail.id)).all()


def test_divested_company_held_again_alerts_its_owner_once(client, login_as, runner, smtp, divested, tmp_path):
    first = import_cli(runner, tmp_path)
    assert first.exit_code == 0, first.stderr
    assert "held again after divestment: Meiya Pico Forensics (1 new alert(s), 1 owner email(s) queued)" in first.stderr
    again = import_cli(runner, tmp_path)  # the same snapshot again: replaced, not alerted twice
    assert again.exit_code == 0 and "(0 new alert(s), 0 owner email(s) queued)" in again.stderr
    login_as("analyst")
    fund = db.session.scalar(sa.select(Fund).where(Fund.name == "EM Fund"))
    web = import_web(client, fund.id).get_data(as_text=True)
    assert "Held again after divestment: Meiya Pico Forensics (0 new alert(s), 0 owner email(s) queued)" in web
    client.post("/holdings/screening/run")
    assert [e.recipient for e in outbox()] == ["owner@example.org"]
    alert = db.session.scalar(sa.select(DivestmentAlert))
    assert (alert.engagement_id, alert.as_of, alert.market_value, alert.notified_id) == (
        divested.id, AS_OF, Decimal("2500000.00"), divested.owner_id)

    for minute in (0, 5):  # two ticks: the email goes once
        assert runner.invoke(args=["reminders", "run", "--now", f"2026-11-15T09:{minute:02d}"]).exit_code == 0
    assert len(smtp.inbox.messages) == 1
    message = smtp.inbox.messages[0]
    assert message["To"] == "owner@example.org"
    subject = str(make_header(decode_header(message["Subject"]))).replace("\n", "")
    assert " ".join(subject.split()) == "Engage: divested company held again — Meiya Pico Forensics in EM Fund"
    body = smtp.inbox.body(message)
    assert "Meiya Pico Forensics: USD 2.50 million, divested on 10 Mar 2026" in body
    assert f"/engagements/{divested.id}" in body and "recorded evidence of change in practice" in body

    # a later snapshot still holding it: the alert stays open, no second email (one per company and fund
    # until it is sold or readmitted; see test_break1_exposure for the whole rule)
    assert "(0 new alert(s), 0 owner email(s) queued)" in import_cli(runner, tmp_path, as_of="2026-11-14").stderr
    assert len(outbox()) == 1


def test_screening_dashboard_and_bulk_action_follow_the_readmission_rule(client, login_as, runner, divested,
                                                                          tmp_path, frozen):
    assert import_cli(runner, tmp_path).exit_code == 0
    analyst = login_as("analyst")
    page = client.get("/holdings/screening").get_data(as_text=True)
    row = next(line for line in page.split("<tr>") if "Meiya Pico Forensics" in line and "badge" in line)
    assert f'/engagements/{divested.id}">Divested 10 Mar 2026</a>' in row and "held again after divestment" in row
    assert ">None<" not in row
    assert "Open engagements for the" not in page  # the only listed company is divested: nothing to open

    dashboard = client.get("/").get_data(as_text=True).split("Divested companies held again")[1].split("</section>")[0]
    assert f'/engagements/{divested.id}">Meiya Pico Forensics</a>' in dashboard
    assert "<td>EM Fund</td>" in dashboard and "USD 2.50 million" in dashboard and "10 Mar 2026" in dashboard
    assert "Held again after divestment" in client.get(f"/engagements/{divested.id}").get_data(as_text=True)

    fund = db.session.scalar(sa.select(Fund).where(Fund.name == "EM Fund"))
    response = client.post("/holdings/screening/engage", data={"fund_id": fund.id, "campaign_id": divested.campaign_id},
                           follow_redirects=True)
    assert "0 engagement(s) opened" in response.get_data(as_text=True)
    for huge in ("99999999999999999999999", str(2**63 - 1)):
        assert client.post("/holdings/screening/engage", data={"fund_id": huge, "campaign_id": huge}).status_code == 400
    assert "Not opened for Meiya Pico Forensics: divested" in response.get_data(as_text=True)
    refused = client.post(f"/engagements/open/{divested.company_id}",
                          data={"campaign_id": divested.campaign_id, "owner_id": analyst.id, "opened_on": "2026-11-15"})
    assert refused.status_code == 422 and "was divested" in refused.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count(Engagement.id))) == 1

    # readmission: reopening needs recorded evidence of change in practice
    form = {"target": "identified", "occurred_on": "2026-11-15", "reason": "Ended the surveillance contracts",
            "version": divested.version}
    assert client.post(f"/engagements/{divested.id}/stage", data=form).status_code == 422
    assert client.post(f"/engagements/{divested.id}/stage",
                       data={**form, "evidence": "Audited termination of the contracts, published 1 Nov"}).status_code == 302
    assert "Divested companies held again" not in client.get("/").get_data(as_text=True)
    page = client.get("/holdings/screening").get_data(as_text=True)
    assert f'/engagements/{divested.id}">Open: Identified</a>' in page and "held again" not in page


def test_escalated_to_divested_counts_and_older_snapshots_do_not(client, login_as, runner, make_user, tmp_path,
                                                                 frozen):
    owner = make_user("analyst", email="owner@example.org")
    engagement = factories.engagement(company=flagged("Meiya Pico Forensics", "us_entity_list"), owner=owner,
                                      opened_on=dt.date(2026, 1, 5))
    for level in ("follow_up", "call_to_action", "collective", "observation", "divestment_recommended", "divested"):
        cycle.move_escalation(engagement, level, on=dt.date(2026, 6, 1), today=frozen, actor_id=None)
    db.session.commit()
    before = import_cli(runner, tmp_path, as_of="2026-06-01")  # the snapshot of the divestment day: not "again"
    assert before.exit_code == 0 and "held again" not in before.stderr
    after = import_cli(runner, tmp_path, as_of="2026-06-02")
    assert "held again after divestment: Meiya Pico Forensics (1 new alert(s), 1 owner email(s) queued)" in after.stderr
    login_as("analyst")
    fund = db.session.scalar(sa.select(Fund))
    client.post("/holdings/screening/engage", data={"fund_id": fund.id, "campaign_id": factories.campaign().id})
    db.session.commit()
    assert db.session.scalar(sa.select(sa.func.count(Engagement.id))) == 1  # no fresh engagement elsewhere either


def test_alert_without_an_active_owner_is_shown_but_not_emailed(runner, make_user, tmp_path, frozen, client,
                                                                login_as):
    gone = make_user("analyst", email="gone@example.org", active=False)
    engagement = factories.engagement(company=factories.company("Meiya Pico Forensics"), owner=gone,
                                      opened_on=dt.date(2026, 1, 5))
    cycle.move_stage(engagement, "closed", on=dt.date(2026, 3, 10), today=frozen, actor_id=None, outcome="divested")
    db.session.commit()
    result = import_cli(runner, tmp_path)
    assert "(1 new alert(s), 0 owner email(s) queued)" in result.stderr and outbox() == []
    assert db.session.scalar(sa.select(DivestmentAlert.notified_id)) is None
    login_as("viewer")
    assert "Meiya Pico Forensics" in client.get("/").get_data(as_text=True).split("Divested companies held again")[1]


def test_company_and_fund_pages_query_count_does_not_grow_with_funds(client, login_as, count_queries, frozen):
    """The company page lists its position in every fund's latest snapshot; the funds page every fund."""
    login_as("viewer")
    company = flagged("Held Everywhere", "us_entity_list")
    db.session.commit()

    def add_funds(start, n):
        for i in range(start, start + n):
            fund = honest_fund(f"Fund {i:02d}")
            for as_of, value in ((dt.date(2026, 9, 30), MILLION), (AS_OF, 2 * MILLION)):
                db.session.add(Holding(fund=fund, company=company, as_of=as_of, market_value=value))
            db.session.commit()

    def measure():
        counts = {}
        for url in (f"/companies/{company.id}", "/holdings/funds", f"/holdings/funds/{first.id}"):
            with count_queries() as counter:
                page = client.get(url)
            assert page.status_code == 200
            counts[url] = counter.count
        return counts, client.get(f"/companies/{company.id}").get_data(as_text=True)

    add_funds(0, 2)
    first = db.session.scalar(sa.select(Fund).order_by(Fund.name))
    small, page = measure()
    assert page.count("Fund 0") == 2
    add_funds(2, 6)
    large, page = measure()
    assert page.count("Fund 0") == 8 and "Sep 2026" not in page.split("Engagements")[0]
    assert large == small
