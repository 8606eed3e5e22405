"""The holdings import's fast path (issue 20: 200,000 new companies in one job) writes exactly the
rows the row-by-row definition writes, and nothing at all when the database refuses a row halfway.

The fast path writes companies, their audit events and the positions through the driver
(engage.dbutil.write_rows: many rows per INSERT on SQLite, COPY on PostgreSQL). The definition
(`import_parsed(..., bulk=False)`) creates one ORM object per company (the mapper hooks write the
reading and the audit events) and the positions with SQLAlchemy's executemany. Both run on the same
database state, under a frozen clock, and every table is compared raw: each column as stored (a
JSON column as its text), the search index's own entries on SQLite (fts5vocab), the search on
PostgreSQL. Runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from engage import audit
from engage.engagements import cycle
from engage.extensions import db
from engage.holdings import importer, service
from engage.models import AuditEvent, Company, Fund, Holding
from engage.models.holdings import HoldingImport
from engage.search import service as search
from tests import factories
from tests.test_background_break import holdings_file
from tests.test_exposure import flagged
from tests.test_holdings_bulk import small_file

AS_OF = dt.date(2026, 10, 31)
MOMENT = dt.datetime(2026, 11, 15, 9, 0)


def _is_postgresql() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def _sequences() -> dict[str, tuple[int, bool]]:
    """PostgreSQL's id sequences as they stand (a rolled-back transaction does not give back ids)."""
    if not _is_postgresql():
        return {}
    return {name: (value, called) for name, value, called in db.session.execute(sa.text(
        "SELECT format('%I.%I', schemaname, sequencename), coalesce(last_value, 1), last_value IS NOT NULL "
        "FROM pg_sequences WHERE schemaname = 'public'"))}


def _restore(sequences: dict[str, tuple[int, bool]]) -> None:
    for name, (value, called) in sequences.items():
        db.session.execute(sa.select(sa.func.setval(name, value, called)))
    db.session.commit()


#: Columns made random on purpose (an email's Message-ID), compared as present or not.
RANDOM = {("outbox_emails", "message_id")}


def _everything(group: str) -> dict[str, list[tuple]]:
    """Every row of every table as stored (the audit group id, random per run, named "<group>"),
    and on SQLite every entry of the companies' search index. Not `write_counters` and `write_log`:
    the funds page's record of writes (engage.holdings.stored), which on PostgreSQL holds the
    writing transaction's id, another in each run."""
    out = {}
    for table in db.metadata.sorted_tables:
        if table.name in ("write_counters", "write_log"):  # the writes' record: transaction ids differ per run
            continue
        columns = [sa.cast(c, sa.Text) if isinstance(c.type, sa.JSON)
                   else (c.is_not(None)) if (table.name, c.name) in RANDOM else c for c in table.columns]
        rows = db.session.execute(sa.select(*columns).order_by(*table.primary_key.columns)).all()
        out[table.name] = [tuple("<group>" if value == group else value for value in row) for row in rows]
    if not _is_postgresql():
        db.session.execute(sa.text("CREATE VIRTUAL TABLE temp.fastpath_vocab USING "
                                   "fts5vocab(main, 'search_companies', 'instance')"))
        out["search_companies"] = db.session.execute(sa.text(
            'SELECT term, doc, col, "offset" FROM temp.fastpath_vocab ORDER BY 1, 2, 3, 4')).all()
        db.session.execute(sa.text("INSERT INTO search_companies(search_companies) VALUES ('integrity-check')"))
    return out


@pytest.fixture()
def divested(make_user, freeze_clock):
    """A known company closed as divested (so the import raises a held-again alert and queues its owner's email)."""
    freeze_clock(MOMENT)
    owner = make_user("analyst", email="owner@example.org")
    company = flagged("Known Holdings Plc", "us_entity_list")
    engagement = factories.engagement(company=company, owner=owner, opened_on=dt.date(2026, 1, 5))
    cycle.move_stage(engagement, "closed", on=dt.date(2026, 3, 10), today=MOMENT.date(), actor_id=None,
                     outcome="divested", note="Sold after the divestment recommendation.")
    db.session.commit()
    return company


