"""Exposure at its edges: negative and unknown values, back-filled snapshots, concurrent imports, bands."""

import datetime as dt
import io
import itertools
import re
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook, load_workbook

from engage.engagements import cycle
from engage.extensions import db
from engage.holdings import importer, screening
from engage.identifiers import isin_check_digit
from engage.models import Company, DivestmentAlert, Fund, Holding, OutboxEmail, Score
from engage.models.holdings import HoldingImport
from tests import factories
from tests.test_exposure import (  # noqa: F401
    AS_OF,
    HOLDINGS,
    MILLION,
    divested,
    flagged,
    frozen,
    import_cli,
    outbox,
)

ROOT = Path(__file__).resolve().parents[1]


def cli_file(runner, tmp_path, name, content, *args, fund="EM Fund"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return runner.invoke(args=["holdings", "import", str(path), "--fund", fund, "--create-fund", *args])


def xlsx(rows) -> bytes:
    workbook = Workbook()
    for row in rows:
        workbook.active.append(list(row))
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


# --- 7. no negative figures ----------------------------------------------------------------

SHORT_CSV = 'Name,Ticker,Market Value,Weight (%)\nListed Co,LST,"1,000,000",25\nPlain Co,PLN,"(3,000,000)",75\n'


def test_a_short_or_negative_position_does_not_make_exposure_negative_or_smaller(app, runner, tmp_path):
    """A file with '(3,000,000)' for an unflagged line (a short, a cash overdraft) imported as -3 M.

    The rule: short positions are not imported. The parser refuses a negative value in every
    layout (plain and mapped CSV, mapped XLSX), and the database refuses one from any other path
    (synthetic data, a script), so exposure is never negative nor shrunk by a short.
    """
    listed = flagged("Listed Co", "us_entity_list")
    db.session.commit()
    mapping = ["--map", "name=Security,market_value=Value EUR"]
    for name, content, extra in [
        ("short.csv", SHORT_CSV, []),
        ("minus.csv", SHORT_CSV.replace('"(3,000,000)"', "-3000000"), []),
        ("mapped.csv", "Security;Value EUR\nListed Co;1000000\nPlain Co;-3000000\n", mapping),
        ("mapped.xlsx", xlsx([("Security", "Value EUR"), ("Listed Co", 1_000_000), ("Plain Co", -3_000_000)]), mapping),
        ("shares.xlsx", xlsx([("Name", "Shares", "Market Value"), ("Listed Co", 10, 5), ("Plain Co", -10, 5)]), []),
    ]:
        result = cli_file(runner, tmp_path, name, content, "--as-of", "2026-10-31", *extra)
        assert result.exit_code == 1, (name, result.output)
        assert "cannot be negative (short positions are not imported)" in result.stderr, (name, result.stderr)
        assert "row 3" in result.stderr and "nothing imported" in result.stderr
    assert db.session.scalar(sa.select(sa.func.count(Holding.id))) == 0

    fund = Fund(name="Net Short Fund")
    db.session.add(fund)
    db.session.commit()
    for column in ("market_value", "shares"):  # any other path: the database refuses it
        db.session.add(Holding(fund=fund, company=factories.company(f"Short {column}"), as_of=AS_OF,
                               **{column: -3 * MILLION}))
        with pytest.raises(sa.exc.IntegrityError):
            db.session.commit()
        db.session.rollback()

    db.session.add(Holding(fund=fund, company=listed, as_of=AS_OF, market_value=1 * MILLION))
    db.session.add(Holding(fund=fund, company=factories.company("Plain Co"), as_of=AS_OF, market_value=3 * MILLION))
    db.session.commit()
    e = screening.exposure(fund)
    assert e.total > 0, f"fund total {e.total}"
    assert e.official.share is None or e.official.share >= 0, f"exposure shown as {e.official.share} %"
    assert (e.total, e.official.share) == (4 * MILLION, Decimal("25.0"))


def test_synthetic_data_holds_no_negative_value(app, runner):
    """`flask synth` writes through the same checked columns; its holdings are all within range."""
    assert runner.invoke(args=["synth", "--companies", "200"]).exit_code == 0
    assert db.session.scalar(sa.select(sa.func.count(Holding.id))) > 0
    assert db.session.scalar(sa.select(sa.func.min(Holding.market_value))) >= 0
    for e in screening.exposures():
        assert e.total >= 0 and all(p.share is None or 0 <= p.share <= 100 for p in [e.official, *e.lists])


values = st.one_of(st.none(), st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False,
                                           allow_infinity=False))
