"""The engagement's value-chain tab (issue 16): figures, flagged links first with why, the status form
(rules, double submits, stale tabs, roles), relationships added one by one, the network drawing.

The map is the solar maker's disclosed supplier list (tests/fixtures/valuechain, see its README)
screened against the seeded lists, as in tests/test_valuechain.py.
"""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest
import sqlalchemy as sa

from engage import clock
from engage.extensions import db
from engage.models import AuditEvent, Company, Relationship, RelationshipStatusChange, Reminder, RiskFlag, ValueChainMap
from engage.valuechain import drawing, service
from tests import factories
from tests.test_valuechain import MAP, load_lists, maker, relationship_to

HOSHINE = "Hoshine Silicon Industry Co. Ltd."


@pytest.fixture()
def mapped(runner):
    """The solar maker with an open engagement and its map imported and screened."""
    load_lists(runner)
    company = maker()
    engagement = factories.engagement(company=company)
    service.save(company, MAP.read_bytes(), MAP.name, source_kind="report", source_ref="Supplier list 2025, annex 2",
                 disclosed_on=dt.date(2026, 5, 20))
    db.session.commit()
    return engagement


def tab_url(engagement) -> str:
    return f"/value-chain/engagements/{engagement.id}"


def status_url(engagement, relationship) -> str:
    return f"/value-chain/engagements/{engagement.id}/relationships/{relationship.id}/status"


def add_url(engagement) -> str:
    return f"/value-chain/engagements/{engagement.id}/relationships"


def form_of(page: str, action: str) -> str:
    start = page.index(f'action="{action}')
    return page[start:page.index("</form>", start)]


def hidden(form: str, name: str) -> str:
    return re.search(rf'name="{re.escape(name)}" type="hidden" value="([^"]*)"', form).group(1)


def status_post(client, engagement, relationship, page: str | None = None, **fields) -> tuple[dict, str]:
    """The status form of `relationship` as the page drew it, with `fields` filled in."""
    page = page or client.get(tab_url(engagement)).get_data(as_text=True)
    form = form_of(page, status_url(engagement, relationship))
    prefix = f"rel{relationship.id}-"
    data = {f"{prefix}form_token": hidden(form, f"{prefix}form_token"),
            f"{prefix}seen_status": hidden(form, f"{prefix}seen_status")}
    data.update({f"{prefix}{k}": v for k, v in fields.items()})
    return data, form


def text_of(response) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)))


def squash(text: str) -> str:
    """Whitespace collapsed; no space before punctuation (tags were replaced by spaces)."""
    return re.sub(r" ([,.;:)])", r"\1", " ".join(text.split()))


def changes() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(RelationshipStatusChange))


# --- the page --------------------------------------------------------------------------------


def test_the_tab_shows_figures_maps_and_the_flagged_links_first_with_why(client, login_as, mapped):
    login_as("viewer")
    response = client.get(tab_url(mapped))
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    text = squash(text_of(response))
    assert "Value chain of Fictional Solar Modules Co." in text
    assert "Relationships disclosed 12" in text
    assert "By tier tier 1: 5 · tier 2: 4 · tier 3+: 3" in text
    assert "Flagged 5 (4 on a list, 5 in the Uyghur Region)" in text
    assert "Exited 0" in text and "Overdue exits 0" in text
    assert ("Latest: map 1, Report — Supplier list 2025, annex 2 (solar_supplier_list.csv); disclosed 20 May 2026; "
            "first map: 12 relationships.") in text
    assert "first map: 12 relationships" in text
    # the flagged section comes before the others, and names its five links with their reasons
    flagged = text[text.index("Flagged links (5)"):text.index("Other relationships (7)")]
    for name in ("Xinjiang Daqo New Energy Co. Ltd.", HOSHINE, "Tarim Fictional Quartz Mining Co.",
                 "Xinjiang GCL New Energy Material Technology Co. Ltd.", "Xinjiang East Hope Nonferrous Metals"):
        assert name in flagged, name
    assert "US Entity List (direct" in flagged
    assert "CBP Withhold Release Order (direct" in flagged
    assert "in the Uyghur Region: Hotan" in flagged
    assert "Nordwind Aluminium Frames GmbH (fictional)" not in flagged
    others = text[text.index("Other relationships (7)"):]
    assert "Nordwind Aluminium Frames GmbH (fictional)" in others
    # each flagged link: its status, since when, its next date
    assert flagged.count("Status Active") == 5
    # a viewer sees no form
    assert "Change the status" not in page and "Add a relationship" not in page


