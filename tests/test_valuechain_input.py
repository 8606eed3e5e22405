"""Bad input in a value-chain map (issue 16, "Bad input and scale"): a region that is not a place,
a tier that is not a number, columns that are not read; and the save that takes its preview.

The parser is pure (no database): the properties run on `parsing.parse` directly; the refusals
and the save go through the command line and the service, as an analyst's import does.
"""

from __future__ import annotations

import csv
import io

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engage.extensions import db
from engage.lists import screening
from engage.models import AuditEvent, Company, MatchCandidate, Relationship, RiskFlag, ValueChainMap
from engage.valuechain import parsing, service
from engage.valuechain.regions import has_letters, region_problem, subdivision
from tests import factories
from tests.test_valuechain import HEADER, counts, load_lists, maker, run

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

#: Real region names as supplier lists write them: English, pinyin, accents, Chinese, punctuation.
PLACES = [
    "Shihezi, Xinjiang", "Inner Mongolia, Baotou", "Bavaria", "Hotan Prefecture", "Bac Ninh", "Penang",
    "Île-de-France", "São Paulo", "新疆", "Anhui, Fengyang", "Jiangsu, Changzhou", "Zhundong, Changji", "Ürümqi",
    "Kashgar (Kashi)", "Ho Chi Minh City", "Łódź", "St. Gallen", "Washington, D.C.", "Москва", "Turpan/Shanshan",
    "Anhui....", "Xinjiang Uyghur Autonomous Region", "新疆维吾尔自治区 石河子市", "Mar del Plata", "Zone 3", "Brno",
    "Cwm", "No. 88 Weiyi Road, Shihezi Economic Development Zone, Xinjiang 832000",
]


def one_row(region: str, country: str = "CN", tier: str = "1") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["Supplier", "Tier", "Country", "Region"])
    writer.writerow(["Acme Glass (fictional)", tier, country, region])
    return out.getvalue().encode()


# --- the rule ----------------------------------------------------------------------------------


@pytest.mark.parametrize("region", PLACES)
def test_real_region_names_are_places(region):
    assert region_problem(region) is None


@pytest.mark.parametrize("region, reason", [
    ("12345", "a number, not a place"),
    ("3.5", "a number, not a place"),
    ("1e5", "a number, not a place"),
    ("2024-05-01", "no letters"),
    ("???", "no letters"),
    ("5 May 2024", "a date, not a place"),
    ("March 2024", "a date, not a place"),
    ("May 5th, 2024", "a date, not a place"),
    ("2024年5月", "a date, not a place"),
    ("sales@example.com", "an email address, not a place"),
    ("https://supplier.example.cn/about", "a web address, not a place"),
    ("www.supplier.cn", "a web address, not a place"),
    ("#REF!", "a spreadsheet error"),
    ("=A1&B1", "a spreadsheet formula"),
    ("N/A", "says there is no region"),
    ("unknown", "says there is no region"),
    ("不详", "says there is no region"),
    ("sdfghj", "reads as junk"),
    ("xxxxx", "reads as junk"),
    ("Our suppliers are spread over many provinces " * 6, "at most 200 characters"),
])
def test_what_is_clearly_not_a_place_is_refused_with_why(region, reason):
    assert reason in region_problem(region)


def test_a_city_is_a_place_though_not_a_subdivision_and_a_subdivision_is_recorded():
    assert subdivision("Shihezi, Xinjiang", "CN") == ("CN-XJ", "Xinjiang Uygur Zizhiqu")
    assert subdivision("Anhui Province", "CN")[0] == "CN-AH"
    assert subdivision("São Paulo", "BR")[0] == "BR-SP"
    assert subdivision("Bac Ninh", "VN")[0] == "VN-56"  # accents aside
    assert subdivision("Bavaria", "DE") is None and region_problem("Bavaria") is None  # an exonym: still a place
    assert subdivision("Penang", "MY") is None and region_problem("Penang") is None
    assert subdivision("Xinjiang", None) is None  # no country, nothing to compare with
    parsed = parsing.parse(one_row("Shihezi, Xinjiang"))
    assert (parsed.rows[0].region, parsed.rows[0].subdivision) == ("Shihezi, Xinjiang", "CN-XJ")
    parsed = parsing.parse(one_row("Fengyang", "CN"))
    assert (parsed.rows[0].region, parsed.rows[0].subdivision) == ("Fengyang", None)


# --- properties --------------------------------------------------------------------------------

cell_text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=250)


@SETTINGS
@given(cell_text)
def test_any_region_cell_is_read_as_a_place_with_letters_or_refused_naming_row_and_column(region):
    parsed = parsing.parse(one_row(region))
    if parsed.errors:
        (error,) = parsed.errors
        assert (error.row, error.column) == (2, "Region")
        assert str(error).startswith("row 2, column Region: ")
        assert parsed.rows == []  # the row is not read, so nothing of it can be written
    else:
        (row,) = parsed.rows
        assert row.region == "" or has_letters(row.region)
        assert row.region == row.region.strip() and len(row.region) <= 200


