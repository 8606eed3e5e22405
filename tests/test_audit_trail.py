"""The audit trail as people read it (issue 17): objects named and linked, labels not codes, the rows
of one change grouped, date and object filters, and a query count that does not grow with the rows."""

import datetime as dt
import html
import re

import pytest
import sqlalchemy as sa

from engage import audit, clock
from engage.extensions import db
from engage.models import AuditEvent, Campaign, Company, CompanyAlias, Criterion, CriterionScore, Interaction, Score
from tests import factories
from tests.conftest import login
from tests.test_engagements import post_stage

HIKVISION = "Hangzhou Hikvision Digital Technology Co., Ltd."


def entries(page: str) -> list[str]:
    """The audit table's entries (one per change): their "What" cell as text."""
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0] if "<tbody>" in page else ""
    cells = (re.findall(r"<td>(.*?)</td>", row, re.S)[-1] for row in re.findall(r"<tr>(.*?)</tr>", body, re.S))
    inline_gone = (re.sub(r"</?(a|span)\b[^>]*>", "", cell) for cell in cells)
    return [html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row))).strip() for row in inline_gone]


def audit_page(client, **params):
    response = client.get("/admin/audit", query_string=params)
    return response.status_code, response.get_data(as_text=True)


@pytest.fixture()
def xuar(runner):
    """The seeded campaign and its published rubric (`flask seed`)."""
    assert runner.invoke(args=["seed"]).exit_code == 0
    return db.session.scalar(sa.select(Campaign).where(Campaign.slug == "xuar"))


def score_reply(client, engagement, rubric, level=2):
    reply = Interaction(engagement=engagement, kind="response", direction="inbound", occurred_on=dt.date(2026, 6, 1),
                        subject="Our supplier map", summary="Attached.")
    db.session.add(reply)
    db.session.commit()
    data = {"scored_on": "2026-06-10", "note": ""}
    for criterion in rubric.criteria:
        data[f"level-{criterion.id}"] = str(level)
        data[f"evidence-{criterion.id}"] = "See the reply of 1 June."
    assert client.post(f"/scoring/interactions/{reply.id}", data=data).status_code == 302
    return db.session.scalar(sa.select(Score).order_by(Score.id.desc()))


def test_a_stage_move_reads_as_a_person_would_say_it(client, login_as, app, frozen_today):
    analyst = login_as("analyst")
    engagement = factories.engagement(company=factories.company(HIKVISION), stage="acknowledged", owner=analyst)
    assert post_stage(client, engagement.id, "value_chain_mapped",
                      evidence_url="https://example.org/supplier-list").status_code == 302

    admin = app.test_client()
    assert login(admin, factories_admin_email()).status_code == 302
    status, page = audit_page(admin, actor=analyst.email)
    assert status == 200
    move = next(e for e in entries(page) if "→" in e)
    assert f"{HIKVISION} — engagement: stage Acknowledged → Value chain mapped" in move
    assert f'<a href="/engagements/{engagement.id}">{html.escape(HIKVISION)}</a>' in page
    # The engagement's update and its timeline event are one change, led by the engagement.
    assert "and 1 engagement event created" in move
    assert "value_chain_mapped" not in page and "acknowledged" not in page.replace("Acknowledged", "")


_admins = iter(range(1, 1000))


def factories_admin_email() -> str:
    """A fresh admin (committed outside any request), returning the email to sign in with."""
    from engage.models import User
    from tests.conftest import PASSWORD

    email = f"auditor{next(_admins)}@example.org"
    user = User(email=email, name="Auditor", role="admin", active=True)
    user.set_password(PASSWORD)
    db.session.add(user)
    db.session.commit()
    return email