def test_a_linked_flag_names_the_parent_it_comes_through(client, login_as, runner):
    load_lists(runner)
    hoshine = factories.company("Hoshine Silicon Industry Co., Ltd.", country="CN")
    factories.company("Hoshine Example Subsidiary Trading Co. (fictional)", parent=hoshine)
    company = maker()
    engagement = factories.engagement(company=company)
    data = ("Supplier,Tier,Relationship,Products,Country,Region\n"
            "Hoshine Example Subsidiary Trading Co. (fictional),2,supplier,silicon,CN,Jiangsu\n")
    service.save(company, data.encode(), "map.csv")
    db.session.commit()
    login_as("viewer")
    text = squash(text_of(client.get(tab_url(engagement))))
    assert "linked via Hoshine Silicon Industry Co., Ltd." in text
    assert "Flagged links (1)" in text


def test_the_engagement_page_shows_a_summary_and_links_to_the_tab(client, login_as, mapped):
    login_as("viewer")
    response = client.get(f"/engagements/{mapped.id}")
    text = squash(text_of(response))
    assert "Map 1, disclosed 20 May 2026: 12 relationships, 5 flagged, 0 exited." in text
    assert f'href="{tab_url(mapped)}"' in response.get_data(as_text=True)
    other = factories.engagement()
    text = squash(text_of(client.get(f"/engagements/{other.id}")))
    assert "No value-chain map yet." in text
    page = client.get(tab_url(other))
    assert page.status_code == 200 and "has no value-chain map yet" in squash(text_of(page))


def test_an_earlier_map_and_its_diff(client, login_as, mapped, tmp_path):
    company = mapped.company
    data = MAP.read_text().splitlines()
    second = "\n".join([line for line in data if not line.startswith("Tarim")]) + "\n"
    service.save(company, second.encode(), "supplier_list_2026.csv")
    db.session.commit()
    login_as("viewer")
    text = squash(text_of(client.get(tab_url(mapped))))
    assert "Latest: map 2" in text
    assert "0 added, 1 removed, 0 changed" in text
    assert "- Tarim Fictional Quartz Mining Co. (sub-supplier, tier 3+)" in text
    first = client.get(f"/value-chain/engagements/{mapped.id}/maps/1")
    assert first.status_code == 200
    first_text = squash(text_of(first))
    assert "Map 1 of Fictional Solar Modules Co. (an earlier map; the latest is map 2)" in first_text
    assert "Tarim Fictional Quartz Mining Co." in first_text
    assert client.get(f"/value-chain/engagements/{mapped.id}/maps/9").status_code == 404


def test_the_page_takes_the_same_queries_for_more_relationships(client, login_as, mapped, count_queries):
    login_as("analyst")
    client.get(tab_url(mapped))

    def measure() -> int:
        with count_queries() as counter:
            assert client.get(tab_url(mapped)).status_code == 200
        return counter.count

    few = measure()
    company = mapped.company
    latest = service.latest_map(company)
    for i in range(30):
        other = factories.company(f"Extra Listed Supplier {i} (fictional)")
        db.session.flush()
        db.session.add(RiskFlag(company_id=other.id, source="analyst", citation="analyst note"))
        db.session.add(Relationship(map=latest, company_id=company.id, counterparty=other, kind="supplier",
                                    tier=1 + i % 3, region="Kashgar" if i % 2 else "Anhui",
                                    in_uyghur_region=bool(i % 2)))
        db.session.add(Relationship(map=latest, company_id=company.id,
                                    counterparty=factories.company(f"Plain Supplier {i} (fictional)"),
                                    kind="supplier", tier=2))
    db.session.commit()
    assert measure() == few
    assert measure() == few


# --- the status form -------------------------------------------------------------------------


