"""The stored counts of waiting reminders per owner and due date (engage.reminders.stored).

Whatever writes reminders and engagements (the ORM, an executemany, raw SQL, a cascade, the
reminders page's bulk actions, a change of owner, closing and reopening), every stored cell
equals the count from the rows, and the reminders page's counts (engage.reminders.service.counts)
equal those counted from the rows (`counts_by_owner`, which reads every waiting reminder);
`flask reminders check-counts` finds a wrong cell or a missing trigger and `flask reminders
recount` repairs. Runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL (statement triggers
there, row triggers on SQLite); on PostgreSQL two connections also write at once.
"""

from __future__ import annotations

import datetime as dt
import re
import threading

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engage.extensions import db
from engage.models import Engagement, Reminder, ReminderCount
from engage.reminders import service, stored

from tests import factories

D = dt.date(2026, 3, 1)


def cells() -> dict[tuple[int, dt.date], int]:
    db.session.expire_all()
    return {(row.owner_key, row.due_on): row.waiting for row in db.session.scalars(sa.select(ReminderCount))}


def from_rows(today: dt.date, user_id: int | None) -> dict[str, dict[str, int]]:
    """The page's counts from every waiting reminder (the definition), for comparison."""
    by_owner = service.counts_by_owner(today)
    empty = {key: 0 for key in service.GROUPS}
    return {"mine": dict(by_owner.get(user_id, empty)) if user_id is not None else empty,
            "team": {key: sum(owner[key] for owner in by_owner.values()) for key in service.GROUPS}}


def assert_counts_right(*user_ids: int | None, today: dt.date = D) -> dict:
    found = cells()
    assert stored.drift(db.session.connection()) == (0, [])
    assert all(waiting > 0 for waiting in found.values()), found  # emptied cells are deleted
    for user_id in (*user_ids, None):
        for day in (today, today - dt.timedelta(days=30), today + dt.timedelta(days=30)):
            assert service.counts(day, user_id) == from_rows(day, user_id), (user_id, day)
    return found


def remind(engagement, due_on, status="open") -> Reminder:
    item = Reminder(engagement=engagement, due_on=due_on, reason="Chase", status=status, kind="manual")
    db.session.add(item)
    db.session.commit()
    return item


def close(engagement) -> None:
    engagement.stage, engagement.closed_on, engagement.outcome = "closed", D, "dropped"


def reopen(engagement) -> None:
    engagement.stage, engagement.closed_on, engagement.outcome = "acknowledged", None, None


def test_reminder_writes_keep_the_counts(app, make_user):
    ann, bob = make_user("analyst"), make_user("analyst")
    one, two = factories.engagement(owner=ann), factories.engagement(owner=None)
    db.session.commit()
    assert assert_counts_right(ann.id) == {}
    late = remind(one, D + dt.timedelta(days=20))
    early = remind(one, D)
    remind(one, D, status="done")  # a done reminder does not wait
    assert assert_counts_right(ann.id) == {(ann.id, D + dt.timedelta(days=20)): 1, (ann.id, D): 1}
    remind(two, D)  # nobody owns `two`: owner_key 0
    assert assert_counts_right(ann.id)[(0, D)] == 1
    early.status = "snoozed"  # snoozed still waits; a new due date moves it to another cell
    early.due_on = D + dt.timedelta(days=3)
    db.session.commit()
    assert assert_counts_right(ann.id).get((ann.id, D)) is None
    early.status = "done"
    db.session.commit()
    assert (ann.id, D + dt.timedelta(days=3)) not in assert_counts_right(ann.id)
    late.engagement = two  # moved to an engagement nobody owns
    db.session.commit()
    assert assert_counts_right(ann.id)[(0, D + dt.timedelta(days=20))] == 1
    db.session.delete(late)
    db.session.commit()
    assert assert_counts_right(ann.id) == {(0, D): 1}
    # executemany (the bulk writers) and raw SQL (any other path)
    stamp = dt.datetime(2026, 3, 1)
    db.session.execute(sa.insert(Reminder.__table__), [
        {"engagement_id": e.id, "due_on": D + dt.timedelta(days=i % 2), "reason": "Bulk", "kind": "manual",
         "status": "open", "created_at": stamp, "updated_at": stamp} for i, e in enumerate([one, two, one, two, one])])
    db.session.commit()
    assert assert_counts_right(ann.id) == {(ann.id, D): 3, (0, D): 1, (0, D + dt.timedelta(days=1)): 2}
    db.session.execute(sa.text("UPDATE reminders SET due_on = :d WHERE reason = 'Bulk'"), {"d": D - dt.timedelta(days=9)})
    db.session.commit()
    assert assert_counts_right(ann.id, bob.id)[(ann.id, D - dt.timedelta(days=9))] == 3
    db.session.execute(sa.text("UPDATE reminders SET notified_at = :t"), {"t": stamp})  # a column that does not count
    db.session.commit()
    assert_counts_right(ann.id)
    db.session.execute(sa.text("DELETE FROM reminders WHERE engagement_id = :e"), {"e": one.id})
    db.session.commit()
    assert assert_counts_right(ann.id) == {(0, D): 1, (0, D - dt.timedelta(days=9)): 2}


