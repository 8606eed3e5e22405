"""Engage: an engagement CRM for stewardship teams.

`create_app()` builds the app from small `register_*` steps. Nothing runs at import time
and the app starts no scheduler, migration or network connection of its own.

The steps import engage's own modules when they run: every submodule, the render workers'
fork server and the migrations import this package first, and must not load the whole app
(every blueprint, the models, the extensions) by doing so.
"""

from __future__ import annotations

import datetime
import importlib
import secrets
import sqlite3
from pathlib import Path

import sqlalchemy as sa
from flask import Flask, render_template, request
from flask_login import current_user
from flask_talisman import Talisman
from flask_wtf.csrf import CSRFError
from werkzeug.middleware.proxy_fix import ProxyFix

from engage.mailbox import settings as mailbox_settings

ROOT = Path(__file__).resolve().parent.parent


def create_app(config_class=None, overrides: dict | None = None) -> Flask:
    """Application factory. `overrides` patch settings per app (tests), never the class."""
    if config_class is None:
        # config.py belongs to the deployment (repository root): read only when no class is given.
        from config import Config as config_class

    app = Flask(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
        instance_path=str(ROOT / "instance"),
    )
    app.config.from_object(config_class)
    if overrides:
        app.config.update(overrides)
    check_config(app)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    if app.config["PROXY_COUNT"]:
        # Behind a TLS proxy: the client address (for throttling) and scheme (for HTTPS checks).
        count = app.config["PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count)

    register_extensions(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_template_helpers(app)
    register_commands(app)
    return app


#: Shortest SECRET_KEY production accepts (`python -c "import secrets; print(secrets.token_urlsafe(48))"`).
MIN_SECRET_KEY_LENGTH = 32
#: Keys published in this repository and common placeholders: a key containing one is derived
#: from a public value ("dev-only-change-medev-only-change-me"), whatever its length.
PUBLISHED_SECRET_KEYS = ("dev-only-change-me", "test-secret-key", "change-me", "changeme", "change_me")
#: Placeholder words refused as the whole key.
PLACEHOLDER_SECRET_KEYS = {"secret", "secret-key", "secret_key", "secretkey", "password"}


def _smallest_period(text: str) -> int:
    """The shortest p with text[i] == text[i + p] for every i (len(text) when none is shorter)."""
    border, prefix = 0, [0] * len(text)  # KMP prefix function: the longest proper border
    for i in range(1, len(text)):
        while border and text[i] != text[border]:
            border = prefix[border - 1]
        if text[i] == text[border]:
            border += 1
        prefix[i] = border
    return len(text) - (prefix[-1] if text else 0)


def secret_key_problem(key) -> str | None:
    """Why `key` cannot sign production cookies, or None when it can.

    A key must be long, not a published value nor derived from one, and look random: not a
    short pattern repeated ("abcdefgh" * 4), not mostly runs ("aaaa", "abcd", "4321"), not
    made of a handful of characters. A key from `secrets.token_urlsafe(48)` passes.
    """
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key or "")
    text = text.strip()
    lowered = text.lower()
    if not text:
        return "SECRET_KEY must be set to a long random value in production"
    if lowered in PLACEHOLDER_SECRET_KEYS or any(public in lowered for public in PUBLISHED_SECRET_KEYS):
        return ("SECRET_KEY is, or is made from, a published value (the development key is public): "
                "set a long random value in production")
    weak = f"SECRET_KEY is too weak for production: use at least {MIN_SECRET_KEY_LENGTH} random characters"
    if len(text) < MIN_SECRET_KEY_LENGTH or len(set(text)) < 8:
        return weak
    if _smallest_period(text) <= len(text) // 2:
        return weak + " (this one repeats a short pattern)"
    steps = sum(abs(ord(a) - ord(b)) <= 1 for a, b in zip(text, text[1:]))
    if steps > 0.6 * (len(text) - 1):
        return weak + " (this one is mostly runs of neighbouring characters)"
    return None


def check_config(app: Flask) -> None:
    """Refuse to start production without a real secret key and CSRF protection, whatever the
    other settings; give development a working key when the one set is empty.

    Debug, testing or FORCE_HTTPS do not matter: with a public or guessable key anyone can
    forge a session cookie, over HTTP or HTTPS alike.
    """
    mailbox_settings.check(app)
    if app.config.get("MAIL_BACKEND") not in ("file", "smtp"):
        raise RuntimeError(f"MAIL_BACKEND must be 'file' or 'smtp', not {app.config.get('MAIL_BACKEND')!r}")
    key = app.config.get("SECRET_KEY")
    if app.config.get("PRODUCTION"):
        problem = secret_key_problem(key)
        if problem:
            raise RuntimeError(problem)
        if not app.config.get("WTF_CSRF_ENABLED", True):
            raise RuntimeError("WTF_CSRF_ENABLED cannot be switched off in production")
        return
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key or "")
    if not text.strip():
        # An empty key (SECRET_KEY= in a shell, a failed substitution) would make every page
        # that touches the session fail. Sessions signed with this key end when the process does.
        app.config["SECRET_KEY"] = secrets.token_urlsafe(48)
        app.logger.warning("SECRET_KEY is empty: using a random key for this process only; "
                           "sessions end when it stops. Set SECRET_KEY to keep them.")


