"""Engagements through the web: opening, moving, logging, attachments, stale edits, roles."""

import datetime as dt
import io
import re

import sqlalchemy as sa

from engage.extensions import db
from engage.models import Attachment, Engagement, EngagementEvent, Interaction
from tests import factories

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def version_of(engagement_id: int) -> str:
    db.session.expire_all()
    return str(db.session.get(Engagement, engagement_id).version)


def post_stage(client, engagement_id, target, on="2026-06-10", **extra):
    data = {"target": target, "occurred_on": on, "version": version_of(engagement_id)}
    data.update(extra)
    return client.post(f"/engagements/{engagement_id}/stage", data=data)


def post_escalation(client, engagement_id, target, on="2026-06-10", **extra):
    data = {"target": target, "occurred_on": on, "version": version_of(engagement_id)}
    data.update(extra)
    return client.post(f"/engagements/{engagement_id}/escalation", data=data)


def log(client, engagement_id, **fields):
    data = {"kind": "email", "direction": "outbound", "occurred_on": "2026-06-10", "subject": "Hello",
            "summary": "", "participants": "", "move_to": "", "version": version_of(engagement_id)}
    data.update(fields)
    return client.post(f"/engagements/{engagement_id}/interactions", data=data, content_type="multipart/form-data")


def test_analyst_takes_a_company_through_the_whole_cycle(client, login_as, frozen_today):
    analyst = login_as("analyst")
    company = factories.company("Cycle Test Textiles Co., Ltd.", sector="Textiles")
    campaign = factories.campaign()
    db.session.commit()
    response = client.post(f"/engagements/open/{company.id}", data={
        "campaign_id": campaign.id, "owner_id": analyst.id, "opened_on": "2026-01-10",
        "objectives": "Get a **map** of cotton suppliers."})
    assert response.status_code == 302
    engagement = db.session.scalar(sa.select(Engagement).where(Engagement.company_id == company.id))
    eid = engagement.id
    assert engagement.stage == "identified" and engagement.owner_id == analyst.id

    assert log(client, eid, kind="letter", occurred_on="2026-01-15", subject="Initial letter").status_code == 302
    assert post_stage(client, eid, "mapping_requested", on="2026-01-15", note="letter sent").status_code == 302
    assert log(client, eid, kind="response", direction="inbound", occurred_on="2026-02-10", subject="Reply",
               move_to="acknowledged").status_code == 302
    db.session.expire_all()
    assert db.session.get(Engagement, eid).stage == "acknowledged"
    assert post_escalation(client, eid, "follow_up", on="2026-03-01").status_code == 302
    assert post_escalation(client, eid, "observation", on="2026-03-20", note="placed on watch list").status_code == 302
    for stage, on in [("value_chain_mapped", "2026-04-01"), ("disengaging", "2026-05-01"), ("disclosed", "2026-06-01")]:
        assert post_stage(client, eid, stage, on=on, evidence_url="https://example.org/report").status_code == 302
    assert post_stage(client, eid, "closed", on="2026-06-12", outcome="resolved").status_code == 302

    db.session.expire_all()
    engagement = db.session.get(Engagement, eid)
    assert (engagement.stage, engagement.escalation, engagement.outcome) == ("closed", "observation", "resolved")
    kinds = [e.kind for e in db.session.scalars(sa.select(EngagementEvent).where(EngagementEvent.engagement_id == eid)
                                                 .order_by(EngagementEvent.id))]
    assert kinds == ["stage", "stage", "escalation", "escalation", "stage", "stage", "stage", "close"]

    page = client.get(f"/engagements/{eid}").get_data(as_text=True)
    assert "Closed</strong> — Resolved" in page
    assert "Escalation</strong> Follow up → Observation" in page
    assert "<strong>map</strong>" in page  # objectives rendered as Markdown
    assert page.index("12 Jun 2026") < page.index("15 Jan 2026")  # newest first
    assert "Reopen" in page and "Log an interaction" not in page  # closed: only reopening offered
    dashboard = client.get("/").get_data(as_text=True)
    assert "Closed: 1" in dashboard
    listing = client.get("/engagements?stage=closed").get_data(as_text=True)
    assert "Cycle Test Textiles" in listing


def test_ui_offers_only_allowed_moves(client, login_as):
    login_as("analyst")
    engagement = factories.engagement(stage="acknowledged", escalation="collective")
    page = client.get(f"/engagements/{engagement.id}").get_data(as_text=True)
    stage_options = re.findall(r'<option (?:selected )?value="([a-z_]+)"', page.split('id="stage"')[1].split("</form>")[0])
    assert "acknowledged" not in stage_options and "identified" in stage_options and "closed" in stage_options
    escalation_options = re.findall(r'<option (?:selected )?value="([a-z_]+)"', page.split('id="escalation"')[1].split("</form>")[0])
    assert "collective" not in escalation_options
    assert {"none", "observation", "divested"} <= set(escalation_options)


