"""The stored score and change of a company (engage.companies.stored).

Whatever writes scores and engagements (the ORM, an executemany, raw SQL, a cascade), the stored
columns equal the definition computed from the scores (`company_scores`, the window the list
computed per request); the companies list sorted and filtered by them shows the same rows in the
same order as that definition; `flask companies check-scores` finds a wrong value or a missing
trigger and `flask companies recount-scores` repairs. Runs on SQLite and, with TEST_DATABASE_URL,
on PostgreSQL (statement triggers there, row triggers on SQLite).
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engage.companies import stored
from engage.companies.queries import company_scores
from engage.extensions import db
from engage.formatting import SHOWN_CHANGE, shown_below
from engage.models import Company, Engagement, Rubric, Score

from tests import factories

D = dt.date(2026, 3, 1)


def values() -> dict[int, tuple]:
    """Per company: (stored score, computed score, stored change, computed change)."""
    db.session.expire_all()
    table = company_scores()
    rows = db.session.execute(
        sa.select(Company.id, Company.latest_score, table.c.score, Company.score_change, table.c.score - table.c.previous)
        .outerjoin(table, table.c.company_id == Company.id).order_by(Company.id)).all()
    return {row[0]: tuple(row[1:]) for row in rows}


def assert_stored_right() -> dict[int, tuple]:
    found = values()
    for company_id, (score, score_computed, change, change_computed) in found.items():
        assert score == score_computed, (company_id, "latest_score", score, score_computed)
        assert change == change_computed, (company_id, "score_change", change, change_computed)
    assert stored.drift(db.session.connection()) == {"latest_score": (0, []), "score_change": (0, [])}
    return found


def rubric_for(engagement) -> Rubric:
    found = db.session.scalar(sa.select(Rubric).where(Rubric.campaign_id == engagement.campaign_id))
    if found is None:
        found = Rubric(campaign_id=engagement.campaign_id, name="R", version=1)
        db.session.add(found)
        db.session.flush()
    return found


def score(engagement, total, scored_on=D, moderates=None) -> Score:
    item = Score(engagement=engagement, rubric=rubric_for(engagement), scored_on=scored_on, total=Decimal(total),
                 moderates=moderates)
    db.session.add(item)
    db.session.commit()
    return item


def figures(company_id: int) -> tuple:
    score_, _, change, _ = assert_stored_right()[company_id]
    return score_, change


def test_every_kind_of_score_write_keeps_the_score_and_change(app):
    one = factories.engagement()
    company = one.company_id
    other = factories.engagement(company=one.company)  # a second engagement of the same company
    elsewhere = factories.engagement()
    assert figures(company) == (None, None)  # no score: NULL
    first = score(one, "40.50", D)
    assert figures(company) == (Decimal("40.50"), None)  # no earlier score: no change
    later = score(other, "55.25", D + dt.timedelta(days=3))  # the company's latest, over its engagements
    assert figures(company) == (Decimal("55.25"), Decimal("14.75"))
    same_day = score(one, "50", D + dt.timedelta(days=3))  # same date: the later entry is the latest
    assert figures(company) == (Decimal("50"), Decimal("-5.25"))
    score(one, "90", D + dt.timedelta(days=9), moderates=same_day)  # a moderation is not the score of record
    assert figures(company) == (Decimal("50"), Decimal("-5.25"))
    same_day.total = Decimal("60")
    db.session.commit()
    assert figures(company) == (Decimal("60"), Decimal("4.75"))
    same_day.scored_on = D - dt.timedelta(days=1)  # now the oldest
    db.session.commit()
    assert figures(company) == (Decimal("55.25"), Decimal("14.75"))
    later.engagement_id = elsewhere.id  # moved to another company: both change
    db.session.commit()
    assert figures(company) == (Decimal("40.50"), Decimal("-19.50"))
    assert figures(elsewhere.company_id) == (Decimal("55.25"), None)
    first.moderates_id = later.id  # made a moderation (raw column): no longer counts
    db.session.commit()
    assert figures(company) == (Decimal("60"), None)
    first.moderates_id = None
    db.session.commit()
    assert figures(company) == (Decimal("40.50"), Decimal("-19.50"))
    db.session.delete(first)
    db.session.commit()
    assert figures(company) == (Decimal("60"), None)
    # executemany (the bulk writers) and raw SQL (any other path)
    stamp = dt.datetime(2026, 3, 1)
    db.session.execute(sa.insert(Score.__table__), [
        {"engagement_id": e.id, "rubric_id": rubric_for(e).id, "scored_on": D + dt.timedelta(days=days),
         "total": Decimal(total), "note": "", "created_at": stamp, "updated_at": stamp}
        for e, days, total in ((one, 20, "10"), (other, 21, "30.5"), (elsewhere, 2, "70"))])
    db.session.commit()
    assert figures(company) == (Decimal("30.5"), Decimal("20.5"))
    assert figures(elsewhere.company_id) == (Decimal("55.25"), Decimal("-14.75"))
    db.session.execute(sa.text("UPDATE scores SET total = total + 1 WHERE engagement_id IN (:a, :b)"),
                       {"a": one.id, "b": elsewhere.id})
    db.session.commit()
    assert figures(company) == (Decimal("30.5"), Decimal("19.5"))
    assert figures(elsewhere.company_id) == (Decimal("56.25"), Decimal("-14.75"))
    db.session.execute(sa.text("DELETE FROM scores WHERE engagement_id = :e"), {"e": other.id})
    db.session.commit()
    assert figures(company) == (Decimal("11"), Decimal("-50"))


def test_an_engagement_moved_or_deleted_moves_its_company_figures(app):
    one = factories.engagement()
    two = factories.engagement(company=one.company)
    three = factories.engagement()
    company, target = one.company_id, three.company_id
    score(one, "40", D)
    score(two, "60", D + dt.timedelta(days=1))
    score(three, "20", D)
    assert figures(company) == (Decimal("60"), Decimal("20"))
    db.session.execute(sa.text("UPDATE engagements SET company_id = :c WHERE id = :e"), {"c": target, "e": two.id})
    db.session.commit()
    assert figures(company) == (Decimal("40"), None)
    assert figures(target) == (Decimal("60"), Decimal("40"))
    db.session.delete(db.session.get(Engagement, two.id))  # its scores go by the database's cascade
    db.session.commit()
    assert figures(target) == (Decimal("20"), None)
    db.session.execute(sa.text("DELETE FROM engagements WHERE id = :e"), {"e": one.id})
    db.session.commit()
    assert figures(company) == (None, None)
    # An engagement update that does not move it changes nothing.
    db.session.execute(sa.text("UPDATE engagements SET stage = 'acknowledged' WHERE id = :e"), {"e": three.id})
    db.session.commit()
    assert figures(target) == (Decimal("20"), None)


#: One write: (action, engagement index, row index, date offset, total, flag)
WRITES = st.lists(st.tuples(
    st.sampled_from(["add", "add_many", "date", "total", "moderation", "move", "delete", "raw_update", "move_engagement"]),
    st.integers(0, 3), st.integers(0, 30), st.integers(-5, 5), st.integers(0, 100), st.booleans()),
    min_size=1, max_size=20)


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(writes=WRITES)
def test_random_sequences_of_writes_keep_the_figures(app, writes):
    """Hypothesis: any sequence of adds (ORM and executemany), date and total edits, moderations,
    moves, deletes, raw updates and engagements moving company leaves the stored figures equal to
    the computed ones after each commit. Few dates, so ties on the date are common."""
    db.session.execute(sa.delete(Score))
    db.session.commit()
    engagements = list(db.session.scalars(sa.select(Engagement).order_by(Engagement.id).limit(4)))
    if len(engagements) < 4:
        shared = factories.engagement()
        engagements = [shared, factories.engagement(company=shared.company), factories.engagement(),
                       factories.engagement()]
    companies = sorted({e.company_id for e in engagements})
    for action, which, row, offset, total, flag in writes:
        engagement = engagements[which]
        rows = list(db.session.scalars(sa.select(Score).order_by(Score.id)))
        target = rows[row % len(rows)] if rows else None
        on = D + dt.timedelta(days=offset)
        if action == "add" or target is None:
            primary = [r for r in rows if r.moderates_id is None]
            moderates = primary[row % len(primary)] if flag and primary else None
            db.session.add(Score(engagement=engagement, rubric=rubric_for(engagement), scored_on=on,
                                 total=Decimal(total), moderates=moderates))
        elif action == "add_many":
            stamp = dt.datetime(2026, 3, 1)
            db.session.execute(sa.insert(Score.__table__), [
                {"engagement_id": e.id, "rubric_id": rubric_for(e).id, "scored_on": on + dt.timedelta(days=i % 2),
                 "total": Decimal(total) / (i + 1), "note": "", "created_at": stamp, "updated_at": stamp}
                for i, e in enumerate(engagements)])
        elif action == "date":
            target.scored_on = on
        elif action == "total":
            target.total = Decimal(total) + Decimal("0.25")
        elif action == "moderation":
            others = [r for r in rows if r.id != target.id and r.moderates_id is None]
            target.moderates_id = None if flag or not others else others[0].id
        elif action == "move":
            target.engagement_id = engagement.id
        elif action == "delete":
            db.session.delete(target)
        elif action == "raw_update":  # one UPDATE statement over several scores of several companies
            db.session.execute(sa.text("UPDATE scores SET scored_on = :on WHERE id % 2 = :odd"),
                               {"on": on, "odd": int(flag)})
        else:
            db.session.execute(sa.text("UPDATE engagements SET company_id = :c WHERE id = :e"),
                               {"c": companies[total % len(companies)], "e": engagement.id})
        db.session.commit()
        assert_stored_right()


def _page_ids(client, query: str) -> list[int]:
    ids, url = [], f"/companies?{query}"
    while url:
        html = client.get(url).get_data(as_text=True)
        ids += [int(n) for n in re.findall(r'data-label="Company"><a href="/companies/(\d+)"', html)]
        found = re.search(r'href="([^"]*)" rel="next"', html)
        url = found.group(1).replace("&amp;", "&") if found else None
    return ids


def test_the_list_shows_the_rows_and_figures_the_definition_gives(app, client, login_as, monkeypatch):
    """Sorted by score or change (both directions, ties and NULLs), filtered by score and trend:
    the pages (by Next, four rows a page) give the ids the computed definition orders, and the
    figures shown are the definition's."""
    monkeypatch.setitem(app.config, "PAGE_SIZE", 4)
    login_as("viewer")
    totals = [[40, 50], [50], [], [40, 50], [50, 40], [60], [], [50, 50], [40, "50.4"], [50], [60, 40], [], [70],
              [50], [40, 50], [], [60], [50, 40], ["50.6", 50]]
    companies = []
    for i, row in enumerate(totals):
        engagement = factories.engagement(company=factories.company(name=f"Company {i:02d}"))
        companies.append(engagement.company_id)
        for n, total in enumerate(row):
            score(engagement, total, D + dt.timedelta(days=n))
    assert_stored_right()
    table = company_scores()
    change = table.c.score - table.c.previous
    for sort, definition in (("score", table.c.score), ("change", change)):
        for direction in ("asc", "desc"):
            order = definition.desc() if direction == "desc" else definition.asc()
            expected = list(db.session.scalars(
                sa.select(Company.id).outerjoin(table, table.c.company_id == Company.id)
                .order_by(order.nulls_last(), Company.id)))
            assert _page_ids(client, f"sort={sort}&dir={direction}") == expected, (sort, direction)
    for query, condition in (("score_below=50", table.c.score < shown_below(50)),
                             ("trend=up", change >= SHOWN_CHANGE), ("trend=down", change <= -SHOWN_CHANGE)):
        expected = list(db.session.scalars(
            sa.select(Company.id).join(table, table.c.company_id == Company.id).where(condition)
            .order_by(Company.normalized_name, Company.id)))
        assert expected and _page_ids(client, query) == expected, query
    html = client.get("/companies?sort=score&dir=desc").get_data(as_text=True)
    assert re.search(r'data-label="Score" class="num">70</td>\s*<td data-label="Change" class="num">–', html), html
    html = client.get("/companies?sort=change&dir=asc").get_data(as_text=True)
    assert re.search(r'data-label="Score" class="num">40</td>\s*<td data-label="Change" class="num">−20', html) or \
        re.search(r'data-label="Score" class="num">40</td>\s*<td data-label="Change" class="num">-20', html), html


