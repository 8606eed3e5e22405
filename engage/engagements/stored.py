"""An engagement's stored next follow-up and last contact, kept by database triggers (issue 20).

`engagements.next_follow_up_on` is the due date of the earliest waiting reminder (status not
'done', `engage.models.PENDING_REMINDER`), NULL when none waits; `engagements.last_contact_on` the
date of the latest interaction that is not a note, NULL when there is none. Pages sort, filter
and count by them instead of computing them over every engagement per request.

Triggers on `reminders` and `interactions` keep them, whatever writes the rows (the ORM, an
executemany, a COPY, a cascade, raw SQL): after a write they recompute the value of each touched
engagement from its rows (never an increment, so it cannot drift); PostgreSQL's writes it only
when it changed.

- SQLite: row triggers (SQLite has no others), on insert, delete, and on update of the columns
  that matter (engagement_id, status, due_on; engagement_id, kind, occurred_on).
- PostgreSQL: statement triggers with transition tables: one recount per statement for the set
  of engagements it touched (a COPY of a million reminders is one set-based UPDATE, not a million).
  Before it recounts, the function locks those engagement rows (in id order) and then reads the
  rows with a fresh snapshot, so two transactions that write one engagement's rows at once cannot
  leave the value of the one that committed first.

Migration 0033 creates them (`install`) and fills the columns (`recount`); `flask engagements
check-dates` and `flask engagements recount` verify and repair (`problems`, `recount`).
"""

from __future__ import annotations

import sqlalchemy as sa

from engage import dbutil

#: (column, table, aggregate, the child's value, the child's condition, its columns that matter)
STORED = {
    "next_follow_up_on": ("reminders", "min", "due_on", "status != 'done'", ("engagement_id", "status", "due_on")),
    "last_contact_on": ("interactions", "max", "occurred_on", "kind != 'note'", ("engagement_id", "kind", "occurred_on")),
}

#: Trigger name -> table (both dialects use these names).
TRIGGERS = {f"engagement_dates_{table}_{suffix}": table
            for table, *_ in STORED.values() for suffix in ("ai", "ad", "au")}
#: PostgreSQL: the trigger functions, one per child table.
FUNCTIONS = {f"engagement_dates_from_{table}": table for table, *_ in STORED.values()}


def computed(column: str, engagement_id: str, alias: str = "c") -> str:
    """SQL: the value `column` should hold for the engagement whose id is the SQL `engagement_id`."""
    table, aggregate, value, condition, _ = STORED[column]
    where = " AND ".join(f"{alias}.{part}" for part in condition.split(" AND "))
    return (f"(SELECT {aggregate}({alias}.{value}) FROM {table} {alias} "
            f"WHERE {alias}.engagement_id = {engagement_id} AND {where})")


def _sqlite_triggers(column: str) -> list[str]:
    table, _aggregate, _value, condition, columns = STORED[column]

    def recount(ref: str) -> str:
        return (f"UPDATE engagements SET {column} = {computed(column, f'{ref}.engagement_id')} "
                f"WHERE id = {ref}.engagement_id;")

    new_counts = " AND ".join(f"new.{part}" for part in condition.split(" AND "))
    old_counts = " AND ".join(f"old.{part}" for part in condition.split(" AND "))
    prefix = f"engagement_dates_{table}"
    return [
        # A row that does not count (a done reminder, a note) changes nothing when it comes or goes.
        f"CREATE TRIGGER {prefix}_ai AFTER INSERT ON {table} WHEN {new_counts} BEGIN {recount('new')} END",
        f"CREATE TRIGGER {prefix}_ad AFTER DELETE ON {table} WHEN {old_counts} BEGIN {recount('old')} END",
        f"CREATE TRIGGER {prefix}_au AFTER UPDATE OF {', '.join(columns)} ON {table} BEGIN {recount('old')} "
        f"UPDATE engagements SET {column} = {computed(column, 'new.engagement_id')} "
        f"WHERE id = new.engagement_id AND new.engagement_id IS NOT old.engagement_id; END",
    ]


def _postgresql_function(column: str) -> str:
    table, _aggregate, _value, condition, columns = STORED[column]
    new_counts = " AND ".join(f"n.{part}" for part in condition.split(" AND "))
    old_counts = " AND ".join(f"o.{part}" for part in condition.split(" AND "))
    old_cols = ", ".join(f"o.{c}" for c in columns)
    new_cols = ", ".join(f"n.{c}" for c in columns)
    return f"""
CREATE OR REPLACE FUNCTION engagement_dates_from_{table}() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
    touched integer[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT n.engagement_id) INTO touched FROM new_rows n WHERE {new_counts};
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT o.engagement_id) INTO touched FROM old_rows o WHERE {old_counts};
    ELSE
        SELECT array_agg(DISTINCT x.engagement_id) INTO touched FROM (
            SELECT o.engagement_id FROM old_rows o JOIN new_rows n ON n.id = o.id
             WHERE ({old_cols}) IS DISTINCT FROM ({new_cols})
            UNION ALL
            SELECT n.engagement_id FROM old_rows o JOIN new_rows n ON n.id = o.id
             WHERE ({old_cols}) IS DISTINCT FROM ({new_cols})
        ) x;
    END IF;
    IF touched IS NULL THEN
        RETURN NULL;
    END IF;
    -- Wait for any other writer of these engagements; the UPDATE below then sees its rows.
    PERFORM 1 FROM engagements e WHERE e.id = ANY (touched) ORDER BY e.id FOR NO KEY UPDATE;
    UPDATE engagements e SET {column} = t.value
      FROM (SELECT u.id, {computed(column, 'u.id')} AS value FROM unnest(touched) AS u (id)) t
     WHERE e.id = t.id AND e.{column} IS DISTINCT FROM t.value;
    RETURN NULL;
END
$body$"""