def test_a_scoring_is_one_entry_not_one_per_criterion(client, login_as, app, xuar, frozen_today):
    analyst = login_as("analyst")
    engagement = factories.engagement(company=factories.company(HIKVISION), campaign=xuar, owner=analyst,
                                      stage="acknowledged")
    rubric = xuar.rubrics[-1]
    criteria = len(rubric.criteria)
    assert criteria > 1
    score = score_reply(client, engagement, rubric)

    rows = db.session.execute(sa.select(AuditEvent.object_type, AuditEvent.group_id).where(
        AuditEvent.object_type.in_(["Score", "CriterionScore"]))).all()
    assert len(rows) == criteria + 1 and len({group for _type, group in rows}) == 1 and rows[0].group_id
    sign_in = db.session.scalar(sa.select(AuditEvent.group_id).where(AuditEvent.action == "login",
                                                                     AuditEvent.actor_id == analyst.id))
    assert sign_in != rows[0].group_id  # another request, another change

    admin = app.test_client()
    assert login(admin, factories_admin_email()).status_code == 302
    status, page = audit_page(admin, actor=analyst.email)
    found = entries(page)
    scorings = [e for e in found if "— score" in e]
    assert len(scorings) == 1, found
    assert f"{HIKVISION} — score: created" in scorings[0]
    assert f"and {criteria} criterion scores created" in scorings[0]
    criterion = db.session.scalar(sa.select(Criterion.title).where(Criterion.rubric_id == rubric.id)
                                  .order_by(Criterion.id))
    assert f"{HIKVISION} — criterion score “{criterion}”: created" in scorings[0]
    assert f'href="/scoring/scores/{score.id}"' in page
    # Ids in the recorded values are named too: the scorer, the rubric, the criterion.
    assert f"<dt>scorer</dt><dd>{analyst.email}</dd>" in page and f"<dt>rubric</dt><dd>{rubric.name}</dd>" in page
    assert f"<dt>criterion</dt><dd>{html.escape(criterion)}</dd>" in page
    assert not any(e.startswith("criterion score") for e in found)
    assert any("Signed in" in e for e in found)  # the sign-in stands alone

    # Filtered to criterion scores, the same change shows those rows only.
    status, page = audit_page(admin, object_type="CriterionScore")
    assert len(entries(page)) == 1 and f"and {criteria - 1} criterion scores created" in entries(page)[0]


def test_a_holdings_import_is_one_entry_led_by_the_import(client, login_as, app, xuar):
    import io
    from pathlib import Path

    from engage.models import Fund, Holding

    analyst = login_as("analyst")
    fund = Fund(name="Emerging Markets Fund")
    db.session.add(fund)
    db.session.commit()
    data = (Path(__file__).parent / "fixtures" / "ishares_em.csv").read_bytes()
    page = client.post("/holdings/import", data={"fund_id": fund.id, "file": (io.BytesIO(data), "holdings.csv"),
                                                 "partial": "y"}, content_type="multipart/form-data").get_data(as_text=True)
    token = page.split("/holdings/import/")[1].split('"')[0]
    assert client.post(f"/holdings/import/{token}", data=factories.confirmation(page)).status_code == 302
    holdings = db.session.scalar(sa.select(sa.func.count()).select_from(Holding))
    assert holdings == 5

    admin = app.test_client()
    assert login(admin, factories_admin_email()).status_code == 302
    status, page = audit_page(admin, actor=analyst.email)
    [entry] = [e for e in entries(page) if "Holdings imported" in e]
    assert entry.startswith("Emerging Markets Fund — fund: Holdings imported")
    # The companies the import created and its record are in the same entry, and in no other.
    assert "and 3 companies created, 1 holdings import created" in entry
    assert "TENCENT HOLDINGS LTD — company: created" in entry
    assert sum("TENCENT" in e for e in entries(page)) == 1


def test_a_deleted_object_keeps_its_name_without_a_link(client, login_as, frozen_today):
    login_as("admin")
    gone = factories.company("Zhejiang Dahua Technology Co., Ltd.")
    db.session.commit()
    kept = factories.company(HIKVISION)
    db.session.commit()
    gone_id = gone.id
    db.session.delete(gone)
    db.session.commit()

    status, page = audit_page(client, object_type="Company")
    found = entries(page)
    assert status == 200 and len(found) == 3
    assert "Zhejiang Dahua Technology Co., Ltd. — company (deleted): deleted" in found[0]
    assert f"{HIKVISION} — company: created" in found[1]
    assert "Zhejiang Dahua Technology Co., Ltd. — company (since deleted): created" in found[2]
    assert f"/companies/{gone_id}" not in page
    assert f'<a href="/companies/{kept.id}">{html.escape(HIKVISION)}</a>' in page


