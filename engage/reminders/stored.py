"""Waiting reminders counted per owner and due date, kept by database triggers (issue 20).

`reminder_counts` holds one row per (owner_key, due_on) with `waiting`, the number of reminders
that wait (status not 'done', `engage.models.PENDING_REMINDER`) on an open engagement
(`OPEN_ENGAGEMENT`) owned by `owner_key` (the user's id; 0 when nobody owns the engagement) and
due that day. A cell whose count falls to 0 is deleted. The reminders page (and its counts of
overdue, today, the next 7 days and later, mine and the team's) sums these few rows, a few
hundred per owner, instead of counting every waiting reminder on every request: the counts are
never stale, whatever writes the rows, because the database writes them in the same transaction.

Triggers keep them (the ORM, an executemany, a COPY, a cascade, raw SQL):
- on `reminders`: a row that comes, goes or changes its engagement, status or due date takes
  one from its old cell and adds one to its new cell (when it waits on an open engagement);
- on `engagements`: a change of owner or of open/closed moves the engagement's waiting
  reminders from its old owner's cells to its new owner's (or out, when it closes; back in
  when it reopens); an engagement deleted takes its waiting reminders out before they go.
SQLite: row triggers. PostgreSQL: statement triggers with transition tables (set-based: one
grouped upsert per statement, whatever its size), and a row trigger before an engagement is
deleted. Before it reads an engagement's owner, the reminders' function locks the engagement
rows it touches (in id order, FOR NO KEY UPDATE, as engage.engagements.stored does): a change
of owner committing meanwhile is then either seen or waits, so no reminder is counted for the
owner it had a moment before. Then they take a transaction advisory lock per owner whose cells the
statement changes, smallest owner first, before writing any cell: transactions writing the same
owner's counts take turns until they commit, and two moving reminders between the same owners in
opposite directions queue rather than deadlock (tested).

They count by increments (a recount of a day's cell per written row would cost a million cell
recounts for `flask synth`), so `drift` compares every cell with a count from the rows and
`flask reminders check-counts` says whether they match; `recount` rebuilds them (migration
0038 fills the table with it; `flask reminders recount [--triggers]` repairs).
"""

from __future__ import annotations

import sqlalchemy as sa

from engage import dbutil

WAITING = "status != 'done'"
OPEN = "stage != 'closed'"

#: Trigger name -> table (both dialects use these names).
TRIGGERS = {
    "reminder_counts_reminders_ai": "reminders",
    "reminder_counts_reminders_ad": "reminders",
    "reminder_counts_reminders_au": "reminders",
    "reminder_counts_engagements_au": "engagements",
    "reminder_counts_engagements_bd": "engagements",
}
#: PostgreSQL: the trigger functions.
FUNCTIONS = {"reminder_counts_from_reminders": "reminders", "reminder_counts_from_engagements": "engagements",
             "reminder_counts_engagement_deleted": "engagements"}

#: SQL: the cells as the rows give them (owner_key, due_on, waiting).
COMPUTED = ("SELECT coalesce(e.owner_id, 0) AS owner_key, r.due_on AS due_on, count(*) AS waiting "
            "FROM reminders r JOIN engagements e ON e.id = r.engagement_id "
            f"WHERE r.{WAITING} AND e.{OPEN} GROUP BY coalesce(e.owner_id, 0), r.due_on")


# -- SQLite: row triggers ------------------------------------------------------------------------

def _sqlite_owner(engagement_id: str) -> str:
    """SQL: the owner key of the engagement if it is open (NULL when closed or gone)."""
    return f"(SELECT coalesce(e.owner_id, 0) FROM engagements e WHERE e.id = {engagement_id} AND e.{OPEN})"


def _sqlite_add(ref: str) -> str:
    return (f"INSERT INTO reminder_counts (owner_key, due_on, waiting) "
            f"SELECT coalesce(e.owner_id, 0), {ref}.due_on, 1 FROM engagements e "
            f"WHERE {ref}.{WAITING} AND e.id = {ref}.engagement_id AND e.{OPEN} "
            "ON CONFLICT (owner_key, due_on) DO UPDATE SET waiting = waiting + 1;")