def test_the_fast_path_writes_every_row_the_row_by_row_definition_writes(app, make_user, divested):
    analyst = make_user("analyst")
    fund = Fund(name="Fast Path Fund")
    db.session.add(fund)
    db.session.commit()
    data = small_file()
    parsed = service.check_file(data, "fast.csv", service.ReadOptions(partial=True), fund).parsed
    assert parsed.ok, parsed.errors
    sequences = _sequences()
    seen = {}
    for bulk in (False, True):
        with audit.acting_as(analyst.email, analyst.id), audit.grouped() as group:
            result = importer.import_parsed(parsed, fund, AS_OF, filename="fast.csv", data=data, bulk=bulk)
            db.session.flush()
            seen[bulk] = _everything(group), result.lines(), result.warnings()
        db.session.rollback()  # the other way starts from the same database, with the same ids
        _restore(sequences)
    definition, fast = seen[False], seen[True]
    for table in definition[0]:
        assert fast[0][table] == definition[0][table], table
    assert fast[1:] == definition[1:]
    written = fast[0]
    # What was compared is the import's work: companies, their events, positions, an alert and its email.
    assert len(written["companies"]) == 6 and len(written["holdings"]) == 5 and len(written["holding_imports"]) == 1
    assert len(written["divestment_alerts"]) == 1 and len(written["outbox_emails"]) == 1
    assert any("held again" in line for line in fast[2]), fast[2]
    if not _is_postgresql():  # every company is in the search index
        assert {row[1] for row in written["search_companies"]} == {row[0] for row in written["companies"]}
    # and the fast path's rows are found: committed, each new company by a word of its name and its ISIN
    with audit.acting_as(analyst.email, analyst.id):
        importer.import_parsed(parsed, fund, AS_OF, filename="fast.csv", data=data)
    db.session.commit()
    created = db.session.scalars(sa.select(Company).where(Company.origin.is_not(None))).all()
    assert len(created) == 4
    for company in created:
        for text in (company.name.split()[0], company.isin):
            if text:
                hits = search.search(text, kind="companies").groups[0].hits
                assert company.id in [hit.id for hit in hits], (text, company.name)


def _refuse(table: str, condition_sqlite: str, condition_pg: str) -> Callable[[], None]:
    """Make the database refuse one row of `table` (as a constraint only it checks would); returns the undo."""
    if _is_postgresql():
        db.session.execute(sa.text(
            "CREATE FUNCTION fastpath_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF {condition_pg} THEN RAISE EXCEPTION 'refused by the test: a duplicate'; END IF; "
            "RETURN NEW; END $$"))
        db.session.execute(sa.text(f"CREATE TRIGGER fastpath_refuse BEFORE INSERT ON {table} FOR EACH ROW "
                                   "EXECUTE FUNCTION fastpath_refuse()"))
        db.session.commit()

        def undo():
            db.session.rollback()
            db.session.execute(sa.text(f"DROP TRIGGER IF EXISTS fastpath_refuse ON {table}"))
            db.session.execute(sa.text("DROP FUNCTION IF EXISTS fastpath_refuse()"))
            db.session.commit()
        return undo
    db.session.execute(sa.text(
        f"CREATE TRIGGER fastpath_refuse BEFORE INSERT ON {table} WHEN {condition_sqlite} "
        "BEGIN SELECT RAISE(ABORT, 'refused by the test: a duplicate'); END"))
    db.session.commit()

    def undo():
        db.session.rollback()
        db.session.execute(sa.text("DROP TRIGGER IF EXISTS fastpath_refuse"))
        db.session.commit()
    return undo


