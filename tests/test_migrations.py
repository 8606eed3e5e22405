"""The migrations build the schema the models describe, on SQLite and PostgreSQL."""

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from engage.extensions import db


def test_models_and_migrations_agree(app):
    """The test database was built by `flask db upgrade`; autogenerate must find no drift."""
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "render_as_batch": True})
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
