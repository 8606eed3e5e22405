"""The engagement page (issue 17): summary column, work tabs, the forms' defaults, refusals at the
top that link to their fields, the refused form's tab kept open, and a timeline of one entry per event."""

import datetime as dt
import re

import pytest
import sqlalchemy as sa

from engage import clock
from engage.extensions import db
from engage.letters import service as letters
from engage.models import Campaign, CompanyContact, Engagement, EngagementEvent, Interaction, Letter, LetterTemplate
from tests import factories
from tests.test_engagements import log, post_stage


@pytest.fixture()
def seeded(runner):
    assert runner.invoke(args=["seed"]).exit_code == 0
    return {t.kind: t for t in db.session.scalars(sa.select(LetterTemplate))}


@pytest.fixture()
def xuar(seeded):
    return db.session.scalar(sa.select(Campaign).where(Campaign.slug == "xuar"))


def timeline_of(page: str) -> list[str]:
    """The timeline's entries (top-level items), each as its HTML."""
    body = page.split('<ol class="timeline">', 1)[1].rsplit("</ol>", 1)[0]
    return re.split(r'(?=<li class="timeline-)', body)[1:]


def panel(page: str, key: str) -> str:
    """The opening tag of a tab's panel (hidden or not)."""
    return re.search(rf'<div class="eng-panel" id="tab-{key}"[^>]*>', page).group(0)


def selected_in(page: str, form_action: str, field: str) -> str | None:
    form = page.split(f'action="{form_action}"', 1)[1].split("</form>", 1)[0]
    select = re.search(rf'<select[^>]*name="{field}"[^>]*>(.*?)</select>', form, re.S).group(1)
    chosen = re.search(r'<option selected value="([^"]*)"', select)
    return chosen.group(1) if chosen else None


@pytest.mark.parametrize("stage, escalation, next_stage, next_level", [
    ("identified", "none", "mapping_requested", "follow_up"),
    ("acknowledged", "collective", "value_chain_mapped", "observation"),
])
def test_move_forms_propose_the_next_stage_and_level_forward(client, login_as, stage, escalation, next_stage,
                                                              next_level):
    login_as("analyst")
    engagement = factories.engagement(stage=stage, escalation=escalation)
    db.session.commit()
    page = client.get(f"/engagements/{engagement.id}").get_data(as_text=True)
    assert selected_in(page, f"/engagements/{engagement.id}/stage", "target") == next_stage
    assert selected_in(page, f"/engagements/{engagement.id}/escalation", "target") == next_level
    # the log form's direction starts outbound; the page's script turns it inbound for a response
    assert selected_in(page, f"/engagements/{engagement.id}/interactions", "direction") == "outbound"
    assert "data-interaction-form" in page


def test_a_stage_hint_links_to_the_move_tab_with_its_stage_chosen(client, login_as):
    login_as("analyst")
    engagement = factories.engagement(stage="identified")
    db.session.commit()
    url = f"/engagements/{engagement.id}"
    page = client.get(f"{url}?tab=move&to=acknowledged").get_data(as_text=True)
    assert selected_in(page, f"{url}/stage", "target") == "acknowledged"
    assert "hidden" not in panel(page, "move")
    for refused in ("identified", "nonsense", ""):  # not a move from here: the usual proposal
        page = client.get(f"{url}?tab=move&to={refused}").get_data(as_text=True)
        assert selected_in(page, f"{url}/stage", "target") == "mapping_requested"


def test_reopening_proposes_the_stage_the_engagement_was_closed_at(client, login_as, frozen_today):
    login_as("analyst")
    engagement = factories.engagement(stage="acknowledged")
    db.session.commit()
    assert post_stage(client, engagement.id, "closed", outcome="dropped").status_code == 302
    page = client.get(f"/engagements/{engagement.id}?tab=move").get_data(as_text=True)
    assert selected_in(page, f"/engagements/{engagement.id}/stage", "target") == "acknowledged"
    assert "Reopen at Identified" in page  # still offered, just not first


def test_summary_column_shows_stage_owner_next_step_contacts_and_score_trend(client, login_as, frozen_today):
    analyst = login_as("analyst")
    engagement = factories.engagement(owner=analyst, next_step="Call IR about the supplier list",
                                      next_step_on=frozen_today + dt.timedelta(days=3))
    db.session.commit()
    page = client.get(f"/engagements/{engagement.id}").get_data(as_text=True)
    side = page.split('<aside class="eng-side"', 1)[1].split("</aside>", 1)[0]
    for text in ("Stage", "Escalation", analyst.name, "Call IR about the supplier list",
                 (frozen_today + dt.timedelta(days=3)).strftime("%d %b %Y"), "Not scored yet", "Contacts"):
        assert text in side, text
    contact = db.session.scalar(sa.select(CompanyContact).where(CompanyContact.company_id == engagement.company_id))
    assert contact is not None and contact.name in side