def test_an_analyst_plans_an_exit_then_records_it(client, login_as, mapped, frozen_today):
    analyst = login_as("analyst")
    hoshine = relationship_to(HOSHINE)
    data, _form = status_post(client, mapped, hoshine, status="exit_planned", date=frozen_today.isoformat(),
                              target_date="2026-12-31")
    response = client.post(status_url(mapped, hoshine), data=data)
    assert response.status_code == 303, response.get_data(as_text=True)
    db.session.expire_all()
    hoshine = relationship_to(HOSHINE)
    assert (hoshine.status, hoshine.status_date, hoshine.target_date) == ("exit_planned", frozen_today,
                                                                          dt.date(2026, 12, 31))
    change = db.session.scalar(sa.select(RelationshipStatusChange))
    assert (change.from_status, change.to_status, change.engagement_id, change.actor_id) == (
        "active", "exit_planned", mapped.id, analyst.id)
    audited = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.actor_id == analyst.id,
                                                             AuditEvent.object_type != "User")).all()
    reminder = db.session.scalar(sa.select(Reminder).where(Reminder.relationship_id == hoshine.id))
    assert reminder.due_on == dt.date(2026, 12, 31)  # the exit reminder, made by the same change
    assert sorted((e.object_type, e.object_id) for e in audited) == sorted(
        [("Relationship", hoshine.id), ("RelationshipStatusChange", change.id), ("Reminder", reminder.id)])
    text = squash(text_of(client.get(tab_url(mapped))))
    assert "Status Exit planned" in text and "exit by 31 Dec 2026" in text

    data, _form = status_post(client, mapped, hoshine, status="exited", date=frozen_today.isoformat(),
                              evidence="Letter of 12 June 2026: contract with Hoshine ended")
    assert client.post(status_url(mapped, hoshine), data=data).status_code == 303
    text = squash(text_of(client.get(tab_url(mapped))))
    assert "Exited 1" in text and "Letter of 12 June 2026: contract with Hoshine ended" in text
    assert changes() == 2


@pytest.mark.parametrize("fields,field_name,message", [
    (dict(status="exit_planned"), "target_date", "an exit plan needs the target date of the exit"),
    (dict(status="exit_planned", target_date="2020-01-01"), "target_date", "before the date of the plan"),
    (dict(status="exited", evidence="  "), "evidence", "an exit needs its evidence"),
    (dict(status="not_linked"), "reason", "say why the link was wrong"),
    (dict(status="active"), "status", "already active"),
    (dict(status="under_review", date=""), "date", "say when the status changed"),
    (dict(status="under_review", date="2099-01-01"), "date", "the date of the change is in the future"),
    (dict(status="paused"), "status", "Not a valid choice"),
])
def test_bad_status_input_is_refused_on_its_field_and_nothing_is_written(client, login_as, mapped, frozen_today,
                                                                          fields, field_name, message):
    login_as("analyst")
    hoshine = relationship_to(HOSHINE)
    fields = {"date": frozen_today.isoformat(), **fields}
    data, _form = status_post(client, mapped, hoshine, **fields)
    audit_before = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent))
    response = client.post(status_url(mapped, hoshine), data=data)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    error = re.search(rf'<p class="error" id="rel{hoshine.id}-{field_name}-error">([^<]*)</p>', page)
    assert error and message in html.unescape(error.group(1)), (field_name, page[page.find("Not saved"):][:600])
    db.session.expire_all()
    assert relationship_to(HOSHINE).status == "active" and changes() == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)) == audit_before


def test_a_double_submit_makes_one_change(client, login_as, mapped, frozen_today):
    login_as("analyst")
    hoshine = relationship_to(HOSHINE)
    data, _form = status_post(client, mapped, hoshine, status="under_review", date=frozen_today.isoformat())
    first = client.post(status_url(mapped, hoshine), data=data)
    second = client.post(status_url(mapped, hoshine), data=data, follow_redirects=True)
    assert first.status_code == 303 and second.status_code == 200
    assert "this form was sent twice" in second.get_data(as_text=True)
    assert changes() == 1


