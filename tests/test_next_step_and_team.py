"""The next step of an engagement (edited with it, validated, audited, shown) and the dashboard's team view."""

import datetime as dt
import re

import pytest
import sqlalchemy as sa

from engage.engagements import cycle
from engage.extensions import db
from engage.models import AuditEvent, Engagement, Interaction, Reminder
from tests import factories


def version_of(engagement_id: int) -> str:
    db.session.expire_all()
    return str(db.session.get(Engagement, engagement_id).version)


def edit(client, engagement, **fields):
    data = {"owner_id": engagement.owner_id or "", "objectives": "Map the supplier list",
            "next_step": "", "next_step_on": "", "version": version_of(engagement.id)}
    data.update(fields)
    return client.post(f"/engagements/{engagement.id}/edit", data=data)


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# --- next step ---------------------------------------------------------------------------------


def test_next_step_is_saved_with_the_engagement_audited_and_shown(client, login_as, frozen_today):
    me = login_as("analyst")
    engagement = factories.engagement(owner=me, company=factories.company("Hoshine Silicon"))
    response = edit(client, engagement, next_step="  Call IR about\nthe supplier list ", next_step_on="2026-06-19")
    assert response.status_code == 302
    db.session.expire_all()
    saved = db.session.get(Engagement, engagement.id)
    assert (saved.next_step, saved.next_step_on) == ("Call IR about the supplier list", dt.date(2026, 6, 19))
    event = db.session.scalar(sa.select(AuditEvent).where(
        AuditEvent.object_type == "Engagement", AuditEvent.object_id == engagement.id, AuditEvent.action == "update"))
    assert event.changes["next_step"] == ["", "Call IR about the supplier list"]
    assert event.changes["next_step_on"][1] == "2026-06-19" and event.actor_id == me.id

    page = text_of(client.get(f"/engagements/{engagement.id}").get_data(as_text=True))
    assert "Next step Call IR about the supplier list by 19 Jun 2026" in page
    listing = text_of(client.get("/engagements").get_data(as_text=True))
    assert "Call IR about the supplier list by 19 Jun 2026" in listing
    dashboard = text_of(client.get("/").get_data(as_text=True))
    assert "19 Jun 2026 · Hoshine Silicon — Call IR about the supplier list" in dashboard

    # clearing both is allowed: no next step
    assert edit(client, saved, next_step="", next_step_on="").status_code == 302
    db.session.expire_all()
    assert (db.session.get(Engagement, engagement.id).next_step, saved.next_step_on) == ("", None)


@pytest.mark.parametrize("fields, field, message", [
    ({"next_step": "", "next_step_on": "2026-07-01"}, "next_step", "Say what the next step is, or clear its date."),
    ({"next_step": "   ", "next_step_on": "2026-07-01"}, "next_step", "Say what the next step is, or clear its date."),
    ({"next_step": "Call", "next_step_on": "2025-12-31"}, "next_step_on",
     "31 Dec 2025 is before the engagement was opened (05 Jan 2026)."),
    ({"next_step": "Call", "next_step_on": "2062-06-01"}, "next_step_on", "01 Jun 2062 is more than three years ahead"),
    ({"next_step": "Call", "next_step_on": "1900-01-01"}, "next_step_on", "outside the dates Engage accepts"),
    ({"next_step": "Call", "next_step_on": "tomorrow"}, "next_step_on", "is not a date; write it as YYYY-MM-DD"),
    ({"next_step": "x" * 201, "next_step_on": ""}, "next_step", "The next step is 201 characters long; keep it to 200."),
])
def test_a_bad_next_step_is_refused_with_its_reason_and_nothing_is_saved(client, login_as, frozen_today,
                                                                          fields, field, message):
    me = login_as("analyst")
    engagement = factories.engagement(owner=me, objectives="before")
    before = version_of(engagement.id)
    response = edit(client, engagement, objectives="changed", **fields)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert message in page
    # the edit form's ids carry its prefix (several forms on the page have a date or a note)
    assert re.search(rf'id="edit-{field}"[^>]*aria-invalid="true"|aria-invalid="true"[^>]*id="edit-{field}"', page), field
    db.session.expire_all()
    saved = db.session.get(Engagement, engagement.id)
    assert (saved.objectives, saved.next_step, saved.next_step_on, str(saved.version)) == ("before", "", None, before)


def test_a_next_step_from_a_stale_form_is_refused(client, login_as, frozen_today):
    me = login_as("analyst")
    engagement = factories.engagement(owner=me)
    seen = version_of(engagement.id)
    assert edit(client, engagement, next_step="First", next_step_on="2026-06-20").status_code == 302
    stale = client.post(f"/engagements/{engagement.id}/edit", data={
        "owner_id": me.id, "objectives": "", "next_step": "Second", "next_step_on": "2026-06-21", "version": seen})
    assert stale.status_code == 409
    db.session.expire_all()
    assert db.session.get(Engagement, engagement.id).next_step == "First"


def test_viewers_cannot_set_a_next_step(client, login_as, frozen_today):
    login_as("viewer")
    engagement = factories.engagement()
    assert edit(client, engagement, next_step="Call", next_step_on="2026-06-20").status_code == 403


# --- team view ---------------------------------------------------------------------------------


