"""`make bench`: time the pages, exports, the reminders tick, a 10,000-row import and screening
on the synthetic data set (`flask synth`), on SQLite and PostgreSQL, at one or more sizes (issue 20).

BENCH_DB=sqlite|postgresql|both (default: both when PostgreSQL server binaries are installed under
/usr/lib/postgresql/*/bin or BENCH_DATABASE_URL is given, else sqlite, saying so). PostgreSQL runs
on BENCH_DATABASE_URL (emptied first, as `make load` does) or on a throwaway server started as
tests/pgserver.py does; SQLite on a fresh file per size. BENCH_SIZES=10000,100000 (companies; 2
engagements, 20 interactions and 10 reminders each): for each database and size, `flask synth`,
VACUUM ANALYZE on PostgreSQL, then the pages and the jobs.

Prints one table per database with a column per size and the growth from the first size to the
last (pages over 100 ms or growing more than 2x are marked), and writes .bench/results.json (or
BENCH_RESULTS; `bench.py --report A.json B.json` prints the tables of several such files; every
run: database, size, each page's median, p95, CPU, SQL statements with their times, the machine's
load average). Each page's SQL statements are recorded (SQLAlchemy cursor events); for the three
slowest pages of a run and any over 100 ms, the plan of the page's slowest statement goes to
.bench/explain-<db>-<size>.txt (PostgreSQL: EXPLAIN (ANALYZE, BUFFERS); SQLite: EXPLAIN QUERY PLAN).

Targets (DESIGN.md): pages under 100 ms at the median with a query count that does not grow with
rows, and within 2x while the data grows 10x (issue 20); monthly XLSX of 20,000 engagements under
5 s and 200 MB; a reminders tick over 100,000 reminders under 2 s; a 10,000-row import under 3 s;
matching 10,000 companies against 20,000 list entries under 10 s (issue 15).

BENCH_ONLY (comma-separated) runs only some parts: pages, search, jobs, matching (list matching,
screening against the entries, and the value-chain map), valuechain (the map only, the synthetic
list entries saved, not matched or screened first). Target for the map: 5,000 relationships
previewed and saved, with its screening, under 5 s (issue 16).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from config import Config, TestConfig  # noqa: E402
from engage import clock, create_app  # noqa: E402
from engage.extensions import db  # noqa: E402

REPEAT = int(os.environ.get("BENCH_REPEAT", "15"))
#: a page whose requests have taken this many seconds stops at 3 or more samples (BENCH_PAGE_BUDGET)
PAGE_BUDGET_S = float(os.environ.get("BENCH_PAGE_BUDGET", "30"))
LIST_ENTRIES = int(os.environ.get("BENCH_LIST_ENTRIES", "20000"))
PARTS = ("pages", "search", "jobs", "matching", "valuechain")
ONLY = {part.strip() for part in os.environ.get("BENCH_ONLY", "").split(",") if part.strip()}
MAP_ROWS = int(os.environ.get("BENCH_MAP_ROWS", "5000"))
#: BENCH_KEEP=folder: build each size's data set once there and give each run a copy of it
KEEP = Path(os.environ["BENCH_KEEP"]).resolve() if os.environ.get("BENCH_KEEP") else None
#: `bench.py --build` (with BENCH_KEEP): only build the kept data sets
BUILD_ONLY = "--build" in sys.argv[1:]
PAGE_TARGET_MS = 100
GROWTH_TARGET = 2.0
EXPLAIN_SLOWEST = 3
DB_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}

#: set per run by main(): the size the pages' URLs are made for
COMPANIES = 10_000


def sizes() -> list[int]:
    value = os.environ.get("BENCH_SIZES") or os.environ.get("BENCH_COMPANIES") or "10000"
    try:
        out = [int(part.replace("_", "")) for part in value.split(",") if part.strip()]
    except ValueError:
        raise SystemExit(f"BENCH_SIZES must be numbers of companies separated by commas, such as 10000,100000 (got {value!r})")
    if not out or min(out) < 100:
        raise SystemExit(f"BENCH_SIZES: each size must be at least 100 companies (got {value!r})")
    return out


def databases() -> list[str]:
    from pgserver import server_binaries

    value = os.environ.get("BENCH_DB", "").strip().lower()
    if value in ("sqlite", "postgresql"):
        return [value]
    if value == "both":
        return ["sqlite", "postgresql"]
    if value:
        raise SystemExit(f"BENCH_DB must be sqlite, postgresql or both (got {value!r})")
    if os.environ.get("BENCH_DATABASE_URL") or server_binaries():
        return ["sqlite", "postgresql"]
    print("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin and no BENCH_DATABASE_URL: "
          "SQLite only (BENCH_DB=sqlite)")
    return ["sqlite"]


def runs_part(part: str) -> bool:
    return not ONLY or part in ONLY


def main() -> int:
    global COMPANIES
    if BUILD_ONLY and not KEEP:
        raise SystemExit("bench.py --build builds the data sets BENCH_KEEP keeps: set BENCH_KEEP to a folder")
    if KEEP:
        KEEP.mkdir(parents=True, exist_ok=True)
    unknown = ONLY - set(PARTS)
    if unknown:
        raise SystemExit(f"BENCH_ONLY: unknown part(s) {', '.join(sorted(unknown))}; known: {', '.join(PARTS)}")
    out_dir = ROOT / ".bench"
    out_dir.mkdir(exist_ok=True)
    results_file = Path(os.environ.get("BENCH_RESULTS") or out_dir / "results.json")
    results = {"python": sys.version.split()[0], "cpu_affinity": len(os.sched_getaffinity(0)),
               "machine": machine(), "started": clock.utcnow().isoformat(timespec="seconds"),
               "commit": git_commit(), "sizes": sizes(), "repeat": REPEAT, "runs": []}
    stack: list = []
    try:
        for database in databases():
            server_url = None
            for size in results["sizes"]:
                COMPANIES = size
                folder = Path(tempfile.mkdtemp(prefix=f"engage-bench-{database}-{size}-"))
                if database == "postgresql":
                    server_url = server_url or postgres_url(stack)
                    url, built = (kept_postgres(server_url, size) if KEEP else (emptied_url(server_url), None))
                else:
                    url, built = kept_sqlite(size, folder) if KEEP else (f"sqlite:///{folder / 'bench.sqlite'}", None)
                if BUILD_ONLY:
                    print(f"   kept: {DB_NAMES[database]}, {size:,} companies, synth {built['synth_seconds']} s "
                          f"(CPU {built['synth_cpu_seconds']} s)", flush=True)
                    shutil.rmtree(folder, ignore_errors=True)
                    continue
                run = {"db": database, "size": size}
                results["runs"].append(run)

                def save(run=run):  # after each part: a run cut short keeps what it measured
                    if "explain_text" in run:
                        (out_dir / f"explain-{run['db']}-{run['size']}.txt").write_text(run.pop("explain_text"))
                    results_file.write_text(json.dumps(results, indent=2, default=str))

                bench_run(run, url, folder, built, save)
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        for undo in reversed(stack):
            try:
                undo()
            except Exception as exc:  # keep tearing down
                print(f"teardown: {exc}", file=sys.stderr)
    print(format_report(results))
    return 0


def postgres_url(stack: list) -> str:
    """BENCH_DATABASE_URL, or a throwaway server's database (its folder removed at teardown; kept
    in BENCH_KEEP/pg-server with BENCH_KEEP, where the server's `postgres` database is returned)."""
    from config import database_url
    from pgserver import throwaway_postgres

    if os.environ.get("BENCH_DATABASE_URL"):
        if KEEP:
            raise SystemExit("BENCH_KEEP keeps its data sets on a throwaway server of its own: "
                             "leave BENCH_DATABASE_URL unset")
        return database_url(os.environ["BENCH_DATABASE_URL"], "")
    if KEEP:
        folder = KEEP / "pg-server"
        folder.mkdir(parents=True, exist_ok=True)
        return throwaway_postgres(folder, stack, database=None)
    folder = Path(tempfile.mkdtemp(prefix="engage-bench-pg-"))
    stack.append(lambda: shutil.rmtree(folder, ignore_errors=True))
    return throwaway_postgres(folder, stack, database="engage_bench")


