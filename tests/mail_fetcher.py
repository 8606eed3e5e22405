"""Run in separate processes by test_mailbox: one `mail fetch` each, started together."""

from __future__ import annotations


def run_fetch(database_url: str, settings: dict, barrier, results) -> None:
    from config import TestConfig
    from engage import audit, create_app
    from engage.mailbox.service import fetch

    app = create_app(TestConfig, overrides={"SQLALCHEMY_DATABASE_URI": database_url, **settings})
    with app.app_context(), audit.acting_as("test-fetcher"):
        barrier.wait(timeout=30)
        result = fetch()
        results.put((len(result.filed), len(result.triaged), result.duplicates, result.errors))