def test_an_engagement_changing_owner_closing_reopening_or_deleted_moves_its_reminders(app, make_user):
    ann, bob = make_user("analyst"), make_user("analyst")
    one, other = factories.engagement(owner=ann), factories.engagement(owner=ann)
    for offset in (0, 0, 5):
        remind(one, D + dt.timedelta(days=offset))
    remind(one, D, status="done")
    remind(other, D)
    assert assert_counts_right(ann.id, bob.id) == {(ann.id, D): 3, (ann.id, D + dt.timedelta(days=5)): 1}
    one.owner = bob
    db.session.commit()
    assert assert_counts_right(ann.id, bob.id) == {(ann.id, D): 1, (bob.id, D): 2, (bob.id, D + dt.timedelta(days=5)): 1}
    one.owner = None
    db.session.commit()
    assert assert_counts_right(ann.id, bob.id) == {(ann.id, D): 1, (0, D): 2, (0, D + dt.timedelta(days=5)): 1}
    close(one)  # a closed engagement's reminders do not wait
    db.session.commit()
    assert assert_counts_right(ann.id, bob.id) == {(ann.id, D): 1}
    one.owner = bob  # a change of owner while closed changes nothing
    db.session.commit()
    assert assert_counts_right(ann.id, bob.id) == {(ann.id, D): 1}
    remind(one, D + dt.timedelta(days=1))  # a reminder added to a closed engagement does not count
    assert assert_counts_right(ann.id, bob.id) == {(ann.id, D): 1}
    reopen(one)  # reopened: all of them count again, for the owner it has now
    db.session.commit()
    assert assert_counts_right(ann.id, bob.id) == {(ann.id, D): 1, (bob.id, D): 2, (bob.id, D + dt.timedelta(days=1)): 1,
                                                   (bob.id, D + dt.timedelta(days=5)): 1}
    # one UPDATE statement over several engagements
    db.session.execute(sa.text("UPDATE engagements SET owner_id = :o"), {"o": ann.id})
    db.session.commit()
    assert assert_counts_right(ann.id, bob.id) == {(ann.id, D): 3, (ann.id, D + dt.timedelta(days=1)): 1,
                                                   (ann.id, D + dt.timedelta(days=5)): 1}
    db.session.delete(db.session.get(Engagement, one.id))  # the ORM's cascade
    db.session.commit()
    assert assert_counts_right(ann.id) == {(ann.id, D): 1}
    db.session.execute(sa.text("DELETE FROM engagements WHERE id = :e"), {"e": other.id})  # the database's cascade
    db.session.commit()
    assert assert_counts_right(ann.id) == {}