def test_a_stale_tab_is_refused_with_a_clear_message(client, login_as, mapped, frozen_today):
    login_as("analyst")
    hoshine = relationship_to(HOSHINE)
    old_page = client.get(tab_url(mapped)).get_data(as_text=True)
    # another tab (or colleague) moves it first
    data, _ = status_post(client, mapped, hoshine, status="under_review", date=frozen_today.isoformat())
    assert client.post(status_url(mapped, hoshine), data=data).status_code == 303
    # the old tab's form still says "active"
    data, _ = status_post(client, mapped, hoshine, page=old_page, status="not_linked", date=frozen_today.isoformat(),
                          reason="a different company")
    response = client.post(status_url(mapped, hoshine), data=data)
    assert response.status_code == 409
    text = squash(text_of(response))
    assert (f"Not saved: the status of {HOSHINE} changed from active to under review on "
            f"{frozen_today:%d %b %Y} after this page was opened") in text
    db.session.expire_all()
    assert relationship_to(HOSHINE).status == "under_review" and changes() == 1
    # the form drawn again carries the new status, so sending it again applies to it
    retry, _ = status_post(client, mapped, hoshine, page=response.get_data(as_text=True), status="not_linked",
                           date=frozen_today.isoformat(), reason="a different company")
    assert retry[f"rel{hoshine.id}-seen_status"] == "under_review"
    retry[f"rel{hoshine.id}-form_token"] = data[f"rel{hoshine.id}-form_token"]
    assert client.post(status_url(mapped, hoshine), data=retry).status_code == 303
    db.session.expire_all()
    assert relationship_to(HOSHINE).status == "not_linked" and changes() == 2


def test_a_form_of_a_map_replaced_since_is_refused_as_stale(client, login_as, mapped, frozen_today):
    login_as("analyst")
    hoshine = relationship_to(HOSHINE)
    old_page = client.get(tab_url(mapped)).get_data(as_text=True)
    data = MAP.read_text() + "Quiet Glass Co. (fictional),2,supplier,glass,CN,Anhui,p. 44\n"
    service.save(mapped.company, data.encode(), "supplier_list_2026.csv")  # map 2, imported meanwhile
    db.session.commit()
    post, _ = status_post(client, mapped, hoshine, page=old_page, status="under_review", date=frozen_today.isoformat())
    response = client.post(status_url(mapped, hoshine), data=post)
    assert response.status_code == 409
    assert ("Not saved: map 2 of Fictional Solar Modules Co. was recorded after this page was opened"
            in squash(text_of(response)))
    assert changes() == 0
    # the new map's relationship carries the status and takes the change
    current = relationship_to(HOSHINE, number=2)
    post, _ = status_post(client, mapped, current, status="under_review", date=frozen_today.isoformat())
    assert client.post(status_url(mapped, current), data=post).status_code == 303
    assert changes() == 1


def test_the_stale_check_is_the_databases_not_the_sessions(mapped, frozen_today):
    """Another transaction changed the row after this session read it: the guarded UPDATE finds out."""
    hoshine = relationship_to(HOSHINE)
    assert hoshine.status == "active"
    with db.engine.begin() as conn:
        conn.execute(sa.update(Relationship.__table__).where(Relationship.id == hoshine.id)
                     .values(status="remediation_plan", status_date=frozen_today))
    with pytest.raises(service.StaleStatus) as stale:
        service.change_status_seen(hoshine, "active", "exit_planned", frozen_today, target_date=dt.date(2026, 12, 31))
    assert "changed from active to remediation plan" in stale.value.message
    db.session.rollback()
    assert changes() == 0 and relationship_to(HOSHINE).status == "remediation_plan"


def test_a_viewer_cannot_post_and_a_relationship_of_another_company_is_not_found(client, login_as, mapped,
                                                                                  frozen_today):
    login_as("viewer")
    hoshine = relationship_to(HOSHINE)
    data = {f"rel{hoshine.id}-status": "under_review", f"rel{hoshine.id}-date": frozen_today.isoformat(),
            f"rel{hoshine.id}-seen_status": "active"}
    assert client.post(status_url(mapped, hoshine), data=data).status_code == 403
    assert client.post(add_url(mapped), data={"name": "Anything Co.", "kind": "supplier", "tier": "1"}
                       ).status_code == 403
    assert changes() == 0
    login_as("analyst")
    other = factories.engagement()
    assert client.post(status_url(other, hoshine), data=data).status_code == 404


def test_the_status_form_needs_its_csrf_token(make_app, make_user, mapped, frozen_today):
    protected = make_app(WTF_CSRF_ENABLED=True)
    client = protected.test_client()
    user = make_user("analyst")
    page = client.get("/auth/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    client.post("/auth/login", data={"email": user.email, "password": "correct horse battery staple",
                                     "csrf_token": token})
    hoshine = relationship_to(HOSHINE)
    data, _ = status_post(client, mapped, hoshine, status="under_review", date=frozen_today.isoformat())
    assert client.post(status_url(mapped, hoshine), data=data).status_code == 400
    assert changes() == 0


