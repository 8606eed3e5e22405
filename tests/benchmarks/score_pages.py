"""Time the companies list's pages (README, Performance, "Companies by score: a stored score").

    PYTHONPATH=<worktree> python tests/benchmarks/score_pages.py DATABASE_URL [--upgrade]

PYTHONPATH decides which code runs (main for "before", the branch for "after"); --upgrade brings
the database to the newest migration first and times it (then ANALYZE). Run it on a copy of a kept
data set (it adds a user). Prints one line per page (median wall and CPU of this process, the
number of SQL statements of one request) and a JSON summary. REPEAT (default 7) requests a page.
--explain=FILE: also write each page's slowest statement (its ms in one request) and its plan
(bench.py's: EXPLAIN (ANALYZE, BUFFERS) on PostgreSQL, EXPLAIN QUERY PLAN on SQLite) to FILE.
"""
import json, os, re, statistics, sys, time

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
    from engage.models import User
    if "--upgrade" in sys.argv:
        wall, cpu = time.perf_counter(), time.process_time()
        upgrade()
        out["upgrade_s"] = round(time.perf_counter() - wall, 2)
        out["upgrade_cpu_s"] = round(time.process_time() - cpu, 2)
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE companies")
        print(f"upgrade {out['upgrade_s']} s (CPU {out['upgrade_cpu_s']} s)", flush=True)
    admin = db.session.scalar(sa.select(User).where(User.email == "score-bench@example.org"))
    if admin is None:
        admin = User(email="score-bench@example.org", name="Bench", role="admin")
        admin.set_password("benchmark password")
        db.session.add(admin)
        db.session.commit()
    client = app.test_client()
    client.post("/auth/login", data={"email": "score-bench@example.org", "password": "benchmark password"})

    def next_page(path):
        html = client.get(path).get_data(as_text=True)
        found = re.search(r'href="([^"]*)" rel="next"', html)
        assert found, f"no Next link on {path}"
        return found.group(1).replace("&amp;", "&")

    pages = [("companies, first page", "/companies"),
             ("companies, filtered", "/companies?sector=Energy&source=us_entity_list"),
             ("companies, search", "/companies?q=golden"),
             ("companies, by score", "/companies?sort=score&dir=desc"),
             ("companies, by score, page 2", next_page("/companies?sort=score&dir=desc")),
             ("companies, by score, last page", "/companies?sort=score&dir=desc&last=1"),
             ("companies, by score ascending", "/companies?sort=score"),
             ("companies, by change", "/companies?sort=change&dir=desc"),
             ("companies, score below 40", "/companies?score_below=40"),
             ("companies, trend down", "/companies?trend=down")]
    engine_statements = []
    sa.event.listen(db.engine, "before_cursor_execute", lambda *a: engine_statements.append(1))
    res = []
    for label, path in pages:
        r = client.get(path); assert r.status_code == 200, (path, r.status_code)
        engine_statements.clear()
        client.get(path)
        queries = len(engine_statements)
        walls, cpus = [], []
        for _ in range(REPEAT):
            w, c = time.perf_counter(), time.process_time()
            client.get(path)
            walls.append((time.perf_counter() - w) * 1000); cpus.append((time.process_time() - c) * 1000)
            if len(walls) >= 3 and sum(walls) > 20000:
                break
        res.append({"page": label, "median_ms": round(statistics.median(walls), 1),
                    "cpu_ms": round(statistics.median(cpus), 1), "n": len(walls), "queries": queries,
                    "load": round(os.getloadavg()[0], 2)})
        print(f"{label:32s} {res[-1]['median_ms']:9.1f} ms  cpu {res[-1]['cpu_ms']:8.1f} ms  "
              f"{queries:2d} queries  n={len(walls)}  load {res[-1]['load']}", flush=True)
    out["pages"] = res
    explain = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--explain=")), None)
    if explain:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from bench import StatementLog, plan
        with open(explain, "w") as handle:
            for label, path in pages:
                with StatementLog(db.engine) as log:
                    client.get(path)
                slowest = log.slowest()
                handle.write(f"== {label} ({path}): slowest of {len(log.statements)} statements, "
                             f"{slowest['ms']} ms\n{slowest['sql']}\n{slowest['parameters']}\n"
                             f"{plan(db.engine, slowest)}\n\n")
    out["load_after"] = os.getloadavg()
    db.session.remove()
print(json.dumps(out))