def test_the_bulk_actions_keep_the_counts(app, make_user):
    ann, bob = make_user("analyst"), make_user("analyst")
    items = [remind(factories.engagement(owner=ann if i % 2 else None), D + dt.timedelta(days=i % 3)) for i in range(6)]
    service.bulk([r.id for r in items[:2]], "done", today=D)
    db.session.commit()
    assert_counts_right(ann.id, bob.id)
    service.bulk([r.id for r in items[2:4]], "snooze", today=D, until=D + dt.timedelta(days=40))
    db.session.commit()
    assert assert_counts_right(ann.id, bob.id, today=D + dt.timedelta(days=40))
    service.bulk([r.id for r in items[3:]], "reassign", today=D, assignee_id=bob.id)
    db.session.commit()
    found = assert_counts_right(ann.id, bob.id)
    assert sum(waiting for (owner, _), waiting in found.items() if owner == bob.id) == 3


def test_check_counts_finds_drift_and_missing_triggers_and_recount_repairs(app, runner, make_user):
    ann = make_user("analyst")
    engagement = factories.engagement(owner=ann)
    remind(engagement, D)
    remind(engagement, D + dt.timedelta(days=1))
    result = runner.invoke(args=["reminders", "check-counts"])
    assert result.exit_code == 0 and "every count matches" in result.output
    db.session.execute(sa.text("UPDATE reminder_counts SET waiting = 7 WHERE due_on = :d"), {"d": D})
    db.session.execute(sa.text("INSERT INTO reminder_counts (owner_key, due_on, waiting) VALUES (0, :d, 2)"),
                       {"d": D + dt.timedelta(days=50)})
    db.session.commit()
    result = runner.invoke(args=["reminders", "check-counts"])
    assert result.exit_code == 1
    assert "2 stored reminder count(s) differ" in result.output and "7 stored, 1 waiting" in result.output
    result = runner.invoke(args=["reminders", "recount"])
    assert result.exit_code == 0 and "2 stored count(s) corrected" in result.output
    assert_counts_right(ann.id)
    stored.uninstall(db.session.connection())
    db.session.commit()
    try:
        remind(engagement, D + dt.timedelta(days=2))  # not counted: no trigger
        result = runner.invoke(args=["reminders", "check-counts"])
        assert result.exit_code == 1
        assert "missing or disabled: " in result.output and "reminder_counts_reminders_ai (on reminders)" in result.output
        assert "1 stored reminder count(s) differ" in result.output
    finally:
        result = runner.invoke(args=["reminders", "recount", "--triggers"])
    assert result.exit_code == 0 and "Triggers created. Recounted: 1 stored count(s) corrected." in result.output
    assert runner.invoke(args=["reminders", "check-counts"]).exit_code == 0
    remind(engagement, D + dt.timedelta(days=2))  # counted again
    assert assert_counts_right(ann.id)[(ann.id, D + dt.timedelta(days=2))] == 2