# --- adding one relationship -----------------------------------------------------------------


def test_an_analyst_adds_a_listed_counterparty_and_it_is_resolved_flagged_and_screened(client, login_as, mapped):
    login_as("analyst")
    before = db.session.scalar(sa.select(sa.func.count()).select_from(Company))
    data = {"name": "Xinjiang Hoshine Silicon Industry (Shanshan) Co. Ltd.", "kind": "sub_supplier", "tier": "3",
            "products": "silicon metal", "country": "China", "region": "Shanshan, Turpan",
            "source_ref": "Letter reply of 3 June 2026"}
    response = client.post(add_url(mapped), data=data, follow_redirects=True)
    assert response.status_code == 200
    text = squash(text_of(response))
    assert "added to map 1 as sub-supplier, tier 3" in text
    assert "Flagged:" in text and "in the Uyghur Region (region names Shanshan)" in text
    added = db.session.scalar(sa.select(Relationship).join(Company, Company.id == Relationship.counterparty_id)
                              .where(Company.name == data["name"]))
    assert (added.kind, added.tier, added.country, added.in_uyghur_region, added.source_ref, added.map.number) == (
        "sub_supplier", 3, "CN", True, "Letter reply of 3 June 2026", 1)
    assert added.counterparty.origin == "value chain of Fictional Solar Modules Co."
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Company)) == before + 1
    assert added.map.diff["added"] == 13 and added.map.diff["lines"][-1].startswith("+ Xinjiang Hoshine Silicon")
    assert "Flagged links (6)" in text


def test_adding_an_existing_company_resolves_it_and_a_duplicate_is_refused(client, login_as, mapped, runner):
    login_as("analyst")
    company_count = db.session.scalar(sa.select(sa.func.count()).select_from(Company))
    daqo = db.session.scalar(sa.select(Company).where(Company.name == "Xinjiang Daqo New Energy Co. Ltd."))
    # Daqo is in the map as a sub-supplier: adding it again as one is refused, nothing written
    response = client.post(add_url(mapped), data={"name": "Xinjiang Daqo New Energy Co., Ltd", "kind": "sub_supplier",
                                                   "tier": "2"})
    assert response.status_code == 422
    text = squash(text_of(response))
    assert "Xinjiang Daqo New Energy Co. Ltd. is already in map 1 as sub-supplier (p. 42)" in text and "a map lists each counterparty once per kind" in text
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Relationship)) == 12
    # as a customer it is a new relationship with the same company
    response = client.post(add_url(mapped), data={"name": "Xinjiang Daqo New Energy Co., Ltd", "kind": "customer",
                                                  "tier": "1"})
    assert response.status_code == 303
    added = db.session.scalar(sa.select(Relationship).where(Relationship.kind == "customer"))
    assert added.counterparty_id == daqo.id
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Company)) == company_count


def test_a_close_name_is_a_new_company_unless_the_analyst_takes_the_match(client, login_as, mapped):
    login_as("analyst")
    brightfield = db.session.scalar(sa.select(Company).where(Company.name == "Brightfield Module Glass Co. (fictional)"))
    close = {"name": "Brightfield Glass Co. (fictional)", "kind": "customer", "tier": "1"}
    shown = service.add_relationship(mapped.company, **close, screen=False)
    db.session.rollback()
    assert shown.created and shown.possible[1:3] == (brightfield.name, 85), shown.possible
    response = client.post(add_url(mapped), data={**close, "accept_possible": "y"}, follow_redirects=True)
    assert "(an existing company)" in squash(text_of(response))
    added = db.session.scalar(sa.select(Relationship).where(Relationship.kind == "customer"))
    assert added.counterparty_id == brightfield.id


def test_a_link_the_new_map_left_out_added_back_gets_its_status_and_is_no_longer_removed(client, login_as, mapped):
    login_as("analyst")
    tarim = relationship_to("Tarim Fictional Quartz Mining Co.")
    service.change_status(tarim, "under_review", clock.today())
    second = "".join(line for line in MAP.read_text().splitlines(keepends=True) if not line.startswith("Tarim"))
    vc_map = service.save(mapped.company, second.encode(), "supplier_list_2026.csv").map
    db.session.commit()
    assert vc_map.diff["removed"] == 1
    response = client.post(add_url(mapped), data={"name": "Tarim Fictional Quartz Mining Co.", "kind": "sub_supplier",
                                                  "tier": "3", "region": "Hotan Prefecture", "country": "CN"})
    assert response.status_code == 303
    db.session.expire_all()
    back = relationship_to("Tarim Fictional Quartz Mining Co.", number=2)
    assert (back.status, back.status_date, back.in_uyghur_region) == ("under_review", clock.today(), True)
    assert (back.map.diff["added"], back.map.diff["removed"], back.map.diff["lines"]) == (0, 0, [])


