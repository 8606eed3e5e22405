"""Issue 20, break 3: the API's engagement carries the stored dates; a cached copy must not outlive them."""

from __future__ import annotations

from engage.engagements import stored
from engage.extensions import db
from tests.test_api import bearer, engagement, make_token  # noqa: F401  (fixtures)


def test_a_conditional_read_sees_a_new_reminder_and_contact(client, make_token, engagement):  # noqa: F811
    """GET with If-None-Match of the last read: after a reminder or an interaction is written (through
    the API), the engagement's next_follow_up/last_contact changed, so the answer must not be 304."""
    _, secret = make_token("analyst")
    url = f"/api/v1/engagements/{engagement.id}"
    first = client.get(url, headers=bearer(secret))
    assert first.status_code == 200 and first.json["next_follow_up"] is None and first.json["last_contact"] is None
    made = client.post("/api/v1/reminders", headers=bearer(secret),
                       json={"engagement_id": engagement.id, "due_on": "2026-06-20", "reason": "Chase reply"})
    assert made.status_code == 201, made.json
    again = client.get(url, headers={**bearer(secret), "If-None-Match": first.headers["ETag"]})
    assert again.status_code == 200 and again.json["next_follow_up"] == "2026-06-20"
    logged = client.post(f"{url}/interactions", headers=bearer(secret),
                         json={"kind": "call", "occurred_on": "2026-06-12", "subject": "Intro call"})
    assert logged.status_code == 201, logged.json
    third = client.get(url, headers={**bearer(secret), "If-None-Match": again.headers["ETag"]})
    assert third.status_code == 200 and third.json["last_contact"] == "2026-06-12"
    with db.engine.connect() as conn:
        assert stored.problems(conn) == []


def test_if_match_compares_the_version_not_the_figures(client, make_token, engagement):  # noqa: F811
    """A reminder written since the last read changes the ETag's figures part, not the version: a change
    sent with the older tag is still accepted; a tag of an older version is refused with 412."""
    _, secret = make_token("analyst")
    url = f"/api/v1/engagements/{engagement.id}"
    first = client.get(url, headers=bearer(secret))
    made = client.post("/api/v1/reminders", headers=bearer(secret),
                       json={"engagement_id": engagement.id, "due_on": "2026-06-20", "reason": "Chase reply"})
    assert made.status_code == 201, made.json
    assert client.get(url, headers=bearer(secret)).headers["ETag"] != first.headers["ETag"]
    changed = client.patch(url, headers={**bearer(secret), "If-Match": first.headers["ETag"]},
                           json={"objectives": "Map the value chain"})
    assert changed.status_code == 200, changed.json
    stale = client.patch(url, headers={**bearer(secret), "If-Match": first.headers["ETag"]},
                         json={"objectives": "Something else"})
    assert stale.status_code == 412