sources = st.lists(st.sampled_from(["us_entity_list", "uflpa_entity_list", "cbp_wro", "gpfg_observation", "analyst",
                                    "sector_risk"]), max_size=3)
_funds = itertools.count()


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.tuples(values, sources), min_size=1, max_size=6))
def test_exposure_is_never_negative_and_never_counts_an_unknown_value_as_zero(app, positions):
    number = next(_funds)
    fund = Fund(name=f"Generated {number}")
    db.session.add(fund)
    for index, (value, flags) in enumerate(positions):
        db.session.add(Holding(fund=fund, company=flagged(f"Generated {number}-{index}", *flags), as_of=AS_OF,
                               market_value=value))
    db.session.commit()
    e = screening.exposure(fund, detail=False)
    known = [v for v, _ in positions if v is not None]
    assert (e.positions, e.unknown, e.value_known) == (len(positions), len(positions) - len(known), bool(known))
    assert e.total == sum(known, Decimal(0)) >= 0
    official = [v for v, flags in positions if set(flags) & set(screening.OFFICIAL_LISTS)]
    assert (e.official.positions, e.official.unknown) == (len(official), official.count(None))
    assert e.official.value == sum((v for v in official if v is not None), Decimal(0))
    for part in [e.official, *e.lists, *e.signals]:
        assert 0 <= part.value <= e.total and 0 <= part.unknown <= part.positions
        assert part.share is None or 0 <= part.share <= 100
        if part.positions and part.unknown == part.positions:
            assert part.share is None and not part.value_known  # "value unknown", never "0.0 %"


# --- 8. a holding without a market value ---------------------------------------------------

def test_a_listed_holding_without_market_value_is_not_silently_zero(client, login_as, runner, tmp_path, frozen):
    flagged("Listed No Value", "us_entity_list")
    db.session.commit()
    imported = cli_file(runner, tmp_path, "dash.csv", 'Name,Ticker,Market Value\nListed No Value,LNV,-\n'
                        'Plain Co 2,PC2,"10,000,000"\n', "--as-of", "2026-10-31", fund="Unknown Value Fund")
    assert imported.exit_code == 0, imported.output
    assert "no market value: 1 of 2 positions (shown as value unknown, never counted as 0)" in imported.output
    fund = db.session.scalar(sa.select(Fund).where(Fund.name == "Unknown Value Fund"))
    e = screening.exposure(fund)
    # 1 listed position, USD 0, 0.0 % of the fund: reads as "no exposure", though its value is unknown
    assert not (e.official.positions == 1 and e.official.share == Decimal("0.0")), \
        "a listed holding of unknown value is reported as 0.0 % exposure with no warning"
    assert (e.official.positions, e.official.unknown, e.official.share, e.total, e.unknown) == (1, 1, None, 10 * MILLION, 1)

    login_as("viewer")
    dashboard = client.get("/").get_data(as_text=True).split("Exposure to official lists")[1]
    assert "US Entity List: value unknown for 1" in dashboard and "value unknown for 1<br>" in dashboard
    assert "USD 0" not in dashboard and "0.0 %" not in dashboard
    funds = client.get("/holdings/funds").get_data(as_text=True)
    assert "USD 10.00 million, value unknown for 1 of 2 positions" in funds and "USD 0" not in funds
    page = client.get(f"/holdings/funds/{fund.id}").get_data(as_text=True)
    assert "<dt>On an official list</dt><dd>value unknown for 1 (1 company)</dd>" in page
    assert ('<tr><td>US Entity List</td><td class="num">1</td><td class="num">value unknown for 1</td>'
            '<td class="num">–</td></tr>') in page
    assert '<td class="num">value unknown</td>' in re.sub(r' data-label="[^"]*"', "", page)  # the holding's own row
    screening_page = client.get("/holdings/screening").get_data(as_text=True)
    assert "<strong>value unknown for 1</strong>" in screening_page and "<strong>USD 0" not in screening_page
    screened = runner.invoke(args=["screen", "--fund", "Unknown Value Fund"]).output
    assert "on an official list: 1 company, value unknown for 1" in screened
    assert "value unknown for 1 of the fund's 2 positions" in screened

    out = tmp_path / "october.xlsx"
    assert runner.invoke(args=["export", "monthly", "--month", "2026-10", "--format", "xlsx",
                               "--out", str(out)]).exit_code == 0
    summary = list(load_workbook(out)["Summary"].iter_rows(values_only=True))
    row = next(r for r in summary if r[0] == "Unknown Value Fund" and r[2] == "On any official list")
    assert row[3:7] == (1, None, None, 1)  # blank value and share, not 0; one company without a value