def test_refused_moves_write_nothing(client, login_as, frozen_today):
    login_as("analyst")
    engagement = factories.engagement(stage="acknowledged")
    eid = engagement.id
    cases = [
        (post_stage(client, eid, "identified"), "give a reason"),
        (post_stage(client, eid, "closed"), "Closing needs an outcome"),
        (post_stage(client, eid, "disengaging", on="2026-07-01"), "is in the future"),
        (post_stage(client, eid, "acknowledged"), "Not a valid choice"),
        (post_escalation(client, eid, "none"), "Not a valid choice"),
    ]
    for response, message in cases:
        assert response.status_code == 422
        assert message in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Engagement, eid).stage == "acknowledged"
    assert db.session.scalar(sa.select(sa.func.count(EngagementEvent.id))) == 0


def test_duplicate_open_engagement_is_refused(client, login_as):
    analyst = login_as("analyst")
    engagement = factories.engagement()
    response = client.post(f"/engagements/open/{engagement.company_id}", data={
        "campaign_id": engagement.campaign_id, "owner_id": analyst.id, "opened_on": "2026-01-10"})
    assert response.status_code == 422
    assert "already has an open engagement" in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count(Engagement.id))) == 1


def test_future_opening_date_is_refused(client, login_as, frozen_today):
    analyst = login_as("analyst")
    company, campaign = factories.company(), factories.campaign()
    db.session.commit()
    response = client.post(f"/engagements/open/{company.id}", data={
        "campaign_id": campaign.id, "owner_id": analyst.id, "opened_on": "2026-07-01"})
    assert response.status_code == 422 and "in the future" in response.get_data(as_text=True)


def test_stale_edit_is_refused_and_shows_what_changed(client, login_as, app, make_user):
    me = login_as("analyst")
    other_user = make_user("analyst", email="colleague@example.org")
    engagement = factories.engagement(owner=me, objectives="original")
    eid, seen = engagement.id, version_of(engagement.id)
    other = app.test_client()
    other.post("/auth/login", data={"email": other_user.email, "password": "correct horse battery staple"})
    first = other.post(f"/engagements/{eid}/escalation",
                       data={"target": "follow_up", "occurred_on": "2026-01-20", "version": seen})
    assert first.status_code == 302
    second = client.post(f"/engagements/{eid}/edit", data={"owner_id": me.id, "objectives": "mine", "version": seen})
    assert second.status_code == 409
    page = second.get_data(as_text=True)
    assert "someone else changed this engagement" in page
    assert "colleague@example.org" in page and "Follow up" in page
    assert "mine</textarea>" in page  # the user's input is kept
    db.session.expire_all()
    assert db.session.get(Engagement, eid).objectives == "original"
    retry = client.post(f"/engagements/{eid}/edit", data={"owner_id": me.id, "objectives": "mine",
                                                         "version": version_of(eid)})
    assert retry.status_code == 302
    db.session.expire_all()
    assert db.session.get(Engagement, eid).objectives == "mine"


def test_stale_stage_move_is_refused(client, login_as):
    login_as("analyst")
    engagement = factories.engagement()
    seen = version_of(engagement.id)
    assert client.post(f"/engagements/{engagement.id}/stage", data={
        "target": "mapping_requested", "occurred_on": "2026-01-20", "version": seen}).status_code == 302
    again = client.post(f"/engagements/{engagement.id}/stage", data={
        "target": "acknowledged", "occurred_on": "2026-01-21", "version": seen})
    assert again.status_code == 409
    db.session.expire_all()
    assert db.session.get(Engagement, engagement.id).stage == "mapping_requested"


def test_interaction_dates_and_markdown(client, login_as, frozen_today):
    login_as("analyst")
    engagement = factories.engagement()
    eid = engagement.id
    future = log(client, eid, kind="call", occurred_on="2026-06-20")
    assert future.status_code == 422 and "only meetings can be planned" in future.get_data(as_text=True)
    assert log(client, eid, kind="meeting", occurred_on="2026-06-20", subject="AGM side meeting").status_code == 302
    assert log(client, eid, kind="note", direction="internal",
               summary="<script>alert('x')</script> and [bad](javascript:alert(1)) and *fine*").status_code == 302
    page = client.get(f"/engagements/{eid}").get_data(as_text=True)
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert 'href="javascript:' not in page
    assert "<em>fine</em>" in page
    assert "planned" in page
    assert db.session.scalar(sa.select(sa.func.count(Interaction.id))) == 2