def team_rows(client) -> dict[str, list[str]]:
    html = client.get("/").get_data(as_text=True)
    section = html.split('id="team-title"')[1].split("</table>")[0]
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", section, re.S):
        cells = [text_of(c).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
        if cells and cells[0] not in ("Owner", "This month"):  # the two header rows
            rows[cells[0]] = cells[1:]
    return rows


def test_team_view_counts_per_owner_and_the_change_since_last_month(client, login_as, make_user, frozen_today):
    # today is 15 Jun 2026: this month is 1-15 Jun, compared with 1-15 May
    lead = login_as("viewer")
    ada, bo = make_user("analyst"), make_user("analyst")
    make_user("analyst", active=False)  # an inactive user with nothing is not listed
    a1 = factories.engagement(owner=ada, opened_on=dt.date(2026, 4, 1))
    a2 = factories.engagement(owner=ada, opened_on=dt.date(2026, 4, 1))
    b1 = factories.engagement(owner=bo, opened_on=dt.date(2026, 4, 1))
    loose = factories.engagement(opened_on=dt.date(2026, 4, 1))
    today = frozen_today
    # forward moves: Ada 2 in June (one of them later moved back: the back move is not forward), 1 in May
    cycle.move_stage(a1, "mapping_requested", on=dt.date(2026, 5, 10), today=today, actor_id=None)
    cycle.move_stage(a1, "acknowledged", on=dt.date(2026, 6, 2), today=today, actor_id=None)
    cycle.move_stage(a2, "mapping_requested", on=dt.date(2026, 6, 3), today=today, actor_id=None)
    cycle.move_stage(a2, "identified", on=dt.date(2026, 6, 4), today=today, actor_id=None, reason="sent in error")
    # a May move after the 15th is outside the comparison period; a closing is not a forward move
    cycle.move_stage(b1, "mapping_requested", on=dt.date(2026, 5, 20), today=today, actor_id=None)
    closed = factories.engagement(owner=bo, opened_on=dt.date(2026, 4, 1))
    cycle.move_stage(closed, "closed", on=dt.date(2026, 6, 5), today=today, actor_id=None, outcome="dropped")
    a1.next_step, a1.next_step_on = "Call", dt.date(2026, 6, 10)  # overdue: counts as due
    a2.next_step, a2.next_step_on = "Write", dt.date(2026, 6, 22)  # 7 days ahead: due
    b1.next_step, b1.next_step_on = "Later", dt.date(2026, 6, 23)  # 8 days ahead: not yet
    db.session.add_all([
        Reminder(engagement=a1, due_on=dt.date(2026, 6, 1), reason="late"),
        Reminder(engagement=a1, due_on=dt.date(2026, 6, 14), reason="late", status="snoozed"),
        Reminder(engagement=a1, due_on=dt.date(2026, 6, 1), reason="done", status="done"),
        Reminder(engagement=b1, due_on=dt.date(2026, 6, 15), reason="due today, not overdue"),
        Reminder(engagement=loose, due_on=dt.date(2026, 5, 1), reason="nobody's"),
        Interaction(engagement=b1, kind="email", direction="outbound", occurred_on=dt.date(2026, 6, 2)),
        Interaction(engagement=b1, kind="call", direction="outbound", occurred_on=dt.date(2026, 5, 2)),
        Interaction(engagement=b1, kind="call", direction="outbound", occurred_on=dt.date(2026, 5, 3)),
        Interaction(engagement=b1, kind="note", direction="internal", occurred_on=dt.date(2026, 6, 3)),
    ])
    db.session.commit()
    rows = team_rows(client)
    # open, overdue reminders, next steps due, forward moves (this month (change), last), contacts (same)
    assert rows[ada.name] == ["2", "2", "2", "2 (+1)", "1", "0 (+0)", "0"]
    assert rows[bo.name] == ["1", "0", "0", "0 (+0)", "0", "1 (-1)", "2"]
    assert rows["Unassigned"] == ["1", "1", "0", "0 (+0)", "0", "0 (+0)", "0"]
    assert rows["Team"] == ["4", "3", "2", "2 (+1)", "1", "1 (-1)", "2"]
    assert lead.name not in rows and len(rows) == 4  # viewers own nothing; the inactive analyst had nothing
    page = text_of(client.get("/").get_data(as_text=True))
    assert "3 overdue follow-ups" in page  # the tile: the team total of the same definition
    assert "this month is 01 Jun 2026 – 15 Jun 2026, last month the same days (01 May 2026 – 15 May 2026)" in page


def test_dashboard_queries_do_not_grow_with_owners_or_engagements(client, login_as, make_user, frozen_today,
                                                                    count_queries):
    login_as("viewer")

    def add(n):
        for _ in range(n):
            owner = make_user("analyst")
            engagement = factories.engagement(owner=owner, opened_on=dt.date(2026, 4, 1))
            engagement.next_step, engagement.next_step_on = "Call", dt.date(2026, 6, 16)
            cycle.move_stage(engagement, "mapping_requested", on=dt.date(2026, 6, 2), today=frozen_today,
                             actor_id=None)
            db.session.add(Reminder(engagement=engagement, due_on=dt.date(2026, 6, 1), reason="late"))
        db.session.commit()

    add(1)
    client.get("/")
    with count_queries() as few:
        assert client.get("/").status_code == 200
    add(5)
    with count_queries() as many:
        assert client.get("/").status_code == 200
    assert many.count == few.count