def build_data_set(url: str, size: int) -> dict:
    """Schema, reference data and `flask synth` at `size` companies; what it took."""
    app = create_app(TestConfig, overrides={"SQLALCHEMY_DATABASE_URI": url, "JOBS_URL": "memory://"})
    print(f"== building the data set of {size:,} companies ({url.split('://')[0]})", flush=True)
    with app.app_context():
        from flask_migrate import upgrade

        from engage.seeding import load_reference
        from engage.synth import synthesize

        upgrade()
        load_reference(Path(app.config["SEEDS_DIR"]))
        db.session.commit()
        wall, cpu, load = time.perf_counter(), time.process_time(), os.getloadavg()
        rows = synthesize(size)
        built = {"synth_rows": rows, "synth_seconds": round(time.perf_counter() - wall, 1),
                 "synth_cpu_seconds": round(time.process_time() - cpu, 1), "synth_load_average": load,
                 "synth_at": clock.utcnow().isoformat(timespec="seconds"), "synth_commit": git_commit()}
        db.session.remove()
        db.engine.dispose()
    return built


def kept_sqlite(size: int, folder: Path) -> tuple[str, dict]:
    """BENCH_KEEP: the data set of `size` companies built once into BENCH_KEEP/sqlite-<size>.sqlite,
    then copied for each run (the run writes: users, ticks, an import, flags)."""
    kept = KEEP / f"sqlite-{size}.sqlite"
    about = KEEP / f"sqlite-{size}.json"
    if not about.exists():
        for leftover in KEEP.glob(f"sqlite-{size}.sqlite*"):
            leftover.unlink()
        about.write_text(json.dumps(build_data_set(f"sqlite:///{kept}", size), default=str))
    shutil.copyfile(kept, folder / "bench.sqlite")
    return f"sqlite:///{folder / 'bench.sqlite'}", json.loads(about.read_text())


def kept_postgres(server_url: str, size: int) -> tuple[str, dict]:
    """BENCH_KEEP: the data set built once into the kept server's database synth_<size>, then
    copied for each run (CREATE DATABASE ... TEMPLATE)."""
    from pgserver import create_database, database_exists

    base = server_url.rsplit("/", 1)[0]
    about = KEEP / f"postgresql-{size}.json"
    if not about.exists() or not database_exists(server_url, f"synth_{size}"):
        create_database(server_url, f"synth_{size}")
        about.write_text(json.dumps(build_data_set(f"{base}/synth_{size}", size), default=str))
    create_database(server_url, "engage_bench", template=f"synth_{size}")
    return f"{base}/engage_bench", json.loads(about.read_text())


def emptied_url(url: str) -> str:
    from pgserver import emptied

    return emptied(url)


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs, {model}".strip(", ")


