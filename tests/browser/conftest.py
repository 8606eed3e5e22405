"""A real browser against a real WSGI server: Debian's Chromium driven by Playwright.

The app runs in a werkzeug server thread on a free loopback port over a temporary SQLite file
seeded with the demo data. Chromium is never downloaded: the tests use /usr/bin/chromium and
are skipped, saying so, when it (or the playwright package) is missing — unless
ENGAGE_REQUIRE_BROWSER=1 (set by .ci/run), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from tests.browser import axe

CHROMIUM = os.environ.get("ENGAGE_CHROMIUM", "/usr/bin/chromium")
PASSWORD = "browser journeys 2026"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def _browser_missing() -> str | None:
    import importlib.util

    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    return None


def pytest_collection_modifyitems(config, items):
    from tests.browser.axe import axe_missing

    required = os.environ.get("ENGAGE_REQUIRE_BROWSER") == "1"
    reason = _browser_missing()
    if reason is None:
        no_axe = axe_missing()
        if no_axe and required and any("browser" in item.keywords for item in items):
            raise pytest.UsageError(f"browser tests (with their accessibility scan) required but {no_axe}")
        if no_axe:
            for item in items:
                if "axe" in item.keywords:
                    item.add_marker(pytest.mark.skip(reason=f"accessibility scan skipped: {no_axe}"))
        return
    if required:
        raise pytest.UsageError(f"browser tests required but {reason}")
    marker = pytest.mark.skip(reason=f"browser tests skipped: {reason}")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(marker)


class LiveApp:
    """The served app (for journeys that also act on its database, e.g. a mail fetch) and its address."""

    def __init__(self, app, url: str):
        self.app, self.url = app, url


@pytest.fixture(scope="session")
def live_server(live_app) -> str:
    return live_app.url


@pytest.fixture(scope="session")
def live_app(tmp_path_factory):
    """The app with demo data, served by a real WSGI server on 127.0.0.1:<free port>."""
    from werkzeug.serving import make_server

    from config import TestConfig
    from engage import audit, create_app
    from engage.demo import load_demo
    from engage.extensions import db
    from engage.seeding import load_reference

    folder = tmp_path_factory.mktemp("browser")
    app = create_app(TestConfig, overrides={
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'engage.sqlite'}",
        "WTF_CSRF_ENABLED": True, "ATTACHMENT_DIR": str(folder / "attachments"),
    })
    with app.app_context(), audit.acting_as("seed"):
        from flask_migrate import upgrade

        upgrade()
        load_reference(Path(app.config["SEEDS_DIR"]))
        load_demo(PASSWORD)
        db.session.commit()
        db.session.remove()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield LiveApp(app, f"http://127.0.0.1:{server.server_port}")
    server.shutdown()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield instance
        instance.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory):
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture()
def page(browser, live_server, screenshots, request):
    """A fresh browser context; the test fails if any page logs a console error.

    `page.shot(name)` saves a screenshot of a key page and scans it with axe-core at 1280 and 390 px
    (tests/browser/axe.py): a serious or critical WCAG 2.1 A/AA violation there fails the test too.
    """
    context = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 900},
                                  accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.expected_statuses = set()  # a journey that submits bad input on purpose names the status

    def on_console(message):
        if message.type != "error":
            return
        if any(f"status of {status}" in message.text for status in page.expected_statuses):
            return
        errors.append(f"{page.url}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
    inaccessible: list[str] = []

    def shot(name: str) -> None:
        page.screenshot(path=str(screenshots / f"{request.node.name}-{name}.png"), full_page=True)
        report = axe.check_at_widths(page, f"{request.node.name} '{name}'")
        if report:
            inaccessible.append(report)

    page.shot = shot
    yield page
    context.close()
    assert errors == [], errors
    assert not inaccessible, "axe-core found serious or critical WCAG 2.1 A/AA violations:\n" + "\n".join(inaccessible)


def sign_in(page, email: str, password: str = PASSWORD) -> None:
    page.goto("/auth/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/")
