"""Run in separate processes by test_reminders: one reminders tick each, started together."""

from __future__ import annotations

import datetime as dt


def run_tick(database_url: str, smtp_port: int, now_iso: str, barrier, results) -> None:
    from config import TestConfig
    from engage import create_app
    from engage.reminders.service import tick

    app = create_app(TestConfig, overrides={"SQLALCHEMY_DATABASE_URI": database_url, "MAIL_PORT": smtp_port,
                                            "MAIL_SERVER": "127.0.0.1"})
    with app.app_context():
        barrier.wait(timeout=30)
        result = tick(dt.datetime.fromisoformat(now_iso))
        results.put((result.reminders_notified, len(result.drain.sent)))