@SETTINGS
@given(st.lists(st.sampled_from(PLACES), min_size=1, max_size=3),
       st.sampled_from([", ", " - ", "; ", " / ", " ", "，"]))
def test_real_places_joined_with_punctuation_are_accepted(parts, separator):
    region = separator.join(parts)[:200]
    parsed = parsing.parse(one_row(region))
    assert parsed.ok, parsed.errors
    assert parsed.rows[0].region == " ".join(region.split())


@SETTINGS
@given(cell_text.filter(lambda t: t.strip() != ""))
def test_any_tier_cell_is_a_tier_from_1_to_3_or_refused_naming_row_and_column(tier):
    parsed = parsing.parse(one_row("Anhui", tier=tier))
    if parsed.errors:
        assert [(e.row, e.column) for e in parsed.errors] == [(2, "Tier")]
        assert str(parsed.errors[0]).startswith("row 2, column Tier: a tier is a positive whole number")
    else:
        assert parsed.rows[0].tier in (1, 2, 3)


# --- through the command line --------------------------------------------------------------


@pytest.mark.parametrize("region, message", [
    ("2024-05-01", "row 3, column Region: not a place: no letters"),
    ("info@lumenpath.example.com", "row 3, column Region: an email address, not a place"),
    ("N/A", "row 3, column Region: says there is no region"),
    ("x" * 201, "row 3, column Region: a region is a place's name, at most 200 characters (this one has 201)"),
])
def test_a_map_with_a_region_that_is_not_a_place_is_refused_whole(runner, tmp_path, region, message):
    company = maker()
    path = tmp_path / "map.csv"
    path.write_text(HEADER + "Brightfield Module Glass (fictional),1,supplier,glass,CN,Anhui,p. 1\n"
                    f'Lumenpath Cell Technology (fictional),1,supplier,cells,VN,"{region}",p. 1\n')
    before = counts()
    result = run(runner, str(path), "--company", str(company.id))
    assert result.exit_code == 1
    assert message in result.stderr
    assert "nothing was imported" in result.stderr
    assert counts() == before


def test_a_map_of_real_regions_in_any_script_imports(runner, tmp_path):
    company = maker()
    path = tmp_path / "map.csv"
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["Supplier", "Country", "Region"])
    for i, region in enumerate(PLACES):
        writer.writerow([f"Regional Supplier {i:02d} Glass (fictional)", "CN", region])
    path.write_text(out.getvalue(), encoding="utf-8")
    result = run(runner, str(path), "--company", str(company.id))
    assert result.exit_code == 0, result.output + result.stderr
    stored = set(db.session.scalars(sa.select(Relationship.region)))
    assert stored == set(PLACES)


def test_columns_that_are_not_read_are_named_in_the_report(runner, tmp_path):
    company = maker()
    path = tmp_path / "map.csv"
    path.write_text("Supplier,Spend (USD),Tier,Contact e-mail,Tier\n"
                    "Brightfield Module Glass (fictional),\"1,000\",1,ops@brightfield.example,2\n")
    result = run(runner, str(path), "--company", str(company.id), "--dry-run")
    assert result.exit_code == 0, result.output + result.stderr
    assert "Columns not read: Spend (USD), Contact e-mail, Tier (no field of a map;" in result.output
    shown = service.preview(company, path.read_bytes(), "map.csv")
    assert shown.ignored_columns == ["Spend (USD)", "Contact e-mail", "Tier"]
    assert shown.rows[0].item.tier == 1  # the first Tier column is the one read


# --- save takes its preview ----------------------------------------------------------------


def _scenario(runner):
    load_lists(runner)
    company = maker()
    hoshine = factories.company("Hoshine Silicon Industry Co., Ltd.", country="CN")
    factories.company("Hoshine Example Subsidiary Trading Co. (fictional)", parent=hoshine)
    factories.company("Nordwind Aluminium Frames GmbH (fictional)", country="DE")
    db.session.commit()
    screening.screen(notify=False)
    db.session.commit()
    data = (HEADER + "Xinjiang GCL New Energy Material Technology Co. Ltd.,2,sub-supplier,polysilicon,CN,,p. 1\n"
            "Hoshine Silicon Industry Co. Ltd.,3,sub-supplier,silicon,CN,\"Shanshan, Turpan\",p. 1\n"
            "Hoshine Example Subsidiary Trading Co. (fictional),2,supplier,silicon,CN,Zhejiang,p. 1\n"
            "Tarim Fictional Quartz Mining Co.,3,sub-supplier,quartz,CN,Hotan,p. 2\n"
            "Tarim Fictional Quartz Mining Co.,1,customer,quartz,CN,Hotan,p. 2\n"
            "Xinjiang East Hope Nonferrous Metals Co. Ltd.,2,supplier,aluminium,CN,Changji,p. 2\n"
            "Nordwind Aluminium Frames GmbH (fictional),1,supplier,frames,DE,Bavaria,p. 3\n").encode()
    return company, data


