"""Time the pages the stored dates change (README, Performance, "Stored follow-up and contact dates").

    PYTHONPATH=<worktree> python tests/benchmarks/stored_dates_pages.py DATABASE_URL [--upgrade]

PYTHONPATH decides which code runs (main for "before", the branch for "after"); --upgrade brings
the database to the newest migration first and times it; ONLY=none skips the pages. Run it on a
copy of a kept data set (it adds a user). Prints one line per page and a JSON summary.
"""
import json, os, statistics, sys, time
import sqlalchemy as sa
from config import TestConfig
from engage import create_app
from engage.extensions import db

url = sys.argv[1]
REPEAT = int(os.environ.get("REPEAT", "7"))
app = create_app(TestConfig, overrides={"SQLALCHEMY_DATABASE_URI": url, "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": 9,
                                        "PAGE_SIZE": 50, "JOBS_URL": "memory://"})
out = {"url": url.split("/")[-1], "code": __import__("engage").__file__, "load_before": os.getloadavg()}
with app.app_context():
    from flask_migrate import upgrade
    from engage.models import Engagement, User
    if "--upgrade" in sys.argv:
        wall, cpu = time.perf_counter(), time.process_time()
        upgrade()
        out["upgrade_s"] = round(time.perf_counter() - wall, 2)
        out["upgrade_cpu_s"] = round(time.process_time() - cpu, 2)
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE engagements")
        else:
            with db.engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
    admin = db.session.scalar(sa.select(User).where(User.email == "stored-bench@example.org"))
    if admin is None:
        admin = User(email="stored-bench@example.org", name="Bench", role="admin")
        admin.set_password("benchmark password")
        db.session.add(admin)
        db.session.commit()
    eng = db.session.scalar(sa.select(Engagement.id).order_by(Engagement.id).limit(1))
    client = app.test_client()
    client.post("/auth/login", data={"email": "stored-bench@example.org", "password": "benchmark password"})
    pages = [("dashboard", "/"), ("engagements, by next follow-up", "/engagements?sort=next_follow_up"),
             ("engagements, by last contact", "/engagements?sort=last_contact"),
             ("engagements, overdue", "/engagements?overdue=yes"), ("engagements, quiet", "/engagements?stale=yes"),
             ("engagements, first page", "/engagements"),
             ("reminders", "/reminders?who=all"), ("engagement page", f"/engagements/{eng}")]
    if "--pages" in os.environ.get("ONLY", "--pages"):
        res = []
        for label, path in pages:
            r = client.get(path); assert r.status_code == 200, (path, r.status_code)
            walls, cpus = [], []
            for _ in range(REPEAT):
                w, c = time.perf_counter(), time.process_time()
                client.get(path)
                walls.append((time.perf_counter() - w) * 1000); cpus.append((time.process_time() - c) * 1000)
                if len(walls) >= 3 and sum(walls) > 20000:
                    break
            res.append({"page": label, "median_ms": round(statistics.median(walls), 1),
                        "cpu_ms": round(statistics.median(cpus), 1), "n": len(walls)})
            print(f"{label:35s} {res[-1]['median_ms']:9.1f} ms  cpu {res[-1]['cpu_ms']:8.1f} ms  n={len(walls)}", flush=True)
        out["pages"] = res
    out["load_after"] = os.getloadavg()
    db.session.remove()
print(json.dumps(out))