def _sqlite_take(ref: str) -> str:
    owner = _sqlite_owner(f"{ref}.engagement_id")
    return (f"UPDATE reminder_counts SET waiting = waiting - 1 "
            f"WHERE {ref}.{WAITING} AND owner_key = {owner} AND due_on = {ref}.due_on; "
            f"DELETE FROM reminder_counts WHERE owner_key = {owner} AND due_on = {ref}.due_on AND waiting <= 0;")


def _sqlite_engagement_take(ref: str) -> str:
    """Take an engagement's waiting reminders out of its owner's cells (when `ref` is open)."""
    waiting = f"FROM reminders r WHERE r.engagement_id = {ref}.id AND r.{WAITING}"
    return (f"UPDATE reminder_counts SET waiting = waiting - (SELECT count(*) {waiting} AND r.due_on = reminder_counts.due_on) "
            f"WHERE {ref}.{OPEN} AND owner_key = coalesce({ref}.owner_id, 0) AND due_on IN (SELECT r.due_on {waiting}); "
            f"DELETE FROM reminder_counts WHERE owner_key = coalesce({ref}.owner_id, 0) AND waiting <= 0;")


def _sqlite_triggers() -> list[str]:
    add_new = ("INSERT INTO reminder_counts (owner_key, due_on, waiting) "
               f"SELECT coalesce(new.owner_id, 0), r.due_on, count(*) FROM reminders r "
               f"WHERE new.{OPEN} AND r.engagement_id = new.id AND r.{WAITING} GROUP BY r.due_on "
               "ON CONFLICT (owner_key, due_on) DO UPDATE SET waiting = waiting + excluded.waiting;")
    return [
        f"CREATE TRIGGER reminder_counts_reminders_ai AFTER INSERT ON reminders WHEN new.{WAITING} "
        f"BEGIN {_sqlite_add('new')} END",
        f"CREATE TRIGGER reminder_counts_reminders_ad AFTER DELETE ON reminders WHEN old.{WAITING} "
        f"BEGIN {_sqlite_take('old')} END",
        "CREATE TRIGGER reminder_counts_reminders_au AFTER UPDATE OF engagement_id, status, due_on ON reminders "
        "WHEN old.engagement_id IS NOT new.engagement_id OR old.status IS NOT new.status OR old.due_on IS NOT new.due_on "
        f"BEGIN {_sqlite_take('old')} {_sqlite_add('new')} END",
        "CREATE TRIGGER reminder_counts_engagements_au AFTER UPDATE OF owner_id, stage ON engagements "
        f"WHEN old.owner_id IS NOT new.owner_id OR (old.{OPEN}) IS NOT (new.{OPEN}) "
        f"BEGIN {_sqlite_engagement_take('old')} {add_new} END",
        f"CREATE TRIGGER reminder_counts_engagements_bd BEFORE DELETE ON engagements WHEN old.{OPEN} "
        f"BEGIN {_sqlite_engagement_take('old')} END",
    ]


# -- PostgreSQL: statement triggers with transition tables ---------------------------------------

def _pg_take(grouped: str) -> str:
    """Subtract the grouped (owner_key, due_on, n) rows from their cells, then delete the emptied ones
    (two statements: one statement may not update and delete the same row)."""
    return f"""
        UPDATE reminder_counts c SET waiting = c.waiting - g.n FROM ({grouped}) g
         WHERE c.owner_key = g.owner_key AND c.due_on = g.due_on;
        DELETE FROM reminder_counts WHERE owner_key = ANY (owners) AND waiting <= 0;"""


#: PostgreSQL: the first key of the advisory locks taken per owner (the second is the owner key).
LOCK_CLASS = 20037


def _pg_lock_owners(keys: str) -> str:
    """Take the transaction's advisory lock of each owner key `keys` (SQL) yields, smallest first,
    into `owners`. A cell is only written under its owner's lock, and every statement takes all of
    its owners' locks before writing any cell, in the same order: two transactions moving
    reminders between the same owners in opposite directions queue instead of deadlocking (row
    locks on the cells alone are taken in no particular order, and a cell one creates is not there
    for the other to lock first)."""
    return f"""
    SELECT array_agg(DISTINCT k ORDER BY k) INTO owners FROM ({keys}) x (k);
    FOREACH owner IN ARRAY coalesce(owners, '{{}}') LOOP
        PERFORM pg_advisory_xact_lock({LOCK_CLASS}, owner);
    END LOOP;"""


