"""The stored next follow-up and last contact of an engagement (engage.engagements.stored).

Whatever writes reminders and interactions (the ORM, an executemany, raw SQL, a cascade), the
stored columns equal the definition computed from the rows; the pages that read them show the
same rows in the same order as that definition; `flask engagements check-dates` finds a wrong
value or a missing trigger and `flask engagements recount` repairs. Runs on SQLite and, with
TEST_DATABASE_URL, on PostgreSQL (statement triggers there, row triggers on SQLite).
"""

from __future__ import annotations

import datetime as dt
import re

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engage import clock
from engage.engagements import service, stored
from engage.engagements.queries import quiet_since
from engage.extensions import db
from engage.main.routes import quiet_engagements
from engage.models import Engagement, Interaction, Reminder

from tests import factories

D = dt.date(2026, 3, 1)


def values() -> dict[int, tuple]:
    """Per engagement: (stored next follow-up, computed, stored last contact, computed)."""
    db.session.expire_all()
    rows = db.session.execute(sa.select(
        Engagement.id, Engagement.next_follow_up_on, service.computed_next_follow_up(),
        Engagement.last_contact_on, service.computed_last_contact()).order_by(Engagement.id)).all()
    return {row[0]: tuple(row[1:]) for row in rows}


def assert_stored_right() -> dict[int, tuple]:
    found = values()
    for engagement_id, (next_stored, next_computed, last_stored, last_computed) in found.items():
        assert next_stored == next_computed, (engagement_id, "next_follow_up_on", next_stored, next_computed)
        assert last_stored == last_computed, (engagement_id, "last_contact_on", last_stored, last_computed)
    assert stored.drift(db.session.connection()) == {"next_follow_up_on": (0, []), "last_contact_on": (0, [])}
    return found


def remind(engagement, due_on, status="open", kind="manual") -> Reminder:
    item = Reminder(engagement=engagement, due_on=due_on, reason="Chase", status=status, kind=kind)
    db.session.add(item)
    db.session.commit()
    return item


def contact(engagement, occurred_on, kind="email") -> Interaction:
    item = Interaction(engagement=engagement, kind=kind, direction="outbound", occurred_on=occurred_on, subject="Hi")
    db.session.add(item)
    db.session.commit()
    return item


def test_every_kind_of_reminder_write_keeps_the_next_follow_up(app):
    one, two = factories.engagement(), factories.engagement()
    assert values()[one.id] == (None, None, None, None)  # nothing waits: NULL
    late = remind(one, D + dt.timedelta(days=20))
    assert values()[one.id][0] == late.due_on
    early = remind(one, D)
    assert values()[one.id][0] == D
    remind(one, D - dt.timedelta(days=5), status="done")  # a done reminder does not wait
    assert values()[one.id][0] == D
    early.status = "snoozed"  # snoozed still waits (PENDING_REMINDER: not done)
    early.due_on = D + dt.timedelta(days=3)
    db.session.commit()
    assert values()[one.id][0] == D + dt.timedelta(days=3)
    early.status = "done"
    db.session.commit()
    assert values()[one.id][0] == late.due_on
    late.engagement = two  # moved to another engagement: both change
    db.session.commit()
    found = assert_stored_right()
    assert found[one.id][0] is None and found[two.id][0] == late.due_on
    db.session.delete(late)
    db.session.commit()
    assert assert_stored_right()[two.id][0] is None
    # executemany (the bulk writers) and raw SQL (any other path)
    db.session.execute(sa.insert(Reminder.__table__), [
        {"engagement_id": one.id, "due_on": D + dt.timedelta(days=i), "reason": "Bulk", "kind": "manual",
         "status": "open", "created_at": dt.datetime(2026, 3, 1), "updated_at": dt.datetime(2026, 3, 1)}
        for i in (9, 4, 7)])
    db.session.commit()
    assert assert_stored_right()[one.id][0] == D + dt.timedelta(days=4)
    db.session.execute(sa.text("UPDATE reminders SET due_on = :d WHERE engagement_id = :e AND reason = 'Bulk'"),
                       {"d": D + dt.timedelta(days=30), "e": one.id})
    db.session.commit()
    assert assert_stored_right()[one.id][0] == D + dt.timedelta(days=30)
    db.session.execute(sa.text("DELETE FROM reminders WHERE engagement_id = :e"), {"e": one.id})
    db.session.commit()
    assert assert_stored_right()[one.id][0] is None


