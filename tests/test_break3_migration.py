"""Issue 20, break 3: migration 0033 up, down and up again keeps the stored dates and their triggers."""

from __future__ import annotations

import sqlalchemy as sa

from engage.engagements import stored
from engage.extensions import db


def _fill_required(conn, table: str, given: dict) -> None:
    """Insert a row with `given` and a plain value for every other NOT NULL column without a default."""
    row = dict(given)
    for column in sa.inspect(conn).get_columns(table):
        if column["name"] in row or column["nullable"] or column.get("default") is not None \
                or column.get("autoincrement") is True or column["name"] == "id":
            continue
        kind = str(column["type"]).upper()
        row[column["name"]] = ("2026-01-01" if "DATE" in kind or "TIME" in kind else 1 if "INT" in kind or "BOOL" in kind
                               else "x")
    names = ", ".join(row)
    conn.execute(sa.text(f"INSERT INTO {table} ({names}) VALUES ({', '.join(':' + n for n in row)})"), row)


def test_0033_up_down_up_keeps_triggers_and_right_dates_on_sqlite(make_app, tmp_path, database_url):
    from flask_migrate import downgrade, upgrade

    if not database_url.startswith("sqlite"):
        return  # PostgreSQL: tests/test_stored_dates.py runs on the migrated test database
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'break3-0033.sqlite'}")
    with app.app_context():
        upgrade(revision="0032")
        with db.engine.begin() as conn:
            _fill_required(conn, "users", {"id": 1, "email": "o@example.org", "role": "analyst", "active": 1})
            for n in (1, 2):
                _fill_required(conn, "companies", {"id": n, "name": f"C{n}", "normalized_name": f"c{n}"})
            _fill_required(conn, "campaigns", {"id": 1, "slug": "c", "active": 1})
            for n in (1, 2):
                _fill_required(conn, "engagements", {"id": n, "company_id": n, "campaign_id": 1, "owner_id": 1,
                                                     "stage": "identified", "escalation": "none", "opened_on": "2026-01-01"})
            _fill_required(conn, "reminders", {"engagement_id": 1, "due_on": "2026-09-30", "kind": "manual", "status": "open"})
            _fill_required(conn, "reminders", {"engagement_id": 1, "due_on": "2026-08-01", "kind": "escalation", "status": "done"})
            _fill_required(conn, "interactions", {"engagement_id": 1, "kind": "email", "occurred_on": "2026-03-02", "direction": "outbound"})
            _fill_required(conn, "interactions", {"engagement_id": 1, "kind": "note", "occurred_on": "2026-04-02", "direction": "outbound"})
        upgrade(revision="0033")

        def dates():
            return db.session.execute(sa.text(
                "SELECT id, next_follow_up_on, last_contact_on FROM engagements ORDER BY id")).all()

        with db.engine.connect() as conn:
            assert stored.problems(conn) == []
        assert [tuple(map(str, row)) for row in dates()] == [("1", "2026-09-30", "2026-03-02"), ("2", "None", "None")]
        db.session.remove()
        downgrade(revision="0032")
        with db.engine.connect() as conn:
            names = set(conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).scalars())
            assert not names & set(stored.TRIGGERS)
            columns = {c["name"] for c in sa.inspect(conn).get_columns("engagements")}
            assert "next_follow_up_on" not in columns and "last_contact_on" not in columns
        with db.engine.begin() as conn:  # written while 0033 is down: the upgrade fills it
            _fill_required(conn, "interactions", {"engagement_id": 2, "kind": "call", "occurred_on": "2026-05-05", "direction": "outbound"})
        upgrade()
        with db.engine.connect() as conn:
            assert stored.missing_triggers(conn) == [] and stored.problems(conn) == []
        assert [tuple(map(str, row)) for row in dates()] == [("1", "2026-09-30", "2026-03-02"), ("2", "None", "2026-05-05")]
        with db.engine.begin() as conn:  # the triggers work after the round trip
            conn.execute(sa.text("UPDATE reminders SET status = 'done' WHERE engagement_id = 1"))
            _fill_required(conn, "reminders", {"engagement_id": 2, "due_on": "2026-07-07", "kind": "manual", "status": "open"})
        assert [tuple(map(str, row)) for row in dates()] == [("1", "None", "2026-03-02"), ("2", "2026-07-07", "2026-05-05")]
        with db.engine.connect() as conn:
            assert stored.problems(conn) == []
        db.session.remove()
        db.engine.dispose()