def test_a_fund_whose_values_are_all_missing_shows_value_unknown_not_zero(client, login_as):
    fund = Fund(name="No Values Fund")
    db.session.add(fund)
    db.session.add(Holding(fund=fund, company=flagged("Listed Blank", "uflpa_entity_list", "analyst"), as_of=AS_OF))
    db.session.add(Holding(fund=fund, company=factories.company("Plain Blank"), as_of=AS_OF))
    db.session.commit()
    e = screening.exposure(fund)
    assert (e.value_known, e.share, [p.share for p in e.signals if p.positions]) == (False, None, [None])
    login_as("viewer")
    for url in ("/", "/holdings/funds"):
        html = client.get(url).get_data(as_text=True)
        assert "USD 0" not in html and "0.0 %" not in html, url
    for url in (f"/holdings/funds/{fund.id}", "/holdings/screening"):  # lists holding nothing say USD 0; the fund is not USD 0
        html = client.get(url).get_data(as_text=True)
        assert "holdings of 31 Oct 2026 (value unknown)</caption>" in html, url
        assert "<strong>value unknown for 1</strong>" in html and "0.0 %" not in html, url
    assert "<dt>Market value</dt><dd>value unknown</dd>" in client.get(f"/holdings/funds/{fund.id}").get_data(as_text=True)
    funds = client.get("/holdings/funds").get_data(as_text=True)
    assert '<td class="num">value unknown</td>' in re.sub(r' data-label="[^"]*"', "", funds)  # cells' column names aside
    assert "Analyst note on 1 company (value unknown for 1; 1 also on an official list)" in \
        client.get("/").get_data(as_text=True)


# --- 9. divested companies held again: back-filled files and the rate of alerts ------------

def test_importing_an_older_snapshot_does_not_email_held_again_for_a_position_already_gone(
        runner, tmp_path, divested, frozen):  # noqa: F811
    """Latest snapshot (14 Nov) no longer holds the company; a back-filled 31 Oct file emails 'held again'."""
    assert import_cli(runner, tmp_path, as_of="2026-11-14").exit_code == 0
    fund = db.session.scalar(sa.select(Fund))
    db.session.execute(sa.delete(Holding).where(Holding.company_id == divested.company_id))  # sold by 14 Nov
    db.session.commit()
    before = db.session.scalar(sa.select(sa.func.count(OutboxEmail.id)))
    assert screening.exposure(fund).held_again == []  # dashboard and screening: nothing held again
    assert import_cli(runner, tmp_path, as_of="2026-10-31").exit_code == 0  # an older snapshot, back-filled
    after = db.session.scalar(sa.select(sa.func.count(OutboxEmail.id)))
    assert after == before, "owner emailed 'held again' (and pointed at the dashboard) for a past snapshot"


WITHOUT = HOLDINGS.splitlines()[0] + "\n" + HOLDINGS.splitlines()[2] + "\n"  # Meiya Pico sold