def git_commit() -> str:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def bench_run(run: dict, url: str, folder: Path, built: dict | None = None, save=lambda: None) -> dict:
    """One database at one size: schema, reference data, synth (or a kept data set, `built`, brought
    up to the newest migration), (VACUUM) ANALYZE, pages, jobs."""
    # The dashboard as in production: its stored figures (engage.main.figures) kept by the scheduler,
    # read by the page for up to DASHBOARD_MAX_AGE_SECONDS (TestConfig's 0 counts in every request).
    app = create_app(TestConfig, overrides={"SQLALCHEMY_DATABASE_URI": url, "MAIL_SERVER": "127.0.0.1",
                                            "MAIL_PORT": 9, "MAIL_TIMEOUT_SECONDS": 2, "PAGE_SIZE": 50,
                                            "JOBS_URL": "memory://",
                                            "DASHBOARD_MAX_AGE_SECONDS": Config.DASHBOARD_MAX_AGE_SECONDS})
    database, size = run["db"], run["size"]
    run["load_average_before"] = os.getloadavg()
    print(f"== {DB_NAMES[database]}, {size:,} companies: {'a kept data set' if built else 'synthesising'}", flush=True)
    with app.app_context():
        from flask_migrate import upgrade

        from engage.seeding import load_reference
        from engage.synth import synthesize

        wall = time.perf_counter()
        upgrade()
        run["server_version"] = server_version()
        if built:
            run.update(built, kept=True, upgrade_seconds=round(time.perf_counter() - wall, 1))
        else:
            load_reference(Path(app.config["SEEDS_DIR"]))
            db.session.commit()
            wall, cpu = time.perf_counter(), time.process_time()
            run["synth_rows"] = synthesize(size)
            run["synth_seconds"] = round(time.perf_counter() - wall, 1)
            run["synth_cpu_seconds"] = round(time.process_time() - cpu, 1)
        if database == "postgresql":
            wall = time.perf_counter()
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
            run["analyze_seconds"] = round(time.perf_counter() - wall, 1)
        run["database_mb"] = database_mb(url)
        print(f"   {sum(run['synth_rows'].values()):,} rows in {run['synth_seconds']} s "
              f"(CPU {run['synth_cpu_seconds']} s); timing pages", flush=True)
        # the scheduler's dashboard-figures job, timed (three runs: the median), before the pages read its row
        run["dashboard_figures"] = bench_dashboard_figures() if runs_part("pages") else None
        run["pages"] = bench_pages(app) if runs_part("pages") else []
        run["pages"] += bench_search(app) if runs_part("search") else []
        run["explain_text"] = explain_slowest(run)
        run["load_average_after"] = os.getloadavg()
        save()
        print("   jobs" if runs_part("jobs") else "", end="\n" if runs_part("jobs") else "", flush=True)
        run["jobs"] = ([run["dashboard_figures"]] if run["dashboard_figures"] else []) + (
            bench_jobs(app, folder) if runs_part("jobs") else [])
        save()
        if "valuechain" in ONLY and "matching" not in ONLY:
            save_entries(synthetic_entries_for_companies())
        elif runs_part("matching"):
            matching, entries = bench_matching()
            run["jobs"].append(matching)
            save()
            run["jobs"].append(bench_screening(entries))
            save()
        if runs_part("matching") or "valuechain" in ONLY:
            run["jobs"].append(bench_valuechain())
        run["load_average_after"] = os.getloadavg()
        save()
        db.session.remove()
        db.engine.dispose()
    return run


def server_version() -> str:
    if db.engine.dialect.name == "postgresql":
        return db.session.scalar(sa.text("SHOW server_version")).split()[0]
    return db.session.scalar(sa.text("SELECT sqlite_version()"))


def database_mb(url: str) -> float:
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        return round(sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 1e6, 1)
    return round(db.session.scalar(sa.text("SELECT pg_database_size(current_database())")) / 1e6, 1)


#: CPU seconds (this process) of the last call of timed(): jobs record them beside the wall clock
LAST_CPU = [0.0]


def timed(fn, repeat=1):
    samples = []
    result = None
    used = time.process_time()
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - start) * 1000)
    LAST_CPU[0] = round((time.process_time() - used) / repeat, 2)
    return samples, result


def percentile(values, pct):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def bench_dashboard_figures(runs: int = 3) -> dict:
    """The dashboard's figures counted and stored as the scheduler's job does (engage.jobs.dashboard_figures):
    the median of `runs` runs, wall and this process's CPU (PostgreSQL's server CPU is not in it)."""
    from engage.jobs import dashboard_figures
    from engage.main import figures

    samples, cpu = [], []
    for _ in range(runs):
        dashboard_figures(clock.utcnow())
        stored = figures.stored()
        samples.append(stored.seconds)
        cpu.append(stored.cpu_seconds)
    return {"key": "dashboard figures", "name": "dashboard figures (the scheduler's dashboard-figures job, median of "
            f"{runs})", "seconds": round(statistics.median(samples), 2), "cpu_seconds": round(statistics.median(cpu), 2),
            "samples": samples, "target": ""}


def bench_pages(app) -> list[dict]:
    from engage.models import Company, Engagement, Fund, Interaction, User

    admin = User(email="bench@example.org", name="Bench", role="admin")
    admin.set_password("benchmark password")
    db.session.add(admin)
    long_engagement = db.session.scalar(sa.select(Engagement).order_by(Engagement.id).limit(1))
    for i in range(300):  # a long timeline
        db.session.add(Interaction(engagement=long_engagement, kind="email", direction="outbound",
                                   occurred_on=long_engagement.opened_on, subject=f"Long timeline {i}"))
    db.session.commit()
    company = db.session.scalar(sa.select(Company).order_by(Company.id).limit(1))
    fund = db.session.scalar(sa.select(Fund).order_by(Fund.id).limit(1))
    client = app.test_client()
    client.post("/auth/login", data={"email": "bench@example.org", "password": "benchmark password"})
    pages = [
        ("dashboard", "/"),
        ("companies, first page", "/companies"),
        ("companies, filtered", "/companies?sector=Energy&source=us_entity_list"),
        ("companies, search", "/companies?q=golden"),
        ("companies, deep page", _deep_page(client, "/companies")),
        ("companies, by score", "/companies?sort=score&dir=desc"),
        ("engagements, filtered", "/engagements?stage=acknowledged&escalation=follow_up"),
        ("engagements, by next follow-up", "/engagements?sort=next_follow_up"),
        ("engagements, deep page", _deep_page(client, "/engagements")),
        ("reminders", "/reminders?who=all"),
        ("company page", f"/companies/{company.id}"),
        ("engagement, 300+ timeline entries", f"/engagements/{long_engagement.id}"),
        ("funds", "/holdings/funds"),
        ("screening", "/holdings/screening"),
        ("screening, a fund's listed holdings", f"/holdings/screening/{fund.id}?section=official"),
        ("screening, held again, first page", "/holdings/screening/held-again"),
        ("screening, held again, deep page", "/holdings/screening/held-again?page=800"),
    ]
    return _time_pages(client, pages)