def _pg_add(grouped: str) -> str:
    return f"""
    INSERT INTO reminder_counts (owner_key, due_on, waiting)
    SELECT owner_key, due_on, n FROM ({grouped}) g ORDER BY owner_key, due_on
    ON CONFLICT (owner_key, due_on) DO UPDATE SET waiting = reminder_counts.waiting + excluded.waiting;"""


def _pg_functions() -> list[str]:
    changed = "(o.engagement_id, o.status, o.due_on) IS DISTINCT FROM (n.engagement_id, n.status, n.due_on)"

    def by_cell(rows: str, where: str = "") -> str:
        return (f"SELECT coalesce(e.owner_id, 0) AS owner_key, x.due_on, count(*) AS n FROM {rows} x "
                f"JOIN engagements e ON e.id = x.engagement_id WHERE x.{WAITING} AND e.{OPEN}{where} "
                "GROUP BY 1, 2")

    old_changed = f"(SELECT o.* FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE {changed})"
    new_changed = f"(SELECT n.* FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE {changed})"
    reminders = f"""
CREATE OR REPLACE FUNCTION reminder_counts_from_reminders() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
    touched integer[];
    owners integer[];
    owner integer;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT n.engagement_id) INTO touched FROM new_rows n WHERE n.{WAITING};
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT o.engagement_id) INTO touched FROM old_rows o WHERE o.{WAITING};
    ELSE
        SELECT array_agg(DISTINCT x.engagement_id) INTO touched FROM (
            SELECT o.engagement_id FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE {changed}
            UNION ALL
            SELECT n.engagement_id FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE {changed}) x;
    END IF;
    IF touched IS NULL THEN
        RETURN NULL;
    END IF;
    -- Wait for any other writer of these engagements (a change of owner): then read their owners.
    PERFORM 1 FROM engagements e WHERE e.id = ANY (touched) ORDER BY e.id FOR NO KEY UPDATE;
    {_pg_lock_owners("SELECT coalesce(e.owner_id, 0) FROM engagements e WHERE e.id = ANY (touched)")}
    IF TG_OP = 'DELETE' THEN
        {_pg_take(by_cell('old_rows'))}
    ELSIF TG_OP = 'UPDATE' THEN
        {_pg_take(by_cell(old_changed))}
    END IF;
    IF TG_OP = 'INSERT' THEN
        {_pg_add(by_cell('new_rows'))}
    ELSIF TG_OP = 'UPDATE' THEN
        {_pg_add(by_cell(new_changed))}
    END IF;
    RETURN NULL;
END
$body$"""
    moved = f"(o.owner_id IS DISTINCT FROM n.owner_id OR (o.{OPEN}) IS DISTINCT FROM (n.{OPEN}))"

    def engagement_cells(ref: str) -> str:
        return (f"SELECT coalesce({ref}.owner_id, 0) AS owner_key, r.due_on, count(*) AS n "
                f"FROM old_rows o JOIN new_rows n ON n.id = o.id JOIN reminders r ON r.engagement_id = {ref}.id "
                f"WHERE {moved} AND {ref}.{OPEN} AND r.{WAITING} GROUP BY 1, 2")

    engagements = f"""
CREATE OR REPLACE FUNCTION reminder_counts_from_engagements() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
    owners integer[];
    owner integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE {moved}) THEN
        RETURN NULL;
    END IF;
    {_pg_lock_owners(f"SELECT coalesce(o.owner_id, 0) FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE {moved} "
                     f"UNION SELECT coalesce(n.owner_id, 0) FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE {moved}")}
    {_pg_take(engagement_cells('o'))}
    {_pg_add(engagement_cells('n'))}
    RETURN NULL;
END
$body$"""
    deleted = f"""
CREATE OR REPLACE FUNCTION reminder_counts_engagement_deleted() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
    owners integer[];
    owner integer;
BEGIN
    IF OLD.{OPEN} THEN
        {_pg_lock_owners("SELECT coalesce(OLD.owner_id, 0)")}
        {_pg_take(f"SELECT coalesce(OLD.owner_id, 0) AS owner_key, r.due_on, count(*) AS n FROM reminders r "
                  f"WHERE r.engagement_id = OLD.id AND r.{WAITING} GROUP BY 1, 2")}
    END IF;
    RETURN OLD;
END
$body$"""
    return [reminders, engagements, deleted]


