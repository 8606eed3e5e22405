"""Configuration classes. Every setting can be overridden from the environment."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = BASE_DIR / "instance"


def env_bool(name: str, default: bool) -> bool:
    """Read a yes/no environment variable ("1", "true", "yes", "on" are true)."""
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:  # a typo in the environment must stop start-up loudly
        raise RuntimeError(f"environment variable {name} must be an integer, got {value!r}") from exc


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError as exc:
        raise RuntimeError(f"environment variable {name} must be a number, got {value!r}") from exc


def default_database_url() -> str:
    return f"sqlite:///{INSTANCE_DIR / 'engage.sqlite'}"


def database_url(value: str | None, default: str) -> str:
    """Use psycopg 3 for PostgreSQL URLs given in the usual postgres:// form."""
    if not value:
        return default
    for prefix in ("postgres://", "postgresql://"):
        if value.startswith(prefix):
            return "postgresql+psycopg://" + value[len(prefix):]
    return value


#: The public development key; production refuses it (see engage.check_config).
DEVELOPMENT_SECRET_KEY = "dev-only-change-me"


class Config:
    """Development defaults: a SQLite file in instance/, memory rate-limit storage."""

    #: True only for production: then a real SECRET_KEY is mandatory, whatever else is set.
    PRODUCTION = False
    SECRET_KEY = os.environ.get("SECRET_KEY", DEVELOPMENT_SECRET_KEY)
    SQLALCHEMY_DATABASE_URI = database_url(os.environ.get("DATABASE_URL"), default_database_url())
    SQLALCHEMY_ENGINE_OPTIONS: dict = {"pool_pre_ping": True}
    SQLALCHEMY_RECORD_QUERIES = env_bool("SQLALCHEMY_RECORD_QUERIES", False)

    #: Seconds SQLite waits on a locked database before giving up.
    SQLITE_BUSY_TIMEOUT_MS = env_int("SQLITE_BUSY_TIMEOUT_MS", 5000)

    MAX_CONTENT_LENGTH = env_int("MAX_CONTENT_LENGTH", 16 * 1024 * 1024)

    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
    PERMANENT_SESSION_LIFETIME = env_int("SESSION_LIFETIME_SECONDS", 8 * 3600)
    #: How long "Keep me signed in on this device" lasts.
    REMEMBER_COOKIE_DURATION = dt.timedelta(days=env_int("REMEMBER_COOKIE_DAYS", 30))

    WTF_CSRF_ENABLED = env_bool("WTF_CSRF_ENABLED", True)
    WTF_CSRF_TIME_LIMIT = env_int("WTF_CSRF_TIME_LIMIT", 8 * 3600)

    #: Flask-Limiter storage; use redis://host:6379/0 when several workers serve the app.
    RATELIMIT_STORAGE_URI = os.environ.get("RATELIMIT_STORAGE_URI", "memory://")
    #: Throttle sign-in attempts (Flask-Limiter); off only in tests that do not test it.
    LOGIN_THROTTLE = env_bool("LOGIN_THROTTLE", True)
    RATELIMIT_HEADERS_ENABLED = True
    #: Login attempts allowed per client address.
    LOGIN_RATE_LIMIT = os.environ.get("LOGIN_RATE_LIMIT", "10 per minute;50 per hour")
    #: Failed password checks for one account (per budget: its known browsers, all others)
    #: before its checks pause (0: never).
    LOGIN_BACKOFF_AFTER = env_int("LOGIN_BACKOFF_AFTER", 5)
    #: First pause in seconds; it doubles with each further failure...
    LOGIN_BACKOFF_SECONDS = env_int("LOGIN_BACKOFF_SECONDS", 30)
    #: ...up to this many seconds, never more.
    LOGIN_BACKOFF_MAX_SECONDS = env_int("LOGIN_BACKOFF_MAX_SECONDS", 15 * 60)
    #: Failures are forgotten this long after the first failure of their window.
    LOGIN_BACKOFF_WINDOW_SECONDS = env_int("LOGIN_BACKOFF_WINDOW_SECONDS", 4 * 3600)
    #: The signed cookie that marks a browser where an account signed in before, and its lifetime.
    KNOWN_BROWSER_COOKIE_NAME = "engage_browser"
    KNOWN_BROWSER_DAYS = env_int("KNOWN_BROWSER_DAYS", 365)

    #: Number of reverse proxies in front of the app whose X-Forwarded-For/-Proto to trust.
    PROXY_COUNT = env_int("PROXY_COUNT", 0)
    #: Force HTTPS redirects and HSTS (Flask-Talisman); on behind a TLS-terminating proxy.
    FORCE_HTTPS = env_bool("FORCE_HTTPS", False)

    MAIL_SERVER = os.environ.get("MAIL_SERVER", "localhost")
    MAIL_PORT = env_int("MAIL_PORT", 25)
    MAIL_USE_TLS = env_bool("MAIL_USE_TLS", False)
    MAIL_USERNAME = os.environ.get("MAIL_USERNAME")
    MAIL_PASSWORD = os.environ.get("MAIL_PASSWORD")
    MAIL_DEFAULT_SENDER = os.environ.get("MAIL_DEFAULT_SENDER", "engage@localhost")
    MAIL_TIMEOUT_SECONDS = env_int("MAIL_TIMEOUT_SECONDS", 20)
    #: How the outbox delivers: "file" writes each email to MAIL_FILE_DIR as an .eml (development),
    #: "smtp" sends it with the MAIL_* settings (production).
    MAIL_BACKEND = os.environ.get("MAIL_BACKEND", "file")
    #: Where the file backend writes (default: instance/mail).
    MAIL_FILE_DIR = os.environ.get("MAIL_FILE_DIR")
    #: The engagement mailbox: Reply-To of letters emailed from Engage, where company replies arrive.
    ENGAGE_MAILBOX_ADDRESS = os.environ.get("ENGAGE_MAILBOX_ADDRESS", "engagement@localhost")
    #: Delivery attempts before an email is marked failed (then retried only by an admin).
    MAIL_MAX_ATTEMPTS = env_int("MAIL_MAX_ATTEMPTS", 8)
    #: How long a claimed email is reserved for its sender; after that another drain retries it.
    OUTBOX_LEASE_SECONDS = env_int("OUTBOX_LEASE_SECONDS", 300)
    ENGAGE_BASE_URL = os.environ.get("ENGAGE_BASE_URL", "http://127.0.0.1:5000")
    #: Who receives the monthly status export on the 1st (comma-separated addresses).
    MONTHLY_EXPORT_RECIPIENTS = os.environ.get("MONTHLY_EXPORT_RECIPIENTS", "")
    #: Minutes between two reminder ticks of the scheduler.
    REMINDER_TICK_MINUTES = env_int("REMINDER_TICK_MINUTES", 5)

    #: The engagement mailbox, read over IMAP by `flask mail fetch` and the scheduler (off while
    #: IMAP_HOST is empty). IMAP_SECURITY: ssl (implicit TLS, port 993), starttls (port 143 upgraded)
    #: or none (plain text: only to a loopback host, or in development).
    IMAP_HOST = os.environ.get("IMAP_HOST", "")
    IMAP_PORT = env_int("IMAP_PORT", 0)  # 0: 993 for ssl, 143 otherwise
    IMAP_USER = os.environ.get("IMAP_USER", "")
    IMAP_PASSWORD = os.environ.get("IMAP_PASSWORD", "")
    IMAP_FOLDER = os.environ.get("IMAP_FOLDER", "INBOX")
    IMAP_SECURITY = os.environ.get("IMAP_SECURITY", "ssl")
    IMAP_TIMEOUT_SECONDS = env_int("IMAP_TIMEOUT_SECONDS", 60)
    #: Minutes between two reads of the mailbox by the scheduler.
    MAIL_FETCH_MINUTES = env_int("MAIL_FETCH_MINUTES", 5)
    #: The engagement mailbox's own address (letters' Reply-To; left out when matching recipients).
    ENGAGE_MAILBOX_ADDRESS = os.environ.get("ENGAGE_MAILBOX_ADDRESS", "")
    #: Largest message read whole; a larger one goes to triage with its header only.
    MAIL_MAX_BYTES = env_int("MAIL_MAX_BYTES", 25 * 1024 * 1024)

    PAGE_SIZE = env_int("PAGE_SIZE", 50)
    #: Largest holdings file accepted by the CLI (web uploads: HOLDINGS_MAX_UPLOAD_MB).
    HOLDINGS_MAX_BYTES = env_int("HOLDINGS_MAX_BYTES", 50 * 1024 * 1024)
    #: Largest list file accepted by the CLI (the whole Consolidated Screening List is about 30 MB);
    #: web uploads: LISTS_MAX_UPLOAD_MB.
    MAX_LIST_FILE_BYTES = env_int("MAX_LIST_FILE_BYTES", 100 * 1024 * 1024)
    #: Largest list file the web upload accepts, in MB (its own limit, above MAX_CONTENT_LENGTH).
    LISTS_MAX_UPLOAD_MB = env_int("LISTS_MAX_UPLOAD_MB", 64)
    #: An uploaded list file of at least this many bytes is read and previewed by a background job,
    #: not in the request (1 MB: about 5,000 entries of the Consolidated Screening List's CSV).
    LISTS_PREVIEW_JOB_BYTES = env_int("LISTS_PREVIEW_JOB_BYTES", 1_000_000)
    #: Rows of a holdings table (cash and derivatives included) and columns of any row; larger files are refused.
    HOLDINGS_MAX_ROWS = env_int("HOLDINGS_MAX_ROWS", 250_000)
    #: Largest holdings file the web upload accepts, in MB (its own limit, above MAX_CONTENT_LENGTH:
    #: a 200,000-row monthly file is about 35 MB; its reading and import run as background jobs).
    HOLDINGS_MAX_UPLOAD_MB = env_int("HOLDINGS_MAX_UPLOAD_MB", 64)
    #: An uploaded holdings file of at least this many bytes is read and previewed by a background
    #: job, not in the request (1 MB: about 5,000 rows of a provider's CSV).
    HOLDINGS_PREVIEW_JOB_BYTES = env_int("HOLDINGS_PREVIEW_JOB_BYTES", 1_000_000)
    HOLDINGS_MAX_COLUMNS = env_int("HOLDINGS_MAX_COLUMNS", 100)
    #: Bytes an XLSX holdings file may unpack to (a small zip can hold a huge sheet).
    HOLDINGS_MAX_UNZIPPED_BYTES = env_int("HOLDINGS_MAX_UNZIPPED_BYTES", 100 * 1024 * 1024)
    #: A whole-fund file's weights add up to at least this many percent; less means rows are missing.
    HOLDINGS_MIN_WEIGHT_TOTAL = env_int("HOLDINGS_MIN_WEIGHT_TOTAL", 90)
    #: Holdings imports run one at a time; one waits this many seconds for another, then is refused.
    HOLDINGS_IMPORT_WAIT_SECONDS = env_int("HOLDINGS_IMPORT_WAIT_SECONDS", 120)
    #: A confirmation's claim on a stashed upload older than this was left by a confirmation that died;
    #: it can be claimed again (longer than the wait above plus the longest import).
    HOLDINGS_CONFIRM_LEASE_SECONDS = env_int("HOLDINGS_CONFIRM_LEASE_SECONDS", 600)
    #: The job queue (engage.background): empty is an SQLite file in the instance folder (no other
    #: service); postgresql://... or redis://... for several machines; memory:// for one process.
    JOBS_URL = os.environ.get("JOBS_URL", "")
    #: A job that fails (not refused) is tried again this many times, this many seconds apart.
    JOBS_RETRIES = env_int("JOBS_RETRIES", 2)
    JOBS_RETRY_SECONDS = env_int("JOBS_RETRY_SECONDS", 10)
    #: A confirmed holdings import of at least this many rows runs as a background job.
    HOLDINGS_JOB_ROWS = env_int("HOLDINGS_JOB_ROWS", 5_000)
    #: A confirmed list import of at least this many entries (saved, then every company screened) runs as a job.
    LISTS_JOB_ENTRIES = env_int("LISTS_JOB_ENTRIES", 2_000)
    #: A letter batch of at least this many letters is prepared (PDF and DOCX, then its ZIP) and
    #: emailed by a background job; a smaller one in the web request.
    LETTERS_JOB_LETTERS = env_int("LETTERS_JOB_LETTERS", 25)
    #: A monthly export from the Exports page of at least this many engagements is made by a job
    #: into a stored file; a smaller one is downloaded at once.
    EXPORT_JOB_ENGAGEMENTS = env_int("EXPORT_JOB_ENGAGEMENTS", 3_000)
    #: Seconds the web reads a PDF map's tables before refusing it (the command line takes up to 120).
    VALUECHAIN_WEB_PDF_SECONDS = env_int("VALUECHAIN_WEB_PDF_SECONDS", 20)
    #: A whole or partial file's weights add up to at most this many percent; more means rows counted twice.
    HOLDINGS_MAX_WEIGHT_TOTAL = env_int("HOLDINGS_MAX_WEIGHT_TOTAL", 101)
    #: Bytes the shared strings of an XLSX file may unpack to, and how many strings it may have.
    HOLDINGS_MAX_SHARED_STRINGS_BYTES = env_int("HOLDINGS_MAX_SHARED_STRINGS_BYTES", 64 * 1024 * 1024)
    HOLDINGS_MAX_SHARED_STRINGS = env_int("HOLDINGS_MAX_SHARED_STRINGS", 1_000_000)
    #: Import previews never confirmed are deleted after this many hours (housekeeping job).
    UPLOAD_MAX_AGE_HOURS = env_int("UPLOAD_MAX_AGE_HOURS", 24)
    #: Files under instance/cache/ (rendered documents) are deleted after this many days.
    CACHE_MAX_AGE_DAYS = env_int("CACHE_MAX_AGE_DAYS", 7)
    #: The stored results of background jobs (exports, letter ZIPs) finished more than this many days
    #: ago are deleted, and the job says its result has expired (housekeeping, `flask jobs clean`).
    JOB_RESULTS_KEEP_DAYS = env_int("JOB_RESULTS_KEEP_DAYS", 30)
    #: Largest single attachment in bytes; the whole request is capped by MAX_CONTENT_LENGTH.
    ATTACHMENT_MAX_BYTES = env_int("ATTACHMENT_MAX_BYTES", 10 * 1024 * 1024)
    #: Where attachments are stored (default: instance/attachments).
    ATTACHMENT_DIR = os.environ.get("ATTACHMENT_DIR")
    #: Points on 0-100 by which two scorers of one response may differ before it is flagged.
    MODERATION_THRESHOLD = env_int("MODERATION_THRESHOLD", 15)
    #: Engagements with no contact for this many days are listed on the dashboard.
    STALE_AFTER_DAYS = env_int("STALE_AFTER_DAYS", 90)
    #: The dashboard's counts over whole tables (engage.main.figures) are counted by the scheduler
    #: every this many seconds and stored; the page shows how old they are (0: no such job, then
    #: the requests count them when they are older than DASHBOARD_MAX_AGE_SECONDS).
    DASHBOARD_REFRESH_SECONDS = env_int("DASHBOARD_REFRESH_SECONDS", 120)
    #: Stored counts older than this (the scheduler is down) are counted again by the next page
    #: request, which stores them; 0: always counted in the request, never stored.
    DASHBOARD_MAX_AGE_SECONDS = env_int("DASHBOARD_MAX_AGE_SECONDS", 900)
    #: The dashboard's "Count again" button does nothing when the counts are younger than this.
    DASHBOARD_COUNT_AGAIN_SECONDS = env_int("DASHBOARD_COUNT_AGAIN_SECONDS", 30)
    SEEDS_DIR = os.environ.get("ENGAGE_SEEDS_DIR", str(BASE_DIR / "seeds"))

    #: Hard budget of one letter's template render (subject and body), in a worker process.
    TEMPLATE_RENDER_SECONDS = env_float("TEMPLATE_RENDER_SECONDS", 2.0)
    TEMPLATE_RENDER_MEMORY_MB = env_int("TEMPLATE_RENDER_MEMORY_MB", 256)
    #: Hard budget of a bulk generation's renders in all.
    TEMPLATE_BATCH_SECONDS = env_float("TEMPLATE_BATCH_SECONDS", 30.0)
    #: Hard budget of one letter's PDF or DOCX, in a worker process.
    DOCUMENT_RENDER_SECONDS = env_float("DOCUMENT_RENDER_SECONDS", 20.0)
    DOCUMENT_RENDER_MEMORY_MB = env_int("DOCUMENT_RENDER_MEMORY_MB", 512)
    #: Most seconds one request (a batch's ZIP) spends rendering documents in all.
    DOCUMENT_BATCH_SECONDS = env_float("DOCUMENT_BATCH_SECONDS", 60.0)
    #: Longest letter, in lines (letterhead, text and signatories), refused before any rendering.
    LETTER_MAX_LINES = env_int("LETTER_MAX_LINES", 1000)
    #: Rendered PDFs and DOCX files, one per letter version (default: instance/cache/letters).
    DOCUMENT_CACHE_DIR = os.environ.get("DOCUMENT_CACHE_DIR")

    #: The JSON API (engage.api): its OpenAPI document's title and versions (flask-smorest).
    API_TITLE = "Engage API"
    API_VERSION = "v1"
    OPENAPI_VERSION = "3.1.0"
    #: Requests per token (per client address without one) to /api/v1/, Flask-Limiter syntax.
    API_RATE_LIMIT = os.environ.get("API_RATE_LIMIT", "120 per minute;5000 per hour")
    #: The longest life a personal access token may be given, in days.
    API_TOKEN_MAX_DAYS = env_int("API_TOKEN_MAX_DAYS", 366)
    #: Rows per page of an API list when `per_page` is not given, and the most it may ask for.
    API_PAGE_SIZE = env_int("API_PAGE_SIZE", 50)
    API_MAX_PAGE_SIZE = env_int("API_MAX_PAGE_SIZE", 500)


