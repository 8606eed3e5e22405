"""Time the reminders and funds pages (README, Performance, "Reminders and funds pages") with
bench.py's own helpers (`_time_pages`: median and p95 of BENCH_REPEAT requests after a warm-up).

    MY_URL=<database url> PYTHONPATH=<tree> python tests/benchmarks/remind_pages.py

PYTHONPATH decides which code runs: main for "before" (an export of the commit), the branch for
"after". Run it on a copy of a kept data set (it adds a user). MY_UPGRADE=0 skips `flask db
upgrade` (needed for "before" on a database the branch already upgraded); MY_ANALYZE=0 skips
PostgreSQL's VACUUM ANALYZE; MY_SQL=N prints each page's N slowest statements; MY_PLAN=1 the
plan of the slowest.
"""
import os, sys, time
sys.argv = sys.argv[:1]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench

import sqlalchemy as sa
from config import Config, TestConfig
from engage import create_app
from engage.extensions import db

url = os.environ["MY_URL"]
app = create_app(TestConfig, overrides={"SQLALCHEMY_DATABASE_URI": url, "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": 9,
                                        "PAGE_SIZE": 50, "JOBS_URL": "memory://",
                                        "DASHBOARD_MAX_AGE_SECONDS": Config.DASHBOARD_MAX_AGE_SECONDS})
with app.app_context():
    from flask_migrate import upgrade
    if os.environ.get("MY_UPGRADE", "1") == "1":
        t = time.perf_counter(); upgrade(); print("upgrade", round(time.perf_counter() - t, 1), "s", flush=True)
    if url.startswith("postgresql") and os.environ.get("MY_ANALYZE", "1") == "1":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    from engage.models import User
    if not db.session.scalar(sa.select(User).where(User.email == "bench@example.org")):
        admin = User(email="bench@example.org", name="Bench", role="admin"); admin.set_password("benchmark password")
        db.session.add(admin); db.session.commit()
    client = app.test_client()
    client.post("/auth/login", data={"email": "bench@example.org", "password": "benchmark password"})
    pages = [("reminders", "/reminders?who=all"), ("reminders, mine", "/reminders?who=mine"), ("funds", "/holdings/funds")]
    out = bench._time_pages(client, pages)
    for p in out:
        print(f"{p['name']:20} median {p['median_ms']:8.1f} p95 {p['p95_ms']:8.1f} cpu {p['cpu_median_ms']:8.1f} "
              f"q {p['queries']} load {p['load_average']}")
        if os.environ.get("MY_SQL"):
            for s in sorted(p["statements"], key=lambda s: -s["ms"])[:int(os.environ.get("MY_SQL"))]:
                print(f"   {s['ms']:8.2f} ms  {' '.join(s['sql'].split())[:300]}")
        if os.environ.get("MY_PLAN"):
            log = bench.StatementLog(None); log.statements = p["statements"]
            print(bench.plan(db.engine, log.slowest()))
    print(os.getloadavg())
