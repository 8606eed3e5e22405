"""The cost of h-remind's triggers on writes (README, Performance, "Reminders and funds pages"):

    MY_URL=<database url> PYTHONPATH=<tree> python tests/benchmarks/remind_write_cost.py

On a copy of a kept data set: SQLite commits DDL at once, so the triggers are installed again at
the end (check with `flask reminders check-counts`).

Measured: 20,000 reminders inserted (executemany), their status set to done
(one UPDATE), an owner change of 2,000 engagements, 5,000 holdings inserted; with and without
engage.reminders.stored's and engage.holdings.stored's triggers, each in a transaction rolled back."""
import os, time, datetime as dt
import sqlalchemy as sa
from config import TestConfig
from engage import create_app
from engage.extensions import db
from engage.reminders import stored as rstored
from engage.holdings import stored as hstored
app = create_app(TestConfig, overrides={"SQLALCHEMY_DATABASE_URI": os.environ["MY_URL"], "JOBS_URL": "memory://"})
N = 20000
with app.app_context():
    def run(label):
        conn = db.session.connection()
        eids = [r[0] for r in conn.execute(sa.text("SELECT id FROM engagements ORDER BY id LIMIT 2000"))]
        cids = [r[0] for r in conn.execute(sa.text("SELECT id FROM companies ORDER BY id LIMIT 5000"))]
        fund = conn.execute(sa.text("SELECT id FROM funds ORDER BY id LIMIT 1")).scalar()
        users = [r[0] for r in conn.execute(sa.text("SELECT id FROM users ORDER BY id LIMIT 2"))]
        stamp = dt.datetime(2026, 12, 6)
        out = []
        for name, fn in (
            ("insert 20,000 reminders", lambda: conn.execute(sa.text(
                "INSERT INTO reminders (engagement_id, due_on, reason, kind, status, created_at, updated_at) "
                "VALUES (:e, :d, 'Cost', 'manual', 'open', :t, :t)"),
                [{"e": eids[i % len(eids)], "d": dt.date(2026, 12, 1) + dt.timedelta(days=i % 90), "t": stamp} for i in range(N)])),
            ("mark those 20,000 done (one UPDATE)", lambda: conn.execute(sa.text("UPDATE reminders SET status = 'done' WHERE reason = 'Cost'"))),
            ("give 2,000 engagements another owner (one UPDATE)", lambda: conn.execute(sa.text(
                f"UPDATE engagements SET owner_id = {users[-1]} WHERE id <= {eids[-1]}"))),
            ("insert 5,000 holdings", lambda: conn.execute(sa.text(
                "INSERT INTO holdings (fund_id, company_id, as_of, market_value, created_at, updated_at) VALUES (:f, :c, :d, 1, :t, :t)"),
                [{"f": fund, "c": c, "d": dt.date(2027, 1, 31), "t": stamp} for c in cids])),
        ):
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            out.append(f"{name}: {time.perf_counter() - wall:.2f} s wall, {time.process_time() - cpu:.2f} s CPU")
        db.session.rollback()
        print(f"-- {label}\n   " + "\n   ".join(out), flush=True)
    run("with the triggers")
    conn = db.session.connection(); rstored.uninstall(conn); hstored.uninstall(conn)
    run("without them")
    db.session.rollback()
    conn = db.session.connection(); rstored.install(conn); hstored.install(conn); db.session.commit()
    conn = db.session.connection()
    print("triggers back:", rstored.missing_triggers(conn) == [] and hstored.missing_triggers(conn) == [])
    print(os.getloadavg())
