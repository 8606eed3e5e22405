"""A company's stored score and change, kept by database triggers (issue 20).

`companies.latest_score` is the total of the company's latest primary score (not a moderation), over
all its engagements: the newest `scored_on`, ties by the later entry (`Score.newest_first`), NULL
when it has none. `companies.score_change` is that total minus the one before it (the same
order), NULL when there is no earlier one. They are exactly the figures
`engage.companies.queries.company_scores` computes (a window over the scores), which the list
computed per request: sorting 100,000 companies by score ranked every score first. Stored and
indexed (`ix_companies_latest_score`, `ix_companies_score_change`), the sorted page reads 50 rows of an
index, and the score filters read a range of one.

Triggers keep them, whatever writes the rows (the ORM, an executemany, a COPY, a cascade, raw
SQL): after a write they recompute the figures of each touched company from its scores (never an
increment, so they cannot drift); PostgreSQL's write them only when they changed.

- On `scores`: insert and delete of a primary score, update of the columns that matter
  (engagement_id, scored_on, total, moderates_id) — the old and the new company.
- On `engagements`: delete (its scores go with it, by cascade; the company is recounted from the
  engagements left) and update of company_id (both companies).
- SQLite: row triggers. PostgreSQL: statement triggers with transition tables, one recount per
  statement for the set of companies it touched (a row trigger for an engagement's move); the function locks those company rows (in id
  order) and then reads the scores with a fresh snapshot, so two transactions scoring one company
  at once cannot leave the figures of the one that committed first (as engage.engagements.stored).

Migration 0037 creates them (`install`) and fills the columns (`recount`); `flask companies
check-scores` and `flask companies recount-scores` verify and repair (`problems`, `recount`).
"""

from __future__ import annotations

import sqlalchemy as sa

from engage import dbutil

COLUMNS = ("latest_score", "score_change")

#: Trigger name -> table (both dialects use these names).
TRIGGERS = {
    "company_score_scores_ai": "scores",
    "company_score_scores_ad": "scores",
    "company_score_scores_au": "scores",
    "company_score_engagements_ad": "engagements",
    "company_score_engagements_au": "engagements",
}
#: PostgreSQL: the trigger functions.
FUNCTIONS = {"company_score_from_scores": "scores", "company_score_from_engagements": "engagements"}

#: The columns of a score whose change may change its company's figures.
SCORE_COLUMNS = ("engagement_id", "scored_on", "total", "moderates_id")


def nth_latest(company_id: str, offset: int, dialect: str) -> str:
    """SQL: the total of the company's `offset`-th latest primary score (0: the latest), or NULL."""
    primary = "s.moderates_id IS NULL"
    if dialect == "sqlite":
        # Nearly every score is primary: told so, SQLite starts from the company's engagements
        # (engage.models.scoring.ranked_scores says the same).
        primary = f"likelihood({primary}, 0.9)"
    return (f"(SELECT s.total FROM scores s JOIN engagements se ON se.id = s.engagement_id "
            f"WHERE se.company_id = {company_id} AND {primary} "
            f"ORDER BY s.scored_on DESC, s.id DESC LIMIT 1 OFFSET {int(offset)})")


def computed(column: str, company_id: str, dialect: str) -> str:
    """SQL: the value `column` should hold for the company whose id is the SQL `company_id`."""
    if column == "latest_score":
        return nth_latest(company_id, 0, dialect)
    return f"({nth_latest(company_id, 0, dialect)} - {nth_latest(company_id, 1, dialect)})"


def _set(company_id: str, dialect: str) -> str:
    return ", ".join(f"{column} = {computed(column, company_id, dialect)}" for column in COLUMNS)


def _sqlite_triggers() -> list[str]:
    def recount_engagement(ref: str) -> str:
        return (f"UPDATE companies SET {_set('companies.id', 'sqlite')} "
                f"WHERE id = (SELECT company_id FROM engagements WHERE id = {ref}.engagement_id);")

    def recount_company(ref: str) -> str:
        return f"UPDATE companies SET {_set('companies.id', 'sqlite')} WHERE id = {ref}.company_id;"

    return [
        # A moderation (a second scorer's score) changes nothing when it comes or goes.
        "CREATE TRIGGER company_score_scores_ai AFTER INSERT ON scores WHEN new.moderates_id IS NULL "
        f"BEGIN {recount_engagement('new')} END",
        # (An engagement's deletion deletes its scores first: the engagement row is gone, so this
        # finds no company; company_score_engagements_ad recounts it.)
        "CREATE TRIGGER company_score_scores_ad AFTER DELETE ON scores WHEN old.moderates_id IS NULL "
        f"BEGIN {recount_engagement('old')} END",
        f"CREATE TRIGGER company_score_scores_au AFTER UPDATE OF {', '.join(SCORE_COLUMNS)} ON scores "
        f"BEGIN {recount_engagement('old')} "
        f"UPDATE companies SET {_set('companies.id', 'sqlite')} "
        "WHERE id = (SELECT company_id FROM engagements WHERE id = new.engagement_id) "
        "AND id IS NOT (SELECT company_id FROM engagements WHERE id = old.engagement_id); END",
        f"CREATE TRIGGER company_score_engagements_ad AFTER DELETE ON engagements BEGIN {recount_company('old')} END",
        "CREATE TRIGGER company_score_engagements_au AFTER UPDATE OF company_id ON engagements "
        f"WHEN new.company_id IS NOT old.company_id BEGIN {recount_company('old')} {recount_company('new')} END",
    ]