def _sqlite_pragmas(busy_timeout_ms: int):
    def on_connect(dbapi_connection, _record):
        if not isinstance(dbapi_connection, sqlite3.Connection):
            return
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return on_connect


def _sqlite_busy_timeout_reset(busy_timeout_ms: int, raised_key: str):
    """A connection whose busy timeout was raised for one piece of work (`dbutil.raise_busy_timeout`)
    gets the configured one back when it returns to the pool, so the next page using it does not
    wait minutes for a lock."""
    def on_checkin(dbapi_connection, record):
        if dbapi_connection is not None and record.info.pop(raised_key, False):
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.close()

    return on_checkin


def _postgresql_settings(dbapi_connection, _record):
    """PostgreSQL sessions without JIT compilation: the pages' queries are short, and a plan whose
    cost passes jit_above_cost (a sort over a computed column of every engagement, say) spent
    40 to 100 ms compiling before it ran (README, Performance: "PostgreSQL, and 100,000 companies")."""
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    cursor = dbapi_connection.cursor()
    cursor.execute("SET jit = off")
    cursor.close()
    dbapi_connection.autocommit = autocommit


def register_extensions(app: Flask) -> None:
    # Imported when an app is built, not with the package (see the module docstring).
    from engage import audit
    from engage.dbutil import RAISED_BUSY_TIMEOUT
    from engage.extensions import csrf, db, limiter, login_manager, migrate
    from engage.models.holdings import DATABASE_ONLY_INDEXES
    from engage.search.schema import include_object

    db.init_app(app)
    with app.app_context():
        for engine in [db.engine, *db.engines.values()]:
            if engine.dialect.name == "sqlite":
                sa.event.listen(engine, "connect", _sqlite_pragmas(app.config["SQLITE_BUSY_TIMEOUT_MS"]))
                sa.event.listen(engine, "checkin", _sqlite_busy_timeout_reset(app.config["SQLITE_BUSY_TIMEOUT_MS"],
                                                                              RAISED_BUSY_TIMEOUT))
            elif engine.dialect.name == "postgresql":
                sa.event.listen(engine, "connect", _postgresql_settings)
    def schema_objects(obj, name, type_, reflected, compare_to) -> bool:
        """Alembic: the search indexes and the job queue's tables (Huey's, in PostgreSQL) are not the models'."""
        if reflected and compare_to is None and type_ == "table" and (name or "").startswith("jobq_"):
            return False
        if reflected and compare_to is None and type_ == "index" and name in DATABASE_ONLY_INDEXES:
            return False  # spelled per database by its migration (the order of its columns)
        return include_object(obj, name, type_, reflected, compare_to)

    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True, compare_type=True,
                     include_object=schema_objects)
    csrf.init_app(app)
    limiter.init_app(app)
    importlib.import_module("engage.models")  # the audit hooks attach to every mapped class
    from engage import background  # after the models: it imports them (an app factory step)

    background.init_app(app)  # the job queue's storage (JOBS_URL); a worker runs jobs in this app

    audit.register()

    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to continue."
    login_manager.login_message_category = "info"
    # "basic": a session or remember-me cookie that turns up with another address or browser
    # version is kept (only marked not fresh). "strong" deleted both, which signed users out on
    # every browser update or network change and, as soon as a page stored a CSRF token in a
    # new session, deleted the remember-me cookie. The revocable session token is what protects
    # a copied cookie (see README, Security).
    login_manager.session_protection = "basic"

    # Imported when an app is built, not with the package (see the module docstring).
    from engage.models import User
    from engage.security import unauthorized

    login_manager.unauthorized_handler(unauthorized)

    @login_manager.user_loader
    def load_user(cookie_id: str):
        """The active user whose current session token the cookie carries ("<id>:<token>")."""
        user_id, _, token = str(cookie_id).partition(":")
        if not (user_id.isascii() and user_id.isdigit()) or not token or len(user_id) > 18:
            return None
        user = db.session.get(User, int(user_id))
        if user is None or not user.active or not user.matches_session(token):
            return None
        return user

    # Talisman keeps its options on the instance, so each app gets its own.
    app.extensions["talisman"] = Talisman(
        app,
        force_https=app.config["FORCE_HTTPS"],
        strict_transport_security=app.config["FORCE_HTTPS"],
        session_cookie_secure=app.config["SESSION_COOKIE_SECURE"],
        session_cookie_http_only=True,
        frame_options="DENY",
        referrer_policy="same-origin",
        content_security_policy={
            "default-src": "'self'",
            "script-src": "'self'",
            "style-src": "'self'",
            "img-src": "'self' data:",
            "font-src": "'self'",
            "object-src": "'none'",
            "base-uri": "'self'",
            "form-action": "'self'",
            "frame-ancestors": "'none'",
        },
    )

    # Imported when an app is built, not with the package (see the module docstring).
    from engage.security import enforce_access, guard_session, keep_acting_session, no_store
    from engage.web import refuse_nul_characters

    app.before_request(enforce_access)
    app.before_request(refuse_nul_characters)  # after access: an anonymous body is not even read
    # after_request hooks run last-registered first: keep_acting_session, no_store, then
    # guard_session, all before Flask-Login's remember-me cookie hook.
    app.after_request(guard_session)
    app.after_request(no_store)
    app.after_request(keep_acting_session)