def test_tabs_are_links_and_the_requested_one_is_drawn_open(client, login_as):
    login_as("analyst")
    engagement = factories.engagement()
    db.session.commit()
    url = f"/engagements/{engagement.id}"
    page = client.get(url).get_data(as_text=True)
    for key in ("log", "letter", "score", "move", "reminders"):
        assert f'href="{url}?tab={key}#work"' in page
    assert "hidden" not in panel(page, "log") and "hidden" in panel(page, "letter")
    page = client.get(f"{url}?tab=letter").get_data(as_text=True)
    assert "hidden" not in panel(page, "letter") and "hidden" in panel(page, "log")
    assert re.search(r'data-tab="letter"[^>]*aria-current="page"', page)
    page = client.get(f"{url}?tab=nonsense").get_data(as_text=True)  # an unknown tab: the first one
    assert "hidden" not in panel(page, "log")


def test_a_viewer_gets_only_the_tabs_that_read(client, login_as):
    login_as("viewer")
    engagement = factories.engagement()
    db.session.commit()
    page = client.get(f"/engagements/{engagement.id}?tab=move").get_data(as_text=True)
    assert re.findall(r'data-tab="([a-z]+)"', page) == ["letter", "score", "reminders"]
    assert "hidden" not in panel(page, "letter")


