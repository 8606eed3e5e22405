"""The value chain as data (issue 16, foundation): import a disclosed map, resolve, flag, version, status.

The lists are the seeded files (seeds/lists, loaded through `flask lists import` as an analyst
would); the map is tests/fixtures/valuechain/solar_supplier_list.csv (see its README).
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest
import sqlalchemy as sa
from openpyxl import Workbook

from engage.errors import FieldError
from engage.extensions import db
from engage.lists import screening
from engage.models import (
    AuditEvent,
    Company,
    CompanyAlias,
    Relationship,
    RelationshipStatusChange,
    RiskFlag,
    ValueChainMap,
)
from engage.valuechain import service
from engage.valuechain.regions import in_uyghur_region
from tests import factories

ROOT = Path(__file__).parent.parent
MAP = ROOT / "tests" / "fixtures" / "valuechain" / "solar_supplier_list.csv"
LISTS = ROOT / "seeds" / "lists"
HEADER = "Supplier,Tier,Relationship,Products,Country,Region,Page\n"


def load_lists(runner, retrieved: str = "2026-06-01") -> None:
    for name in ("us_entity_list.csv", "cbp_wro.csv"):
        result = runner.invoke(args=["lists", "import", str(LISTS / name), "--retrieved", retrieved])
        assert result.exit_code == 0, result.output + str(result.stderr)


def maker() -> Company:
    company = factories.company("Fictional Solar Modules Co.", isin="US0378331005")
    db.session.commit()
    return company


def counts() -> tuple[int, int, int, int]:
    return tuple(db.session.scalar(sa.select(sa.func.count()).select_from(model))
                 for model in (ValueChainMap, Relationship, Company, RiskFlag))


def run(runner, *args: str):
    return runner.invoke(args=["valuechain", "import", *args])


def relationship_to(company_name: str, number: int = 1) -> Relationship:
    return db.session.scalar(sa.select(Relationship).join(ValueChainMap).join(
        Company, Company.id == Relationship.counterparty_id).where(Company.name == company_name,
                                                                    ValueChainMap.number == number))


# --- import ----------------------------------------------------------------------------------


def test_the_solar_map_resolves_flags_and_saves_in_one_go(runner):
    load_lists(runner)
    company = maker()
    # Daqo is already a company (flagged by the list import's screening); Hoshine has a subsidiary
    daqo = factories.company("Xinjiang Daqo New Energy Co., Ltd.", country="CN")
    hoshine = factories.company("Hoshine Silicon Industry Co., Ltd.", country="CN")
    jiaxing = factories.company("Hoshine Example Subsidiary Trading Co. (fictional)", parent=hoshine)
    db.session.commit()
    screening.screen(notify=False)
    db.session.commit()
    before = counts()

    dry = run(runner, str(MAP), "--company", "US0378331005", "--dry-run")
    assert dry.exit_code == 0, dry.output + str(dry.stderr)
    assert counts() == before  # nothing written
    out = dry.output
    assert "Dry run: map of Fictional Solar Modules Co. (nothing written): 12 relationships; 2 resolved to " \
           "existing companies, 10 new" in out
    assert "Flagged: 5" in out
    assert "  Xinjiang Daqo New Energy Co. Ltd. [p. 42] → Xinjiang Daqo New Energy Co., Ltd. (existing company" in out
    assert "    list: US Entity List (direct:" in out
    assert "    in the Uyghur Region: region names Shihezi" in out
    assert "    list: would be US Entity List (direct: entry “Xinjiang GCL New Energy Material Technology Co. Ltd.”" in out
    assert "    list: CBP Withhold Release Order (direct:" in out  # Hoshine, resolved
    assert "  Tarim Fictional Quartz Mining Co. [p. 43] → new company\n    in the Uyghur Region: region names Hotan" in out
    assert "  Nordwind Aluminium Frames GmbH (fictional) [p. 41] → new company" in out
    assert "First map of the company: 12 relationships" in out
    assert "  + Hoshine Silicon Industry Co., Ltd. (sub-supplier, tier 3+)" in out

    saved = run(runner, str(MAP), "--company", str(company.id), "--source-kind", "report",
                "--source-ref", "Supplier list 2025, annex 2", "--disclosed", "2026-05-20")
    assert saved.exit_code == 0, saved.output + str(saved.stderr)
    assert "Map 1 of Fictional Solar Modules Co. saved" in saved.output
    vc_map = db.session.scalar(sa.select(ValueChainMap))
    assert (vc_map.company_id, vc_map.number, vc_map.source_kind, vc_map.source_ref, vc_map.disclosed_on,
            vc_map.file_name, len(vc_map.sha256)) == (company.id, 1, "report", "Supplier list 2025, annex 2",
                                                      dt.date(2026, 5, 20), "solar_supplier_list.csv", 64)
    assert vc_map.diff["added"] == 12 and vc_map.diff["removed"] == 0
    rels = {r.counterparty.name: r for r in vc_map.relationships}
    assert len(rels) == 12
    assert rels["Xinjiang Daqo New Energy Co., Ltd."].counterparty_id == daqo.id  # resolved, not duplicated
    hoshine_rel = rels["Hoshine Silicon Industry Co., Ltd."]
    assert (hoshine_rel.counterparty_id, hoshine_rel.kind, hoshine_rel.tier, hoshine_rel.products,
            hoshine_rel.country, hoshine_rel.region, hoshine_rel.in_uyghur_region, hoshine_rel.source_ref,
            hoshine_rel.status) == (hoshine.id, "sub_supplier", 3, "metallurgical-grade silicon", "CN",
                                    "Shanshan, Turpan", True, "p. 43", "active")
    assert sorted(n for n, r in rels.items() if r.in_uyghur_region) == [
        "Hoshine Silicon Industry Co., Ltd.", "Tarim Fictional Quartz Mining Co.", "Xinjiang Daqo New Energy Co., Ltd.",
        "Xinjiang East Hope Nonferrous Metals Co. Ltd.", "Xinjiang GCL New Energy Material Technology Co. Ltd."]
    nordwind = rels["Nordwind Aluminium Frames GmbH (fictional)"].counterparty
    assert (nordwind.origin, nordwind.country) == ("value chain of Fictional Solar Modules Co.", "DE")
    # the new counterparties were screened: GCL and East Hope flagged from the Entity List
    gcl = rels["Xinjiang GCL New Energy Material Technology Co. Ltd."].counterparty
    assert [(f.source, f.link) for f in gcl.risk_flags] == [("us_entity_list", "direct")]
    assert "Xinjiang GCL New Energy Material Technology Co. Ltd.: us_entity_list (86 FR 33119" in saved.output
    assert jiaxing.id not in {r.counterparty_id for r in vc_map.relationships}


def test_a_save_screens_only_its_counterparties_and_leaves_other_companies_alone(runner):
    load_lists(runner)
    company = maker()
    # outside the map: a listed parent whose subsidiary carries a linked flag, and a plain company
    hoshine = factories.company("Hoshine Silicon Industry Co., Ltd.", country="CN")
    hoshine_unit = factories.company("Hoshine Example Subsidiary Trading Co. (fictional)", parent=hoshine)
    factories.company("Plain Outside Co.")
    db.session.commit()
    screening.screen(notify=False)
    db.session.commit()
    linked = db.session.scalar(sa.select(RiskFlag).where(RiskFlag.company_id == hoshine_unit.id))
    assert linked.link == "linked" and linked.ended_on is None
    # named on the Entity List but created after the last screening, and not on the map: no flag yet
    daqo = factories.company("Xinjiang Daqo New Energy Co., Ltd.", country="CN")
    # on the map, existing, with a subsidiary of its own
    nordwind = factories.company("Nordwind Aluminium Frames GmbH (fictional)", country="DE")
    nordwind_unit = factories.company("Nordwind Frames Service GmbH (fictional)", parent=nordwind)
    db.session.commit()
    data = (HEADER + "Xinjiang GCL New Energy Material Technology Co. Ltd.,2,sub-supplier,polysilicon,CN,,p. 1\n"
            "Tarim Fictional Quartz Mining Co.,3,sub-supplier,quartz,CN,,p. 1\n"
            "Nordwind Aluminium Frames GmbH (fictional),1,supplier,aluminium frames,DE,,p. 1\n")

    saved = service.save(company, data.encode(), "map.csv")
    db.session.commit()

    gcl, _tarim = saved.created
    assert [c.name for c in saved.created] == ["Xinjiang GCL New Energy Material Technology Co. Ltd.",
                                               "Tarim Fictional Quartz Mining Co."]
    # the new counterparty got its flag; only the three counterparties and Nordwind's subsidiary were loaded
    assert [(f.source, f.link) for f in gcl.risk_flags] == [("us_entity_list", "direct")]
    assert saved.screening.companies_checked == 4
    assert [f.company_id for f in saved.screening.created] == [gcl.id]
    # outside the scope nothing changed: Daqo is not screened, the subsidiary's linked flag stands
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RiskFlag).where(RiskFlag.company_id == daqo.id)) == 0
    db.session.refresh(linked)
    assert linked.ended_on is None
    assert saved.screening.ended == []


def test_a_counterparty_that_is_a_listed_parents_subsidiary_shows_the_linked_flag(runner):
    load_lists(runner)
    company = maker()
    hoshine = factories.company("Hoshine Silicon Industry Co., Ltd.")
    factories.company("Hoshine Example Subsidiary Trading Co. (fictional)", parent=hoshine)
    db.session.commit()
    screening.screen(notify=False)
    db.session.commit()
    data = (HEADER + "Hoshine Example Subsidiary Trading Co. (fictional),2,supplier,silicon metal,CN,Zhejiang,p. 3\n")
    shown = service.preview(company, data.encode(), "map.csv")
    (row,) = shown.rows
    assert row.resolution == service.EXISTING and row.region_reason is None
    linked = [n for n in row.flags if n.link == "linked"]
    assert linked and all(n.via == "Hoshine Silicon Industry Co., Ltd." for n in linked)
    assert {n.list_label for n in linked} == {"CBP Withhold Release Order", "US Entity List"}


def test_a_possible_match_is_shown_and_a_new_company_made_unless_accepted(runner):
    company = maker()
    existing = factories.company("Brightfield Module Glass Holdings Group Co., Ltd.")
    db.session.commit()
    data = (HEADER + "Brightfield Module Glass,1,supplier,solar glass,CN,Anhui,p. 1\n").encode()
    (row,) = service.preview(company, data, "map.csv").rows
    assert row.resolution == service.POSSIBLE and row.possible[0] == existing.id
    assert service.REVIEW_SCORE <= row.possible[2] < service.FLAG_SCORE
    assert "possible: Brightfield Module Glass Holdings Group Co., Ltd. (" in row.describe()
    saved = service.save(company, data, "map.csv")
    assert saved.map.relationships[0].counterparty_id != existing.id and len(saved.created) == 1
    db.session.rollback()
    accepted = service.save(company, data, "map.csv", accept_possible=True)
    assert accepted.map.relationships[0].counterparty_id == existing.id and not accepted.created


def test_a_counterparty_is_resolved_by_its_lei_whatever_its_name(runner):
    company = maker()
    known = factories.company("Acme Glass Holdings (fictional)", lei="5493001KJTIIGC8Y1R12")
    db.session.commit()
    data = b"Vendor,Legal entity\nCompletely Other Name (fictional),5493001KJTIIGC8Y1R12\n"
    (row,) = service.preview(company, data, "map.csv", "name=Vendor,lei=Legal entity").rows
    assert (row.resolution, row.company_id) == (service.EXISTING, known.id)
    assert "LEI" in row.reason


def test_an_xlsx_map_with_a_column_mapping(runner):
    company = maker()
    book = Workbook()
    sheet = book.active
    sheet.append(["Supplier list of Fictional Solar Modules Co., 2025"])
    sheet.append(["Vendor", "Level", "Goods", "Nation", "Province"])
    sheet.append(["Lumenpath Cell Technology Co. (fictional)", 1, "PV cells", "Viet Nam", "Bac Ninh"])
    sheet.append(["Tarim Fictional Quartz Mining Co.", "Tier 3+", "quartz", "CN", "Kashgar"])
    buffer = io.BytesIO()
    book.save(buffer)
    shown = service.preview(company, buffer.getvalue(), "map.xlsx",
                            "name=Vendor,tier=Level,products=Goods,country=Nation,region=Province")
    assert [(r.item.name, r.item.tier, r.item.country, r.item.source_ref, bool(r.region_reason)) for r in shown.rows] == [
        ("Lumenpath Cell Technology Co. (fictional)", 1, "VN", "row 3", False),
        ("Tarim Fictional Quartz Mining Co.", 3, "CN", "row 4", True)]


# --- versions --------------------------------------------------------------------------------


def test_a_second_map_is_a_new_version_with_its_diff_and_the_status_carried_over(runner, frozen_today, tmp_path):
    load_lists(runner)
    company = maker()
    assert run(runner, str(MAP), "--company", str(company.id)).exit_code == 0
    daqo = relationship_to("Xinjiang Daqo New Energy Co. Ltd.")
    service.change_status(daqo, "exit_planned", frozen_today, target_date=dt.date(2026, 12, 31))
    db.session.commit()

    lines = MAP.read_text().splitlines()
    kept = [line for line in lines if not line.startswith("Nordwind")]  # removed
    kept = [line.replace("Clearlam EVA Film Co. (fictional),1,", "Clearlam EVA Film Co. (fictional),2,")
            for line in kept]  # tier changed
    kept.append("Oakridge Encapsulants Ltd. (fictional),1,supplier,POE film,KR,Ulsan,p. 44")  # added
    second = tmp_path / "solar_supplier_list_2026.csv"
    second.write_text("\n".join(kept) + "\n")
    result = run(runner, str(second), "--company", str(company.id))
    assert result.exit_code == 0, result.output + str(result.stderr)
    assert "Changes against map 1: 1 added, 1 removed, 1 changed" in result.output
    assert "  + Oakridge Encapsulants Ltd. (fictional) (supplier, tier 1)" in result.output
    assert "  - Nordwind Aluminium Frames GmbH (fictional) (supplier, tier 1)" in result.output
    assert "  ~ Clearlam EVA Film Co. (fictional) (supplier, tier 2): tier 1 → 2" in result.output
    new = db.session.scalar(sa.select(ValueChainMap).where(ValueChainMap.number == 2))
    assert (new.previous_id, new.diff["added"], new.diff["removed"], new.diff["changed"]) == (
        db.session.scalar(sa.select(ValueChainMap.id).where(ValueChainMap.number == 1)), 1, 1, 1)
    carried = relationship_to("Xinjiang Daqo New Energy Co. Ltd.", 2)
    assert (carried.id != daqo.id, carried.status, carried.status_date, carried.target_date) == (
        True, "exit_planned", frozen_today, dt.date(2026, 12, 31))
    assert relationship_to("Hoshine Silicon Industry Co. Ltd.", 2).status == "active"
    # no duplicate companies: the second map resolved to the counterparties the first created
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Company).where(
        Company.name == "Xinjiang Daqo New Energy Co. Ltd.")) == 1


# --- refusals --------------------------------------------------------------------------------

BAD = {
    "unknown mapping field": (HEADER + "Acme Glass (fictional),1,supplier,glass,CN,Anhui,p. 1\n",
                              ["--map", "colour=Colour"], "unknown field(s) in the column mapping: colour"),
    "missing mapped column": (HEADER + "Acme Glass (fictional),1,supplier,glass,CN,Anhui,p. 1\n",
                              ["--map", "lei=LEI code"], "mapped column(s) not found in the header (row 1): lei=LEI code"),
    "duplicate counterparty": (HEADER + "Acme Glass (fictional),1,supplier,glass,CN,Anhui,p. 1\n"
                               "ACME GLASS (fictional),2,supplier,glass,CN,Anhui,p. 2\n", [],
                               "row 3, column Supplier: this counterparty is also in row 2 as supplier"),
    "tier not a number": (HEADER + "Acme Glass (fictional),first,supplier,glass,CN,Anhui,p. 1\n", [],
                          "row 2, column Tier: a tier is a positive whole number"),
    "tier zero": (HEADER + "Acme Glass (fictional),0,supplier,glass,CN,Anhui,p. 1\n", [],
                  "row 2, column Tier: a tier is a positive whole number"),
    "country not a country": (HEADER + "Acme Glass (fictional),1,supplier,glass,Narnia,Anhui,p. 1\n", [],
                              "row 2, column Country: not a country"),
    "kind not a kind": (HEADER + "Acme Glass (fictional),1,friend,glass,CN,Anhui,p. 1\n", [],
                        "row 2, column Relationship: not a kind of relationship"),
    "the company itself": (HEADER + "Fictional Solar Modules Co,1,supplier,modules,US,Ohio,p. 1\n", [],
                           "row 2, column Supplier: this is Fictional Solar Modules Co. itself, whose map this is"),
    "no name": (HEADER + ",1,supplier,glass,CN,Anhui,p. 1\n", [], "row 2, column Supplier: no counterparty name"),
    "invalid LEI": ("Supplier,LEI\nAcme Glass (fictional),5493001KJTIIGC8Y1R13\n", [],
                    "row 2, column LEI: 5493001KJTIIGC8Y1R13 is not a valid LEI"),
    "invalid ISIN": ("Supplier,ISIN\nAcme Glass (fictional),US0378331006\n", [], "row 2, column ISIN:"),
    "empty file": ("", [], "the file is empty"),
    "a broken PDF named .csv": ("%PDF-1.4\n1 0 obj<<>>endobj\n", [], "the PDF is damaged or not a PDF"),
    "header only": (HEADER, [], "has a header (row 1) but no counterparties"),
    "no header": ("a,b,c\n1,2,3\n", [], "no header row naming the counterparty"),
    "50,000 rows": (HEADER + "".join(f"Supplier {i} (fictional),1,supplier,glass,CN,Anhui,p. 1\n"
                                     for i in range(50_000)), [], "more than 25,000 rows, the limit for one map"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_maps_are_refused_whole_and_nothing_is_written(runner, tmp_path, case):
    company = maker()
    content, options, message = BAD[case]
    path = tmp_path / "map.csv"
    path.write_text(content)
    before = counts()
    result = run(runner, str(path), "--company", str(company.id), *options)
    assert result.exit_code == 1
    assert message in result.stderr
    assert counts() == before


def test_an_unknown_company_or_date_is_refused(runner):
    maker()
    assert "no company with ISIN or id 'US0000000000'" in run(runner, str(MAP), "--company", "US0000000000").stderr
    result = run(runner, str(MAP), "--company", "US0378331005", "--disclosed", "yesterday")
    assert result.exit_code == 1 and "--disclosed" in result.stderr
    assert counts()[0] == 0


# --- status ----------------------------------------------------------------------------------


def test_status_changes_follow_the_rules_and_are_recorded(runner, frozen_today, make_user):
    company = maker()
    engagement = factories.engagement(company=company)
    analyst = make_user("analyst")
    saved = service.save(company, MAP.read_bytes(), MAP.name, screen=False)
    db.session.commit()
    link = next(r for r in saved.map.relationships if r.counterparty.name.startswith("Hoshine"))
    day = frozen_today

    refusals = [
        (dict(new="paused", on=day), "status"),
        (dict(new="active", on=day), "status"),
        (dict(new="under_review", on=None), "date"),
        (dict(new="under_review", on=day + dt.timedelta(days=1)), "date"),
        (dict(new="exit_planned", on=day), "target_date"),
        (dict(new="exit_planned", on=day, target_date=day - dt.timedelta(days=1)), "target_date"),
        (dict(new="exited", on=day, evidence="  "), "evidence"),
        (dict(new="not_linked", on=day), "reason"),
    ]
    for kwargs, field_name in refusals:
        with pytest.raises(FieldError) as refused:
            service.change_status(link, **kwargs)
        assert refused.value.field == field_name, kwargs
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RelationshipStatusChange)) == 0

    service.change_status(link, "under_review", day - dt.timedelta(days=20), actor_id=analyst.id)
    service.change_status(link, "exit_planned", day - dt.timedelta(days=10), target_date=dt.date(2026, 9, 30))
    service.change_status(link, "exited", day, evidence="Letter of 12 June 2026: contract with Hoshine ended")
    db.session.commit()
    assert (link.status, link.status_date, link.target_date, link.evidence) == (
        "exited", day, dt.date(2026, 9, 30), "Letter of 12 June 2026: contract with Hoshine ended")
    changes = db.session.scalars(sa.select(RelationshipStatusChange).order_by(RelationshipStatusChange.id)).all()
    assert [(c.from_status, c.to_status, c.engagement_id) for c in changes] == [
        ("active", "under_review", engagement.id), ("under_review", "exit_planned", engagement.id),
        ("exit_planned", "exited", engagement.id)]
    assert changes[0].actor_id == analyst.id and changes[1].target_date == dt.date(2026, 9, 30)
    audited = db.session.scalars(sa.select(AuditEvent.action).where(
        AuditEvent.object_type == "RelationshipStatusChange")).all()
    assert len(audited) == 3

    other = next(r for r in saved.map.relationships if r.counterparty.name.startswith("Tarim"))
    service.change_status(other, "not_linked", day, reason="A different quarry company of the same name")
    db.session.commit()
    assert (other.status, other.not_linked_reason) == ("not_linked", "A different quarry company of the same name")


# --- regions and query counts ----------------------------------------------------------------


@pytest.mark.parametrize("region,name,expected", [
    ("Shihezi, Xinjiang", "", "region names Shihezi"),
    ("Korla (Bayingolin)", "", "region names Korla"),
    ("XUAR", "", "region names Xuar"),
    ("新疆乌鲁木齐", "", "region names 新疆"),
    ("Illinois", "", None),
    ("Jiangsu, Changzhou", "Xinjiang Fictional Cotton Co.", "name starts with Xinjiang"),
    ("Bavaria", "Nordwind (fictional)", None),
])
def test_the_uyghur_region_flag(region, name, expected):
    assert in_uyghur_region(region, name) == expected


def test_the_preview_takes_the_same_queries_for_more_rows(runner, count_queries):
    load_lists(runner)
    company = maker()
    factories.company("Xinjiang Daqo New Energy Co., Ltd.")
    db.session.commit()
    screening.screen(notify=False)
    assert run(runner, str(MAP), "--company", str(company.id)).exit_code == 0

    def measure(rows: int) -> int:
        data = MAP.read_text() + "".join(f"Extra Supplier {i} (fictional),2,supplier,glass,CN,Anhui,p. 9\n"
                                         for i in range(rows))
        counter = count_queries()
        with counter:
            shown = service.preview(company, data.encode(), "map.csv")
        assert len(shown.rows) == 12 + rows
        return counter.count

    assert measure(2) == measure(40)


def test_two_rows_resolving_to_one_company_are_refused_as_duplicates(runner, tmp_path):
    company = maker()
    daqo = factories.company("Xinjiang Daqo New Energy Co., Ltd.")
    daqo.aliases.append(CompanyAlias(alias="Daqo New Energy Xinjiang"))
    db.session.commit()
    path = tmp_path / "map.csv"
    path.write_text(HEADER + "Xinjiang Daqo New Energy Co. Ltd.,2,sub-supplier,polysilicon,CN,Shihezi,p. 1\n"
                             "Daqo New Energy Xinjiang,2,sub-supplier,polysilicon,CN,Shihezi,p. 2\n")
    before = counts()
    result = run(runner, str(path), "--company", str(company.id))
    assert result.exit_code == 1
    assert "row 3, column Supplier: resolves to Xinjiang Daqo New Energy Co., Ltd., as row 2 does" in result.stderr
    assert counts() == before


def test_the_same_file_imported_again_is_refused_as_identical(runner):
    company = maker()
    assert run(runner, str(MAP), "--company", str(company.id)).exit_code == 0
    before = counts()
    result = run(runner, str(MAP), "--company", str(company.id))
    assert result.exit_code == 1
    assert "identical to map 1" in result.stderr
    assert counts() == before


def test_a_row_naming_the_engaged_companys_alias_is_refused_as_itself(runner, tmp_path):
    company = maker()
    company.aliases.append(CompanyAlias(alias="FSM Holdings"))
    db.session.commit()
    path = tmp_path / "map.csv"
    path.write_text("Supplier,Tier\nFSM Holdings,1\n")
    before = counts()
    result = run(runner, str(path), "--company", str(company.id))
    assert result.exit_code == 1
    assert "row 2, column Supplier: this is Fictional Solar Modules Co. itself" in result.stderr
    assert counts() == before


@pytest.mark.parametrize("mapping, message", [
    ("name=Vendor,name=Other", "field name is mapped twice"),
    ("name=Vendor,aliases=Vendor", "column Vendor is mapped to two fields"),
])
def test_a_mapping_naming_a_field_or_a_column_twice_is_refused(runner, tmp_path, mapping, message):
    company = maker()
    path = tmp_path / "map.csv"
    path.write_text("Vendor,Level,Other\nAcme Glass (fictional),1,x\n")
    before = counts()
    result = run(runner, str(path), "--company", str(company.id), "--map", mapping)
    assert result.exit_code == 1
    assert message in result.stderr
    assert counts() == before


def test_a_company_reference_of_odd_digits_is_refused_with_a_message(runner):
    maker()
    result = run(runner, str(MAP), "--company", "²")
    assert result.exit_code == 1
    assert "no company with ISIN or id '²'" in result.stderr


def test_a_name_too_long_for_a_company_is_refused_not_cut(runner, tmp_path):
    company = maker()
    path = tmp_path / "map.csv"
    path.write_text("Supplier,Tier\n" + "A" * 5000 + ",1\n")
    before = counts()
    result = run(runner, str(path), "--company", str(company.id))
    assert result.exit_code == 1
    assert "row 2, column Supplier: a name is at most 200 characters (this one has 5,000)" in result.stderr
    assert counts() == before


def test_a_row_with_the_engaged_companys_isin_is_refused_as_itself_not_a_crash(runner, tmp_path):
    company = maker()
    path = tmp_path / "map.csv"
    path.write_text("Supplier,ISIN\nApple Inc,US0378331005\n")
    before = counts()
    result = run(runner, str(path), "--company", str(company.id))
    assert result.exit_code == 1
    assert "row 2, column Supplier: this is Fictional Solar Modules Co. itself" in result.stderr
    assert counts() == before


def test_one_new_counterparty_in_two_rows_is_one_company(runner, tmp_path):
    company = maker()
    path = tmp_path / "map.csv"
    path.write_text("Supplier,Relationship,ISIN\nAcme Glass (fictional),supplier,US5949181045\n"
                    "Acme Glass (fictional),customer,\nAcme Glass Holdings (fictional),joint venture,US5949181045\n")
    result = run(runner, str(path), "--company", str(company.id))
    assert result.exit_code == 0, result.output + result.stderr
    assert counts()[:3] == (1, 3, 2)
    path.write_text("Supplier,ISIN\nZeta Polymers (fictional),US0231351067\nOmega Cables (fictional),US0231351067\n")
    result = run(runner, str(path), "--company", str(company.id))
    assert result.exit_code == 1
    assert "row 3, column Supplier: has the ISIN of row 2" in result.stderr
    assert counts()[:3] == (1, 3, 2)
