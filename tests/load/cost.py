"""Each request kind of the load test's mix alone: this process's CPU ms (app side, with the
driver's work), wall ms and SQL statements per request, through Flask's test client with the
settings `make load` serves (CSRF on, a real session cookie, the analysts of tests/load/run.py).

    COST_DATABASE_URL=postgresql://.../db  python tests/load/cost.py          # the table
    COST_PROFILE="engagement page" python tests/load/cost.py                  # + cProfile of one kind

The database is built as `make load` builds it (`flask synth`, LOAD_COMPANIES, and the load's
analysts) when it has no tables yet; otherwise it is used as it is (a request that writes, writes:
use a copy). COST_REPEAT (default 20) requests per kind after one warm-up; the median is shown.
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

import run  # noqa: E402  (tests/load/run.py: prepare, PASSWORD)
from forms import fill, find_form  # noqa: E402

REPEAT = int(os.environ.get("COST_REPEAT", "20"))
PROFILE = os.environ.get("COST_PROFILE")


def main() -> int:
    url = os.environ["COST_DATABASE_URL"]
    # before config.py is first imported: its classes read the environment
    os.environ.update({"DATABASE_URL": url, "ENGAGE_ENV": "development", "LOGIN_THROTTLE": "0",
                       "JOBS_URL": "memory://", "SECRET_KEY": "cost-" + os.urandom(8).hex()})
    users_file = Path(os.environ.get("COST_USERS_FILE", Path(tempfile.gettempdir()) / "engage-cost-users.json"))
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        built = sa.inspect(conn).has_table("users")
    engine.dispose()
    if not built:
        run.prepare(url, users_file)
    elif not users_file.exists():
        raise SystemExit(f"{users_file} is missing: it is written when cost.py builds the database; "
                         "point COST_USERS_FILE at it, or COST_DATABASE_URL at an empty database")
    me = json.loads(users_file.read_text())[0]

    import wsgi  # the app as gunicorn serves it

    from engage.extensions import db

    app = wsgi.app
    client = app.test_client()
    queries = [0]

    def counted(*args):
        queries[0] += 1

    with app.app_context():
        sa.event.listen(db.engine, "before_cursor_execute", counted)

    def sign_in(client=client):
        page = client.get("/auth/login")
        form = find_form(page.get_data(as_text=True), "/auth/login") or find_form(page.get_data(as_text=True), "")
        response = client.post("/auth/login", data=fill(form, email=me["email"], password=me["password"]))
        assert response.status_code == 302, response.status_code

    engagement, response_id = me["engagements"][0], me["responses"][0]
    kinds = [
        ("sign in (page)", lambda: app.test_client().get("/auth/login")),  # a browser not signed in
        ("dashboard", lambda: client.get("/")),
        ("engagements, filtered", lambda: client.get("/engagements?stage=acknowledged")),
        ("engagements, by next follow-up", lambda: client.get("/engagements?sort=next_follow_up")),
        ("companies, filtered", lambda: client.get("/companies?sector=Energy&source=us_entity_list")),
        ("reminders", lambda: client.get("/reminders")),
        ("engagement page", lambda: client.get(f"/engagements/{engagement}")),
        ("score a response (form)", lambda: client.get(f"/scoring/interactions/{response_id}")),
    ]
    sign_in()
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {REPEAT} requests per kind, median")
    print("| request | CPU ms | wall ms | statements |")
    print("|---|---:|---:|---:|")
    rows = []
    for label, call in kinds:
        first = call()
        assert first.status_code == 200, (label, first.status_code)
        cpu, wall, count = [], [], []
        for _ in range(REPEAT):
            queries[0] = 0
            w, c = time.perf_counter(), time.process_time()
            call()
            cpu.append((time.process_time() - c) * 1000)
            wall.append((time.perf_counter() - w) * 1000)
            count.append(queries[0])
        rows.append((label, statistics.median(cpu), statistics.median(wall), max(count)))
        print(f"| {label} | {rows[-1][1]:.1f} | {rows[-1][2]:.1f} | {rows[-1][3]} |", flush=True)
    cpu, wall, count = [], [], []
    for _ in range(max(3, REPEAT // 4)):
        fresh = app.test_client()  # a browser without a session, as each simulated analyst starts
        queries[0] = 0
        w, c = time.perf_counter(), time.process_time()
        sign_in(fresh)
        cpu.append((time.process_time() - c) * 1000)
        wall.append((time.perf_counter() - w) * 1000)
        count.append(queries[0])
    print(f"| sign in (page + post) | {statistics.median(cpu):.1f} | {statistics.median(wall):.1f} | {max(count)} |")
    if PROFILE:
        call = dict(kinds)[PROFILE] if PROFILE != "sign in" else lambda: sign_in(app.test_client())
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(REPEAT):
            call()
        profile.disable()
        stats = pstats.Stats(profile)
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
