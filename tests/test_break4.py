"""PostgreSQL findings of the h-break4 hostile test of the stored figures (reminder counts, company scores)."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
import sqlalchemy as sa

from engage.companies import stored as score_stored
from engage.extensions import db
from engage.reminders import stored as reminder_stored

from tests import factories
from tests.test_reminder_counts import remind
from tests.test_stored_scores import rubric_for

D = dt.date(2026, 3, 1)

pg_only = pytest.mark.skipif("not __import__('os').environ.get('TEST_DATABASE_URL')", reason="PostgreSQL only")


@pg_only
@pytest.mark.xfail(strict=True, reason="known limit (h-break4): one SQL statement that changes an engagement's owner "
                   "and its reminders (a data-modifying CTE) runs both statement triggers after both changes; "
                   "the app never writes so; `flask reminders check-counts` finds it and `recount` repairs it")
def test_one_statement_changing_owner_and_due_date_keeps_the_counts(app, make_user):
    """PostgreSQL: a data-modifying CTE changes an engagement's owner and its reminder's due date in
    one statement; both statement triggers run at its end, in some order."""
    ann, bob = make_user("analyst"), make_user("analyst")
    one = factories.engagement(owner=ann)
    db.session.commit()
    item = remind(one, D)
    db.session.execute(sa.text(
        "WITH e AS (UPDATE engagements SET owner_id = :bob WHERE id = :eng RETURNING id) "
        "UPDATE reminders SET due_on = :later WHERE id = :rid"),
        {"bob": bob.id, "eng": one.id, "later": D + dt.timedelta(days=5), "rid": item.id})
    db.session.commit()
    assert reminder_stored.drift(db.session.connection()) == (0, [])


@pg_only
def test_a_score_written_while_its_engagement_moves_company_counts_for_the_new_company(app):
    """PostgreSQL, two connections: T2 moves engagement E from company A to B (not committed); T1
    scores E: its trigger reads E's company from its snapshot (A), waits for A's row lock, then
    recounts only A. B was recounted by T2 without T1's score: B's stored score is stale."""
    one = factories.engagement()
    other = factories.engagement()  # another company, B
    rubric = rubric_for(one).id
    db.session.commit()
    e_id, a_id, b_id = one.id, one.company_id, other.company_id
    engine = db.engine
    mover = engine.connect()
    mover.execute(sa.text("UPDATE engagements SET company_id = :b WHERE id = :e"), {"b": b_id, "e": e_id})
    done = threading.Event()

    def scorer():
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO scores (engagement_id, rubric_id, scored_on, total, note, created_at, updated_at) "
                "VALUES (:e, :r, :on, 70, '', now(), now())"), {"e": e_id, "r": rubric, "on": D})
        done.set()

    thread = threading.Thread(target=scorer)
    thread.start()
    time.sleep(1.0)
    assert not done.is_set()  # the scorer waits on company A's row lock
    mover.commit()
    mover.close()
    thread.join(10)
    assert done.is_set()
    db.session.expire_all()
    assert score_stored.problems(db.session.connection()) == []  # actual: company B holds a wrong latest_score
    assert score_stored.drift(db.session.connection()) == {"latest_score": (0, []), "score_change": (0, [])}