@pytest.mark.parametrize("fields,field_name,message", [
    (dict(name=""), "name", "Give the counterparty's name."),
    (dict(country="Atlantis"), "country", "not a country"),
    (dict(isin="US0000000001"), "isin", ""),
    (dict(lei="ABC"), "lei", ""),
    (dict(name="Fictional Solar Modules Co."), "name", "itself"),
    (dict(tier="7"), "tier", "Not a valid choice"),
])
def test_bad_input_for_a_new_relationship_is_refused_and_nothing_is_written(client, login_as, mapped, fields,
                                                                             field_name, message):
    login_as("analyst")
    before = (db.session.scalar(sa.select(sa.func.count()).select_from(Relationship)),
              db.session.scalar(sa.select(sa.func.count()).select_from(Company)))
    data = {"name": "Some Supplier (fictional)", "kind": "supplier", "tier": "1", **fields}
    response = client.post(add_url(mapped), data=data)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    error = re.search(rf'<p class="error" id="{field_name}-error">([^<]*)</p>', page)
    assert error and message in html.unescape(error.group(1)), page[page.find("Not saved"):][:500]
    db.session.expire_all()
    assert (db.session.scalar(sa.select(sa.func.count()).select_from(Relationship)),
            db.session.scalar(sa.select(sa.func.count()).select_from(Company))) == before


def test_the_first_relationship_of_an_unmapped_company_makes_map_1(client, login_as, runner):
    load_lists(runner)
    engagement = factories.engagement()
    login_as("analyst")
    page = client.get(tab_url(engagement)).get_data(as_text=True)
    token = hidden(form_of(page, add_url(engagement)), "form_token")
    data = {"name": "Nordwind Aluminium Frames GmbH (fictional)", "kind": "supplier", "tier": "1", "country": "DE",
            "region": "Bavaria", "form_token": token}
    assert client.post(add_url(engagement), data=data).status_code == 303
    again = client.post(add_url(engagement), data=data, follow_redirects=True)  # a double click
    assert "this form was sent twice" in again.get_data(as_text=True)
    vc_map = db.session.scalar(sa.select(ValueChainMap))
    assert (vc_map.number, vc_map.source_kind, vc_map.company_id) == (1, "manual", engagement.company_id)
    assert len(vc_map.relationships) == 1 and not vc_map.relationships[0].in_uyghur_region
    text = squash(text_of(client.get(tab_url(engagement))))
    assert "Relationships disclosed 1" in text and "Flagged 0" in text


# --- the drawing -----------------------------------------------------------------------------


def test_the_drawing_marks_flagged_nodes_without_colour_and_escapes_names(client, login_as, runner):
    load_lists(runner)
    company = maker()
    engagement = factories.engagement(company=company)
    data = ("Supplier,Tier,Relationship,Products,Country,Region\n"
            "\"<script>alert(1)</script> Trading\",1,supplier,yarn,CN,Hotan\n"
            "Quiet Glass Co. (fictional),2,supplier,glass,CN,Anhui\n")
    service.save(company, data.encode(), "map.csv")
    db.session.commit()
    login_as("viewer")
    page = client.get(tab_url(engagement)).get_data(as_text=True)
    svg = page[page.index("<svg"):page.index("</svg>")]
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Trading" in svg
    assert 'class="vc-node vc-flagged"' in svg and svg.count("<polygon") == 3  # one node, two in the legend
    flagged_node = svg[svg.index('class="vc-node vc-flagged"'):]
    flagged_node = flagged_node[:flagged_node.index("</g>")]
    assert ">!</text>" in flagged_node  # a text marker, not only a colour
    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt; Trading — supplier, tier 1 — flagged: Uyghur Region" \
           in flagged_node
    assert "flagged: on a list or in the Uyghur Region" in svg  # the legend
    assert "<title>Quiet Glass Co. (fictional) — supplier, tier 2</title>" in svg
    assert 'role="img"' in svg and "<desc" in svg


