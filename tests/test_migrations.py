"""The migrations build the schema the models describe, on SQLite and PostgreSQL."""

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from engage.extensions import db


def test_models_and_migrations_agree(app):
    """The test database was built by `flask db upgrade`; autogenerate must find no drift.

    With the app's own Alembic options: they leave out the search indexes, which no model describes.
    """
    with db.engine.connect() as conn:
        options = app.extensions["migrate"].configure_args
        context = MigrationContext.configure(conn, opts={key: options[key] for key in
                                                         ("compare_type", "render_as_batch", "include_object")})
        diff = compare_metadata(context, db.metadata)
    assert diff == []


def test_database_is_at_head(app):
    from alembic.script import ScriptDirectory

    config = app.extensions["migrate"].migrate.get_config()
    head = ScriptDirectory.from_config(config).get_current_head()
    current = db.session.scalar(sa.text("SELECT version_num FROM alembic_version"))
    assert current == head


def test_sqlite_connections_enforce_foreign_keys_and_use_wal(app):
    if db.engine.dialect.name != "sqlite":
        return
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == app.config["SQLITE_BUSY_TIMEOUT_MS"]


def test_a_raised_busy_timeout_ends_when_the_connection_returns_to_the_pool(app):
    """A job worker waits minutes for the write lock (background._patient); the page that gets its
    connection from the pool next waits SQLITE_BUSY_TIMEOUT_MS again (found: 120000 left behind)."""
    if db.engine.dialect.name != "sqlite":
        return
    from engage.dbutil import raise_busy_timeout  # noqa: the helper under test, beside the pragmas it resets

    connection = db.session.connection()
    raw = connection.connection.dbapi_connection
    raise_busy_timeout(connection, 987_654)
    assert raw.execute("PRAGMA busy_timeout").fetchone()[0] == 987_654
    db.session.commit()
    db.session.close()  # checked in
    assert raw.execute("PRAGMA busy_timeout").fetchone()[0] == app.config["SQLITE_BUSY_TIMEOUT_MS"]


def test_upgrading_keeps_rows_that_point_at_rebuilt_tables(make_app, tmp_path, database_url):
    """SQLite batch migrations rebuild tables; references to them must survive (owner_id here)."""
    from flask_migrate import upgrade

    if not database_url.startswith("sqlite"):
        return  # PostgreSQL alters tables in place
    url = f"sqlite:///{tmp_path / 'upgrade.sqlite'}"
    app = make_app(SQLALCHEMY_DATABASE_URI=url)
    with app.app_context():
        upgrade(revision="0003")
        with db.engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO users (id, email, name, role, password_hash, active, created_at, updated_at) "
                "VALUES (1, 'o@example.org', 'Owner', 'analyst', 'x', 1, '2026-01-01', '2026-01-01')")
            conn.exec_driver_sql(
                "INSERT INTO companies (id, name, normalized_name, description, address, created_at, updated_at) "
                "VALUES (1, 'C', 'c', '', '', '2026-01-01', '2026-01-01')")
            conn.exec_driver_sql(
                "INSERT INTO campaigns (id, slug, name, summary, expectations, call_to_action, source, "
                "response_window_days, follow_up_interval_days, follow_ups_before_escalation, warn_days_before, "
                "active, letterhead, created_at, updated_at) VALUES (1, 'c', 'C', '', '[]', '', '', 30, 14, 2, 3, 1, '', "
                "'2026-01-01', '2026-01-01')")
            conn.exec_driver_sql(
                "INSERT INTO engagements (id, company_id, campaign_id, owner_id, stage, escalation, objectives, "
                "opened_on, version, created_at, updated_at) VALUES (1, 1, 1, 1, 'identified', 'none', '', "
                "'2026-01-01', 1, '2026-01-01', '2026-01-01')")
        upgrade()
        assert db.session.scalar(sa.text("SELECT owner_id FROM engagements WHERE id = 1")) == 1
        db.session.remove()
        db.engine.dispose()


