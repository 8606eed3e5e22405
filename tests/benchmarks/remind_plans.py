"""The plans of the reminders and funds pages' statements (README, Performance, "Reminders and funds
pages"): EXPLAIN QUERY PLAN on SQLite, EXPLAIN (ANALYZE, BUFFERS) on PostgreSQL, through bench.plan.

    MY_URL=<database url> PYTHONPATH=<tree> python tests/benchmarks/remind_plans.py

Run after remind_pages.py on the same database (it signs in as its user).
"""
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__))); sys.argv = sys.argv[:1]
import bench
from bench import StatementLog
from config import TestConfig
from engage import create_app
from engage.extensions import db
app = create_app(TestConfig, overrides={"SQLALCHEMY_DATABASE_URI": os.environ["MY_URL"], "PAGE_SIZE": 50, "JOBS_URL": "memory://"})
with app.app_context():
    c = app.test_client()
    c.post("/auth/login", data={"email": "bench@example.org", "password": "benchmark password"})
    for url in ("/reminders?who=all", "/reminders?who=mine", "/holdings/funds"):
        c.get(url)
        with StatementLog(db.engine) as log:
            c.get(url)
        for st in log.statements:
            if "UNION ALL" in st["sql"] or "reminder_counts" in st["sql"] or "dashboard_figures" in st["sql"]:
                print(f"== {url}: {st['ms']} ms\n{st['sql']}\nparameters: {st['parameters']!r}")
                print(bench.plan(db.engine, st)); print()