def test_the_drawing_keeps_flagged_nodes_and_says_how_many_are_left_out():
    flagged = [drawing.Node(key=i, name=f"Flagged {i}", tier=1 + i % 3, flagged=True) for i in range(3)]
    others = [drawing.Node(key=100 + i, name=f"Other {i}", tier=2) for i in range(drawing.MAX_OTHERS)]
    chosen = drawing.choose(flagged, others)
    assert chosen[:3] == flagged and len(chosen) == 3 + drawing.MAX_OTHERS
    result = drawing.layout("Engaged Co.", chosen, total=100, total_flagged=5)
    assert (result.hidden, result.hidden_flagged) == (100 - len(chosen), 2)
    assert [tier for tier, _radius in result.rings] == [1, 2, 3]
    radii = dict(result.rings)
    for placed in result.nodes:
        distance = ((placed.x - result.centre) ** 2 + (placed.y - result.centre) ** 2) ** 0.5
        assert abs(distance - radii[placed.node.tier]) < 0.2
        assert 0 <= placed.x <= result.size and 0 <= placed.label_y <= result.size
    positions = {(p.x, p.y) for p in result.nodes}
    assert len(positions) == len(result.nodes)  # no two nodes on one spot
    assert [p.marker for p in result.flagged] == ["!"] * 3
    assert drawing.shorten("A very long supplier name indeed, Ltd.") == "A very long supplie…"
    assert drawing.layout("Alone Co.", []).nodes == []


def test_figures_and_page_agree_after_an_exit_in_the_past(client, login_as, mapped):
    """An exit plan whose target date passed shows as overdue, on the page and in the figures."""
    login_as("analyst")
    hoshine = relationship_to(HOSHINE)
    today = clock.today()
    service.change_status(hoshine, "exit_planned", today - dt.timedelta(days=30), target_date=today - dt.timedelta(days=1))
    db.session.commit()
    text = squash(text_of(client.get(tab_url(mapped))))
    assert "Overdue exits 1 (exit planned, target date passed)" in text
    assert "(overdue)" in text


def test_the_same_file_imported_again_after_a_link_added_by_hand_is_a_new_map(client, login_as, mapped, runner):
    """Identical bytes are refused as nothing to import, unless the map was changed by hand since."""
    login_as("analyst")
    again = runner.invoke(args=["valuechain", "import", str(MAP), "--company", str(mapped.company_id)])
    assert again.exit_code != 0 and "identical to map 1" in again.output + str(again.stderr)
    response = client.post(add_url(mapped), data={"name": "Aurora Inverter Works (fictional)", "kind": "supplier",
                                                   "tier": "1", "country": "DE"})
    assert response.status_code == 303, response.get_data(as_text=True)
    again = runner.invoke(args=["valuechain", "import", str(MAP), "--company", str(mapped.company_id)])
    assert again.exit_code == 0, again.output + str(again.stderr)
    second = db.session.scalar(sa.select(ValueChainMap).where(ValueChainMap.number == 2))
    assert second.diff["removed"] == 1 and "- Aurora Inverter Works (fictional)" in " ".join(second.diff["lines"])


def test_a_map_import_is_one_change_in_the_audit_trail(runner):
    """The bulk-inserted companies and relationships of one import share the import's audit group."""
    load_lists(runner)
    company = maker()
    first = db.session.scalar(sa.select(sa.func.max(AuditEvent.id))) or 0
    result = runner.invoke(args=["valuechain", "import", str(MAP), "--company", str(company.id)])
    assert result.exit_code == 0, result.output + str(result.stderr)
    groups = db.session.execute(sa.select(AuditEvent.object_type, AuditEvent.group_id).where(
        AuditEvent.id > first, AuditEvent.object_type.in_(["ValueChainMap", "Relationship", "Company"]))).all()
    assert {t for t, _ in groups} == {"ValueChainMap", "Relationship", "Company"}
    assert len({g for _, g in groups}) == 1, groups


def test_a_sub_supplier_reads_with_its_hyphen(app):
    """Kinds read as words a person writes: 'Sub-supplier', not 'Sub supplier'."""
    from engage.formatting import label

    assert label("sub_supplier") == "Sub-supplier" and label("joint_venture") == "Joint venture"