def test_held_again_emails_once_per_company_and_fund_until_sold_or_readmitted(
        runner, tmp_path, divested, frozen):  # noqa: F811
    def run(as_of, content=HOLDINGS):
        result = cli_file(runner, tmp_path, "daily.csv", content, "--as-of", as_of, "--partial")
        assert result.exit_code == 0, result.output
        return result.stderr

    def alerts():
        db.session.expire_all()
        return [(a.as_of.isoformat(), a.resolved_on and a.resolved_on.isoformat())
                for a in db.session.scalars(sa.select(DivestmentAlert).order_by(DivestmentAlert.id))]

    assert "(1 new alert(s), 1 owner email(s) queued)" in run("2026-11-02")
    for day in ("2026-11-03", "2026-11-04"):  # daily files still holding it: no more email
        assert "(0 new alert(s), 0 owner email(s) queued)" in run(day)
    back = run("2026-10-30")  # a back-filled file: the latest snapshot decides
    assert "in the fund's latest snapshot (04 Nov 2026, not the file imported)" in back and "(0 new alert(s)" in back
    assert len(outbox()) == 1 and alerts() == [("2026-11-02", None)]

    assert "held again" not in run("2026-11-05", WITHOUT)  # sold: the alert is resolved
    assert alerts() == [("2026-11-02", "2026-11-05")]
    assert "(0 new alert(s)" in run("2026-11-05")  # the 5 Nov file corrected (still held): the same alert
    assert alerts() == [("2026-11-02", None)] and len(outbox()) == 1
    run("2026-11-05", WITHOUT)
    assert "(1 new alert(s), 1 owner email(s) queued)" in run("2026-11-06")  # bought again: a new alert
    assert len(outbox()) == 2 and alerts() == [("2026-11-02", "2026-11-05"), ("2026-11-06", None)]

    # readmitted on evidence (no longer divested), then divested again: a new alert once more
    cycle.move_stage(divested, "identified", on=dt.date(2026, 11, 7), today=frozen, actor_id=None, reason="Contracts ended",
                     evidence="Audited termination of the contracts")
    db.session.commit()
    assert "held again" not in run("2026-11-08")
    assert alerts()[-1] == ("2026-11-06", "2026-11-08")
    cycle.move_stage(divested, "closed", on=dt.date(2026, 11, 9), today=frozen, actor_id=None, outcome="divested")
    db.session.commit()
    assert "(1 new alert(s), 1 owner email(s) queued)" in run("2026-11-10")
    assert len(outbox()) == 3 and [a[1] for a in alerts()] == ["2026-11-05", "2026-11-08", None]


# --- side finding: concurrent imports of one fund and date ---------------------------------

def concurrent_imports(database_url: str, path: Path, count: int, **env) -> list[tuple[int, str, str]]:
    """`flask holdings import` in `count` real processes started together, against the test database."""
    environment = {**os.environ, "ENGAGE_ENV": "development", "DATABASE_URL": database_url, "FLASK_APP": "wsgi",
                   "PYTHONPATH": str(ROOT), **env}
    command = [sys.executable, "-m", "flask", "holdings", "import", str(path), "--fund", "Break C", "--create-fund",
               "--as-of", "2026-11-25", "--partial"]
    processes = [subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(count)]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=180)
        results.append((process.returncode, out, err))
    return results


def holdings_file(tmp_path, rows=600) -> Path:
    lines = ["ISIN,Name,Market Value,Weight (%)"]
    for i in range(rows):
        stem = f"US{i:09d}"
        lines.append(f"{stem}{isin_check_digit(stem)},Concurrent Co {i:04d},{1000 + i},0.01")
    path = tmp_path / "concurrent.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("wait", [None, "0"])
def test_concurrent_imports_of_one_fund_and_date_each_succeed_or_fail_in_one_line(app, database_url, tmp_path, wait):
    """3 processes import the same new fund and date at once (the tester's run ended in a 92-line traceback).

    With the default wait all three succeed, one after the other; with no wait at all
    (HOLDINGS_IMPORT_WAIT_SECONDS=0) those that do not get their turn are refused in one line.
    Either way the snapshot is whole, the fund and each new company exist once.
    """
    rows = 600
    results = concurrent_imports(database_url, holdings_file(tmp_path, rows), 3,
                                 **({"HOLDINGS_IMPORT_WAIT_SECONDS": wait} if wait else {}))
    for code, out, err in results:
        assert "Traceback" not in err and "Traceback" not in out, err
        if code != 0:
            errors = [line for line in err.splitlines() if line.startswith("Error:")]
            assert code == 1 and len(errors) == 1 and err.strip().endswith(errors[0]), err
            assert "another holdings import is being written" in errors[0] and "nothing was imported" in errors[0]
    succeeded = [out for code, out, _ in results if code == 0]
    if wait is None:
        assert len(succeeded) == 3, results
        replaced = sorted(line for out in succeeded for line in out.splitlines() if line.startswith("replaced:"))
        assert replaced[-1] == "replaced: nothing (no earlier import for this date)"
        assert all(line.startswith(f"replaced: {rows} positions of the import of 25 Nov 2026") for line in replaced[:2])
    assert succeeded
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count(Fund.id))) == 1
    assert db.session.scalar(sa.select(sa.func.count(Company.id))) == rows
    assert db.session.scalar(sa.select(sa.func.count(Holding.id))) == rows
    assert db.session.scalar(sa.select(sa.func.count(HoldingImport.id))) == len(succeeded)