def _outcome(saved: service.Saved) -> dict:
    names = dict(db.session.execute(sa.select(Company.id, Company.name)).all())
    result = saved.screening
    return {
        "created": [c.name for c in saved.created],
        "relationships": sorted((names[r.counterparty_id], r.kind, r.tier, r.region, r.in_uyghur_region)
                                for r in saved.map.relationships),
        "flags": sorted((names[f.company_id], f.source, f.link, f.match_score, f.match_reason) for f in result.created),
        "queued": sorted((names[q.company_id], q.entry_key, q.score) for q in result.queued),
        "checked": result.companies_checked,
        "flags in the database": sorted((names[c], s, link) for c, s, link in db.session.execute(
            sa.select(RiskFlag.company_id, RiskFlag.source, RiskFlag.link).where(RiskFlag.ended_on.is_(None)))),
        "questions in the database": db.session.scalar(sa.select(sa.func.count(MatchCandidate.id))),
    }


def test_a_save_given_its_preview_writes_and_screens_exactly_as_one_without(runner):
    company, data = _scenario(runner)
    alone = service.save(company, data, "map.csv")
    expected = _outcome(alone)
    db.session.rollback()
    shown = service.preview(company, data, "map.csv")
    assert shown.screened is not None and shown.screened.candidates
    calls = []
    original = service.match
    service.match = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        reused = service.save(company, data, "map.csv", preview=shown)
    finally:
        service.match = original
    assert reused.preview is shown and calls == []  # neither resolved nor matched again
    assert _outcome(reused) == expected
    assert expected["created"] == ["Xinjiang GCL New Energy Material Technology Co. Ltd.",
                                   "Tarim Fictional Quartz Mining Co.", "Xinjiang East Hope Nonferrous Metals Co. Ltd."]
    assert ("Xinjiang GCL New Energy Material Technology Co. Ltd.", "us_entity_list", "direct") in \
        [f[:3] for f in expected["flags"]]
    # the new companies and the relationships are in the audit trail, as the mapper hooks write them
    db.session.commit()
    events = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "create",
                                                            AuditEvent.object_type.in_(["Company", "Relationship"]))
                                .order_by(AuditEvent.id)).all()
    by_type = {}
    for event in events:
        by_type.setdefault(event.object_type, []).append(event)
    made = [e for e in by_type["Company"] if e.changes.get("origin") == "value chain of Fictional Solar Modules Co."]
    assert [e.object_id for e in made] == [c.id for c in reused.created]
    assert made[0].summary == "create Company Xinjiang GCL New Energy Material Technology Co. Ltd."
    assert (made[0].changes["name"], made[0].changes["country"], made[0].changes["isin"]) == (
        "Xinjiang GCL New Energy Material Technology Co. Ltd.", "CN", None)
    assert "created_at" not in made[0].changes and made[0].actor_label == "system"
    assert sorted(e.object_id for e in by_type["Relationship"]) == sorted(r.id for r in reused.map.relationships)
    hoshine = next(e for e in by_type["Relationship"] if e.changes["region"] == "Shanshan, Turpan")
    assert (hoshine.changes["tier"], hoshine.changes["in_uyghur_region"], hoshine.changes["status"]) == (3, True, "active")


def test_a_preview_of_other_bytes_or_before_another_map_is_not_taken(runner):
    company, data = _scenario(runner)
    other = data.replace(b"Nordwind Aluminium Frames GmbH (fictional),1,supplier,frames,DE,Bavaria,p. 3\n", b"")
    stale = service.preview(company, other, "map.csv")
    saved = service.save(company, data, "map.csv", preview=stale)
    assert saved.preview is not stale and len(saved.map.relationships) == 7
    db.session.commit()
    before_second = service.preview(company, other, "map.csv")  # made against map 1
    assert service.save(company, other, "other.csv", preview=before_second).preview is before_second
    db.session.rollback()
    service.save(company, other.replace(b"p. 1", b"p. 9"), "third.csv")  # now map 2 exists
    retaken = service.save(company, other, "other.csv", preview=before_second)
    assert retaken.preview is not before_second
    assert retaken.map.number == 3 and retaken.preview.diff.previous_number == 2
    assert db.session.scalar(sa.select(sa.func.count(ValueChainMap.id))) == 3