def test_check_finds_a_wrong_value_and_a_missing_trigger_and_recount_repairs(app, runner):
    engagement = factories.engagement()
    score(engagement, "40", D)
    score(engagement, "45", D + dt.timedelta(days=1))
    ok = runner.invoke(args=["companies", "check-scores"])
    assert ok.exit_code == 0 and "every company matches its scores" in ok.output, ok.output
    # A write that bypasses the triggers (they are on scores and engagements, not companies).
    db.session.execute(sa.text("UPDATE companies SET latest_score = 99, score_change = NULL WHERE id = :c"),
                       {"c": engagement.company_id})
    db.session.commit()
    bad = runner.invoke(args=["companies", "check-scores"])
    assert bad.exit_code == 1
    assert f"1 company(ies) hold a wrong latest_score (first: #{engagement.company_id})" in bad.output, bad.output
    assert "wrong score_change" in bad.output
    fixed = runner.invoke(args=["companies", "recount-scores"])
    assert fixed.exit_code == 0 and "1 score(s) and 1 change(s) corrected" in fixed.output, fixed.output
    assert figures(engagement.company_id) == (Decimal("45"), Decimal("5"))
    # A trigger gone (a batch migration that rebuilt the table, say): the check names it.
    dropped = "DROP TRIGGER company_score_scores_ai"
    db.session.execute(sa.text(dropped + (" ON scores" if db.engine.dialect.name == "postgresql" else "")))
    db.session.commit()
    score(engagement, "10", D + dt.timedelta(days=2))  # not followed
    missing = runner.invoke(args=["companies", "check-scores"])
    assert missing.exit_code == 1
    assert "trigger company_score_scores_ai (on scores)" in missing.output, missing.output
    assert "wrong latest_score" in missing.output, missing.output
    repaired = runner.invoke(args=["companies", "recount-scores", "--triggers"])
    assert repaired.exit_code == 0 and "Triggers created" in repaired.output, repaired.output
    assert runner.invoke(args=["companies", "check-scores"]).exit_code == 0
    score(engagement, "20", D + dt.timedelta(days=3))  # followed again
    assert figures(engagement.company_id) == (Decimal("20"), Decimal("10"))