def test_a_web_import_refused_for_want_of_its_turn_says_so_and_can_be_confirmed_again(app, client, login_as, tmp_path):
    login_as("analyst")
    fund = Fund(name="Web Fund")
    db.session.add(fund)
    db.session.commit()
    preview = client.post("/holdings/import", data={"fund_id": fund.id, "as_of": "2026-10-31", "partial": "y",
                                                    "file": (io.BytesIO(HOLDINGS.encode()), "holdings.csv")},
                          content_type="multipart/form-data")
    token = preview.get_data(as_text=True).split("/holdings/import/")[1].split('"')[0]
    wait = app.config["HOLDINGS_IMPORT_WAIT_SECONDS"]
    app.config["HOLDINGS_IMPORT_WAIT_SECONDS"] = 0
    other = sa.create_engine(db.engine.url)  # another import holds the turn
    try:
        with other.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(importer.IMPORT_LOCK_KEY)))
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            refused = client.post(f"/holdings/import/{token}", data=factories.confirmation(preview.get_data(as_text=True)))
            conn.rollback()
    finally:
        other.dispose()
        app.config["HOLDINGS_IMPORT_WAIT_SECONDS"] = wait
    html = refused.get_data(as_text=True)
    assert refused.status_code == 409 and "Another holdings import is being written" in html
    assert f"/holdings/import/{token}" in html  # the preview again, to confirm once more
    assert db.session.scalar(sa.select(sa.func.count(Holding.id))) == 0
    assert client.post(f"/holdings/import/{token}", data=factories.confirmation(html)).status_code == 302
    assert db.session.scalar(sa.select(sa.func.count(Holding.id))) == 2


# --- newcomer confusions: counts that agree with what is shown ------------------------------

def test_screening_note_and_table_count_the_same_holdings(client, login_as):
    fund = Fund(name="Noted Fund")
    db.session.add(fund)
    for name, sources in (("Listed And Noted", ("us_entity_list", "analyst")), ("Noted A", ("analyst",)),
                          ("Noted B", ("analyst",))):
        db.session.add(Holding(fund=fund, company=flagged(name, *sources), as_of=AS_OF, market_value=MILLION))
    db.session.commit()
    login_as("viewer")
    page = client.get("/holdings/screening").get_data(as_text=True)
    assert "Analyst note on 3 companies (USD 3.00 million, 100.0 %; 1 also on an official list)" in page
    assert "2 holdings with analyst notes or sector risk only, on no official list (not exposure); holdings on an " \
           "official list that also carry a note are in the table above" in page


def test_score_bands_count_scores_as_they_are_shown(client, login_as, frozen):
    from engage.models import Campaign, Interaction, Rubric

    campaign = Campaign(slug="bands", name="Bands")
    rubric = Rubric(campaign=campaign, version=1, name="Rubric")
    db.session.add_all([campaign, rubric])
    for name, total in (("Shown Sixty", "59.50"), ("Shown Fifty-Nine", "59.49"), ("Shown Twenty", "19.50"),
                        ("Top", "100.00")):
        engagement = factories.engagement(campaign=campaign, company=factories.company(name))
        reply = Interaction(engagement=engagement, kind="response", direction="inbound", occurred_on=AS_OF,
                            subject="Reply", summary="")
        db.session.add(Score(engagement=engagement, interaction=reply, rubric=rubric, scored_on=AS_OF,
                             total=Decimal(total)))
    db.session.commit()
    login_as("viewer")
    page = client.get(f"/scoring/campaigns/{campaign.id}").get_data(as_text=True)
    assert "0–19: 0. 20–39: 1. 40–59: 1. 60–79: 1. 80–100: 1." in page  # 59.5 shows as 60: counted in 60–79