#: One write: (action, engagement index, row index, date offset, flag)
WRITES = st.lists(st.tuples(
    st.sampled_from(["add", "add_many", "date", "status", "move", "delete", "raw_update", "owner", "close", "reopen"]),
    st.integers(0, 2), st.integers(0, 30), st.integers(-20, 20), st.booleans()), min_size=1, max_size=25)


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(writes=WRITES)
def test_random_sequences_of_writes_keep_the_counts(app, writes):
    """Hypothesis: any sequence of adds, date and status edits, moves, deletes, changes of owner,
    closing and reopening (ORM, executemany and raw SQL) leaves every cell right, after each commit."""
    from engage.models import User

    db.session.execute(sa.delete(Reminder))
    db.session.commit()
    users = list(db.session.scalars(sa.select(User).order_by(User.id).limit(2)))
    while len(users) < 2:
        user = User(email=f"counts{len(users)}@example.org", name=f"Counts {len(users)}", role="analyst")
        user.set_password("a long enough password")
        db.session.add(user)
        db.session.commit()
        users.append(user)
    engagements = list(db.session.scalars(sa.select(Engagement).order_by(Engagement.id).limit(3)))
    while len(engagements) < 3:
        engagements.append(factories.engagement(owner=users[len(engagements) % 2]))
    db.session.commit()
    for action, which, row, offset, flag in writes:
        engagement = engagements[which]
        rows = list(db.session.scalars(sa.select(Reminder).order_by(Reminder.id)))
        target = rows[row % len(rows)] if rows else None
        on = D + dt.timedelta(days=offset)
        status = "done" if flag else "open"
        if action == "add" or (target is None and action in ("date", "status", "move", "delete")):
            db.session.add(Reminder(engagement=engagement, due_on=on, reason="R", status=status))
        elif action == "add_many":
            stamp = dt.datetime(2026, 3, 1)
            db.session.execute(sa.insert(Reminder.__table__), [
                {"engagement_id": e.id, "due_on": on + dt.timedelta(days=i % 2), "reason": "R", "kind": "manual",
                 "status": status if i else "snoozed", "created_at": stamp, "updated_at": stamp}
                for i, e in enumerate(engagements)])
        elif action == "date":
            target.due_on = on
        elif action == "status":
            target.status = status
        elif action == "move":
            target.engagement_id = engagement.id
        elif action == "delete":
            db.session.delete(target)
        elif action == "raw_update":  # one UPDATE statement over several rows of several engagements
            db.session.execute(sa.text("UPDATE reminders SET due_on = :on, status = :s WHERE id % 2 = :odd"),
                               {"on": on, "s": "snoozed" if flag else "open", "odd": int(flag)})
        elif action == "owner":
            engagement.owner_id = None if flag else users[row % 2].id
        elif action == "close":
            close(engagement)
        else:  # reopen, or several engagements at once in one statement
            if flag:
                db.session.execute(sa.text("UPDATE engagements SET stage = 'acknowledged', closed_on = NULL, "
                                           "outcome = NULL, owner_id = :o"), {"o": users[row % 2].id})
            else:
                reopen(engagement)
        db.session.commit()
        assert stored.drift(db.session.connection()) == (0, [])
    assert_counts_right(*(u.id for u in users))


def test_the_page_shows_the_counts_from_the_rows(app, client, login_as, make_user, frozen_today):
    me = login_as("analyst")
    colleague = make_user("analyst")
    for offset, owner in ((-3, me), (-3, colleague), (0, me), (2, None), (2, colleague), (30, me), (30, me)):
        remind(factories.engagement(owner=owner), frozen_today + dt.timedelta(days=offset))
    html = client.get("/reminders?who=all").get_data(as_text=True)
    expected = from_rows(frozen_today, me.id)
    assert expected == {"mine": {"overdue": 1, "today": 1, "week": 0, "later": 2},
                        "team": {"overdue": 2, "today": 1, "week": 2, "later": 2}}
    table = html.split('id="reminder-counts"')[1].split("</table>")[0]
    for whose in ("mine", "team"):
        row = table.split(f'<th scope="row">{whose.capitalize()}</th>')[1].split("</tr>")[0]
        shown = [int(n) for n in re.findall(r'<td class="num">(\d+)</td>', row)]
        assert shown == [expected[whose][key] for key in service.GROUPS], whose


