"""`make load`: the daily mix by many simulated analysts against the production shape.

gunicorn (LOAD_WORKERS processes) serves the app on a database built for the run (`flask synth`,
LOAD_COMPANIES companies); the scheduler ticks every minute and drains the outbox into a real
SMTP server (aiosmtpd) while the job worker runs; Locust (headless) sends LOAD_USERS analysts
through the mix in tests/load/locustfile.py. The analysts arrive LOAD_SPAWN_RATE a second (1: fifty
analysts sign in over fifty seconds, not all in the same few) and then all work for LOAD_SECONDS (the
steady state); the table gives the whole run and the steady state apart, and the CPU seconds each
part of the stack used (gunicorn, the database server when started here, Locust, the scheduler and
the job worker) beside the machine's. Afterwards the rows are counted: every write the app
confirmed is in the database once (nothing lost, nothing written twice).

Database: LOAD_DATABASE_URL (PostgreSQL, emptied first), or LOAD_DB=postgresql for a throwaway
PostgreSQL server started here (as .ci/run does), or LOAD_DB=sqlite (the default) for an SQLite file.
Prints a table per request kind (requests, failures, median and p95 ms, requests/s) and the
checks, writes .bench/load-<db>.json, and exits 1 on any failed request or a write check that
does not add up (LOAD_SMOKE=1, as CI runs it: a few seconds, errors asserted, not timings).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from pgserver import emptied, throwaway_postgres  # noqa: E402  (tests/pgserver.py, shared with make bench)
from smtp import SmtpServer, free_port  # noqa: E402  (tests/smtp.py: aiosmtpd)

SMOKE = os.environ.get("LOAD_SMOKE") == "1"
COMPANIES = int(os.environ.get("LOAD_COMPANIES", "300" if SMOKE else "10000"))
USERS = int(os.environ.get("LOAD_USERS", "5" if SMOKE else "50"))
SECONDS = int(os.environ.get("LOAD_SECONDS", "15" if SMOKE else "60"))
WORKERS = int(os.environ.get("LOAD_WORKERS", "2" if SMOKE else "4"))
#: Analysts started per second (Locust's spawn rate); the run lasts the ramp plus LOAD_SECONDS.
SPAWN_RATE = float(os.environ.get("LOAD_SPAWN_RATE", "5" if SMOKE else "1"))
RAMP_SECONDS = int(-(-USERS // SPAWN_RATE)) if SPAWN_RATE > 0 else 0
DB = os.environ.get("LOAD_DB", "postgresql" if os.environ.get("LOAD_DATABASE_URL") else "sqlite")
PASSWORD = "load test password"
SUBJECT = "Load test note"
VENV_BIN = Path(sys.executable).parent


def main() -> int:
    folder = Path(tempfile.mkdtemp(prefix="engage-load-"))
    stack: list = []
    try:
        url = database(folder, stack)
        users_file = folder / "users.json"
        before = prepare(url, users_file)
        smtp = SmtpServer()
        smtp.start()
        stack.append(smtp.stop)
        port = free_port()
        env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": "load-test-" + os.urandom(8).hex(),
               "ENGAGE_ENV": "development", "LOGIN_THROTTLE": "0",  # 50 sign-ins from one address are not an attack
               "MAIL_BACKEND": "smtp", "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(smtp.port),
               "JOBS_URL": f"sqlite:///{folder / 'jobs.sqlite'}", "REMINDER_TICK_MINUTES": "1",
               "ENGAGE_INSTANCE_NOTE": "load"}
        flask = [str(VENV_BIN / "flask"), "--app", "wsgi"]
        log = (folder / "processes.log").open("w")  # the scheduler's and the worker's lines (shown on a failure)
        stack.append(log.close)
        started = [
            subprocess.Popen([str(VENV_BIN / "gunicorn"), "--workers", str(WORKERS), "--bind", f"127.0.0.1:{port}",
                              "--timeout", "60", "--log-level", "warning", "wsgi:app"], cwd=ROOT, env=env),
            subprocess.Popen([*flask, "scheduler"], cwd=ROOT, env=env, stdout=log, stderr=log),
            subprocess.Popen([*flask, "jobs", "worker"], cwd=ROOT, env=env, stdout=log, stderr=log),
        ]
        stack.extend(lambda p=p: stop(p) for p in started)
        wait_until_up(port)
        result_file, csv_prefix, samples_file = folder / "confirmed.json", folder / "stats", folder / "samples.json"
        load_before = os.getloadavg()
        cpu_before = {"machine": machine_cpu(), **process_cpu(started, folder)}
        children_before = children_cpu()
        locust = subprocess.run(
            [str(VENV_BIN / "locust"), "-f", str(ROOT / "tests" / "load" / "locustfile.py"), "--headless",
             "--users", str(USERS), "--spawn-rate", str(SPAWN_RATE), "--run-time", f"{RAMP_SECONDS + SECONDS}s",
             "--host", f"http://127.0.0.1:{port}", "--csv", str(csv_prefix), "--only-summary",
             "--stop-timeout", "10", "--exit-code-on-error", "0"],
            cwd=ROOT / "tests" / "load", env={**env, "LOAD_USERS_FILE": str(users_file),
                                               "LOAD_RESULT_FILE": str(result_file), "LOAD_SUBJECT": SUBJECT,
                                               "LOAD_SAMPLES_FILE": str(samples_file),
                                               # the smoke's few users think less, so that every kind of write happens
                                               **({"LOAD_WAIT_MIN": "0.05", "LOAD_WAIT_MAX": "0.3", "LOAD_EVERY_WRITE": "1"} if SMOKE else {})},
            capture_output=True, text=True)
        if locust.returncode not in (0, 1) or not result_file.exists():
            print(locust.stdout[-4000:], locust.stderr[-4000:], sep="\n")
            print(f"Locust failed (exit {locust.returncode})")
            return 1
        cpu_after = {"machine": machine_cpu(), **process_cpu(started, folder)}
        cpu = {k: round(cpu_after[k] - cpu_before.get(k, 0.0), 1) for k in cpu_after}
        cpu["locust"] = round(children_cpu() - children_before, 1)
        time.sleep(1)
        confirmed = json.loads(result_file.read_text())
        after = counts(url)
        rows = stats(Path(f"{csv_prefix}_stats.csv"))
        phases = by_phase(json.loads(samples_file.read_text())) if samples_file.exists() else {}
        checks = write_checks(before, after, confirmed, smtp)
        report = {"db": DB, "companies": COMPANIES, "users": USERS, "seconds": SECONDS, "workers": WORKERS,
                  "spawn_rate": SPAWN_RATE, "ramp_seconds": RAMP_SECONDS,
                  "load_average_before": [round(x, 2) for x in load_before], "cpu_seconds": cpu,
                  "requests": rows, "phases": phases, "confirmed": confirmed, "checks": checks}
        (ROOT / ".bench").mkdir(exist_ok=True)
        (ROOT / ".bench" / f"load-{DB}.json").write_text(json.dumps(report, indent=2))
        print_report(report)
        failures = sum(r["failures"] for r in rows if r["name"] != "Aggregated")
        bad = [c for c in checks if not c["ok"]]
        if failures or bad:
            print(locust.stdout[-3000:], locust.stderr[-3000:], sep="\n")
            log.flush()
            print((folder / "processes.log").read_text()[-3000:])
        return 1 if failures or bad or not rows else 0
    finally:
        for undo in reversed(stack):
            try:
                undo()
            except Exception as exc:  # keep tearing down
                print(f"teardown: {exc}", file=sys.stderr)
        shutil.rmtree(folder, ignore_errors=True)


def database(folder: Path, stack: list) -> str:
    """The run's database URL: given (emptied first), a throwaway PostgreSQL server, or an SQLite file."""
    if os.environ.get("LOAD_DATABASE_URL"):
        return emptied(os.environ["LOAD_DATABASE_URL"])
    if DB == "postgresql":
        return throwaway_postgres(folder, stack)
    return f"sqlite:///{folder / 'load.sqlite'}"


