"""The matching's stored readings of names (engage.names): read back as the names read now, kept
fresh by every writer (ORM inserts and renames, the lists' and the value chain's bulk INSERTs,
the migration's backfill), never used when stale, checked and rewritten by `flask lists name-forms`."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from engage import names
from engage.extensions import db
from engage.lists import screening
from engage.models import Company, ListedEntity, RiskFlag
from engage.names import as_entry, entry_names, name_forms, read_stored, refresh, stored_forms
from engage.valuechain import service
from tests import factories

LISTS = Path(__file__).parent.parent / "seeds" / "lists"
HEADER = "Supplier,Tier,Relationship,Products,Country,Aliases\n"

#: Pieces that exercise each step of the reading: legal forms, share classes, brackets, a/k/a,
#: "and its subsidiaries", Chinese characters (ICU transliteration), accents, numbers, punctuation.
PIECES = ["Hangzhou", "Hikvision", "Digital", "Technology", "Co.,", "Ltd.", "Inc", "GmbH", "PT", "A", "H", "ADR",
          "(formerly Old Name)", "(Beijing)", "a/k/a", "f/k/a", "and its subsidiaries", "&", "杭州", "海康威视",
          "有限公司", "股份", "Société", "Générale", "00003", "-", "S.A.", "Daqo", "New", "Energy", "the"]
name_text = st.lists(st.sampled_from(PIECES) | st.text(max_size=6), min_size=0, max_size=7).map(" ".join)


def fresh_everywhere() -> dict[str, tuple[int, int]]:
    """Per table, (stale or missing readings, rows): what `flask lists name-forms` reports."""
    db.session.flush()
    return refresh(db.session.connection(), write=False)


def assert_all_fresh() -> None:
    found = fresh_everywhere()
    assert all(stale == 0 for stale, _ in found.values()), found


@settings(max_examples=150, deadline=None)
@given(st.lists(name_text, min_size=1, max_size=3), st.booleans(), st.booleans())
def test_a_stored_reading_reads_back_as_the_names_read_now(texts, entry, first):
    stored = stored_forms(texts, entry, first)
    back = read_stored(stored, texts, entry, first)
    now = name_forms(texts, entry, first)
    assert back == now
    assert [(f.text, f.compact, f.full, f.token_set, f.numbers) for f in back] == \
        [(f.text, f.compact, f.full, f.token_set, f.numbers) for f in now]
    assert read_stored(stored, [*texts[:-1], texts[-1] + " x"], entry, first) is None  # another name: not used
    assert read_stored(stored, texts, not entry, first) is None
    assert read_stored(None, texts, entry, first) is None
    if len(texts) > 1:  # the same characters split into other names: another record
        assert read_stored(stored, [texts[0] + texts[1], *texts[2:]], entry, first) is None
    json.loads(stored)  # plain JSON, readable in the database


@settings(max_examples=80, deadline=None)
@given(name_text, st.lists(name_text, max_size=3))
def test_a_records_forms_are_its_names_forms_one_by_one(name, aliases):
    """How the loaders and the value-chain preview put a record's forms together from per-name readings."""
    company = name_forms([name]) + [f for a in aliases for f in name_forms([a], first=False)]
    assert company == name_forms([name, *aliases])
    assert as_entry(company) == name_forms([name, *aliases], entry=True)


def test_a_reading_of_another_version_of_the_reading_is_not_used(monkeypatch):
    stored = stored_forms(["Hikvision"])
    assert read_stored(stored, ["Hikvision"]) is not None
    monkeypatch.setattr(names, "forms_version", lambda: "another")  # an upgraded fingerprints, an edited reading
    names._key_prefix.cache_clear()
    try:
        assert read_stored(stored, ["Hikvision"]) is None
        assert names.refreshed(stored, ["Hikvision"]) != stored
    finally:
        monkeypatch.undo()
        names._key_prefix.cache_clear()
    assert read_stored(stored, ["Hikvision"]) is not None


def test_orm_inserts_renames_and_alias_changes_keep_the_readings_fresh(app, client, login_as):
    login_as("analyst")
    response = client.post("/companies/new", data={
        "name": "Xinjiang Example Cotton Co., Ltd.", "aliases": "Example Cotton\n新疆样例", "isin": "", "ticker": "",
        "exchange": "", "country": "cn", "sector": "", "website": "", "description": ""})
    assert response.status_code == 302
    company = db.session.scalar(sa.select(Company))
    assert read_stored(company.name_forms, [company.name]) == name_forms([company.name])
    assert_all_fresh()
    before = company.name_forms

    response = client.post(f"/companies/{company.id}/edit", data={
        "name": "Renamed Textile Group Ltd", "aliases": "Example Cotton\nRenamed Textile", "isin": "", "ticker": "",
        "exchange": "", "country": "cn", "sector": "", "website": "", "description": ""})
    assert response.status_code == 302
    db.session.expire_all()
    company = db.session.get(Company, company.id)
    assert company.name == "Renamed Textile Group Ltd" and company.name_forms != before
    assert read_stored(company.name_forms, [company.name])[0].text == "renamed textile group"
    assert_all_fresh()

    alias = company.aliases[0]
    alias.alias = "Another Trading Name"  # an alias renamed in place
    made = factories.company("Factory Made Holdings (fictional)")  # the tests' factory: an ORM insert
    db.session.flush()
    assert read_stored(alias.name_forms, ["Another Trading Name"], first=False)[0].label == "alias"
    assert read_stored(made.name_forms, [made.name]) is not None
    assert_all_fresh()


