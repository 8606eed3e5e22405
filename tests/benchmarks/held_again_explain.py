# Usage: PYTHONPATH=<worktree> python tests/benchmarks/held_again_explain.py DATABASE_URL (a kept 100,000-company copy with the
# screening pages' stored figures in use).
"""EXPLAIN the held-again list's statements before (the ranking of every row, page 800) and after
(the shown rows' details by id) on a kept 100,000-company copy."""
import sys, time
sys.path.insert(0, "tests/benchmarks")
import sqlalchemy as sa
from config import TestConfig
from engage import create_app
from engage.extensions import db
from engage.holdings import screening, screening_stored

url = sys.argv[1]
app = create_app(TestConfig, overrides={"SQLALCHEMY_DATABASE_URI": url, "JOBS_URL": "memory://"})
with app.app_context():
    pg = db.engine.dialect.name == "postgresql"
    captured = []
    def grab(conn, cursor, statement, params, context, executemany):
        captured.append((statement, params))
    snap = screening.snapshots()
    sa.event.listen(db.engine, "before_cursor_execute", grab)
    t = time.perf_counter(); screening.held_again(snap, limit=50, offset=799 * 50); old_ms = (time.perf_counter() - t) * 1000
    old = captured[-1]
    lists = screening_stored.held_lists()
    funds = db.session.execute(sa.select(screening.Fund.id).order_by(screening.Fund.name, screening.Fund.id)).scalars().all()
    ids = [i for f in funds for i in lists.get(f, [])]
    captured.clear()
    t = time.perf_counter(); screening.held_again_rows(ids[799 * 50:800 * 50]); new_ms = (time.perf_counter() - t) * 1000
    new = captured[-1]
    sa.event.remove(db.engine, "before_cursor_execute", grab)
    for label, (statement, params), ms in (("BEFORE: held_again(limit=50, offset=39950)", old, old_ms),
                                           ("AFTER: held_again_rows(50 stored ids)", new, new_ms)):
        print(f"===== {label}: {ms:.1f} ms through the app")
        print(statement)
        prefix = "EXPLAIN (ANALYZE, BUFFERS) " if pg else "EXPLAIN QUERY PLAN "
        raw = db.session.connection().connection.driver_connection
        cur = raw.cursor()
        cur.execute(prefix + statement, params)
        for row in cur.fetchall():
            print("   ", " | ".join(str(c) for c in row))
    db.session.rollback()