def test_recount_fills_the_columns_from_the_scores(app):
    """The migration's fill: every company's figures from its scores, set-based."""
    engagements = [factories.engagement() for _ in range(3)]
    score(engagements[0], "30", D)
    score(engagements[0], "35.5", D + dt.timedelta(days=1))
    score(engagements[1], "70", D)
    db.session.execute(sa.text("UPDATE companies SET latest_score = 1, score_change = NULL"))
    db.session.commit()
    changed = stored.recount(db.session.connection())
    db.session.commit()
    companies = db.session.scalar(sa.select(sa.func.count()).select_from(Company))
    assert changed == {"latest_score": companies, "score_change": 1}
    found = assert_stored_right()
    assert [found[e.company_id][::2] for e in engagements] == [
        (Decimal("35.5"), Decimal("5.5")), (Decimal("70"), None), (None, None)]
    assert stored.recount(db.session.connection()) == {"latest_score": 0, "score_change": 0}


def test_the_triggers_are_the_migrations(app):
    """The database holds exactly the triggers engage.companies.stored describes."""
    assert stored.missing_triggers(db.session.connection()) == []


def test_synth_bulk_load_leaves_right_scores(app, runner):
    """`flask synth` writes its rows with executemany (SQLite) or COPY (PostgreSQL): the triggers follow both."""
    result = runner.invoke(args=["synth", "--companies", "40", "--seed", "5"])
    assert result.exit_code == 0, result.output
    found = assert_stored_right()
    assert any(v[0] is not None for v in found.values())
    assert runner.invoke(args=["companies", "check-scores"]).exit_code == 0