def test_reminder_kind_exit_is_allowed_and_others_refused(app):
    """0021 (value-chain feeds): the reminders' kind check accepts "exit" and still refuses the unknown."""
    from sqlalchemy.exc import IntegrityError

    from tests import factories

    engagement = factories.engagement()
    insert = sa.text("INSERT INTO reminders (engagement_id, due_on, reason, kind, status, created_at, updated_at) "
                     "VALUES (:e, '2026-09-30', 'Exit of X due', :kind, 'open', '2026-06-01', '2026-06-01')")
    db.session.execute(insert, {"e": engagement.id, "kind": "exit"})
    db.session.commit()
    with pytest.raises(IntegrityError):
        db.session.execute(insert, {"e": engagement.id, "kind": "exits"})
        db.session.flush()
    db.session.rollback()


def test_0021_upgrades_and_downgrades_reminders_on_sqlite(make_app, tmp_path, database_url):
    """SQLite rebuilds the reminders table (batch mode): rows, the partial unique index and the check survive."""
    from flask_migrate import downgrade, upgrade
    from sqlalchemy.exc import IntegrityError

    if not database_url.startswith("sqlite"):
        return  # PostgreSQL alters the constraint in place (the test database was built by the migrations)
    url = f"sqlite:///{tmp_path / 'upgrade-0021.sqlite'}"
    app = make_app(SQLALCHEMY_DATABASE_URI=url)
    reminder = ("INSERT INTO reminders (engagement_id, due_on, reason, kind, status, created_at, updated_at) "
                "VALUES (1, '2026-09-30', 'r', '{kind}', 'open', '2026-06-01', '2026-06-01')")
    with app.app_context():
        upgrade(revision="0003")
        with db.engine.begin() as conn:
            for statement in (
                    "INSERT INTO users (id, email, name, role, password_hash, active, created_at, updated_at) "
                    "VALUES (1, 'o@example.org', 'Owner', 'analyst', 'x', 1, '2026-01-01', '2026-01-01')",
                    "INSERT INTO companies (id, name, normalized_name, description, address, created_at, updated_at) "
                    "VALUES (1, 'C', 'c', '', '', '2026-01-01', '2026-01-01')",
                    "INSERT INTO campaigns (id, slug, name, summary, expectations, call_to_action, source, "
                    "response_window_days, follow_up_interval_days, follow_ups_before_escalation, warn_days_before, "
                    "active, letterhead, created_at, updated_at) VALUES (1, 'c', 'C', '', '[]', '', '', 30, 14, 2, 3, "
                    "1, '', '2026-01-01', '2026-01-01')",
                    "INSERT INTO engagements (id, company_id, campaign_id, owner_id, stage, escalation, objectives, "
                    "opened_on, version, created_at, updated_at) VALUES (1, 1, 1, 1, 'identified', 'none', '', "
                    "'2026-01-01', 1, '2026-01-01', '2026-01-01')"):
                conn.exec_driver_sql(statement)
        upgrade(revision="0020")
        with db.engine.begin() as conn:
            conn.exec_driver_sql(reminder.format(kind="escalation"))
            with pytest.raises(IntegrityError):
                with conn.begin_nested():
                    conn.exec_driver_sql(reminder.format(kind="exit"))
        upgrade()
        with db.engine.begin() as conn:
            assert conn.exec_driver_sql("SELECT kind, relationship_id FROM reminders").all() == [("escalation", None)]
            conn.exec_driver_sql(reminder.format(kind="exit"))
            for refused in ("bogus", "escalation"):  # an unknown kind; a second open escalation (partial index)
                with pytest.raises(IntegrityError):
                    with conn.begin_nested():
                        conn.exec_driver_sql(reminder.format(kind=refused))
        downgrade(revision="0020")
        with db.engine.begin() as conn:
            assert conn.exec_driver_sql("SELECT kind FROM reminders").scalars().all() == ["escalation"]
            columns = [row[1] for row in conn.exec_driver_sql("PRAGMA table_info(reminders)")]
            assert "relationship_id" not in columns
            with pytest.raises(IntegrityError):
                with conn.begin_nested():
                    conn.exec_driver_sql(reminder.format(kind="exit"))
        db.session.remove()
        db.engine.dispose()