class TestConfig(Config):
    """Isolated settings for the test suite; the database comes from TEST_DATABASE_URL."""

    TESTING = True
    SECRET_KEY = "test-secret-key"
    SQLALCHEMY_DATABASE_URI = database_url(os.environ.get("TEST_DATABASE_URL"), "sqlite://")
    WTF_CSRF_ENABLED = False
    LOGIN_THROTTLE = False
    RATELIMIT_STORAGE_URI = "memory://"
    MAIL_SERVER = "127.0.0.1"
    MAIL_PORT = 0
    MAIL_BACKEND = "smtp"
    JOBS_URL = "memory://"
    #: Tests read the dashboard right after an action: counted in the request (tests of the stored
    #: figures set a maximum age themselves).
    DASHBOARD_MAX_AGE_SECONDS = 0


class ProductionConfig(Config):
    """Production: a real secret key is mandatory and cookies travel over HTTPS only."""

    PRODUCTION = True

    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    REMEMBER_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    FORCE_HTTPS = env_bool("FORCE_HTTPS", True)
    MAIL_BACKEND = os.environ.get("MAIL_BACKEND", "smtp")
    SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True, "pool_recycle": 1800}


#: What ENGAGE_ENV may choose in wsgi.py. TestConfig (public key, CSRF and throttling off,
#: TEST_DATABASE_URL) is for the test suite only and cannot be served.
CONFIGS = {"development": Config, "production": ProductionConfig}