def test_score_trend_lists_only_changes_shown_as_non_zero(client, login_as, frozen):
    from engage.models import Campaign, Interaction, Rubric

    campaign = Campaign(slug="trend", name="Trend")
    rubric = Rubric(campaign=campaign, version=1, name="Rubric")
    db.session.add_all([campaign, rubric])
    for name, totals in (("Up Point Four", ("50.00", "50.40")), ("Up Half", ("50.00", "50.50")),
                         ("Down Point Four", ("50.00", "49.60")), ("Down Half", ("50.00", "49.50"))):
        engagement = factories.engagement(campaign=campaign, company=factories.company(name))
        for day, total in enumerate(totals, start=1):
            reply = Interaction(engagement=engagement, kind="response", direction="inbound",
                                occurred_on=dt.date(2026, 10, day), subject="Reply", summary="")
            db.session.add(Score(engagement=engagement, interaction=reply, rubric=rubric,
                                 scored_on=dt.date(2026, 10, day), total=Decimal(total)))
    db.session.commit()
    login_as("viewer")
    for url in ("/companies", "/engagements"):
        up = client.get(f"{url}?trend=up").get_data(as_text=True)
        down = client.get(f"{url}?trend=down").get_data(as_text=True)
        assert "Up Half" in up and "+1" in up and "Up Point Four" not in up and "+0" not in up, url
        assert "Down Half" in down and "-1" in down and "Down Point Four" not in down and "+0" not in down, url


def test_upgrading_clears_negative_values_and_keeps_one_open_alert(make_app, tmp_path, database_url):
    """Revision 0014: short positions stored earlier become "value unknown"; older per-snapshot alerts resolve."""
    from flask_migrate import upgrade

    if not database_url.startswith("sqlite"):
        pytest.skip("the same portable SQL runs on PostgreSQL when the suite builds its schema")
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'upgrade.sqlite'}")
    stamp = "'2026-01-01', '2026-01-01'"
    with app.app_context():
        upgrade(revision="0013")
        with db.engine.begin() as conn:
            for statement in (
                f"INSERT INTO companies (id, name, normalized_name, description, address, created_at, updated_at) "
                f"VALUES (1, 'C', 'c', '', '', {stamp}), (2, 'D', 'd', '', '', {stamp})",
                f"INSERT INTO campaigns (id, slug, name, summary, expectations, call_to_action, source, "
                f"response_window_days, follow_up_interval_days, follow_ups_before_escalation, warn_days_before, "
                f"active, letterhead, created_at, updated_at) VALUES (1, 'c', 'C', '', '[]', '', '', 30, 14, 2, 3, 1, "
                f"'', {stamp})",
                f"INSERT INTO engagements (id, company_id, campaign_id, stage, escalation, outcome, closed_on, objectives, "
                f"opened_on, version, created_at, updated_at) VALUES (1, 1, 1, 'closed', 'none', 'divested', '2026-03-01', '', "
                f"'2026-01-01', 1, {stamp})",
                f"INSERT INTO funds (id, name, base_currency, created_at, updated_at) VALUES (1, 'F', 'USD', {stamp})",
                f"INSERT INTO holdings (fund_id, company_id, as_of, shares, market_value, created_at, updated_at) "
                f"VALUES (1, 1, '2026-10-31', -5, -3000000, {stamp}), (1, 2, '2026-10-31', 5, 1000, {stamp})",
                f"INSERT INTO divestment_alerts (company_id, fund_id, as_of, engagement_id, created_at, updated_at) "
                f"VALUES (1, 1, '2026-10-30', 1, {stamp}), (1, 1, '2026-10-31', 1, {stamp})",
            ):
                conn.exec_driver_sql(statement)
        upgrade()
        rows = db.session.execute(sa.text("SELECT company_id, shares, market_value FROM holdings ORDER BY company_id"))
        assert [(c, s, v) for c, s, v in rows] == [(1, None, None), (2, 5, 1000)]
        alerts = db.session.execute(sa.text("SELECT as_of, resolved_on FROM divestment_alerts ORDER BY as_of")).all()
        assert [tuple(a) for a in alerts] == [("2026-10-30", "2026-10-31"), ("2026-10-31", None)]
        db.session.remove()
        db.engine.dispose()