def _deep_page(client, url: str) -> str:
    """The third page from the end of a list, reached as a user does: Last, then Previous twice
    (the lists page by keyset: a page link carries a cursor, there are no page numbers). At 50 rows
    a page it is the depth the bench timed before keyset paging (page COMPANIES // 50 - 2 of the
    companies, 2 * COMPANIES // 50 - 2 of the engagements)."""
    url = f"{url}?last=1"
    for _ in range(2):
        html = client.get(url).get_data(as_text=True)
        found = re.search(r'href="([^"]*)" rel="prev"', html)
        assert found, f"no Previous link on {url}"
        url = found.group(1).replace("&amp;", "&")
    return url


def bench_search(app) -> list[dict]:
    """The search page (issue 17) as a viewer: identifiers, part of a name, a rare word and a word
    in every interaction (20 per company; their subjects all say "Synthetic"), and a later page of those."""
    from engage.models import Company, Engagement, Interaction, User

    viewer = User(email="bench-search@example.org", name="Bench search", role="viewer")
    viewer.set_password("benchmark password")
    db.session.add(viewer)
    engagement = db.session.scalar(sa.select(Engagement).order_by(Engagement.id.desc()).limit(1))
    db.session.add(Interaction(engagement=engagement, kind="note", direction="internal", occurred_on=engagement.opened_on,
                               subject="Site visit", summary="Auditors were refused access to the Hotan plant."))
    db.session.commit()
    cn = db.session.execute(sa.select(Company.isin, Company.ticker).where(Company.country == "CN")
                            .order_by(Company.id).limit(1)).one()
    client = app.test_client()
    client.post("/auth/login", data={"email": "bench-search@example.org", "password": "benchmark password"})
    return _time_pages(client, [
        ("search, an ISIN", f"/search?q={cn.isin}"),
        ("search, a ticker", f"/search?q={cn.ticker}"),
        ("search, part of a name (golde)", "/search?q=golde"),
        ("search, two words (golden solar)", "/search?q=golden+solar"),
        ("search, a rare word (hotan)", "/search?q=hotan"),
        ("search, a word in every interaction", "/search?q=synthetic"),
        ("search, those interactions, page 3", "/search?q=synthetic&kind=interactions&page=3"),
    ])


def _time_pages(client, pages) -> list[dict]:
    """Median and p95 of REPEAT requests per page after a warm-up (wall and this process's CPU),
    and the SQL statements of one request with their times."""
    out = []
    for label, url in pages:
        client.get(url)  # warm up
        with StatementLog(db.engine) as log:
            response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        samples, cpu = [], []
        for _ in range(REPEAT):
            wall, used = time.perf_counter(), time.process_time()
            client.get(url)
            samples.append((time.perf_counter() - wall) * 1000)
            cpu.append((time.process_time() - used) * 1000)
            if len(samples) >= 3 and sum(samples) > PAGE_BUDGET_S * 1000:  # a page of seconds: fewer samples
                break
        out.append({"name": label, "url": url, "median_ms": round(statistics.median(samples), 1),
                    "p95_ms": round(percentile(samples, 95), 1), "cpu_median_ms": round(statistics.median(cpu), 1),
                    "samples": len(samples), "queries": len(log.statements), "load_average": round(os.getloadavg()[0], 2),
                    "statements": log.statements, "target": f"< {PAGE_TARGET_MS} ms"})
    return out


class StatementLog:
    """The SQL statements an engine runs while the block runs (SQLAlchemy cursor events): each
    one's text as sent to the driver, its parameters and its milliseconds."""

    def __init__(self, engine):
        self.engine = engine
        self.statements: list[dict] = []

    def _before(self, conn, cursor, statement, parameters, context, executemany):
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def _after(self, conn, cursor, statement, parameters, context, executemany):
        started = conn.info["bench_started"].pop()
        self.statements.append({"sql": statement, "parameters": parameters, "executemany": executemany,
                                "ms": round((time.perf_counter() - started) * 1000, 2)})

    def __enter__(self):
        sa.event.listen(self.engine, "before_cursor_execute", self._before)
        sa.event.listen(self.engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *exc):
        sa.event.remove(self.engine, "before_cursor_execute", self._before)
        sa.event.remove(self.engine, "after_cursor_execute", self._after)
        return False

    def slowest(self, reads_only: bool = True) -> dict | None:
        """The slowest statement (a SELECT, when reads_only: the one a plan can be asked for)."""
        candidates = [s for s in self.statements if not s["executemany"]
                      and (not reads_only or is_read(s["sql"]))]
        return max(candidates, key=lambda s: s["ms"], default=None)


def is_read(sql: str) -> bool:
    return sql.lstrip().split(None, 1)[0].upper() in ("SELECT", "WITH") if sql.strip() else False