def test_the_page_lists_the_first_of_each_group_in_order_in_a_fixed_number_of_queries(app, client, login_as,
                                                                                       frozen_today, count_queries):
    """The four groups are loaded together: the first PAGE_SIZE of each (due date, then id), as the
    groups' own queries give them, whatever the number of reminders."""
    login_as("analyst")
    limit = app.config["PAGE_SIZE"]
    engagements = [factories.engagement(owner=None) for _ in range(3)]
    db.session.commit()
    stamp = dt.datetime(2026, 3, 1)
    db.session.execute(sa.insert(Reminder.__table__), [
        {"engagement_id": engagements[i % 3].id, "due_on": frozen_today + dt.timedelta(days=(i * 7) % 23 - 11),
         "reason": f"R{i}", "kind": "manual", "status": "done" if i % 11 == 0 else "open",
         "created_at": stamp, "updated_at": stamp} for i in range(4 * limit)])
    db.session.commit()
    expected = {key: list(db.session.scalars(
        service.pending_reminders().with_only_columns(Reminder.id).where(service.group_condition(key, frozen_today))
        .order_by(Reminder.due_on, Reminder.id).limit(limit))) for key in service.GROUPS}
    assert all(expected.values()) and len(expected["overdue"]) == limit
    with count_queries() as counter:
        html = client.get("/reminders?who=all").get_data(as_text=True)
    queries = counter.count
    for key in service.GROUPS:
        part = html.split(f'<h2 id="{key}">')[1]
        part = re.split(r'<h2 id="(?:overdue|today|week|later)">', part)[0]
        assert [int(n) for n in re.findall(r'id="tick-(\d+)"', part)] == expected[key], key
    db.session.execute(sa.insert(Reminder.__table__), [
        {"engagement_id": engagements[i % 3].id, "due_on": frozen_today + dt.timedelta(days=i % 40 - 20),
         "reason": "More", "kind": "manual", "status": "open", "created_at": stamp, "updated_at": stamp}
        for i in range(300)])
    db.session.commit()
    with count_queries() as counter:
        client.get("/reminders?who=all")
    assert counter.count == queries


def test_postgresql_a_change_of_owner_and_a_new_reminder_at_once_count_for_the_owner_it_has(app, make_user):
    """Two connections: one adds a reminder to an engagement while the other gives the engagement to
    a colleague (either commits first). The reminder counts for the owner the engagement ends with."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("concurrent writers: PostgreSQL only (SQLite has one writer at a time)")
    ann, bob = make_user("analyst"), make_user("analyst")
    engagement = factories.engagement(owner=ann)
    remind(engagement, D)
    engagement_id, ann_id, bob_id = engagement.id, ann.id, bob.id
    for first in ("reminder", "owner"):
        with db.engine.connect() as a, db.engine.connect() as b:
            writes = {
                "reminder": lambda conn: conn.execute(sa.text(
                    "INSERT INTO reminders (engagement_id, due_on, reason, kind, status, created_at, updated_at) "
                    "VALUES (:e, :d, 'Race', 'manual', 'open', now(), now())"), {"e": engagement_id, "d": D}),
                "owner": lambda conn: conn.execute(sa.text("UPDATE engagements SET owner_id = :o WHERE id = :e"),
                                                   {"o": bob_id if first == "reminder" else ann_id, "e": engagement_id}),
            }
            second = "owner" if first == "reminder" else "reminder"
            writes[first](a)  # holds its locks until it commits
            done = threading.Event()

            def run_second():
                writes[second](b)  # waits for the first to commit
                b.commit()
                done.set()

            thread = threading.Thread(target=run_second)
            thread.start()
            assert not done.wait(0.5), "the second writer did not wait for the first"
            a.commit()
            thread.join(10)
            assert done.is_set()
        assert assert_counts_right(ann_id, bob_id)
    assert cells() == {(ann_id, D): 3}


def test_the_action_forms_are_written_as_wtforms_draws_them(app, client, login_as, frozen_today):
    """The reminder's Done and Snooze forms are written out in the macro (drawing 200 of them with
    WTForms took most of the page's time): the same label and date field as the SnoozeForm draws."""
    from engage.reminders.forms import SnoozeForm
    from engage.reminders.service import snooze_floor, snooze_suggestion

    login_as("analyst")
    item = remind(factories.engagement(owner=None, company=factories.company("Smith & <Sons>")), frozen_today)
    html = client.get("/reminders?who=all").get_data(as_text=True)
    with app.test_request_context("/reminders"):
        form = SnoozeForm(formdata=None)
        label = str(form.until.label(for_=f"until-{item.id}", text="Snooze Smith & <Sons> until", class_="visually-hidden"))
        field = str(form.until(id=f"until-{item.id}", min=snooze_floor(item.due_on, frozen_today).isoformat(),
                               value=snooze_suggestion(item.due_on, frozen_today).isoformat()))
    assert label in html and field in html, (label, field)
    assert f'action="/reminders/{item.id}/complete"' in html and f'action="/reminders/{item.id}/snooze"' in html
    assert "Done<span class=\"visually-hidden\"> with Smith &amp; &lt;Sons&gt;</span>" in html