def test_changes_outside_requests_group_by_transaction_or_block(app, login_as, client):
    login_as("admin")
    with audit.acting_as("cli"):
        company = factories.company("Daqo New Energy Corp.")
        db.session.flush()
        db.session.add(CompanyAlias(company=company, alias="Daqo", normalized_alias="daqo"))
        db.session.commit()
        factories.company("Xinjiang Daqo New Energy Co., Ltd.")
        db.session.commit()
        with audit.grouped():
            for n in range(3):
                factories.company(f"Imported {n}")
                db.session.commit()  # a batch import commits as it goes: still one change
        with db.session.begin_nested():  # a savepoint does not end the transaction's change
            factories.company("Savepoint Co.")
        factories.company("After Savepoint Co.")
        db.session.commit()
    groups = db.session.execute(sa.select(AuditEvent.summary, AuditEvent.group_id)
                                .where(AuditEvent.actor_label == "cli").order_by(AuditEvent.id)).all()
    ids = [group for _summary, group in groups]
    assert len(ids) == 8
    assert ids[0] == ids[1] != ids[2] != ids[3] and ids[3] == ids[4] == ids[5] != ids[6] and ids[6] == ids[7]

    # Rows recorded before group ids existed ("#<id>", migration 0024) stand alone, and so do rows
    # added without one.
    for n, group_id in enumerate(["#9000", None]):
        db.session.add(AuditEvent(actor_label="cli", action="create", object_type="Company", object_id=9000 + n,
                                  summary=f"create Company Old {n}", changes={"name": f"Old {n}"},
                                  created_at=clock.utcnow(), group_id=group_id))
    db.session.commit()
    status, page = audit_page(client, actor="cli")
    found = entries(page)
    assert status == 200 and len(found) == 6, found
    assert "and 1 company alias created" in next(e for e in found if e.startswith("Daqo New Energy Corp."))
    assert "and 2 companies created" in next(e for e in found if "Imported" in e)
    assert sum("Old " in e for e in found) == 2


def test_a_large_change_shows_its_first_rows_and_counts_the_rest(client, login_as):
    from engage.admin.trail import ROWS_PER_GROUP

    login_as("admin")
    with audit.acting_as("cli"), audit.grouped():
        for n in range(ROWS_PER_GROUP + 5):
            factories.company(f"Holding Co. {n}")
        db.session.commit()
    status, page = audit_page(client, actor="cli")
    [entry] = entries(page)
    assert f"and {ROWS_PER_GROUP + 4} companies created" in entry
    # The lead row, then in the folded part the lead again with its values and the next rows.
    assert entry.count("— company: created") == ROWS_PER_GROUP + 1 and "5 more not shown." in entry


def test_date_range_and_object_type_filters(client, login_as, freeze_clock):
    freeze_clock(dt.datetime(2026, 6, 10, 9, 0))
    login_as("admin")
    with clock.frozen(dt.datetime(2026, 6, 1, 23, 59)):
        factories.company("Early Co.")
        db.session.commit()
    with clock.frozen(dt.datetime(2026, 6, 5, 0, 0)):
        factories.company("Middle Co.")
        db.session.commit()
    with clock.frozen(dt.datetime(2026, 6, 8, 23, 59, 59)):
        factories.engagement(company=factories.company("Late Co."))

    def shown(**params):
        status, page = audit_page(client, object_type="Company", **params)
        assert status == 200, page
        return sorted(name for name in ("Early", "Middle", "Late") if f"{name} Co." in page)

    assert shown() == ["Early", "Late", "Middle"]
    assert shown(**{"from": "2026-06-02"}) == ["Late", "Middle"]
    assert shown(to="2026-06-01") == ["Early"]  # the whole last day is included
    assert shown(**{"from": "2026-06-05", "to": "2026-06-05"}) == ["Middle"]
    assert shown(**{"from": "2026-06-08", "to": "2026-06-08"}) == ["Late"]
    assert shown(**{"from": "2026-06-09"}) == []

    status, page = audit_page(client, object_type="Engagement")
    assert [e.split(" — ")[0] for e in entries(page)] == ["Late Co."]
    assert '<option selected value="Engagement">' in page and ">Criterion score</option>" in page
    company_id = db.session.scalar(sa.select(Company.id).where(Company.name == "Middle Co."))
    status, page = audit_page(client, object_type="Company")
    history = f"/admin/audit?object_type=Company&amp;object_id={company_id}"
    assert f'href="{history}">its history</a>' in page
    status, page = audit_page(client, object_type="Company", object_id=str(company_id))
    assert [e.split(" — ")[0] for e in entries(page)] == ["Middle Co."] and "its history" not in page


@pytest.mark.parametrize(("params", "message"), [
    ({"from": "2026-02-30"}, "From: &#39;2026-02-30&#39; is not a date; write it as YYYY-MM-DD"),
    ({"to": "yesterday"}, "To: &#39;yesterday&#39; is not a date; write it as YYYY-MM-DD"),
    ({"from": "2026-06-10", "to": "2026-06-01"},
     "To: The range ends (01 Jun 2026) before it starts (10 Jun 2026): choose a To on or after the From."),
    ({"object_type": "Spaceship"}, "Object type: Not a valid choice."),
    ({"object_id": "-3"}, "Object number: &#39;-3&#39; is not an object number (digits only)."),
    ({"action": "explode"}, "Action: Not a valid choice."),
])
def test_bad_filters_are_explained_on_the_page(client, login_as, params, message):
    login_as("admin")
    status, page = audit_page(client, **params)
    assert status == 400
    assert message in page
    assert "These filters cannot be applied" in page and 'class="filters"' in page and "<tbody>" not in page
    assert page.count(message) == 1 and "Not saved" not in page  # said once, and not as a refused edit
    assert 'aria-invalid="true"' in page