def _postgresql_triggers(column: str) -> list[str]:
    table = STORED[column][0]
    function = f"engagement_dates_from_{table}()"
    prefix = f"engagement_dates_{table}"
    return [
        f"CREATE TRIGGER {prefix}_ai AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {function}",
        f"CREATE TRIGGER {prefix}_ad AFTER DELETE ON {table} REFERENCING OLD TABLE AS old_rows "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {function}",
        f"CREATE TRIGGER {prefix}_au AFTER UPDATE ON {table} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {function}",
    ]


def statements(dialect: str) -> list[str]:
    """The DDL that makes the triggers (and PostgreSQL's functions) on a database without them."""
    found = []
    for column in STORED:
        if dialect == "postgresql":
            found.append(_postgresql_function(column))
            found.extend(_postgresql_triggers(column))
        else:
            found.extend(_sqlite_triggers(column))
    return found


def install(conn) -> None:
    """Create the triggers (dropping any of the same name first)."""
    dbutil.create_triggers(conn, statements(conn.dialect.name), TRIGGERS, FUNCTIONS)


def uninstall(conn) -> None:
    dbutil.drop_triggers(conn, TRIGGERS, FUNCTIONS)


def recount(conn) -> dict[str, int]:
    """Set both columns of every engagement from its rows, set-based; per column, how many changed."""
    if conn.dialect.name == "postgresql":
        # One pass: each child table grouped once (index-only scans), both columns written in one
        # UPDATE (one new version of each changed row, not two): 10 s at 200,000 engagements where
        # an UPDATE per column took 26 s.
        joins, pairs = [], []
        for n, (column, (table, aggregate, value, condition, _columns)) in enumerate(STORED.items()):
            joins.append(f"LEFT JOIN (SELECT engagement_id, {aggregate}({value}) AS value FROM {table} "
                         f"WHERE {condition} GROUP BY engagement_id) g{n} ON g{n}.engagement_id = x.id")
            pairs.append((column, f"g{n}.value"))
        changes = " OR ".join(f"e.{column} IS DISTINCT FROM t.new_{column}" for column, _ in pairs)
        row = conn.execute(sa.text(
            "WITH changed AS (UPDATE engagements e SET "
            + ", ".join(f"{column} = t.new_{column}" for column, _ in pairs)
            + " FROM (SELECT x.id, " + ", ".join(f"x.{column} AS old_{column}, {new} AS new_{column}" for column, new in pairs)
            + " FROM engagements x " + " ".join(joins) + f") t WHERE e.id = t.id AND ({changes}) RETURNING "
            + ", ".join(f"t.old_{column} IS DISTINCT FROM t.new_{column} AS {column}" for column, _ in pairs)
            + ") SELECT " + ", ".join(f"count(*) FILTER (WHERE {column})" for column, _ in pairs) + " FROM changed"
        )).one()
        return {column: int(count) for (column, _), count in zip(pairs, row)}
    changed = {}
    for column in STORED:
        # SQLite: one correlated lookup per engagement in the covering index (no grouped join).
        changed[column] = conn.execute(sa.text(
            f"UPDATE engagements SET {column} = {computed(column, 'engagements.id')} "
            f"WHERE {column} IS NOT {computed(column, 'engagements.id')}")).rowcount
    return changed


def drift(conn, limit: int = 5) -> dict[str, tuple[int, list[int]]]:
    """Per column: how many engagements hold a value other than their rows give, and the first ids."""
    return dbutil.column_drift(conn, "engagements", STORED, computed, limit)


def missing_triggers(conn) -> list[str]:
    """The triggers (or PostgreSQL functions) that are not there, as 'name (on table)'."""
    return dbutil.missing_triggers(conn, "engagement_dates_", TRIGGERS, FUNCTIONS)


def problems(conn) -> list[str]:
    """What is wrong with the stored dates, one sentence each; [] when nothing is."""
    found = []
    missing = missing_triggers(conn)
    if missing:
        found.append(f"missing or disabled: {', '.join(missing)}; the stored dates no longer follow their rows: "
                     "run `flask engagements recount --triggers`")
    for column, (count, ids) in drift(conn).items():
        if count:
            found.append(f"{count} engagement(s) hold a wrong {column} (first: #{', #'.join(map(str, ids))}): "
                         "run `flask engagements recount`")
    return found