@pytest.mark.parametrize("table, sqlite_when, pg_if", [
    # the 1,500th company of 3,000: some INSERT statements (or part of the COPY) went through before
    ("companies", "NEW.name = 'Breakwater Test Holdings 1499 Ltd'", "NEW.name = 'Breakwater Test Holdings 1499 Ltd'"),
    # the last table written: every company and audit event of the file is written before the refusal
    ("holdings", "NEW.market_value = 1002999", "NEW.market_value = 1002999"),
])
def test_a_row_the_database_refuses_halfway_leaves_nothing_written(app, make_user, table, sqlite_when, pg_if):
    analyst = make_user("analyst")
    fund = Fund(name="Refused Fund")
    db.session.add(fund)
    db.session.commit()
    counts = {model: db.session.scalar(sa.select(sa.func.count()).select_from(model))
              for model in (Company, Holding, AuditEvent, HoldingImport)}
    data = holdings_file(3000)
    undo = _refuse(table, sqlite_when, pg_if)
    try:
        with audit.acting_as(analyst.email, analyst.id), pytest.raises(sa.exc.DBAPIError) as refused:
            service.import_file(data, "big.csv", service.ReadOptions(partial=True), fund_id=fund.id)
        db.session.rollback()  # as the job and the web confirmation do on any fault
        assert "refused by the test" in str(refused.value)
        assert {model: db.session.scalar(sa.select(sa.func.count()).select_from(model)) for model in counts} == counts
        if not _is_postgresql():  # no search entry of a company that is not there
            db.session.execute(sa.text("INSERT INTO search_companies(search_companies) VALUES ('integrity-check')"))
            assert not search.search("Breakwater", kind="companies").groups[0].hits
    finally:
        undo()
    # The same file once the database takes it: all of it, once.
    with audit.acting_as(analyst.email, analyst.id):
        result = service.import_file(data, "big.csv", service.ReadOptions(partial=True), fund_id=fund.id)
    db.session.commit()
    assert len(result.created) == 3000
    assert db.session.scalar(sa.select(sa.func.count(Holding.id)).where(Holding.fund_id == fund.id)) == 3000
    assert db.session.scalar(sa.select(sa.func.count(AuditEvent.id)).where(
        AuditEvent.object_type == "Company", AuditEvent.action == "create")) == 3000


def test_a_fault_while_the_rows_are_made_leaves_nothing_written(app, make_user, monkeypatch):
    """The companies' rows are made as the COPY (or SQLite's INSERTs) takes them (dbutil.write_rows
    reads a generator): a fault in the worker while reading the 2,500th name of 3,000, after two
    COPYs of 1,000 companies went through, ends the statement unfinished; nothing is left."""
    from engage import dbutil, names

    analyst = make_user("analyst")
    fund = Fund(name="Faulty Fund")
    db.session.add(fund)
    db.session.commit()
    counts = {model: db.session.scalar(sa.select(sa.func.count()).select_from(model))
              for model in (Company, Holding, AuditEvent, HoldingImport)}
    data = holdings_file(3000)
    monkeypatch.setattr(dbutil, "CHUNK", 1000)
    reads = []
    real = names.stored_forms

    def faulty(found, *args, **kwargs):
        reads.append(found)
        if found == ["Breakwater Test Holdings 2499 Ltd"]:
            raise MemoryError("a fault made by the test")
        return real(found, *args, **kwargs)

    monkeypatch.setattr(importer.names, "stored_forms", faulty)
    with audit.acting_as(analyst.email, analyst.id), pytest.raises(MemoryError, match="made by the test"):
        service.import_file(data, "big.csv", service.ReadOptions(partial=True), fund_id=fund.id)
    db.session.rollback()  # as the job and the web confirmation do on any fault
    assert len(reads) == 2500  # the fault stopped the reading there: the names after it were not read
    assert {model: db.session.scalar(sa.select(sa.func.count()).select_from(model)) for model in counts} == counts
    monkeypatch.setattr(importer.names, "stored_forms", real)
    with audit.acting_as(analyst.email, analyst.id):
        result = service.import_file(data, "big.csv", service.ReadOptions(partial=True), fund_id=fund.id)
    db.session.commit()
    assert len(result.created) == 3000
    assert db.session.scalar(sa.select(sa.func.count(Holding.id)).where(Holding.fund_id == fund.id)) == 3000