def register_blueprints(app: Flask) -> None:
    # Imported when an app is built, not with the package (see the module docstring).
    from engage.account.routes import bp as account_bp
    from engage.admin.routes import bp as admin_bp
    from engage.background.routes import bp as background_bp
    from engage.api import routes as api_routes
    from engage.auth.routes import bp as auth_bp
    from engage.companies.routes import bp as companies_bp
    from engage.engagements.routes import bp as engagements_bp
    from engage.exports.routes import bp as exports_bp
    from engage.holdings.routes import bp as holdings_bp
    from engage.letters.routes import bp as letters_bp
    from engage.lists.routes import bp as lists_bp
    from engage.mailbox.routes import bp as mailbox_bp
    from engage.main.routes import bp as main_bp
    from engage.reminders.routes import bp as reminders_bp
    from engage.reminders.routes import old_calendar
    from engage.scoring.routes import bp as scoring_bp
    from engage.search.routes import bp as search_bp
    from engage.tracker.routes import bp as tracker_bp
    from engage.valuechain.routes import bp as valuechain_bp
    from engage.views.routes import bp as views_bp
    from engage.web import IdConverter

    app.url_map.converters["int"] = IdConverter  # before any route: ids past the column's range are 404s

    app.register_blueprint(auth_bp)
    app.register_blueprint(main_bp)
    app.register_blueprint(account_bp)
    app.register_blueprint(companies_bp)
    app.register_blueprint(engagements_bp)
    app.register_blueprint(holdings_bp)
    app.register_blueprint(lists_bp)
    app.register_blueprint(exports_bp)
    app.register_blueprint(letters_bp)
    app.register_blueprint(reminders_bp)
    app.register_blueprint(scoring_bp)
    app.register_blueprint(mailbox_bp)
    app.register_blueprint(valuechain_bp)
    app.register_blueprint(tracker_bp)
    app.register_blueprint(search_bp)
    app.register_blueprint(views_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(background_bp)
    api_routes.init_app(app)  # the JSON API blueprint, with its OpenAPI document (flask-smorest)
    # The one rule outside its package's prefix: calendar feeds handed out before the feed moved
    # to /reminders/calendar/ keep working (a permanent redirect).
    app.add_url_rule("/calendar/<token>.ics", endpoint="old_calendar", view_func=old_calendar)


def register_errorhandlers(app: Flask) -> None:
    # Imported when an app is built, not with the package (see the module docstring).
    from engage.api.problems import is_api_request, problem
    from engage.extensions import db
    from engage.security import signed_out_page

    messages = {
        400: ("Bad request", "The request could not be understood."),
        403: ("Not allowed", "Your role does not allow this action."),
        404: ("Not found", "There is no page at this address."),
        405: ("Method not allowed", "This address does not accept that kind of request."),
        413: ("Too large", "The upload is larger than the limit this server accepts."),
        429: ("Too many attempts", "Too many requests in a short time. Wait a minute and try again."),
        500: ("Something went wrong", "The error was logged. Nothing was saved."),
    }

    def render_error(code: int, detail: str | None = None, allow: list | None = None):
        if is_api_request():  # /api/v1/... outside any view (unknown path, method): problem details
            return problem(code, detail or messages[code][1], headers={"Allow": ", ".join(allow)} if allow else None)
        title, text = messages[code]
        return render_template("errors/error.html", code=code, title=title, text=detail or text), code

    for code in messages:
        if code in (400, 500):
            continue
        app.register_error_handler(code, lambda e, code=code: render_error(code, allow=getattr(e, "valid_methods", None)))

    @app.errorhandler(400)
    def bad_request(error):
        return render_error(400, getattr(error, "description", None))

    @app.errorhandler(CSRFError)
    def csrf_error(error):
        if request.endpoint == "auth.logout" and not current_user.is_authenticated:
            return signed_out_page()  # a Sign out button on a page whose session already ended
        return render_error(400, "The form expired or was not sent from this site. Reload the page and try again.")

    @app.errorhandler(500)
    def server_error(error):
        db.session.rollback()
        return render_error(500)


def register_template_helpers(app: Flask) -> None:
    # Imported when an app is built, not with the package (see the module docstring).
    from engage import formatting, web
    from engage.models import (
        Direction,
        Escalation,
        InboundStatus,
        InteractionKind,
        InvestorKind,
        LetterKind,
        LetterStatus,
        OutboxStatus,
        ReminderStatus,
        Role,
        Stage,
    )

    # Templates compare with the enums (`e.status == OutboxStatus.SENT.value`), never a bare string.
    for enum in (Direction, Escalation, InboundStatus, InteractionKind, InvestorKind, LetterKind, LetterStatus,
                 OutboxStatus, ReminderStatus, Role, Stage):
        app.jinja_env.globals[enum.__name__] = enum
    app.jinja_env.globals["timedelta"] = datetime.timedelta
    app.jinja_env.globals["refusals"] = web.refusals
    app.jinja_env.filters["date"] = formatting.format_date
    app.jinja_env.filters["datetime"] = formatting.format_datetime
    app.jinja_env.filters["month"] = formatting.format_month
    app.jinja_env.filters["money"] = formatting.money_on_page
    app.jinja_env.filters["score"] = formatting.format_score
    app.jinja_env.filters["counted"] = formatting.counted
    app.jinja_env.filters["label"] = formatting.label
    app.jinja_env.filters["markdown"] = formatting.markdown
    app.jinja_env.filters["as_options"] = formatting.as_options


def register_commands(app: Flask) -> None:
    # Imported when an app is built, not with the package (see the module docstring).
    from engage.cli import register

    register(app)
