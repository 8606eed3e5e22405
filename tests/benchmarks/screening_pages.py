"""Time the screening pages (README, Performance, "The screening pages at 100,000 companies").

    PYTHONPATH=<worktree> python tests/benchmarks/screening_pages.py DATABASE_URL [--upgrade] [--statements]

PYTHONPATH decides which code runs (main for "before", the branch for "after"); --upgrade brings
the database to the newest migration first and times it (then ANALYZE); --statements prints each
SQL statement of one request with its milliseconds (the bench's StatementLog). Run it on a copy of
a kept data set (it adds a user). The dashboard's figures are counted and stored first, as the
scheduler does (LIVE=1: not, so the pages count everything themselves). MISS=1: the screening pages'
stored figures (engage.holdings.screening_stored) are forgotten before each timed request, as after a
write: what the first request after a write costs. Prints one line per page and a JSON summary; REPEAT requests per
page after a warm-up (default 9), wall and this process's CPU, and on PostgreSQL the server's CPU
(its backends for this database, from /proc, in 10 ms ticks: the mean; the server must run on this
machine).
"""
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sqlalchemy as sa  # noqa: E402
from bench import StatementLog  # noqa: E402
from config import Config, TestConfig  # noqa: E402
from engage import clock, create_app  # noqa: E402
from engage.extensions import db  # noqa: E402

url = sys.argv[1]
REPEAT = int(os.environ.get("REPEAT", "9"))
app = create_app(TestConfig, overrides={"SQLALCHEMY_DATABASE_URI": url, "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": 9,
                                        "PAGE_SIZE": 50, "JOBS_URL": "memory://",
                                        "DASHBOARD_MAX_AGE_SECONDS": Config.DASHBOARD_MAX_AGE_SECONDS})
out = {"url": url.split("/")[-1], "code": __import__("engage").__file__, "load_before": os.getloadavg()}
with app.app_context():
    from flask_migrate import upgrade

    from engage.models import Fund, User

    if "--upgrade" in sys.argv:
        wall, cpu = time.perf_counter(), time.process_time()
        upgrade()
        out["upgrade_s"] = round(time.perf_counter() - wall, 2)
        out["upgrade_cpu_s"] = round(time.process_time() - cpu, 2)
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE")
        else:
            with db.engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
    admin = db.session.scalar(sa.select(User).where(User.email == "screen-bench@example.org"))
    if admin is None:
        admin = User(email="screen-bench@example.org", name="Bench", role="admin")
        admin.set_password("benchmark password")
        db.session.add(admin)
        db.session.commit()
    # as the bench and production: the scheduler's dashboard-figures job has stored its figures
    # (the screening pages read their counts over every holding from them); LIVE=1 skips it
    if not os.environ.get("LIVE"):
        from engage.jobs import dashboard_figures
        from engage.main import figures

        dashboard_figures(clock.utcnow())
        row = figures.stored()
        out["figures_seconds"], out["figures_cpu_seconds"] = row.seconds, row.cpu_seconds
        print(f"dashboard figures counted and stored in {row.seconds} s (CPU {row.cpu_seconds} s)", flush=True)
    fund = db.session.scalar(sa.select(Fund.id).order_by(Fund.id).limit(1))
    client = app.test_client()
    client.post("/auth/login", data={"email": "screen-bench@example.org", "password": "benchmark password"})
    pages = [("screening", "/holdings/screening"),
             ("screening, a fund's listed holdings", f"/holdings/screening/{fund}?section=official"),
             ("screening, a fund's linked holdings", f"/holdings/screening/{fund}?section=linked"),
             ("screening, a fund's noted holdings, page 2", f"/holdings/screening/{fund}?section=noted&page=2"),
             ("screening, held again, first page", "/holdings/screening/held-again"),
             ("screening, held again, deep page", "/holdings/screening/held-again?page=800")]
    if os.environ.get("PAGES"):  # a comma-separated choice of the labels' first words after "screening, "
        pages = [page for page in pages if any(word in page[0] for word in os.environ["PAGES"].split(","))]
    server_pids = []
    if db.engine.dialect.name == "postgresql":  # the server's CPU per request: its backends' CPU from /proc
        server_pids = list(db.session.scalars(sa.text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'")))
        db.session.commit()

    def server_cpu_ms() -> float:
        ticks = 0
        for pid in server_pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks * 1000 / os.sysconf("SC_CLK_TCK")

    res = []
    for label, path in pages:
        r = client.get(path)
        assert r.status_code == 200, (path, r.status_code)
        with StatementLog(db.engine) as log:
            client.get(path)
        walls, cpus, server = [], [], []
        for _ in range(REPEAT):
            if os.environ.get("MISS"):  # the first request after a write: the stored screening figures forgotten
                db.session.execute(sa.text("DELETE FROM dashboard_figures WHERE kind LIKE 'screening-%'"))
                db.session.commit()
            w, c, sc = time.perf_counter(), time.process_time(), server_cpu_ms()
            client.get(path)
            walls.append((time.perf_counter() - w) * 1000)
            cpus.append((time.process_time() - c) * 1000)
            server.append(server_cpu_ms() - sc)
            if len(walls) >= 3 and sum(walls) > 20000:
                break
        res.append({"page": label, "median_ms": round(statistics.median(walls), 1),
                    "cpu_ms": round(statistics.median(cpus), 1), "n": len(walls), "queries": len(log.statements),
                    "server_cpu_ms": round(statistics.mean(server), 1) if server_pids else None,  # mean: 10 ms ticks
                    "load": round(os.getloadavg()[0], 2)})
        server_text = f"  server cpu {res[-1]['server_cpu_ms']:7.1f} ms" if server_pids else ""
        print(f"{label:45s} {res[-1]['median_ms']:9.1f} ms  cpu {res[-1]['cpu_ms']:8.1f} ms{server_text}  n={len(walls)}  "
              f"queries {len(log.statements)}  load {res[-1]['load']}", flush=True)
        if "--statements" in sys.argv:
            for s in log.statements:
                print(f"    {s['ms']:9.1f} ms  {' '.join(s['sql'].split())[:150]}")
    out["pages"] = res
    out["load_after"] = os.getloadavg()
    db.session.remove()
print(json.dumps(out))