def plan(engine, statement: dict) -> str:
    """The plan of a recorded statement, with its recorded parameters: PostgreSQL runs it under
    EXPLAIN (ANALYZE, BUFFERS) (in a transaction rolled back), SQLite under EXPLAIN QUERY PLAN
    (the tree drawn with indents)."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement["sql"], statement["parameters"]).all()
            conn.rollback()
            return "\n".join(row[0] for row in rows)
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement["sql"], statement["parameters"]).all()
    depth: dict[int, int] = {0: -1}
    lines = []
    for node, parent, _, detail in rows:
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + detail)
    return "\n".join(lines)


def pages_to_explain(pages: list[dict], slowest: int = EXPLAIN_SLOWEST) -> list[dict]:
    """The `slowest` slowest pages by median and any other over the target, slowest first."""
    ordered = sorted(pages, key=lambda p: p["median_ms"], reverse=True)
    return [p for i, p in enumerate(ordered) if i < slowest or p["median_ms"] >= PAGE_TARGET_MS]


def explain_slowest(run: dict) -> str:
    """The text of .bench/explain-<db>-<size>.txt: for each page pages_to_explain picks, its
    slowest statement (SQL, parameters, time in the recorded request) and that statement's plan."""
    out = [f"{DB_NAMES[run['db']]} {run.get('server_version', '')}, {run['size']:,} companies: the slowest "
           f"statement of the {EXPLAIN_SLOWEST} slowest pages and of any page over {PAGE_TARGET_MS} ms", ""]
    for page in pages_to_explain(run["pages"]):
        log = StatementLog(None)
        log.statements = page["statements"]
        statement = log.slowest()
        out.append(f"== {page['name']} ({page['url']}): median {page['median_ms']} ms, {page['queries']} statements")
        if statement is None:
            out += ["(no SELECT recorded)", ""]
            continue
        share = sum(s["ms"] for s in page["statements"])
        out.append(f"slowest statement: {statement['ms']} ms of {share:.1f} ms in SQL for the recorded request")
        out.append(statement["sql"].strip())
        out.append(f"parameters: {statement['parameters']!r}")
        try:
            out.append(plan(db.engine, statement))
        except Exception as exc:  # a plan that cannot be had is said, not fatal to the run
            out.append(f"(no plan: {exc.__class__.__name__}: {str(exc).splitlines()[0]})")
        out.append("")
    return "\n".join(out)


def bench_jobs(app, folder: Path) -> list[dict]:
    from engage.exports import monthly
    from engage.holdings import importer, parsing
    from engage.lists.screening import screen
    from engage.models import Company, Fund, Reminder
    from engage.reminders.service import tick

    out = []
    today = clock.today()
    month = monthly.Month(today.year, today.month).previous
    for fmt, target in (("xlsx", "< 5 s, < 200 MB"), ("csv", "")):
        samples, _ = timed(lambda: monthly.write_file(monthly.build(month), fmt, folder / f"m.{fmt}"))
        cpu = LAST_CPU[0]
        tracemalloc.start()  # a second run for memory: tracing slows Python, so it is not timed
        rows = len(monthly.build(month).rows)
        monthly.write_file(monthly.build(month), fmt, folder / f"m2.{fmt}")
        peak = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
        out.append({"key": f"monthly {fmt.upper()} export", "name": f"monthly {fmt.upper()} export ({rows:,} engagements)",
                    "seconds": round(samples[0] / 1000, 2), "cpu_seconds": cpu,
                    "peak_mb": round(peak, 1), "target": target})

    samples, result = timed(lambda: tick(clock.utcnow()))
    reminders = db.session.scalar(sa.select(sa.func.count()).select_from(Reminder))
    out.append({"key": "reminders tick", "name": f"reminders tick ({reminders:,} reminders)",
                "seconds": round(samples[0] / 1000, 2), "cpu_seconds": LAST_CPU[0],
                "detail": f"{result.reminders_notified} notified in {result.emails_queued} emails",
                "target": "< 2 s"})
    samples, result = timed(lambda: tick(clock.utcnow()))
    out.append({"key": "reminders tick, nothing new", "name": "reminders tick, nothing new",
                "seconds": round(samples[0] / 1000, 2), "cpu_seconds": LAST_CPU[0], "target": "< 2 s"})

    companies = db.session.execute(sa.select(Company.name, Company.isin).where(Company.isin.is_not(None))
                                   .order_by(Company.id).limit(10_000)).all()
    lines = ["iShares Benchmark Fund", 'Fund Holdings as of,"Oct 31, 2026"', "",
             "Ticker,Name,Sector,Asset Class,Market Value,Weight (%),Notional Value,Quantity,Price,Location,Exchange,ISIN"]
    weight = f"{100 / len(companies):.4f}"  # the weights add up to 100 % (10,000 rows: 0.01 each)
    for i, (name, isin) in enumerate(companies):
        lines.append(f'"T{i}","{name}","Energy","Equity","{1_000_000 + i:,}.00","{weight}","{1_000_000 + i:,}.00",'
                     f'"1,000.00","10.00","China","Shenzhen Stock Exchange","{isin}"')
    lines += ["", '"Holdings are subject to change."']  # the provider's trailer: without it the file looks cut
    data = "\n".join(lines).encode()
    fund = Fund(name="Benchmark import fund")
    db.session.add(fund)
    db.session.commit()

    def run_import():
        parsed = parsing.parse("bench.csv", data)
        if not parsed.ok:  # said, with the first rows' reasons, not a bare "refusing to import"
            raise SystemExit(f"the benchmark's holdings file is refused: {parsed.errors[:3]}")
        result = importer.import_parsed(parsed, fund, parsed.as_of)
        db.session.commit()
        return result

    samples, result = timed(run_import)
    out.append({"key": "holdings import", "name": f"holdings import ({result.rows:,} rows)",
                "seconds": round(samples[0] / 1000, 2), "cpu_seconds": LAST_CPU[0],
                "target": "< 3 s"})
    samples, result = timed(lambda: (screen(notify=False), db.session.commit()))
    out.append({"key": "screening (all companies)", "name": "screening (all companies)",
                "seconds": round(samples[0] / 1000, 2), "cpu_seconds": LAST_CPU[0], "target": ""})
    return out