def test_only_admins_see_the_trail(client, login_as):
    login_as("analyst")
    assert client.get("/admin/audit").status_code == 403


def test_query_count_does_not_grow_with_the_rows(client, login_as, app, xuar, count_queries, frozen_today):
    """One query per object type on the page: more changes of the same types cost nothing more."""
    analyst = login_as("analyst")
    rubric = xuar.rubrics[-1]
    admin = app.test_client()
    assert login(admin, factories_admin_email()).status_code == 302

    def add_changes():
        engagement = factories.engagement(campaign=xuar, owner=analyst, stage="acknowledged")
        score_reply(client, engagement, rubric)
        assert post_stage(client, engagement.id, "value_chain_mapped",
                          evidence_url="https://example.org/map").status_code == 302
        db.session.add(CompanyAlias(company=engagement.company, alias=f"{engagement.company.name} Ltd",
                                    normalized_alias=f"alias {engagement.id}"))
        db.session.commit()

    def queries() -> tuple[int, int]:
        with count_queries() as counter:
            response = admin.get("/admin/audit")
        assert response.status_code == 200
        return counter.count, len(entries(response.get_data(as_text=True)))

    add_changes()
    few, shown_few = queries()
    for _ in range(3):
        add_changes()
    many, shown_many = queries()
    assert shown_many > shown_few + 6
    assert many == few, (few, many)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(CriterionScore)) == 4 * len(rubric.criteria)


def test_migration_gives_old_rows_a_group_of_their_own(make_app, tmp_path, database_url):
    """0024 adds group_id: rows recorded before it get "#<id>", each a change of its own."""
    from flask_migrate import upgrade

    if not database_url.startswith("sqlite"):
        return  # the same statements run on PostgreSQL when its test database is built
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'upgrade.sqlite'}")
    with app.app_context():
        upgrade(revision="0023")
        with db.engine.begin() as conn:
            for n in (1, 2):
                conn.exec_driver_sql(
                    "INSERT INTO audit_events (id, created_at, actor_label, action, summary, changes) "
                    f"VALUES ({n}, '2026-01-0{n}', 'cli', 'create', 'create Company C{n}', '{{}}')")
        upgrade()
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT id, group_id FROM audit_events ORDER BY id").all() == [
                (1, "#1"), (2, "#2")]
        db.session.remove()
        db.engine.dispose()


def test_every_enum_column_shows_labels(app):
    """Each column `enum_check` limits is known to the page, so its values show as labels, never codes."""
    from engage.admin import trail

    enum_values = [set(e.values()) for e in trail._enum_classes()]
    checked = set()
    for cls in (m.class_ for m in db.Model.registry.mappers):
        for constraint in cls.__table__.constraints:
            found = re.search(r"(\w+) IN \(([^)]*)\)", str(getattr(constraint, "sqltext", "")))
            if found and any(set(re.findall(r"'([^']*)'", found.group(2))) <= values for values in enum_values):
                checked.add((cls.__name__, found.group(1)))
    known = set(trail._column_enums())
    assert checked and checked <= known, checked - known
    assert trail.value_text("Engagement", "stage", "value_chain_mapped") == "Value chain mapped"
    assert trail.value_text("RiskFlag", "source", "us_entity_list") == "US Entity List"
    assert trail.value_text("Engagement", "outcome", "divested") == "Divested"
    assert trail._column_enums()[("Criterion", "stage_hint")].__name__ == "Stage"
    assert trail.value_text("EngagementEvent", "to_value", "call_to_action", {"kind": "escalation"}) == "Call to action"


def test_pages_count_changes_not_rows(client, login_as, app, monkeypatch):
    login_as("admin")
    for n in range(3):
        factories.engagement(company=factories.company(f"Paged Co. {n}"))  # one transaction: one change each
    monkeypatch.setitem(app.config, "PAGE_SIZE", 2)
    status, first = audit_page(client, object_type="Engagement")
    status, second = audit_page(client, object_type="Engagement", page="2")
    assert "Page 1 of 2 · 3 rows" in first and len(entries(first)) == 2 and len(entries(second)) == 1
    assert [e.split(" — ")[0] for e in entries(first) + entries(second)] == [
        "Paged Co. 2", "Paged Co. 1", "Paged Co. 0"]
    assert audit_page(client, object_type="Engagement", page="3")[0] == 404
