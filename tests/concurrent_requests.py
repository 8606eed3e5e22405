"""Signed-in POSTs sent at the same time, in threads of one app or in separate processes.

Each request is held at its first write to the database (INSERT, UPDATE or DELETE) until every
request has reached that point, so all of them have read the same state (the same engagement
version, no claimed token) before any changes it: a true race, decided by the database alone.
Processes are separate interpreters with their own connection pools, like web workers.
"""

from __future__ import annotations

import threading

import sqlalchemy as sa

WRITES = ("INSERT", "UPDATE", "DELETE")


class _HoldFirstWrite:
    """An engine listener holding each armed thread's first write until every request has reached it."""

    def __init__(self, engine, barrier):
        self.engine, self.barrier, self.state = engine, barrier, threading.local()

    def __call__(self, conn, cursor, statement, *args):
        if getattr(self.state, "armed", False) and statement.lstrip().upper().startswith(WRITES):
            self.state.armed = False
            self.state.held = True
            self.barrier.wait(timeout=30)

    def __enter__(self):
        sa.event.listen(self.engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *exc):
        sa.event.remove(self.engine, "before_cursor_execute", self)


def _send(app, hold: _HoldFirstWrite, email: str, password: str, url: str, data: dict, multipart: bool) -> dict:
    """Sign in, then send the POST held at its first write; the answer and the page it leads to."""
    client = app.test_client()
    assert client.post("/auth/login", data={"email": email, "password": password}).status_code == 302
    hold.state.armed, hold.state.held = True, False
    try:
        response = client.post(url, data=dict(data), content_type="multipart/form-data" if multipart else None)
    finally:
        hold.state.armed = False
    location = response.headers.get("Location")
    page = client.get(location).get_data(as_text=True) if location else response.get_data(as_text=True)
    return {"status": response.status_code, "location": location, "page": page, "held": hold.state.held}


def post_in_process(database_url: str, email: str, password: str, url: str, data: dict, multipart: bool,
                    barrier, results) -> None:
    """Process target: its own app, engine and pool."""
    from config import TestConfig
    from engage import create_app
    from engage.extensions import db

    app = create_app(TestConfig, overrides={"SQLALCHEMY_DATABASE_URI": database_url})
    with app.app_context():
        engine = db.engine
    with _HoldFirstWrite(engine, barrier) as hold:
        results.put(_send(app, hold, email, password, url, data, multipart))


def post_in_threads(app, requests: list[tuple[str, str, str, dict, bool]]) -> list[dict]:
    """Send (email, password, url, data, multipart) requests from one thread each of the same app."""
    from engage.extensions import db

    barrier = threading.Barrier(len(requests))
    results: list[dict] = []
    errors: list[BaseException] = []

    def run(hold, request):
        try:
            results.append(_send(app, hold, *request))
        except BaseException as error:  # reported by the test, not lost in the thread
            errors.append(error)
            barrier.abort()

    with _HoldFirstWrite(db.engine, barrier) as hold:
        threads = [threading.Thread(target=run, args=(hold, request)) for request in requests]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    if errors:
        raise errors[0]
    return results
