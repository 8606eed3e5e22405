"""`make bench`'s own parts (tests/benchmarks/bench.py): the tables with their growth and marks,
which pages get a plan, and the plan capture on the test database (SQLite, or PostgreSQL with
TEST_DATABASE_URL). The benchmark itself is not run here: it takes minutes."""

import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent / "benchmarks"))

import bench  # noqa: E402

from engage.extensions import db  # noqa: E402
from tests import factories  # noqa: E402


def page(name, median, queries=8):
    return {"name": name, "url": "/x", "median_ms": median, "p95_ms": median * 1.2, "cpu_median_ms": median / 2,
            "queries": queries, "statements": []}


def run(size, pages, jobs=(), database="postgresql"):
    return {"db": database, "size": size, "server_version": "15.18", "synth_rows": {"companies": size},
            "synth_seconds": 1.5, "synth_cpu_seconds": 1.2, "database_mb": 10.0, "pages": list(pages),
            "jobs": list(jobs), "load_average_before": (0.5, 0, 0), "load_average_after": (1.25, 0, 0)}


def table_row(text: str, name: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_growth_is_the_last_size_over_the_first():
    assert bench.growth(40.0, 100.0) == 2.5
    assert bench.growth(0, 5.0) is None and bench.growth(None, 5.0) is None and bench.growth(5.0, None) is None


def test_table_has_a_column_group_per_size_the_growth_and_marks_what_misses():
    small = run(10_000, [page("dashboard", 40.0, 13), page("reminders", 60.0, 12), page("funds", 20.0, 2)],
                [{"key": "reminders tick", "name": "reminders tick (100,000 reminders)", "seconds": 0.8,
                  "cpu_seconds": 0.7, "target": "< 2 s"}])
    large = run(100_000, [page("dashboard", 70.0, 13), page("reminders", 150.0, 12), page("funds", 50.0, 3)],
                [{"key": "reminders tick", "name": "reminders tick (1,000,000 reminders)", "seconds": 9.6,
                  "cpu_seconds": 8.0, "target": "< 2 s"}])
    text = bench.format_db_tables([large, small])  # any order in: sizes ascending out
    assert "PostgreSQL 15.18:" in text
    assert "| page | median ms 10,000 | p95 ms 10,000 | CPU ms 10,000 | queries 10,000 | median ms 100,000 |" in text
    assert "load average 0.5 before, 1.2 after" in text or "load average 0.5 before, 1.3 after" in text
    assert table_row(text, "dashboard") == ["dashboard", "40", "48", "20", "13", "70", "84", "35", "13", "1.8x", ""]
    assert table_row(text, "reminders")[-2:] == ["2.5x", "over 100 ms at 100,000; grew over 2x"]
    assert table_row(text, "funds")[-2:] == ["2.5x", "grew over 2x; query count grew"]
    assert table_row(text, "reminders tick") == ["reminders tick", "0.8 (0.7)", "9.6 (8)", "12.0x", "< 2 s",
                                                 "reminders tick (1,000,000 reminders)"]


def test_one_size_has_no_growth_column():
    text = bench.format_db_tables([run(10_000, [page("dashboard", 120.0)], database="sqlite")])
    assert "growth" not in text
    assert table_row(text, "dashboard") == ["dashboard", "120", "144", "60", "8", "over 100 ms at 10,000"]


def test_the_three_slowest_pages_and_any_over_the_target_get_a_plan():
    pages = [page(f"p{ms}", float(ms)) for ms in (5, 150, 30, 101, 20, 60, 7)]
    assert [p["name"] for p in bench.pages_to_explain(pages)] == ["p150", "p101", "p60"]
    pages.append(page("p300", 300.0))
    assert [p["name"] for p in bench.pages_to_explain(pages, slowest=1)] == ["p300", "p150", "p101"]


def test_statements_are_recorded_and_the_slowest_read_is_explained(app):
    for i in range(30):
        factories.company(name=f"Harness Company {i}")
    db.session.commit()
    with bench.StatementLog(db.engine) as log:
        db.session.execute(sa.text("UPDATE companies SET description = description WHERE id < 0"))
        db.session.execute(sa.text("SELECT id, name FROM companies WHERE name = :name ORDER BY id"),
                           {"name": "Harness Company 7"}).all()
        db.session.commit()
    after = len(log.statements)
    db.session.execute(sa.text("SELECT 1")).all()
    assert len(log.statements) == after  # nothing recorded once the block is left
    reads = [s for s in log.statements if bench.is_read(s["sql"])]
    assert len(reads) == 1 and all(s["ms"] >= 0 for s in log.statements)
    assert log.slowest() is reads[0] and "WHERE name =" in reads[0]["sql"]

    report = bench.explain_slowest({"db": db.engine.dialect.name, "size": 30, "server_version": "x",
                                    "pages": [{**page("companies", 12.0), "url": "/companies",
                                               "statements": log.statements}]})
    assert "== companies (/companies): median 12.0 ms" in report
    assert "SELECT id, name FROM companies WHERE name =" in report and "Harness Company 7" in report
    if db.engine.dialect.name == "postgresql":
        assert "Execution Time:" in report and "Buffers:" in report and "actual time=" in report
    else:
        assert "companies" in report.split("parameters:")[1] and ("SCAN" in report or "SEARCH" in report)


@pytest.mark.parametrize("value, expected", [("10000", [10_000]), ("10000,100000", [10_000, 100_000]),
                                             ("10_000, 100_000", [10_000, 100_000])])
def test_sizes_read_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("BENCH_SIZES", value)
    assert bench.sizes() == expected


@pytest.mark.parametrize("value, message", [("ten", "numbers of companies"), ("50", "at least 100")])
def test_bad_sizes_are_refused_with_a_clear_message(monkeypatch, value, message):
    monkeypatch.setenv("BENCH_SIZES", value)
    with pytest.raises(SystemExit, match=message):
        bench.sizes()


def test_bench_db_is_checked(monkeypatch):
    monkeypatch.setenv("BENCH_DB", "both")
    assert bench.databases() == ["sqlite", "postgresql"]
    monkeypatch.setenv("BENCH_DB", "postgres")
    with pytest.raises(SystemExit, match="sqlite, postgresql or both"):
        bench.databases()


def test_a_run_cut_short_and_a_kept_data_set_are_reported_as_they_are():
    kept = {**run(10_000, [page("dashboard", 40.0)]), "kept": True, "synth_at": "2026-12-05T12:40:00"}
    cut = {key: value for key, value in run(100_000, [page("dashboard", 90.0)]).items() if key != "jobs"}
    cut["pages"] = []  # stopped before its pages were timed
    text = bench.format_db_tables([kept, cut])
    assert "(built 2026-12-05T12:40:00 UTC, then copied for the run)" in text
    assert table_row(text, "dashboard") == ["dashboard", "40", "48", "20", "8", "—", "—", "—", "—", "—", ""]


def test_runs_made_apart_are_reported_together():
    pages = run(10_000, [page("dashboard", 40.0)])
    jobs = {**run(10_000, [], [{"key": "holdings import", "name": "holdings import", "seconds": 0.5}]),
            "synth_seconds": 99}
    other = run(10_000, [page("dashboard", 50.0)], database="sqlite")
    merged = bench.merge_runs([pages, other, jobs])
    assert [(r["db"], len(r["pages"]), len(r["jobs"])) for r in merged] == [("postgresql", 1, 1), ("sqlite", 1, 0)]
    assert merged[0]["synth_seconds"] == 1.5