_PG_RECOUNT = """
    IF touched IS NULL THEN
        RETURN NULL;
    END IF;
    -- Wait for any other writer of these companies' figures; the UPDATE below then sees its scores.
    PERFORM 1 FROM companies c WHERE c.id = ANY (touched) ORDER BY c.id FOR NO KEY UPDATE;
    UPDATE companies c SET latest_score = t.score, score_change = t.score_change
      FROM (SELECT u.id, {score} AS score, {change} AS score_change FROM unnest(touched) AS u (id)) t
     WHERE c.id = t.id AND (c.latest_score, c.score_change) IS DISTINCT FROM (t.score, t.score_change);
    RETURN NULL;
END
$body$"""


def _postgresql_functions() -> list[str]:
    recount = _PG_RECOUNT.format(score=computed("latest_score", "u.id", "postgresql"),
                                 change=computed("score_change", "u.id", "postgresql"))
    old_cols = ", ".join(f"o.{c}" for c in SCORE_COLUMNS)
    new_cols = ", ".join(f"n.{c}" for c in SCORE_COLUMNS)
    scores = f"""
CREATE OR REPLACE FUNCTION company_score_from_scores() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
    touched integer[];
BEGIN
    -- The scores' engagements are locked (FOR SHARE, in id order) before their companies are read:
    -- an engagement moving to another company meanwhile is then waited for and its new company
    -- read, so the score counts for the company the engagement ends with.
    IF TG_OP = 'INSERT' THEN
        PERFORM 1 FROM engagements e WHERE e.id IN (SELECT n.engagement_id FROM new_rows n) ORDER BY e.id FOR SHARE;
        SELECT array_agg(DISTINCT e.company_id) INTO touched
          FROM new_rows n JOIN engagements e ON e.id = n.engagement_id WHERE n.moderates_id IS NULL;
    ELSIF TG_OP = 'DELETE' THEN
        -- (Scores deleted with their engagement: the engagement is gone, company_score_from_engagements recounts.)
        PERFORM 1 FROM engagements e WHERE e.id IN (SELECT o.engagement_id FROM old_rows o) ORDER BY e.id FOR SHARE;
        SELECT array_agg(DISTINCT e.company_id) INTO touched
          FROM old_rows o JOIN engagements e ON e.id = o.engagement_id WHERE o.moderates_id IS NULL;
    ELSE
        PERFORM 1 FROM engagements e WHERE e.id IN (SELECT n.engagement_id FROM new_rows n
                                                    UNION SELECT o.engagement_id FROM old_rows o) ORDER BY e.id FOR SHARE;
        SELECT array_agg(DISTINCT e.company_id) INTO touched FROM (
            SELECT o.engagement_id FROM old_rows o JOIN new_rows n ON n.id = o.id
             WHERE ({old_cols}) IS DISTINCT FROM ({new_cols})
            UNION ALL
            SELECT n.engagement_id FROM old_rows o JOIN new_rows n ON n.id = o.id
             WHERE ({old_cols}) IS DISTINCT FROM ({new_cols})
        ) x JOIN engagements e ON e.id = x.engagement_id;
    END IF;{recount}"""
    engagements = f"""
CREATE OR REPLACE FUNCTION company_score_from_engagements() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
    touched integer[];
BEGIN
    IF TG_LEVEL = 'ROW' THEN  -- an engagement moved to another company: both
        touched := ARRAY[LEAST(OLD.company_id, NEW.company_id), GREATEST(OLD.company_id, NEW.company_id)];
    ELSE
        SELECT array_agg(DISTINCT o.company_id) INTO touched FROM old_rows o;
    END IF;{recount}"""
    return [scores, engagements]