def bench_matching() -> dict:
    """engage.lists.matching.match over the synthetic companies and LIST_ENTRIES synthetic list
    entries (tests/benchmarks/bench_matching.py), loading included; recall of the planted matches."""
    from bench_matching import synthetic_entries

    from engage.lists.matching import FLAG_SCORE, REVIEW_SCORE, match

    companies = _company_records()
    entries, expected = synthetic_entries(companies, LIST_ENTRIES)
    samples, candidates = timed(lambda: match(companies, entries))
    flags = sum(1 for c in candidates if c.score >= FLAG_SCORE)
    scores = {(c.company_id, c.entry_id): c.score for c in candidates}
    found = sum(1 for pair, outcome in expected.items()
                if scores.get(pair, 0) >= (FLAG_SCORE if outcome == "flag" else REVIEW_SCORE))
    return {"key": "list matching", "name": f"list matching ({len(companies):,} x {len(entries):,})",
            "seconds": round(samples[0] / 1000, 2), "cpu_seconds": LAST_CPU[0],
            "target": "< 10 s",
            "detail": f"{flags:,} to flag, {len(candidates) - flags:,} to review; {found} of {len(expected)} planted "
                      "matches found at the expected level"}, entries


def _company_records():
    from engage.lists.matching import CompanyRecord
    from engage.models import Company, CompanyAlias

    aliases: dict[int, list[str]] = {}
    for company_id, alias in db.session.execute(sa.select(CompanyAlias.company_id, CompanyAlias.alias)):
        aliases.setdefault(company_id, []).append(alias)
    return [CompanyRecord(row.id, (row.name, *aliases.get(row.id, ())), isin=row.isin, lei=row.lei,
                          ticker=row.ticker, exchange=row.exchange)
            for row in db.session.execute(sa.select(Company.id, Company.name, Company.isin, Company.lei,
                                                    Company.ticker, Company.exchange).order_by(Company.id))]


def synthetic_entries_for_companies():
    from bench_matching import synthetic_entries

    return synthetic_entries(_company_records(), LIST_ENTRIES)[0]


def save_entries(entries):
    """The synthetic entries saved as the latest version of one list (the US Entity List)."""
    from engage.models import ListedEntity, ListVersion, normalize_name
    from engage.names import entry_names, stored_forms

    version = ListVersion(name="us_entity_list", source="us_entity_list", format="csv", file_name="bench.csv",
                          retrieved_on=clock.today(), sha256="0" * 64, entry_count=len(entries))
    db.session.add(version)
    db.session.flush()
    db.session.execute(sa.insert(ListedEntity), [
        {"version_id": version.id, "key": f"bench-{e.id}", "source": "us_entity_list", "name": e.names[0][:300],
         "normalized_name": normalize_name(e.names[0])[:300], "aliases": list(e.names[1:]),
         "name_forms": stored_forms(entry_names(e.names[0][:300], e.names[1:]), entry=True),
         "identifiers": {k: list(v) for k, v in e.identifiers.items()}, "citation": "benchmark",
         "created_at": clock.utcnow(), "updated_at": clock.utcnow()} for e in entries])
    db.session.commit()
    return version


def bench_screening(entries) -> dict:
    """The whole screening (engage.lists.screening.screen: loading companies and the lists' latest
    versions, matching, writing flags and review questions) with the synthetic entries saved as
    the latest version of one list: the issue's "10,000 companies against 20,000 entries"."""
    from engage.lists.screening import screen
    from engage.models import MatchCandidate, RiskFlag

    version = save_entries(entries)
    samples, _ = timed(lambda: (screen(notify=False), db.session.commit()))
    flags = db.session.scalar(sa.select(sa.func.count(RiskFlag.id)).where(RiskFlag.version_id == version.id))
    questions = db.session.scalar(sa.select(sa.func.count(MatchCandidate.id)))
    return {"key": "screening against the entries", "name": f"screening ({len(entries):,} entries, all companies)",
            "seconds": round(samples[0] / 1000, 2), "cpu_seconds": LAST_CPU[0],
            "target": "< 10 s", "detail": f"{flags:,} flags and {questions:,} review questions written"}


#: Syllables of the map's ordinary suppliers' coined names: none of bench_matching.SYLLABLES, the
#: list entries' syllables. With 42 syllables two-syllable brands cover most combinations, so
#: suppliers coined from the same syllables carried a list entry's one-word brand alias ("Qifuqi")
#: by chance and flagged at 91 (2,238 of 5,000 rows did): the matching was right, the map was not
#: an honest one.
MAP_SYLLABLES = ["sha", "nan", "bei", "dong", "shan", "hu", "jiang", "ling", "yun", "ke", "gao", "shi", "ying",
                 "mao", "lu", "cai", "zhao", "wen", "xue", "song", "ping", "ning", "tong", "hao", "zhen", "mu",
                 "gu", "ye", "luo", "wu"]
#: (region, country, weight): about one row in twenty in a Xinjiang place, as a solar or textile
#: maker's disclosed map might have; the rest elsewhere in China and abroad, some without a region.
MAP_REGIONS = [("Shihezi, Xinjiang", "CN", 2), ("Hotan Prefecture", "CN", 1), ("Zhundong, Changji", "CN", 2),
               ("Jiangsu, Changzhou", "CN", 20), ("Anhui, Hefei", "CN", 15), ("Guangdong, Shenzhen", "CN", 15),
               ("Zhejiang, Ningbo", "CN", 10), ("Bac Ninh", "VN", 5), ("Penang", "MY", 5), ("Bavaria", "DE", 5),
               ("", "CN", 10), ("", "US", 5), ("", "DE", 5)]


