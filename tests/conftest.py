"""Fixtures: one schema per run (built by the migrations), rows wiped after each test.

The database is a SQLite file in a temp dir, or the server named by TEST_DATABASE_URL
(CI runs the suite again against PostgreSQL that way).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re

import pytest
import sqlalchemy as sa
from flask import g, has_app_context
from flask.testing import FlaskClient
from flask_migrate import upgrade

from config import TestConfig, database_url as normalize_url
from engage import clock, create_app
from engage.extensions import db
from engage.models import User

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return normalize_url(url, url)
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'engage-test.sqlite'}"


def drop_everything(url: str) -> None:
    """Start from an empty database, whatever an earlier run left behind."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
        else:
            meta = sa.MetaData()
            meta.reflect(conn)
            conn.execute(sa.text("PRAGMA foreign_keys=OFF"))
            for table in reversed(meta.sorted_tables):
                conn.execute(sa.text(f'DROP TABLE "{table.name}"'))
    engine.dispose()


class IsolatedClient(FlaskClient):
    """A test client whose requests do not inherit the signed-in user of another client.

    Tests keep an app context open (to use db.session); Flask reuses it for requests, so
    Flask-Login's per-request cache in `g` would leak between clients. Drop it each time.
    """

    def open(self, *args, **kwargs):
        if has_app_context():
            g.pop("_login_user", None)
        return super().open(*args, **kwargs)


@pytest.fixture(scope="session")
def make_app(database_url):
    """Build an app on the test database; `overrides` change settings for that app only."""

    def factory(**overrides):
        settings = {"SQLALCHEMY_DATABASE_URI": database_url}
        settings.update(overrides)
        app = create_app(TestConfig, overrides=settings)
        app.test_client_class = IsolatedClient
        return app

    return factory


@pytest.fixture(scope="session")
def _schema(make_app, database_url):
    drop_everything(database_url)
    app = make_app()
    with app.app_context():
        upgrade()
    return app


@pytest.fixture()
def app(_schema):
    with _schema.app_context():
        yield _schema
        db.session.remove()
        wipe_rows()


def wipe_rows() -> None:
    tables = [t for t in reversed(db.metadata.sorted_tables)]
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in tables)
            conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(table.delete())


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture()
def runner(app):
    return app.test_cli_runner()


@pytest.fixture()
def make_user(app):
    counter = iter(range(1, 10_000))

    def factory(role: str = "analyst", email: str | None = None, password: str = PASSWORD, active: bool = True) -> User:
        email = email or f"{role}{next(counter)}@example.org"
        user = User(email=email, name=email.split("@")[0].title(), role=role, active=active)
        user.set_password(password)
        db.session.add(user)
        db.session.commit()
        return user

    return factory


def login(client, email: str, password: str = PASSWORD, next_url: str | None = None):
    data = {"email": email, "password": password}
    if next_url is not None:
        data["next"] = next_url
    return client.post("/auth/login", data=data)


@pytest.fixture()
def login_as(client, make_user):
    """Sign the test client in with a fresh user of `role`; returns the user."""

    def do(role: str = "analyst") -> User:
        user = make_user(role)
        response = login(client, user.email)
        assert response.status_code == 302, response.get_data(as_text=True)
        return user

    return do


CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


def csrf_token_from(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1) or match.group(2)


class QueryCounter:
    """Counts SQL statements sent on the app's engine inside a `with` block."""

    def __init__(self, engine):
        self.engine = engine
        self.statements: list[str] = []

    def _on_execute(self, conn, cursor, statement, *args):
        self.statements.append(statement)

    def __enter__(self):
        # The test client shares the test's session, whose identity map holds objects weakly: whether
        # a request finds the signed-in user there depends on when the garbage collector ran. Expired,
        # each is fetched again by the counted request, so the count does not depend on that timing.
        # (Not when the test is counting its own pending changes: expiring would discard them.)
        if not (db.session.new or db.session.dirty or db.session.deleted):
            db.session.expire_all()
        sa.event.listen(self.engine, "before_cursor_execute", self._on_execute)
        return self

    def __exit__(self, *exc):
        sa.event.remove(self.engine, "before_cursor_execute", self._on_execute)

    @property
    def count(self) -> int:
        return len(self.statements)


@pytest.fixture()
def count_queries(app):
    return lambda: QueryCounter(db.engine)


def pytest_report_header(config):
    url = os.environ.get("TEST_DATABASE_URL")
    return f"database: {sa.engine.make_url(normalize_url(url, url)).render_as_string() if url else 'SQLite file (temp dir)'}"


@pytest.fixture()
def smtp(app):
    """A running SMTP server; the test app sends to it for the duration of the test."""
    from tests.smtp import SmtpServer

    server = SmtpServer()
    server.start()
    previous = app.config["MAIL_PORT"]
    app.config["MAIL_PORT"] = server.port
    try:
        yield server
    finally:
        app.config["MAIL_PORT"] = previous
        server.stop()


#: The moment most tests run at (a Monday, mid-June 2026).
FROZEN_AT = dt.datetime(2026, 6, 15, 9, 0)


@pytest.fixture()
def freeze_clock():
    """Freeze engage.clock for the rest of the test: `freeze_clock(moment)` returns the moment's date."""
    with contextlib.ExitStack() as stack:

        def freeze(moment: dt.datetime) -> dt.date:
            stack.enter_context(clock.frozen(moment))
            return moment.date()

        yield freeze


@pytest.fixture()
def frozen_today(freeze_clock) -> dt.date:
    """The clock frozen at FROZEN_AT; the value is that date."""
    return freeze_clock(FROZEN_AT)


def pytest_collection_modifyitems(config, items):
    """IMAP tests need Dovecot started as root: skipped with the reason locally, required by .ci/run."""
    from tests.imap import dovecot_missing

    reason = dovecot_missing()
    if reason is None or not any("imap" in item.keywords for item in items):
        return
    if os.environ.get("ENGAGE_REQUIRE_IMAP") == "1":
        raise pytest.UsageError(f"IMAP tests required (ENGAGE_REQUIRE_IMAP=1) but {reason}")
    marker = pytest.mark.skip(reason=f"IMAP tests skipped: {reason}")
    for item in items:
        if "imap" in item.keywords:
            item.add_marker(marker)


@pytest.fixture(scope="session")
def dovecot():
    """A real Dovecot IMAP server for the whole run (tests/imap.py)."""
    from tests.imap import DovecotServer

    server = DovecotServer()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


MAILBOX_ADDRESS = "engage-mailbox@stewardship.example"


@pytest.fixture()
def mailbox(app, dovecot, tmp_path):
    """The app reading an empty INBOX on the Dovecot server; attachments in a temp dir."""
    dovecot.empty_inbox()
    overrides = {**dovecot.settings, "ENGAGE_MAILBOX_ADDRESS": MAILBOX_ADDRESS, "ATTACHMENT_DIR": str(tmp_path)}
    previous = {key: app.config.get(key) for key in overrides}
    app.config.update(overrides)
    try:
        yield dovecot
    finally:
        app.config.update(previous)