def _pg_triggers() -> list[str]:
    function = "reminder_counts_from_reminders()"
    return [
        "CREATE TRIGGER reminder_counts_reminders_ai AFTER INSERT ON reminders REFERENCING NEW TABLE AS new_rows "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {function}",
        "CREATE TRIGGER reminder_counts_reminders_ad AFTER DELETE ON reminders REFERENCING OLD TABLE AS old_rows "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {function}",
        "CREATE TRIGGER reminder_counts_reminders_au AFTER UPDATE ON reminders "
        f"REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {function}",
        "CREATE TRIGGER reminder_counts_engagements_au AFTER UPDATE ON engagements "
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION reminder_counts_from_engagements()",
        "CREATE TRIGGER reminder_counts_engagements_bd BEFORE DELETE ON engagements "
        "FOR EACH ROW EXECUTE FUNCTION reminder_counts_engagement_deleted()",
    ]


def statements(dialect: str) -> list[str]:
    """The DDL that makes the triggers (and PostgreSQL's functions) on a database without them."""
    if dialect == "postgresql":
        return _pg_functions() + _pg_triggers()
    return _sqlite_triggers()


def install(conn) -> None:
    """Create the triggers (dropping any of the same name first)."""
    dbutil.create_triggers(conn, statements(conn.dialect.name), TRIGGERS, FUNCTIONS)


def uninstall(conn) -> None:
    dbutil.drop_triggers(conn, TRIGGERS, FUNCTIONS)


def recount(conn) -> int:
    """Rebuild every cell from the rows; how many cells were wrong, missing or left over."""
    wrong = drift(conn, limit=0)[0]
    conn.execute(sa.text("DELETE FROM reminder_counts"))
    conn.execute(sa.text(f"INSERT INTO reminder_counts (owner_key, due_on, waiting) {COMPUTED}"))
    return wrong


def drift(conn, limit: int = 5) -> tuple[int, list[tuple]]:
    """How many cells differ from the rows (wrong, missing or left over), and the first ones as
    (owner_key, due_on, stored, counted)."""
    # Both sides as one union grouped by cell (SQLite before 3.39 has no FULL JOIN); a stored cell of 0
    # (never left: emptied cells are deleted) or below counts as wrong too.
    differing = (f"SELECT owner_key, due_on, sum(stored) AS stored, sum(counted) AS counted FROM ("
                 "SELECT owner_key, due_on, waiting AS stored, 0 AS counted FROM reminder_counts "
                 f"UNION ALL SELECT owner_key, due_on, 0, waiting FROM ({COMPUTED}) x) u "
                 "GROUP BY owner_key, due_on HAVING sum(stored) != sum(counted) OR sum(counted) = 0")
    count = conn.execute(sa.text(f"SELECT count(*) FROM ({differing}) d")).scalar_one()
    first = [tuple(row) for row in conn.execute(sa.text(f"{differing} ORDER BY owner_key, due_on LIMIT {int(limit)}"))] \
        if count and limit else []
    return count, first


def missing_triggers(conn) -> list[str]:
    """The triggers (or PostgreSQL functions) that are not there, as 'name (on table)'."""
    return dbutil.missing_triggers(conn, "reminder_counts_", TRIGGERS, FUNCTIONS)


def problems(conn) -> list[str]:
    """What is wrong with the stored counts, one sentence each; [] when nothing is."""
    found = []
    missing = missing_triggers(conn)
    if missing:
        found.append(f"missing or disabled: {', '.join(missing)}; the stored reminder counts no longer follow "
                     "their rows: run `flask reminders recount --triggers`")
    count, first = drift(conn)
    if count:
        cells = "; ".join(f"owner {'nobody' if owner == 0 else f'#{owner}'} on {due}: {stored} stored, {counted} waiting"
                          for owner, due, stored, counted in first)
        found.append(f"{count} stored reminder count(s) differ from the reminders (first: {cells}): "
                     "run `flask reminders recount`")
    return found