def test_two_transactions_scoring_one_company_at_once_leave_the_right_score(app):
    """PostgreSQL: the trigger locks the company, then reads its scores afresh. Without the lock the
    second writer would recompute from a snapshot that lacks the first one's later score and
    overwrite it."""
    import threading
    import time

    if db.engine.dialect.name != "postgresql":
        return  # SQLite has one writer at a time
    one = factories.engagement()
    two = factories.engagement(company=one.company)
    rubric = rubric_for(one).id
    rubric_two = rubric_for(two).id
    db.session.commit()
    one_id, two_id, company_id = one.id, two.id, one.company_id  # the thread cannot load expired attributes
    sql = sa.text("INSERT INTO scores (engagement_id, rubric_id, scored_on, total, note, created_at, updated_at) "
                  "VALUES (:e, :r, :on, :total, '', now(), now())")
    engine = db.engine  # the thread has no app context
    first = engine.connect()
    first.execute(sql, {"e": one_id, "r": rubric, "on": D + dt.timedelta(days=10), "total": 80})  # not committed yet
    done = threading.Event()

    def second_writer():
        with engine.begin() as conn:  # an earlier score of another engagement: waits for the first writer's lock
            conn.execute(sql, {"e": two_id, "r": rubric_two, "on": D, "total": 30})
        done.set()

    thread = threading.Thread(target=second_writer)
    thread.start()
    time.sleep(1.0)
    assert not done.is_set()  # waiting on the company's row lock
    first.commit()
    first.close()
    thread.join(10)
    assert done.is_set()
    assert figures(company_id) == (Decimal("80"), Decimal("50"))