def prepare(url: str, users_file: Path) -> dict:
    """Schema, reference data, the synthetic data set and one analyst per simulated user, each with
    engagements and unscored responses of its own; returns the row counts before the run."""
    from config import TestConfig
    from engage import create_app
    from engage.extensions import db
    from engage.models import Engagement, Interaction, Rubric, Score, User

    app = create_app(TestConfig, overrides={"SQLALCHEMY_DATABASE_URI": url, "JOBS_URL": "memory://"})
    with app.app_context():
        from flask_migrate import upgrade

        from engage.seeding import load_reference
        from engage.synth import synthesize

        upgrade()
        load_reference(Path(app.config["SEEDS_DIR"]))
        db.session.commit()
        synthesize(COMPANIES)
        engagements = db.session.scalars(sa.select(Engagement.id).where(Engagement.closed_on.is_(None))
                                         .order_by(Engagement.id).limit(USERS * 10)).all()
        scored = sa.exists().where(Score.interaction_id == Interaction.id)  # not NOT IN: the column has NULLs
        # only responses a rubric can score: without a published one the scoring page sends the
        # analyst back to the engagement page, and the "score a response (form)" request would
        # time that page too and never post
        rubric = sa.exists().where(Rubric.campaign_id == Engagement.campaign_id, Rubric.published_at.is_not(None))
        responses = db.session.scalars(sa.select(Interaction.id).join(Engagement).where(
            Interaction.kind == "response", ~scored, rubric, Engagement.closed_on.is_(None))
            .order_by(Interaction.id).limit(USERS * 50)).all()
        users = []
        for i in range(USERS):
            user = User(email=f"load{i}@example.org", name=f"Load Analyst {i}", role="analyst")
            user.set_password(PASSWORD)
            db.session.add(user)
            mine = engagements[i::USERS]
            users.append({"email": user.email, "password": PASSWORD, "engagements": mine,
                          "responses": responses[i::USERS]})
        db.session.commit()
        if not engagements or not all(u["engagements"] for u in users):
            raise SystemExit(f"not enough open engagements for {USERS} users at {COMPANIES} companies")
        users_file.write_text(json.dumps(users))
        print(f"{len(engagements)} open engagements and {len(responses)} unscored responses shared by {USERS} analysts")
    return counts(url)