def _postgresql_triggers() -> list[str]:
    return [
        "CREATE TRIGGER company_score_scores_ai AFTER INSERT ON scores REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION company_score_from_scores()",
        "CREATE TRIGGER company_score_scores_ad AFTER DELETE ON scores REFERENCING OLD TABLE AS old_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION company_score_from_scores()",
        "CREATE TRIGGER company_score_scores_au AFTER UPDATE ON scores REFERENCING OLD TABLE AS old_rows "
        "NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION company_score_from_scores()",
        "CREATE TRIGGER company_score_engagements_ad AFTER DELETE ON engagements REFERENCING OLD TABLE AS old_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION company_score_from_engagements()",
        # A row trigger with a column list and a condition: a statement trigger cannot name columns
        # when it has transition tables, and would then run on every engagement update (the stored
        # dates' triggers update engagements in bulk); an engagement rarely changes company.
        "CREATE TRIGGER company_score_engagements_au AFTER UPDATE OF company_id ON engagements FOR EACH ROW "
        "WHEN (OLD.company_id IS DISTINCT FROM NEW.company_id) EXECUTE FUNCTION company_score_from_engagements()",
    ]


def statements(dialect: str) -> list[str]:
    """The DDL that makes the triggers (and PostgreSQL's functions) on a database without them."""
    if dialect == "postgresql":
        return _postgresql_functions() + _postgresql_triggers()
    return _sqlite_triggers()


def install(conn) -> None:
    """Create the triggers (dropping any of the same name first)."""
    dbutil.create_triggers(conn, statements(conn.dialect.name), TRIGGERS, FUNCTIONS)


def uninstall(conn) -> None:
    dbutil.drop_triggers(conn, TRIGGERS, FUNCTIONS)


def recount(conn) -> dict[str, int]:
    """Set both columns of every company from its scores, set-based; per column, how many changed."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        # The scores ranked once per company (one pass), both columns written in one UPDATE.
        row = conn.execute(sa.text("""
            WITH ranked AS (
                SELECT e.company_id, s.total,
                       row_number() OVER (PARTITION BY e.company_id ORDER BY s.scored_on DESC, s.id DESC) AS rank
                  FROM scores s JOIN engagements e ON e.id = s.engagement_id
                 WHERE s.moderates_id IS NULL),
            figures AS (
                SELECT company_id, max(total) FILTER (WHERE rank = 1) AS score,
                       max(total) FILTER (WHERE rank = 1) - max(total) FILTER (WHERE rank = 2) AS score_change
                  FROM ranked WHERE rank <= 2 GROUP BY company_id),
            changed AS (
                UPDATE companies c SET latest_score = t.score, score_change = t.score_change
                  FROM (SELECT x.id, x.latest_score AS old_score, x.score_change AS old_change,
                               f.score, f.score_change
                          FROM companies x LEFT JOIN figures f ON f.company_id = x.id) t
                 WHERE c.id = t.id AND (c.latest_score, c.score_change) IS DISTINCT FROM (t.score, t.score_change)
                RETURNING t.old_score IS DISTINCT FROM t.score AS score,
                          t.old_change IS DISTINCT FROM t.score_change AS score_change)
            SELECT count(*) FILTER (WHERE score), count(*) FILTER (WHERE score_change) FROM changed
        """)).one()
        return {"latest_score": int(row[0]), "score_change": int(row[1])}
    changed = {}
    for column in COLUMNS:
        # SQLite: per company, a lookup of its engagements and their scores in their indexes.
        changed[column] = conn.execute(sa.text(
            f"UPDATE companies SET {column} = {computed(column, 'companies.id', dialect)} "
            f"WHERE {column} IS NOT {computed(column, 'companies.id', dialect)}")).rowcount
    return changed


def drift(conn, limit: int = 5) -> dict[str, tuple[int, list[int]]]:
    """Per column: how many companies hold a value other than their scores give, and the first ids."""
    dialect = conn.dialect.name
    return dbutil.column_drift(conn, "companies", COLUMNS, lambda column, ref: computed(column, ref, dialect), limit)


def missing_triggers(conn) -> list[str]:
    """The triggers (or PostgreSQL functions) that are not there, as 'name (on table)'."""
    return dbutil.missing_triggers(conn, "company_score_", TRIGGERS, FUNCTIONS)


def problems(conn) -> list[str]:
    """What is wrong with the stored scores, one sentence each; [] when nothing is."""
    found = []
    missing = missing_triggers(conn)
    if missing:
        found.append(f"missing or disabled: {', '.join(missing)}; the stored scores no longer follow the scores: "
                     "run `flask companies recount-scores --triggers`")
    for column, (count, ids) in drift(conn).items():
        if count:
            found.append(f"{count} company(ies) hold a wrong {column} (first: #{', #'.join(map(str, ids))}): "
                         "run `flask companies recount-scores`")
    return found