def test_every_kind_of_interaction_write_keeps_the_last_contact(app):
    one, two = factories.engagement(), factories.engagement()
    note = contact(one, D + dt.timedelta(days=10), kind="note")
    assert values()[one.id][2] is None  # a note is not contact
    call = contact(one, D, kind="call")
    assert values()[one.id][2] == D
    note.kind = "meeting"  # a note edited into a contact
    db.session.commit()
    assert values()[one.id][2] == D + dt.timedelta(days=10)
    note.kind = "note"  # and back
    db.session.commit()
    assert values()[one.id][2] == D
    call.occurred_on = D - dt.timedelta(days=40)
    db.session.commit()
    assert values()[one.id][2] == D - dt.timedelta(days=40)
    call.engagement = two
    db.session.commit()
    found = assert_stored_right()
    assert found[one.id][2] is None and found[two.id][2] == D - dt.timedelta(days=40)
    call.summary = "Only the text changed"  # not a column that matters: nothing to recount
    db.session.commit()
    assert_stored_right()
    db.session.delete(call)
    db.session.commit()
    assert assert_stored_right()[two.id][2] is None
    db.session.execute(sa.insert(Interaction.__table__), [
        {"engagement_id": two.id, "kind": kind, "direction": "outbound", "occurred_on": D + dt.timedelta(days=i),
         "subject": "", "summary": "", "participants": "", "created_at": dt.datetime(2026, 3, 1),
         "updated_at": dt.datetime(2026, 3, 1)} for i, kind in ((1, "email"), (8, "note"), (5, "letter"))])
    db.session.commit()
    assert assert_stored_right()[two.id][2] == D + dt.timedelta(days=5)


def test_deleting_an_engagement_deletes_its_rows_without_harm(app):
    one, two = factories.engagement(), factories.engagement()
    remind(one, D)
    contact(one, D)
    remind(two, D + dt.timedelta(days=1))
    db.session.delete(db.session.get(Engagement, one.id))  # the ORM's cascade
    db.session.commit()
    assert assert_stored_right()[two.id][0] == D + dt.timedelta(days=1)
    three = factories.engagement()
    remind(three, D)
    contact(three, D)
    three_id = three.id
    db.session.execute(sa.text("DELETE FROM engagements WHERE id = :e"), {"e": three_id})  # the database's cascade
    db.session.commit()
    assert three_id not in assert_stored_right()


def test_logging_a_response_through_the_service_closes_reminders_and_moves_both_dates(app):
    engagement = factories.engagement()
    remind(engagement, D, kind="reply")
    remind(engagement, D + dt.timedelta(days=9))
    service.log_interaction(engagement, kind="response", direction="inbound", occurred_on=D + dt.timedelta(days=2),
                            subject="Reply", summary="", participants="", uploads=[], today=D + dt.timedelta(days=2),
                            actor_id=None)
    db.session.commit()
    found = assert_stored_right()[engagement.id]
    assert found[0] == D + dt.timedelta(days=9) and found[2] == D + dt.timedelta(days=2)
    assert service.summary_of(engagement)["next_follow_up"] == D + dt.timedelta(days=9)


#: One write: (table, action, engagement index, row index, date offset, flag)
WRITES = st.lists(st.tuples(
    st.sampled_from(["reminder", "interaction"]),
    st.sampled_from(["add", "add_many", "date", "flag", "move", "delete", "raw_update"]),
    st.integers(0, 2), st.integers(0, 30), st.integers(-60, 60), st.booleans()), min_size=1, max_size=25)


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(writes=WRITES)
def test_random_sequences_of_writes_keep_both_dates(app, writes):
    """Hypothesis: any sequence of adds, date and status/kind edits, moves and deletes (ORM,
    executemany and raw SQL) leaves the stored values equal to the computed ones, after each commit."""
    db.session.execute(sa.delete(Reminder))
    db.session.execute(sa.delete(Interaction))
    db.session.commit()
    engagements = list(db.session.scalars(sa.select(Engagement).order_by(Engagement.id).limit(3)))
    while len(engagements) < 3:
        engagements.append(factories.engagement())
    for table, action, which, row, offset, flag in writes:
        engagement = engagements[which]
        model = Reminder if table == "reminder" else Interaction
        rows = list(db.session.scalars(sa.select(model).order_by(model.id)))
        target = rows[row % len(rows)] if rows else None
        on = D + dt.timedelta(days=offset)
        status = "done" if flag else "open"
        kind = "note" if flag else "email"
        if action == "add" or target is None:
            if model is Reminder:
                db.session.add(Reminder(engagement=engagement, due_on=on, reason="R", status=status))
            else:
                db.session.add(Interaction(engagement=engagement, kind=kind, direction="outbound", occurred_on=on))
        elif action == "add_many":
            stamp = dt.datetime(2026, 3, 1)
            if model is Reminder:
                db.session.execute(sa.insert(Reminder.__table__), [
                    {"engagement_id": e.id, "due_on": on + dt.timedelta(days=i), "reason": "R", "kind": "manual",
                     "status": status if i else "snoozed", "created_at": stamp, "updated_at": stamp}
                    for i, e in enumerate(engagements)])
            else:
                db.session.execute(sa.insert(Interaction.__table__), [
                    {"engagement_id": e.id, "kind": kind if i else "call", "direction": "outbound",
                     "occurred_on": on - dt.timedelta(days=i), "subject": "", "summary": "", "participants": "",
                     "created_at": stamp, "updated_at": stamp} for i, e in enumerate(engagements)])
        elif action == "date":
            if model is Reminder:
                target.due_on = on
            else:
                target.occurred_on = on
        elif action == "flag":
            if model is Reminder:
                target.status = status
            else:
                target.kind = kind
        elif action == "move":
            target.engagement_id = engagement.id
        elif action == "delete":
            db.session.delete(target)
        else:  # one UPDATE statement over several rows of several engagements
            column = "due_on" if model is Reminder else "occurred_on"
            db.session.execute(sa.text(f"UPDATE {model.__tablename__} SET {column} = :on WHERE id % 2 = :odd"),
                               {"on": on, "odd": int(flag)})
        db.session.commit()
        assert_stored_right()


