"""The PostgreSQL write logs (migrations 0039 and 0041) after a database is restored into another server.

`write_log` holds one row per writing transaction, keyed by its transaction id (txid_current()),
so that a transaction's later statements add nothing. A dump restored into another server (a new
cluster: a move, a restore from backup, a copy for staging) carries the old server's rows, whose
transaction ids the new server hands out again (a young server starts below 1,000). A write whose
transaction id is already in the log must still move the counters, or the funds and screening
pages keep showing figures counted before it. PostgreSQL only (SQLite counts in a row).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from engage.extensions import db
from engage.holdings import screening_stored, stored
from engage.models import Company, Holding
from tests.test_screening_writes import counted_now, get_pages, two_funds, urls  # noqa: F401 (a fixture)

#: How many transaction ids past the current one the "restored" rows cover (other databases of the
#: same server, the lead's test runs among them, take ids meanwhile).
AHEAD = 20000


@pytest.fixture()
def restored_log(app):
    """The log as a dump of another server restored here leaves it: rows for the transaction ids this server hands out next."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's write log")
    db.session.execute(sa.text(
        "INSERT INTO write_log (name, txid) SELECT name, txid_current() + n FROM generate_series(1, :ahead) AS n, "
        "(VALUES (:exposure), (:screening)) AS names(name) ON CONFLICT DO NOTHING"),
        {"ahead": AHEAD, "exposure": stored.COUNTER, "screening": screening_stored.COUNTER})
    db.session.commit()


def test_a_write_whose_transaction_id_a_restored_log_holds_still_moves_the_counters(client, login_as, two_funds,  # noqa: F811
                                                                                  restored_log):
    login_as("analyst")
    get_pages(client, two_funds)  # counted and stored
    before = screening_stored.writes()
    company = db.session.scalar(sa.select(Company).where(Company.name == "Alpha Listed Stored Big Fund"))
    company.name, company.normalized_name = "Zulu Listed Stored Big Fund", "zulu listed stored big fund"
    db.session.execute(sa.update(Holding).where(Holding.company_id == company.id).values(market_value=8000))
    db.session.commit()
    after = screening_stored.writes()
    assert after[0] != before[0] and after[1] != before[1]
    shown = get_pages(client, two_funds)
    assert "Zulu Listed Stored Big Fund" in "".join(shown)
    assert shown == counted_now(client, two_funds)


def test_a_transaction_still_adds_one_row_to_each_log_however_many_statements(app, restored_log):
    def rows():
        return dict(db.session.execute(sa.text("SELECT name, count(*) FROM write_log GROUP BY name")).all())

    before = rows()
    for _ in range(5):
        db.session.execute(sa.text("UPDATE companies SET name = name || '' WHERE id = -1"))
        db.session.execute(sa.text("UPDATE holdings SET weight = weight WHERE id = -1"))
    db.session.commit()
    after = rows()
    assert after[stored.COUNTER] == before[stored.COUNTER] + 1
    assert after[screening_stored.COUNTER] == before[screening_stored.COUNTER] + 1


def test_a_read_only_database_still_shows_the_counted_pages(client, login_as, two_funds):  # noqa: F811
    """A standby or a database put read-only for maintenance: the funds, screening and dashboard pages
    count live and show, though their figures cannot be stored (PostgreSQL refuses with SQLSTATE
    25006, an InternalError, not the OperationalError a held SQLite lock raises). h-break5 found 500s."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's read-only transactions")
    login_as("analyst")
    db.session.execute(sa.text("DELETE FROM dashboard_figures"))
    db.session.commit()
    database = db.engine.url.database
    db.session.execute(sa.text(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on'))
    db.session.commit()
    db.session.remove()
    db.engine.dispose()  # new connections take the setting
    try:
        for url in ["/holdings/funds", "/", *urls(two_funds)]:
            assert client.get(url).status_code == 200, url
        assert db.session.scalar(sa.text("SELECT count(*) FROM dashboard_figures")) == 0  # nothing stored
    finally:
        db.session.remove()
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(sa.text("SET default_transaction_read_only = off"))  # this session's, then the database's
            connection.execute(sa.text(f'ALTER DATABASE "{database}" RESET default_transaction_read_only'))
        db.engine.dispose()