def counts(url: str) -> dict:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        one = lambda sql, **kw: conn.execute(sa.text(sql), kw).scalar_one()  # noqa: E731
        result = {
            "interactions": one("SELECT count(*) FROM interactions WHERE subject LIKE :s", s=f"{SUBJECT} %"),
            "distinct_subjects": one("SELECT count(DISTINCT subject) FROM interactions WHERE subject LIKE :s",
                                     s=f"{SUBJECT} %"),
            "stage_moves": one("SELECT count(*) FROM engagement_events e JOIN users u ON u.id = e.actor_id "
                               "WHERE u.email LIKE 'load%@example.org' AND e.kind = 'stage'"),
            "scores": one("SELECT count(*) FROM scores s JOIN users u ON u.id = s.scorer_id "
                          "WHERE u.email LIKE 'load%@example.org'"),
            "outbox_sent": one("SELECT count(*) FROM outbox_emails WHERE status = 'sent'"),
        }
    engine.dispose()
    return result


def machine_cpu() -> float:
    """CPU seconds the whole machine has spent busy (every process, other sessions' too)."""
    import psutil

    times = psutil.cpu_times()
    return times.user + times.nice + times.system + getattr(times, "irq", 0) + getattr(times, "softirq", 0)


def process_cpu(started: list, folder: Path) -> dict:
    """CPU seconds used so far by gunicorn (master and workers), the scheduler, the job worker and,
    when started here, the PostgreSQL server (its processes run with the run's folder as data directory)."""
    import psutil

    def tree(pid: int) -> float:
        try:
            root = psutil.Process(pid)
            total = 0.0
            for p in [root, *root.children(recursive=True)]:
                try:
                    t = p.cpu_times()
                    total += t.user + t.system
                except psutil.NoSuchProcess:
                    pass
            return total
        except psutil.NoSuchProcess:
            return 0.0

    result = {name: tree(p.pid) for name, p in zip(("gunicorn", "scheduler", "job worker"), started)}
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            if p.info["name"] == "postgres" and str(folder) in " ".join(p.info["cmdline"] or []):
                result["postgresql"] = tree(p.pid)
                break
        except psutil.Error:
            pass
    return result


def children_cpu() -> float:
    """CPU seconds of this process's finished children (here: Locust, waited for by subprocess.run)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def by_phase(samples: dict) -> dict:
    """Per request kind and in all: requests, failures, median and p95 ms, for the whole run and the
    steady state (once every analyst had started), from each request's own time."""
    import statistics

    def summary(items: list) -> dict:
        times = sorted(ms for _, ms, _ in items)
        return {"requests": len(times), "failures": sum(1 for *_, failed in items if failed),
                "median_ms": round(statistics.median(times)) if times else 0,
                "p95_ms": round(times[min(len(times) - 1, int(len(times) * 0.95))]) if times else 0}

    out = {}
    for phase, items in (("whole", samples["ramp"] + samples["steady"]), ("steady", samples["steady"])):
        names = sorted({name for name, *_ in items})
        out[phase] = {name: summary([i for i in items if i[0] == name]) for name in names}
        out[phase]["all"] = summary(items)
    return out