def test_0037_up_down_up_keeps_triggers_and_right_scores_on_sqlite(make_app, tmp_path, database_url):
    """Migration 0037 fills the figures of the scores already there, goes down without a trace,
    and up again fills what was written meanwhile; the triggers work after the round trip."""
    from flask_migrate import downgrade, upgrade

    from tests.test_break3_migration import _fill_required

    if not database_url.startswith("sqlite"):
        return  # PostgreSQL: the tests above run on the migrated test database
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'score-0037.sqlite'}")
    with app.app_context():
        upgrade(revision="0036")
        with db.engine.begin() as conn:
            for n in (1, 2):
                _fill_required(conn, "companies", {"id": n, "name": f"C{n}", "normalized_name": f"c{n}"})
            _fill_required(conn, "campaigns", {"id": 1, "slug": "c", "active": 1})
            _fill_required(conn, "rubrics", {"id": 1, "campaign_id": 1, "version": 1})
            for n in (1, 2):
                _fill_required(conn, "engagements", {"id": n, "company_id": n, "campaign_id": 1, "stage": "identified",
                                                     "escalation": "none", "opened_on": "2026-01-01"})
            for day, total in (("2026-03-01", 40), ("2026-03-05", 55.5)):
                _fill_required(conn, "scores", {"engagement_id": 1, "rubric_id": 1, "scored_on": day, "total": total})
        upgrade(revision="0037")

        def figures():
            return [tuple(map(str, row)) for row in db.session.execute(sa.text(
                "SELECT id, latest_score, score_change FROM companies ORDER BY id")).all()]

        with db.engine.connect() as conn:
            assert stored.problems(conn) == []
        assert figures() == [("1", "55.5", "15.5"), ("2", "None", "None")]
        db.session.remove()
        downgrade(revision="0036")
        with db.engine.connect() as conn:
            names = set(conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).scalars())
            assert not names & set(stored.TRIGGERS)
            columns = {c["name"] for c in sa.inspect(conn).get_columns("companies")}
            assert "latest_score" not in columns and "score_change" not in columns
        with db.engine.begin() as conn:  # written while 0037 is down: the upgrade fills it
            _fill_required(conn, "scores", {"engagement_id": 2, "rubric_id": 1, "scored_on": "2026-04-01", "total": 70})
        upgrade()
        with db.engine.connect() as conn:
            assert stored.missing_triggers(conn) == [] and stored.problems(conn) == []
        assert figures() == [("1", "55.5", "15.5"), ("2", "70", "None")]
        with db.engine.begin() as conn:  # the triggers work after the round trip
            conn.execute(sa.text("DELETE FROM scores WHERE engagement_id = 1 AND scored_on = '2026-03-05'"))
            _fill_required(conn, "scores", {"engagement_id": 2, "rubric_id": 1, "scored_on": "2026-04-02", "total": 60})
        assert figures() == [("1", "40", "None"), ("2", "60", "-10")]
        with db.engine.connect() as conn:
            assert stored.problems(conn) == []
        db.session.remove()
        db.engine.dispose()