def _page_ids(client, query: str) -> list[int]:
    html = client.get(f"/engagements?{query}").get_data(as_text=True)
    return [int(n) for n in re.findall(r'href="/engagements/(\d+)"', html)]


def test_the_list_and_dashboard_show_the_rows_the_definition_gives(app, client, login_as):
    login_as("analyst")
    today = clock.today()
    engagements = [factories.engagement(opened_on=today - dt.timedelta(days=200 - i)) for i in range(6)]
    for i, engagement in enumerate(engagements):
        if i % 3:
            remind(engagement, today + dt.timedelta(days=(i * 7) % 5 - 2))  # some overdue, ties included
        if i % 2:
            contact(engagement, today - dt.timedelta(days=10 + 50 * (i % 3)))
    remind(engagements[0], today - dt.timedelta(days=1), status="done")
    contact(engagements[0], today, kind="note")
    ids = [e.id for e in engagements]
    for sort, definition in (("next_follow_up", service.computed_next_follow_up()),
                             ("last_contact", service.computed_last_contact())):
        for direction in ("asc", "desc"):
            order = definition.desc() if direction == "desc" else definition.asc()
            expected = list(db.session.scalars(sa.select(Engagement.id).where(Engagement.id.in_(ids))
                                               .order_by(order.nulls_last(), Engagement.id)))
            assert _page_ids(client, f"sort={sort}&dir={direction}") == expected, (sort, direction)
    overdue = list(db.session.scalars(sa.select(Engagement.id).join(Engagement.company)
                                      .where(service.computed_next_follow_up() < today)
                                      .order_by(Engagement.id)))
    assert overdue and sorted(_page_ids(client, "overdue=yes")) == overdue
    cutoff = today - dt.timedelta(days=app.config["STALE_AFTER_DAYS"])
    last = sa.func.coalesce(service.computed_last_contact(), Engagement.opened_on)
    quiet = list(db.session.scalars(sa.select(Engagement.id).where(Engagement.is_open, last < cutoff)
                                    .order_by(last, Engagement.id)))
    assert quiet and sorted(_page_ids(client, "stale=yes")) == sorted(quiet)
    assert list(db.session.scalars(sa.select(Engagement.id).where(quiet_since(cutoff)))) != []
    shown = quiet_engagements(today)
    assert [e.id for e, _ in shown["rows"]] == quiet and shown["total"] == len(quiet)