def write_checks(before: dict, after: dict, confirmed: dict, smtp) -> list[dict]:
    grown = {k: after[k] - before[k] for k in after}
    return [
        {"check": "interactions logged = confirmed", "ok": grown["interactions"] == confirmed["interactions"],
         "detail": f"{grown['interactions']} rows, {confirmed['interactions']} confirmed"},
        {"check": "no interaction written twice", "ok": after["interactions"] == after["distinct_subjects"],
         "detail": f"{after['interactions']} rows, {after['distinct_subjects']} distinct subjects"},
        {"check": "stage moves recorded = confirmed", "ok": grown["stage_moves"] == confirmed["stage_moves"],
         "detail": f"{grown['stage_moves']} events, {confirmed['stage_moves']} confirmed"},
        {"check": "scores saved = confirmed", "ok": grown["scores"] == confirmed["scores"],
         "detail": f"{grown['scores']} rows, {confirmed['scores']} confirmed"},
        {"check": "each kind of write was made", "ok": all(confirmed[k] > 0 for k in ("interactions", "stage_moves", "scores")),
         "detail": "interactions, stage moves and scores confirmed at least once each"},
        {"check": "outbox drained to SMTP meanwhile", "ok": True,
         "detail": f"{grown['outbox_sent']} emails sent, {len(smtp.inbox.messages)} received"},
    ]


def stats(path: Path) -> list[dict]:
    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            rows.append({"name": row["Name"] if row["Name"] != "Aggregated" else "Aggregated",
                         "method": row["Type"], "requests": int(row["Request Count"]),
                         "failures": int(row["Failure Count"]), "median_ms": float(row["Median Response Time"] or 0),
                         "p95_ms": float(row["95%"] or 0) if row.get("95%") not in (None, "N/A") else 0.0,
                         "rps": round(float(row["Requests/s"] or 0), 2)})
    return rows


def print_report(report: dict) -> None:
    print(f"\nLoad: {report['users']} analysts arriving {report['spawn_rate']:g} a second ({report['ramp_seconds']} s), "
          f"then {report['seconds']} s all working; gunicorn {report['workers']} workers, "
          f"{report['db']}, {report['companies']:,} companies (scheduler and job worker running); "
          f"load average before: {' '.join(str(x) for x in report['load_average_before'])}\n")
    print("| request | requests | failures | median ms | p95 ms | req/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in report["requests"]:
        print(f"| {r['name']} | {r['requests']} | {r['failures']} | {r['median_ms']:.0f} | {r['p95_ms']:.0f} "
              f"| {r['rps']} |")
    phases = report.get("phases") or {}
    if phases:
        print("\nFrom each request's time: the whole run and the steady state (all analysts started)\n")
        print("| request | whole: requests | median ms | p95 ms | steady: requests | median ms | p95 ms |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, whole in phases["whole"].items():
            steady = phases["steady"].get(name, {"requests": 0, "median_ms": 0, "p95_ms": 0})
            print(f"| {name} | {whole['requests']} | {whole['median_ms']} | {whole['p95_ms']} "
                  f"| {steady['requests']} | {steady['median_ms']} | {steady['p95_ms']} |")
    print("\nCPU seconds during the run: " + ", ".join(f"{k} {v}" for k, v in report["cpu_seconds"].items())
          + f" (about {report['ramp_seconds'] + report['seconds']} s of wall time on {os.cpu_count()} CPUs; "
          "'machine' counts every process, other sessions' too)")
    print(f"\nConfirmed writes: {report['confirmed']}")
    for c in report["checks"]:
        print(f"  [{'ok' if c['ok'] else 'FAILED'}] {c['check']}: {c['detail']}")


def wait_until_up(port: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/auth/login", timeout=2)
            return
        except Exception:
            time.sleep(0.3)
    raise SystemExit(f"gunicorn did not answer on port {port} within {seconds} s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


if __name__ == "__main__":
    sys.exit(main())