def test_a_refused_move_lists_its_errors_at_the_top_linked_and_keeps_its_tab(client, login_as):
    login_as("analyst")
    engagement = factories.engagement()
    db.session.commit()
    response = post_stage(client, engagement.id, "closed")  # closing without an outcome
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    top = page.split('id="refusals"', 1)[1].split("</div>", 1)[0]
    assert '<a href="#stage-outcome">Outcome: Closing needs an outcome' in top
    assert page.index('id="refusals"') < page.index('class="eng-layout"')  # above the page, not in a panel
    assert 'id="stage-outcome"' in page and 'aria-invalid="true"' in page.split('id="stage-outcome"')[0][-300:] + \
        page.split('id="stage-outcome"')[1][:300]
    assert "hidden" not in panel(page, "move") and "hidden" in panel(page, "log")
    assert re.search(r'data-tab="move"[^>]*aria-current="page"', page)
    # the field ids of the page's forms are unique (each form has its own "Date" and "Note")
    ids = re.findall(r'\sid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_a_refused_interaction_reopens_the_log_tab_even_when_another_was_asked(client, login_as):
    login_as("analyst")
    engagement = factories.engagement()
    db.session.commit()
    response = client.post(f"/engagements/{engagement.id}/interactions?tab=letter", data={
        "kind": "call", "direction": "outbound", "occurred_on": "2099-01-01", "subject": "Later"},
        content_type="multipart/form-data")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert 'href="#log-occurred_on"' in page.split('id="refusals"', 1)[1].split("</div>", 1)[0]
    assert "hidden" not in panel(page, "log") and "hidden" in panel(page, "letter")
    assert 'value="Later"' in page  # what was typed is kept


def test_a_sent_letter_is_one_timeline_entry_with_its_sending_and_its_move(client, login_as, seeded, xuar):
    analyst = login_as("analyst")
    with clock.frozen(dt.datetime(2026, 6, 15, 9, 0)):
        engagement = factories.engagement(campaign=xuar, opened_on=dt.date(2026, 3, 1))
        letter = letters.generate(engagement, seeded["initial"], analyst)
        db.session.commit()
        assert client.post(f"/letters/{letter.id}/send", data={"sent_on": "2026-06-10", "channel": "post"}
                           ).status_code == 302
    db.session.expire_all()
    letter = db.session.get(Letter, letter.id)
    assert letter.interaction_id and letter.event_id  # the sending's rows are linked to the letter
    assert db.session.scalar(sa.select(sa.func.count(Interaction.id))
                             .where(Interaction.engagement_id == engagement.id)) == 1
    page = client.get(f"/engagements/{engagement.id}").get_data(as_text=True)
    entries = timeline_of(page)
    assert len(entries) == 1, entries
    assert "Letter sent" in entries[0] and letter.subject.split("<")[0][:30] in entries[0]
    assert "Identified → Mapping requested" in entries[0] and "By post" in entries[0]
    # search links an interaction to its place on the timeline: the sending's anchor is in the letter's entry
    assert f'id="interaction-{letter.interaction_id}"' in entries[0]


def test_a_response_and_the_stage_move_made_with_it_are_one_entry(client, login_as, frozen_today):
    login_as("analyst")
    engagement = factories.engagement(stage="mapping_requested")
    db.session.commit()
    assert log(client, engagement.id, kind="response", direction="inbound", subject="Reply received",
               move_to="acknowledged").status_code == 302
    event = db.session.scalar(sa.select(EngagementEvent).where(EngagementEvent.engagement_id == engagement.id))
    assert event.interaction_id is not None
    entries = timeline_of(client.get(f"/engagements/{engagement.id}").get_data(as_text=True))
    assert len(entries) == 1 and "Reply received" in entries[0]
    assert "Mapping requested → Acknowledged" in entries[0]


def test_same_day_entries_are_in_the_order_they_were_recorded_newest_first(client, login_as):
    login_as("analyst")
    engagement = factories.engagement()
    db.session.commit()
    day = "2026-06-10"
    with clock.frozen(dt.datetime(2026, 6, 12, 9, 0)):  # first the move, then the call, the same day
        assert post_stage(client, engagement.id, "mapping_requested", on=day, note="asked").status_code == 302
    with clock.frozen(dt.datetime(2026, 6, 12, 11, 0)):
        assert log(client, engagement.id, kind="call", occurred_on=day, subject="Call after").status_code == 302
    with clock.frozen(dt.datetime(2026, 6, 12, 15, 0)):  # then a contact of an earlier day, logged last
        assert log(client, engagement.id, kind="email", occurred_on="2026-06-09", subject="Earlier day").status_code \
            == 302
    entries = timeline_of(client.get(f"/engagements/{engagement.id}").get_data(as_text=True))
    assert ["Call after" in entries[0], "Identified → Mapping requested" in entries[1],
            "Earlier day" in entries[2]] == [True, True, True], entries


def test_timeline_styles_are_scoped_to_its_own_entries(client):
    css = client.get("/static/css/app.css").get_data(as_text=True)
    assert "ol.timeline > li {" in css and "ol.timeline > li::before" in css
    assert not re.search(r"ol\.timeline li(::before)? \{", css)  # no rule reaching a list inside an entry


def test_the_page_query_count_does_not_grow_with_letters_and_responses(client, login_as, seeded, xuar,
                                                                      count_queries):
    analyst = login_as("analyst")
    engagement = factories.engagement(campaign=xuar, opened_on=dt.date(2026, 1, 5))
    db.session.commit()
    eid = engagement.id

    def grow(n):
        for i in range(n):
            with clock.frozen(dt.datetime(2026, 6, 15, 9, 0)):
                engagement = db.session.get(Engagement, eid)
                letter = letters.generate(engagement, seeded["follow_up"], analyst)
                db.session.commit()
                letters.mark_sent(letter, sent_on=dt.date(2026, 6, 1), channel="post", actor_id=analyst.id,
                                  today=dt.date(2026, 6, 15))
                db.session.add(Interaction(engagement=engagement, kind="response", direction="inbound",
                                           occurred_on=dt.date(2026, 6, 2), subject=f"reply {i}",
                                           summary="- one\n- two"))
                db.session.commit()

    grow(1)
    with count_queries() as small:
        assert client.get(f"/engagements/{eid}").status_code == 200
    grow(12)
    with count_queries() as large:
        page = client.get(f"/engagements/{eid}")
        assert page.status_code == 200
    assert len(timeline_of(page.get_data(as_text=True))) == 26
    assert large.count == small.count, large.statements


def test_0031_links_letters_sent_before_it_and_downgrades(make_app, tmp_path, database_url):
    """Letters sent before 0031 get their sending and their move linked by subject and date."""
    from flask_migrate import downgrade, upgrade

    if not database_url.startswith("sqlite"):
        return  # the same SQL runs on PostgreSQL when its test database is built; this one uses a file
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'upgrade-0026.sqlite'}")
    with app.app_context():
        upgrade()
        engagement = factories.engagement(stage="mapping_requested", opened_on=dt.date(2026, 1, 5))
        sent = Letter(engagement=engagement, kind="initial", subject="Our expectations", body="…", status="sent",
                      sent_on=dt.date(2026, 2, 1), channel="post")
        draft = Letter(engagement=engagement, kind="follow_up", subject="Our expectations", body="…")
        db.session.add_all([sent, draft, Interaction(
            engagement=engagement, kind="letter", direction="outbound", occurred_on=dt.date(2026, 2, 1),
            subject="Our expectations", summary="Letter sent by post."), Interaction(  # another day: not it
            engagement=engagement, kind="letter", direction="outbound", occurred_on=dt.date(2026, 2, 2),
            subject="Our expectations")])
        engagement.events.append(EngagementEvent(kind="stage", from_value="identified", to_value="mapping_requested",
                                                 occurred_on=dt.date(2026, 2, 1),
                                                 note="Initial letter sent: Our expectations"))
        db.session.commit()
        ids = (sent.id, draft.id)
        db.session.remove()
        downgrade(revision="0030")
        with db.engine.begin() as conn:
            columns = [row[1] for row in conn.exec_driver_sql("PRAGMA table_info(letters)")]
            assert "interaction_id" not in columns and "event_id" not in columns
        upgrade()
        with db.engine.begin() as conn:
            rows = dict(conn.exec_driver_sql(
                "SELECT l.id, i.occurred_on || '/' || e.note FROM letters l "
                "LEFT JOIN interactions i ON i.id = l.interaction_id "
                "LEFT JOIN engagement_events e ON e.id = l.event_id").all())
            assert rows == {ids[0]: "2026-02-01/Initial letter sent: Our expectations", ids[1]: None}
            # the search triggers migration 0023 put on interactions are still there (the table was not rebuilt)
            triggers = conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger' "
                                            "AND tbl_name = 'interactions' AND name LIKE 'search%'").scalars().all()
            assert len(triggers) == 3
        db.session.remove()