def test_check_finds_a_wrong_value_and_a_missing_trigger_and_recount_repairs(app, runner):
    engagement = factories.engagement()
    remind(engagement, D)
    contact(engagement, D)
    ok = runner.invoke(args=["engagements", "check-dates"])
    assert ok.exit_code == 0 and "every engagement matches" in ok.output, ok.output
    # A write that bypasses the triggers (they are on reminders and interactions, not engagements).
    db.session.execute(sa.text("UPDATE engagements SET next_follow_up_on = :d, last_contact_on = NULL WHERE id = :e"),
                       {"d": D + dt.timedelta(days=1), "e": engagement.id})
    db.session.commit()
    bad = runner.invoke(args=["engagements", "check-dates"])
    assert bad.exit_code == 1
    assert f"1 engagement(s) hold a wrong next_follow_up_on (first: #{engagement.id})" in bad.output, bad.output
    assert "wrong last_contact_on" in bad.output
    fixed = runner.invoke(args=["engagements", "recount"])
    assert fixed.exit_code == 0 and "1 next follow-up(s) and 1 last contact(s) corrected" in fixed.output, fixed.output
    assert assert_stored_right()[engagement.id] == (D, D, D, D)
    # A trigger gone (a batch migration that rebuilt the table, say): the check names it.
    dropped = "DROP TRIGGER engagement_dates_reminders_ai"
    db.session.execute(sa.text(dropped + (" ON reminders" if db.engine.dialect.name == "postgresql" else "")))
    db.session.commit()
    remind(engagement, D - dt.timedelta(days=1))  # not followed
    missing = runner.invoke(args=["engagements", "check-dates"])
    assert missing.exit_code == 1
    assert "trigger engagement_dates_reminders_ai (on reminders)" in missing.output, missing.output
    assert "wrong next_follow_up_on" in missing.output
    repaired = runner.invoke(args=["engagements", "recount", "--triggers"])
    assert repaired.exit_code == 0 and "Triggers created" in repaired.output, repaired.output
    assert runner.invoke(args=["engagements", "check-dates"]).exit_code == 0
    remind(engagement, D - dt.timedelta(days=2))  # followed again
    assert assert_stored_right()[engagement.id][0] == D - dt.timedelta(days=2)


def test_recount_fills_the_columns_from_the_rows(app):
    """The migration's fill: every engagement's value from its rows, set-based."""
    engagements = [factories.engagement() for _ in range(3)]
    remind(engagements[0], D)
    remind(engagements[0], D - dt.timedelta(days=1), status="done")
    contact(engagements[1], D)
    contact(engagements[1], D + dt.timedelta(days=1), kind="note")
    db.session.execute(sa.text("UPDATE engagements SET next_follow_up_on = NULL, last_contact_on = :d"),
                       {"d": D + dt.timedelta(days=99)})
    db.session.commit()
    changed = stored.recount(db.session.connection())
    db.session.commit()
    assert changed == {"next_follow_up_on": 1, "last_contact_on": 3}
    found = assert_stored_right()
    assert [found[e.id][0] for e in engagements] == [D, None, None]
    assert [found[e.id][2] for e in engagements] == [None, D, None]
    assert stored.recount(db.session.connection()) == {"next_follow_up_on": 0, "last_contact_on": 0}


def test_the_triggers_are_the_migrations(app):
    """The database holds exactly the triggers engage.engagements.stored describes."""
    assert stored.missing_triggers(db.session.connection()) == []


def test_synth_bulk_load_leaves_right_dates(app, runner):
    """`flask synth` writes its rows with executemany (SQLite) or COPY (PostgreSQL): the triggers follow both."""
    result = runner.invoke(args=["synth", "--companies", "20", "--seed", "5"])
    assert result.exit_code == 0, result.output
    found = assert_stored_right()
    assert any(v[0] is not None for v in found.values()) and any(v[2] is not None for v in found.values())
    assert runner.invoke(args=["engagements", "check-dates"]).exit_code == 0


def test_two_transactions_writing_one_engagement_at_once_leave_the_right_date(app):
    """PostgreSQL: the trigger locks the engagement, then reads its rows afresh. Without the lock the
    second writer would recompute from a snapshot that lacks the first one's later contact and
    overwrite it (READ COMMITTED re-evaluates the row, not the SET's subquery)."""
    import threading
    import time

    if db.engine.dialect.name != "postgresql":
        return  # SQLite has one writer at a time
    engagement = factories.engagement()
    sql = sa.text("INSERT INTO interactions (engagement_id, kind, direction, occurred_on, subject, summary, "
                  "participants, created_at, updated_at) VALUES (:e, 'email', 'outbound', :on, '', '', '', now(), now())")
    engine = db.engine  # the thread has no app context
    first = engine.connect()
    first.execute(sql, {"e": engagement.id, "on": D + dt.timedelta(days=10)})  # the later contact, not committed yet
    done = threading.Event()

    def second_writer():
        with engine.begin() as conn:  # the earlier contact: its trigger waits for the first writer's lock
            conn.execute(sql, {"e": engagement.id, "on": D})
        done.set()

    thread = threading.Thread(target=second_writer)
    thread.start()
    time.sleep(1.0)
    assert not done.is_set()  # waiting on the engagement's row lock
    first.commit()
    first.close()
    thread.join(10)
    assert done.is_set()
    assert assert_stored_right()[engagement.id][2] == D + dt.timedelta(days=10)