def test_attachments_upload_download_and_refusals(client, login_as, app, tmp_path):
    app.config["ATTACHMENT_DIR"] = str(tmp_path)
    try:
        login_as("analyst")
        engagement = factories.engagement()
        eid = engagement.id
        ok = log(client, eid, attachments=[(io.BytesIO(PDF), "reply letter.pdf")])
        assert ok.status_code == 302
        attachment = db.session.scalar(sa.select(Attachment))
        assert attachment.filename == "reply letter.pdf" and attachment.size_bytes == len(PDF)  # issue 13: name kept
        assert (tmp_path / attachment.stored_name).read_bytes() == PDF
        download = client.get(f"/engagements/attachments/{attachment.id}")
        assert download.status_code == 200 and download.data == PDF
        assert "attachment" in download.headers["Content-Disposition"]
        assert app.test_client().get(f"/engagements/attachments/{attachment.id}").status_code == 302  # signed out

        refused = [
            (log(client, eid, attachments=[(io.BytesIO(b"MZ\x90\x00"), "tool.exe")]), "not accepted"),
            (log(client, eid, attachments=[(io.BytesIO(b"hello"), "fake.pdf")]), "not a .pdf file"),
            (log(client, eid, attachments=[(io.BytesIO(b"\xff\xfe bad"), "notes.txt")]), "not a UTF-8 text file"),
        ]
        app.config["ATTACHMENT_MAX_BYTES"] = 1024
        refused.append((log(client, eid, attachments=[(io.BytesIO(b"%PDF-" + b"x" * 2048), "big.pdf")]), "limit"))
        for response, message in refused:
            assert response.status_code == 422
            assert message in response.get_data(as_text=True)
        assert db.session.scalar(sa.select(sa.func.count(Attachment.id))) == 1
        assert db.session.scalar(sa.select(sa.func.count(Interaction.id))) == 1
        assert len(list(tmp_path.iterdir())) == 1
    finally:
        app.config["ATTACHMENT_DIR"] = None
        app.config["ATTACHMENT_MAX_BYTES"] = 10 * 1024 * 1024


def test_viewer_sees_no_buttons_and_is_refused(client, login_as):
    login_as("viewer")
    engagement = factories.engagement()
    eid = engagement.id
    page = client.get(f"/engagements/{eid}").get_data(as_text=True)
    for text in ("Log an interaction", "Move stage", "Change escalation", "Owner, objectives and next step"):
        assert text not in page
    assert post_stage(client, eid, "mapping_requested").status_code == 403
    assert post_escalation(client, eid, "follow_up").status_code == 403
    assert log(client, eid).status_code == 403
    assert client.post(f"/engagements/{eid}/edit", data={}).status_code == 403
    assert client.post(f"/engagements/open/{engagement.company_id}", data={}).status_code == 403
    db.session.expire_all()
    assert db.session.get(Engagement, eid).stage == "identified"
    company_page = client.get(f"/companies/{engagement.company_id}").get_data(as_text=True)
    assert "Open engagement" not in company_page and "Edit company" not in company_page


def test_engagement_list_filters(client, login_as, frozen_today):
    me = login_as("analyst")
    mine = factories.engagement(owner=me, company=factories.company("Mine Ltd", sector="Solar"))
    factories.engagement(company=factories.company("Theirs Ltd", sector="Cotton"), stage="acknowledged")
    db.session.add(factories.Engagement  # noqa: keep flake quiet
                   if False else Interaction(engagement=mine, kind="email", direction="outbound",
                                             occurred_on=dt.date(2026, 6, 1)))
    from engage.models import Reminder

    db.session.add(Reminder(engagement=mine, due_on=dt.date(2026, 6, 1), reason="reply due"))
    db.session.commit()

    def names(query):
        page = client.get("/engagements" + query)
        assert page.status_code == 200, query
        text = page.get_data(as_text=True)
        return {n for n in ("Mine Ltd", "Theirs Ltd") if n in text}

    assert names("") == {"Mine Ltd", "Theirs Ltd"}
    assert names("?owner=me") == {"Mine Ltd"}
    assert names("?owner=none") == {"Theirs Ltd"}
    assert names("?stage=acknowledged") == {"Theirs Ltd"}
    assert names("?sector=Solar") == {"Mine Ltd"}
    assert names("?overdue=yes") == {"Mine Ltd"}
    assert names("?stale=yes") == {"Theirs Ltd"}  # opened in January, never contacted
    assert names(f"?campaign={mine.campaign_id}") == {"Mine Ltd"}
    assert names("?sort=next_follow_up&dir=desc") == {"Mine Ltd", "Theirs Ltd"}
    assert client.get("/engagements?stage=bogus").status_code == 400
    assert client.get("/engagements?sort=password").status_code == 400