def test_synth_bulk_load_leaves_right_counts_and_exposures(app, runner, client, login_as):
    """`flask synth` writes with executemany (SQLite) or COPY (PostgreSQL): the reminder counts and
    the funds page's stored exposures follow both."""
    from engage.holdings import screening
    from engage.holdings import stored as holdings_stored

    result = runner.invoke(args=["synth", "--companies", "20", "--seed", "5"])
    assert result.exit_code == 0, result.output
    owners = list(db.session.scalars(sa.select(Engagement.owner_id).distinct()))
    found = assert_counts_right(*owners, today=dt.date.today())
    assert sum(found.values()) > 0
    assert runner.invoke(args=["reminders", "check-counts"]).exit_code == 0
    login_as("viewer")
    assert client.get("/holdings/funds").status_code == 200  # counted and stored
    assert holdings_stored.writes() > 0 and holdings_stored.drift() == []
    assert [e.positions for e in holdings_stored.exposures()] == [e.positions for e in screening.exposures()]


def test_the_triggers_are_the_migrations(app):
    """The database holds exactly the triggers engage.reminders.stored and engage.holdings.stored describe."""
    from engage.holdings import stored as holdings_stored

    assert stored.missing_triggers(db.session.connection()) == []
    assert holdings_stored.missing_triggers(db.session.connection()) == []


def test_postgresql_owners_swapped_at_once_in_opposite_directions_do_not_deadlock(app, make_user):
    """Two connections, 60 rounds: one gives engagement A from Ann to Bob and back, the other
    engagement B from Bob to Ann and back, each committing after every move (both engagements
    have reminders on the same days, so each statement changes both owners' cells of those days).
    The triggers lock the cells in key order first: no deadlock, and the counts stay right."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("concurrent writers: PostgreSQL only (SQLite has one writer at a time)")
    ann, bob = make_user("analyst"), make_user("analyst")
    one, two = factories.engagement(owner=ann), factories.engagement(owner=bob)
    for engagement in (one, two):
        for offset in range(6):
            remind(engagement, D + dt.timedelta(days=offset))
    errors: list[Exception] = []
    plan = {one.id: (bob.id, ann.id), two.id: (ann.id, bob.id)}
    start = threading.Barrier(2)
    engine = db.engine

    def swap(engagement_id: int):
        try:
            with engine.connect() as conn:
                start.wait()
                for round_ in range(60):
                    owner = plan[engagement_id][round_ % 2]
                    conn.execute(sa.text("UPDATE engagements SET owner_id = :o WHERE id = :e"),
                                 {"o": owner, "e": engagement_id})
                    conn.commit()
        except Exception as exc:  # a deadlock is reported to one of them
            errors.append(exc)

    threads = [threading.Thread(target=swap, args=(e,)) for e in plan]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert assert_counts_right(ann.id, bob.id) == {(ann.id, D + dt.timedelta(days=i)): 1 for i in range(6)} | {
        (bob.id, D + dt.timedelta(days=i)): 1 for i in range(6)}


def test_the_database_cascade_takes_an_engagement_out_once(app, make_user):
    """An engagement deleted by raw SQL: its reminders go by the database's cascade, after the
    engagement's own trigger took them out; a cell it shares with another engagement keeps the
    other's (a second decrement would show here, not hidden by the emptied cell's deletion)."""
    ann = make_user("analyst")
    one, two = factories.engagement(owner=ann), factories.engagement(owner=ann)
    for engagement in (one, two, two):
        remind(engagement, D)
    remind(one, D + dt.timedelta(days=1))
    assert assert_counts_right(ann.id) == {(ann.id, D): 3, (ann.id, D + dt.timedelta(days=1)): 1}
    db.session.execute(sa.text("DELETE FROM engagements WHERE id = :e"), {"e": one.id})
    db.session.commit()
    assert assert_counts_right(ann.id) == {(ann.id, D): 2}