def test_list_imports_and_entry_changes_keep_the_readings_fresh(app, runner):
    result = runner.invoke(args=["lists", "import", str(LISTS / "us_entity_list.csv"), "--retrieved", "2026-06-01"])
    assert result.exit_code == 0, result.output
    entries = db.session.scalars(sa.select(ListedEntity)).all()
    assert entries and all(read_stored(e.name_forms, entry_names(e.name, e.aliases), entry=True) is not None
                           for e in entries)
    entry = entries[0]
    entry.aliases = [*(entry.aliases or []), "Some Later Alias Co., Ltd."]  # a new list attribute, as an update would
    db.session.flush()
    forms = read_stored(entry.name_forms, entry_names(entry.name, entry.aliases), entry=True)
    assert forms[-1].text == "some later alias" and forms[-1].label == "entry alias"
    assert_all_fresh()
    checked = runner.invoke(args=["lists", "name-forms"])
    assert checked.exit_code == 0, checked.output
    assert f"listed_entities: {len(entries)} rows, 0 stale or missing" in checked.output


def test_a_value_chain_save_stores_the_readings_of_its_new_companies_and_aliases(app):
    company = factories.company("Fictional Solar Modules Co.")
    db.session.commit()
    data = (HEADER + "Tarim Fictional Quartz Mining Co.,3,sub-supplier,quartz,CN,Tarim Quartz|塔里木石英\n"
            "Nordwind Aluminium Frames GmbH (fictional),1,supplier,frames,DE,\n").encode()
    saved = service.save(company, data, "map.csv", screen=False)
    db.session.commit()
    tarim = next(c for c in saved.created if c.name.startswith("Tarim"))
    assert read_stored(tarim.name_forms, [tarim.name]) == name_forms([tarim.name])
    assert sorted(a.alias for a in tarim.aliases) == ["Tarim Quartz", "塔里木石英"]
    for alias in tarim.aliases:
        assert read_stored(alias.name_forms, [alias.alias], first=False) == name_forms([alias.alias], first=False)
    assert_all_fresh()


def test_a_stale_reading_is_never_used_and_the_command_rewrites_it(app, runner):
    result = runner.invoke(args=["lists", "import", str(LISTS / "us_entity_list.csv"), "--retrieved", "2026-06-01"])
    assert result.exit_code == 0, result.output
    company = factories.company("Plain Fictional Outfitters Co.")
    db.session.commit()
    listed = db.session.scalar(sa.select(ListedEntity.name).where(ListedEntity.name.like("%Hikvision%")).limit(1))
    # a writer that renames without the model's hook (a bulk UPDATE) leaves the old name's reading behind
    db.session.execute(sa.update(Company.__table__).where(Company.__table__.c.id == company.id).values(name=listed))
    db.session.commit()
    db.session.expire_all()
    assert fresh_everywhere()["companies"][0] == 1
    checked = runner.invoke(args=["lists", "name-forms"])
    assert checked.exit_code == 1 and "companies: 1 rows, 1 stale or missing" in checked.output

    screening.screen(notify=False)  # matched by the name it has now, not by the stale reading
    db.session.commit()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RiskFlag)
                             .where(RiskFlag.company_id == company.id, RiskFlag.ended_on.is_(None))) >= 1

    rewritten = runner.invoke(args=["lists", "name-forms", "--write"])
    assert rewritten.exit_code == 0 and "companies: 1 rows, 1 rewritten" in rewritten.output
    db.session.expire_all()
    assert read_stored(db.session.get(Company, company.id).name_forms, [listed]) is not None
    assert runner.invoke(args=["lists", "name-forms"]).exit_code == 0


def test_the_migration_backfills_the_readings(make_app, tmp_path, database_url):
    """0026 adds the columns and reads every existing name; the downgrade drops them (SQLite)."""
    from flask_migrate import downgrade, upgrade

    if not database_url.startswith("sqlite"):
        return  # the PostgreSQL test database was built by the same migration
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'upgrade-0026.sqlite'}")
    with app.app_context():
        upgrade(revision="0029")
        with db.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO companies (id, name, normalized_name, description, address, created_at, "
                                 "updated_at) VALUES (1, '杭州海康威视数字技术股份有限公司', '', '', '', '2026-01-01', "
                                 "'2026-01-01')")
            conn.exec_driver_sql("INSERT INTO company_aliases (company_id, alias, normalized_alias, created_at, "
                                 "updated_at) VALUES (1, 'Hikvision', 'hikvision', '2026-01-01', '2026-01-01')")
        upgrade()
        with db.engine.begin() as conn:
            assert refresh(conn, write=False) == {"listed_entities": (0, 0), "companies": (0, 1),
                                                  "company_aliases": (0, 1)}
            stored = conn.exec_driver_sql("SELECT name_forms FROM companies").scalar_one()
        assert read_stored(stored, ["杭州海康威视数字技术股份有限公司"])[0].cjk
        downgrade(revision="0029")
        with db.engine.begin() as conn:
            assert "name_forms" not in [row[1] for row in conn.exec_driver_sql("PRAGMA table_info(companies)")]
        db.session.remove()