def synthetic_map(rows: int, seed: int = 16, drop: frozenset[str] = frozenset()) -> bytes:
    """A value-chain map of `rows` relationships, in the proportions of a real disclosed map: a
    tenth named like synth companies (resolved; some of them carry synth's risk flags), one row
    in fifty named like a saved list entry (new companies the lists flag), the rest ordinary
    suppliers coined from MAP_SYLLABLES; about one in twenty in a Xinjiang place."""
    import csv
    import io
    import random

    from bench_matching import DESCRIPTORS, LEGAL

    from engage.models import Company, ListedEntity

    rng = random.Random(seed)

    def coined() -> str:
        return "".join(rng.choice(MAP_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()

    companies = db.session.scalars(sa.select(Company.name).order_by(Company.id).limit(rows // 10 * 3)).all()
    entries = db.session.scalars(sa.select(ListedEntity.name).order_by(ListedEntity.id).limit(rows // 10 * 3)).all()
    names: dict[str, None] = {}
    for name in rng.sample(companies, min(len(companies), rows // 10)) + rng.sample(entries, min(len(entries), rows // 50)):
        names.setdefault(name)
    for name in drop:
        names.pop(name, None)
    while len(names) < rows:
        names.setdefault(" ".join(f"{coined()} {coined()} {rng.choice(DESCRIPTORS)} {rng.choice(LEGAL)} "
                                  "(fictional)".split()))
    ordered = list(names)
    rng.shuffle(ordered)
    places = [(region, country) for region, country, _ in MAP_REGIONS]
    weights = [weight for _, _, weight in MAP_REGIONS]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["Supplier", "Tier", "Relationship", "Products", "Country", "Region", "Page"])
    for i, name in enumerate(ordered):
        region, country = rng.choices(places, weights)[0]
        writer.writerow([name, rng.choice([1, 2, 3]), rng.choice(["supplier", "sub-supplier", "customer"]),
                         rng.choice(["polysilicon", "wafers", "cotton yarn", "aluminium", "cameras"]),
                         country, region, f"p. {1 + i // 50}"])
    return out.getvalue().encode()


def bench_valuechain() -> dict:
    """A MAP_ROWS-relationship map of one synth company previewed, then saved with its screening
    (engage.valuechain.service: resolving against every company, the lists' would-be flags, the
    writes, screening the counterparties). The save is given the preview, as the command line's
    save does within itself: the import's work is counted once, the file read and matched once.

    Wall-clock seconds are the target's; CPU seconds (this process) are printed beside them, as a
    shared machine's load stretches the wall clock and not the work."""
    from engage.models import Company
    from engage.valuechain import service

    company = db.session.scalar(sa.select(Company).order_by(Company.id.desc()).limit(1))
    drop: set[str] = set()
    refused: list = []
    for attempt in range(1, 11):  # names the parser refuses (the company itself, two names of one company) left out
        data = synthetic_map(MAP_ROWS, drop=frozenset(drop))
        try:
            cpu = time.process_time()
            preview_ms, shown = timed(lambda: service.preview(company, data, "bench_map.csv"))
            preview_cpu = time.process_time() - cpu
            break
        except service.ValueChainError as error:
            refused = error.errors
            drop |= {e.value for e in error.errors}
    else:
        raise SystemExit(f"the synthetic map is still refused: {refused[:5]}")
    cpu = time.process_time()
    save_ms, saved = timed(lambda: (service.save(company, data, "bench_map.csv", preview=shown), db.session.commit())[0])
    save_cpu = time.process_time() - cpu
    seconds = round((preview_ms[0] + save_ms[0]) / 1000, 2)
    existing = sum(1 for r in shown.rows if r.company_id)
    in_region = sum(1 for r in shown.rows if r.region_reason)
    listed = sum(1 for r in shown.rows if r.flags)
    return {"key": "value-chain map", "name": f"value-chain map ({len(shown.rows):,} rows), preview + save", "seconds": seconds,
            "cpu_seconds": round(preview_cpu + save_cpu, 2), "target": "< 5 s",
            "detail": f"preview {preview_ms[0] / 1000:.2f} s (CPU {preview_cpu:.2f} s), save with screening "
                      f"{save_ms[0] / 1000:.2f} s (CPU {save_cpu:.2f} s){'' if attempt == 1 else f', attempt {attempt}'}; "
                      f"{existing:,} resolved, {len(saved.created):,} new, {len(shown.flagged):,} flagged "
                      f"({listed:,} by a list, {in_region:,} in the region), "
                      f"{saved.screening.companies_checked:,} companies screened, "
                      f"{len(saved.screening.created):,} flags written"}


def growth(first: float | None, last: float | None) -> float | None:
    """last / first, or None when either is missing or the first is 0."""
    if not first or last is None:
        return None
    return round(last / first, 2)


def _n(value) -> str:
    return "—" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def page_notes(cells: list[dict | None], ratio: float | None, sizes: list[int]) -> str:
    """What a page misses: over the target at a size, grown over GROWTH_TARGET, queries grown."""
    notes = [f"over {PAGE_TARGET_MS} ms at {size:,}" for size, cell in zip(sizes, cells)
             if cell and cell["median_ms"] >= PAGE_TARGET_MS]
    if ratio is not None and ratio > GROWTH_TARGET:
        notes.append(f"grew over {GROWTH_TARGET:g}x")
    notes += [f"{cell['samples']} requests at {size:,}" for size, cell in zip(sizes, cells)
              if cell and cell.get("samples", REPEAT) < REPEAT]
    counts = {cell["queries"] for cell in cells if cell}
    if len(counts) > 1:
        notes.append("query count grew")
    return "; ".join(notes)


def format_db_tables(runs: list[dict]) -> str:
    """One database's runs (one per size, ascending) as Markdown: a line per size (synth, load),
    the pages with a column group per size and the growth from the first size to the last, marked
    where a page misses 100 ms or 2x; then the jobs the same way."""
    runs = sorted(runs, key=lambda r: r["size"])
    sizes = [r["size"] for r in runs]
    several = len(runs) > 1
    first = runs[0]
    title = f"{DB_NAMES[first['db']]} {first.get('server_version', '')}".strip()
    lines = [f"{title}:", ""]
    for r in runs:
        rows = sum(r.get("synth_rows", {}).values())
        before, after = r.get("load_average_before"), r.get("load_average_after")
        load = f"; load average {before[0]:.1f} before, {after[0]:.1f} after" if before and after else ""
        analyze = f", VACUUM ANALYZE {r['analyze_seconds']} s" if "analyze_seconds" in r else ""
        kept = f" (built {r.get('synth_at')} UTC, then copied for the run)" if r.get("kept") else ""
        lines.append(f"- {r['size']:,} companies: synth {rows:,} rows in {r.get('synth_seconds')} s "
                     f"(CPU {r.get('synth_cpu_seconds')} s){kept}{analyze}, database {r.get('database_mb')} MB{load}")
    lines.append("")
    names = list(dict.fromkeys(p["name"] for r in runs for p in r.get("pages", [])))
    if names:
        header = ["page"] + [f"{label} {size:,}" for size in sizes for label in ("median ms", "p95 ms", "CPU ms", "queries")]
        header += ["growth", "note"] if several else ["note"]
        lines += ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 2) + "|---|"]
        for name in names:
            cells = [next((p for p in r.get("pages", []) if p["name"] == name), None) for r in runs]
            row = [name]
            for cell in cells:
                row += ([_n(cell["median_ms"]), _n(cell["p95_ms"]), _n(cell.get("cpu_median_ms")), _n(cell["queries"])]
                        if cell else ["—"] * 4)
            ratio = growth(cells[0] and cells[0]["median_ms"], cells[-1] and cells[-1]["median_ms"]) if several else None
            if several:
                row.append("—" if ratio is None else f"{ratio:.1f}x")
            row.append(page_notes(cells, ratio, sizes))
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    keys = list(dict.fromkeys(j.get("key", j["name"]) for r in runs for j in r.get("jobs", [])))
    if keys:
        header = ["job"] + [f"s (CPU s) {size:,}" for size in sizes] + (["growth"] if several else []) + ["target", "at the last size"]
        lines += ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 3) + "|---|---|"]
        for key in keys:
            cells = [next((j for j in r.get("jobs", []) if j.get("key", j["name"]) == key), None) for r in runs]
            row = [key]
            for cell in cells:
                cpu = f" ({cell['cpu_seconds']:g})" if cell and cell.get("cpu_seconds") is not None else ""
                row.append(f"{cell['seconds']:g}{cpu}" if cell and cell.get("seconds") is not None else "—")
            if several:
                ratio = growth(cells[0] and cells[0]["seconds"], cells[-1] and cells[-1]["seconds"])
                row.append("—" if ratio is None else f"{ratio:.1f}x")
            last = cells[-1] or {}
            row.append(last.get("target", "") or "")
            detail = last.get("name", "")
            if last.get("peak_mb") is not None:
                detail += f", peak {last['peak_mb']:g} MB"
            if last.get("detail") and key in ("list matching", "screening against the entries", "reminders tick"):
                detail += f"; {last['detail']}"
            row.append(detail)
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def format_report(results: dict) -> str:
    head = (f"Engage benchmark — commit {results.get('commit') or '?'}, started {results.get('started')} UTC, "
            f"{results.get('machine')}, Python {results.get('python')}, {results.get('cpu_affinity')} CPU(s) available "
            f"to the process; median and p95 of {results.get('repeat', REPEAT)} requests after a warm-up (wall ms); "
            "CPU ms: this process's median CPU per request (the app and SQLite; not PostgreSQL's server)")
    out = [head, ""]
    for database in dict.fromkeys(r["db"] for r in results["runs"]):
        out.append(format_db_tables([r for r in results["runs"] if r["db"] == database]))
    out.append("JSON: .bench/results.json; plans: .bench/explain-<db>-<size>.txt")
    return "\n".join(out)


def report_files(paths: list[str]) -> int:
    """`bench.py --report A.json B.json`: the tables of runs made apart (say one database per core
    at the same time, each with its BENCH_RESULTS file), as one report."""
    merged: dict = {}
    for path in paths:
        results = json.loads(Path(path).read_text())
        runs = merged.get("runs", []) + results["runs"]
        merged = {**results, **merged, "runs": runs}
    merged["runs"] = merge_runs(merged.get("runs", []))
    print(format_report(merged))
    return 0


def merge_runs(runs: list[dict]) -> list[dict]:
    """Runs of one database and size made apart (say BENCH_ONLY=pages,search, then jobs) as one:
    their pages and jobs together, the other figures from the first."""
    out: dict[tuple, dict] = {}
    for run in runs:
        key = (run["db"], run["size"])
        if key not in out:
            out[key] = {**run, "pages": list(run.get("pages", [])), "jobs": list(run.get("jobs", []))}
        else:
            out[key]["pages"] += run.get("pages", [])
            out[key]["jobs"] += run.get("jobs", [])
    return list(out.values())


if __name__ == "__main__":
    if sys.argv[1:2] == ["--report"]:
        sys.exit(report_files(sys.argv[2:]))
    sys.exit(main())
