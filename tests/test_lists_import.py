"""List files as published (issue 15): each layout imports, detection, versions and diffs, refusals, CLI, web."""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from engage.extensions import db
from engage.lists import parsers, service
from engage.models import AuditEvent, ListedEntity, ListVersion

FIXTURES = Path(__file__).parent / "fixtures" / "lists"
TEAM_MAPPING = "name=Company,aliases=Other names,date=Added,note=Why"


def counts():
    return (db.session.scalar(sa.select(sa.func.count(ListVersion.id))),
            db.session.scalar(sa.select(sa.func.count(ListedEntity.id))))


def entry(name: str) -> ListedEntity:
    return db.session.scalar(sa.select(ListedEntity).where(ListedEntity.name == name)
                             .order_by(ListedEntity.id.desc()).limit(1))


def run(runner, *args):
    return runner.invoke(args=["lists", "import", *map(str, args)])


@pytest.mark.parametrize("file, fmt", [
    ("csl_2021-07-01.csv", "csl-csv"), ("csl_2019-10-09.json", "csl-json"), ("cbp_wro_2021-07-01.csv", "cbp-wro"),
    ("uflpa_2024-11-25.html", "uflpa-html"), ("uflpa_opensanctions.ftm.json", "ftm"), ("nbim_2023.csv", "nbim"),
    ("nbim_2023.html", "nbim"),
])
def test_each_publisher_layout_is_told_from_its_content(file, fmt):
    assert parsers.detect((FIXTURES / file).read_bytes()) == fmt


def test_a_file_whose_layout_cannot_be_told_is_refused():
    with pytest.raises(parsers.ListError, match="cannot be told"):
        parsers.detect(b"Company,Other names\nA,B\n")
    with pytest.raises(parsers.ListError, match="neither the UFLPA"):
        parsers.detect(b"<html><body><table><tr><th>Entity</th></tr></table></body></html>")


def test_names_keep_subsidiaries_and_split_aliases():
    assert parsers.split_name("Xinjiang Daqo New Energy Co., Ltd. (also known as Xinjiang Great New Energy Co., Ltd.; "
                              "Xinjiang Daxin Energy Co., Ltd.; and Xinjiang Daqin Energy Co., Ltd.)") == (
        "Xinjiang Daqo New Energy Co., Ltd.",
        ["Xinjiang Great New Energy Co., Ltd.", "Xinjiang Daxin Energy Co., Ltd.", "Xinjiang Daqin Energy Co., Ltd."],
        False)
    assert parsers.split_name("Example Holdings a/k/a Example Group, f/k/a Old Example Ltd") == (
        "Example Holdings", ["Example Group", "Old Example Ltd"], False)
    assert parsers.split_name("New Name Ltd, formerly Old Name Ltd") == ("New Name Ltd", ["Old Name Ltd"], False)
    assert parsers.split_name("Hoshine Silicon Industry Co. Ltd. and its subsidiaries") == (
        "Hoshine Silicon Industry Co. Ltd. and its subsidiaries", ["Hoshine Silicon Industry Co. Ltd."], True)


def test_csl_csv_imports_diffs_and_screens(runner, app):
    result = run(runner, FIXTURES / "csl_2021-07-01.csv", "--retrieved", "2021-07-01")
    assert result.exit_code == 0, result.stderr
    assert "US Entity List: 13 entries, 13 added, 0 removed, 0 changed (first version)" in result.output
    assert "Screened" in result.output
    hikvision = entry("Hangzhou Hikvision Digital Technology Co., Ltd.")
    assert (hikvision.aliases, hikvision.effective_date, hikvision.citation, hikvision.country, hikvision.source) == (
        ["Hikvision"], dt.date(2019, 10, 9), "84 FR 54002", "CN", "us_entity_list")
    first = hikvision.version
    assert (first.format, first.retrieved_on, first.entry_count, first.sources) == (
        "csl-csv", dt.date(2021, 7, 1), 13, ["Entity List (EL) - Bureau of Industry and Security"])
    assert db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "list_import")).object_id == first.id

    second = run(runner, FIXTURES / "csl_2021-08-01.csv", "--retrieved", "2021-08-01")
    assert second.exit_code == 0, second.stderr
    assert "US Entity List: 12 entries, 0 added, 1 removed, 1 changed (against version 1 of 01 Jul 2021)" in second.output
    assert "  - Yixin Science and Technology Co. Ltd." in second.output
    assert "  ~ Sense Time: aliases: new Shangtang Technology" in second.output
    latest = db.session.scalar(sa.select(ListVersion).order_by(ListVersion.id.desc()).limit(1))
    assert (latest.previous_id, latest.added_count, latest.removed_count, latest.changed_count) == (first.id, 0, 1, 1)
    assert latest.diff["removed"] == [{"key": "yixin science and technology", "name": "Yixin Science and Technology Co. Ltd."}]
    assert latest.diff["changed"][0]["fields"] == {"aliases": {"added": ["Shangtang Technology"], "removed": []}}
    assert counts() == (2, 25)  # the first version kept with its entries

    listed = runner.invoke(args=["lists", "versions", "--list", "us_entity_list"])
    assert listed.exit_code == 0
    assert listed.output.splitlines()[0].startswith(f"us_entity_list version {latest.id}: csl_2021-08-01.csv (csl-csv), "
                                                    "retrieved 01 Aug 2021")
    assert "+0 -1 ~1, after version 1" in listed.output.splitlines()[0]


def test_csl_json_and_source_choice(runner, app, tmp_path):
    assert run(runner, FIXTURES / "csl_2019-10-09.json").exit_code == 0
    assert entry("Megvii Technology Ltd.").aliases == ["Face++"]
    path = tmp_path / "two_sources.csv"
    path.write_text("source,entity_number,name,alt_names,start_date\n"
                    "Entity List (EL) - Bureau of Industry and Security,101,Example Listed Co,,2024-01-02\n"
                    "Military End User (MEU) List - Bureau of Industry and Security,202,Example Military Co,EMC,2024-01-03\n"
                    "Specially Designated Nationals (SDN) - Treasury Department,303,Example Sanctioned Co,,2024-01-04\n"
                    "Denied Persons List (DPL) - Bureau of Industry and Security,404,Example Denied Co,,2024-01-05\n")
    result = run(runner, path, "--sources", "MEU,SDN")
    assert result.exit_code == 0, result.stderr
    assert "US Military End-User List: 1 entries, 1 added" in result.output
    assert "OFAC SDN List: 1 entries, 1 added" in result.output
    assert "Skipped 1 rows of other CSL sources" in result.output and "Skipped 1 rows of CSL sources not chosen" in result.output
    meu = entry("Example Military Co")
    assert (meu.key, meu.source, meu.aliases, meu.version.name) == ("202", "us_meu_list", ["EMC"], "us_meu_list")
    assert db.session.scalar(sa.select(sa.func.count(ListVersion.id)).where(ListVersion.sha256 == meu.version.sha256)) == 2


def test_cbp_wro_uflpa_ftm_nbim_and_team_csv_import(runner, app):
    assert run(runner, FIXTURES / "cbp_wro_2021-07-01.csv").exit_code == 0
    hoshine = entry("Hoshine Silicon Industry Co. Ltd. and its subsidiaries")
    assert (hoshine.covers_subsidiaries, hoshine.kind, hoshine.status, hoshine.effective_date, hoshine.country) == (
        True, "WRO", "active", dt.date(2021, 6, 24), "CN")
    assert hoshine.aliases == ["Hoshine Silicon Industry Co. Ltd."] and "Silica-based products" in hoshine.note

    assert run(runner, FIXTURES / "uflpa_2024-11-25.html").exit_code == 0
    zhonghe = entry("Xinjiang Zhonghe Co., Ltd.")
    assert (zhonghe.aliases, zhonghe.section, zhonghe.effective_date, zhonghe.source) == (
        ["Xinjiang Joinworld Co., Ltd."], "2(d)(2)(B)(ii)", dt.date(2024, 11, 25), "uflpa_entity_list")
    assert entry("Xinjiang Daqo New Energy Co., Ltd.").section == "2(d)(2)(B)(v)"

    result = run(runner, FIXTURES / "uflpa_opensanctions.ftm.json", "--retrieved", dt.date.today().isoformat())
    assert result.exit_code == 0, result.stderr
    # the same list from another layout: entries paired by name keep the page's keys (flags and decisions hang on them)
    assert " 0 added" in result.output and " 0 removed" in result.output
    ftm = entry("Xinjiang Zhonghe Co., Ltd.")
    assert (ftm.key, ftm.version.format, ftm.aliases, ftm.section, ftm.effective_date, ftm.country) == (
        zhonghe.key, "ftm", ["Xinjiang Joinworld Co., Ltd."], "2(d)(2)(B)(ii)", dt.date(2024, 11, 25), "CN")

    result = run(runner, FIXTURES / "nbim_2023.csv", "--retrieved", "2023-03-01")
    assert result.exit_code == 0, result.stderr
    assert "GPFG exclusion: 7 entries, 7 added" in result.output and "GPFG observation: 1 entries, 1 added" in result.output
    again = run(runner, FIXTURES / "nbim_2025.csv", "--retrieved", "2025-03-01")
    assert "GPFG observation: 2 entries, 1 added, 0 removed, 1 changed" in again.output
    orlen = next(line for line in again.output.splitlines() if line.startswith("  ~ ORLEN SA: "))
    assert "status active → revoked" in orlen and "kind Observation → Observation ended" in orlen
    assert entry("ORLEN SA").status == "revoked" and not entry("ORLEN SA").is_active

    result = run(runner, FIXTURES / "team_watchlist.csv", "--list", "Watchlist", "--mapping", TEAM_MAPPING)
    assert result.exit_code == 0, result.stderr
    dahua = entry("Zhejiang Dahua Technology Co. Ltd.")
    assert (dahua.version.name, dahua.version.source, dahua.source, dahua.aliases, dahua.effective_date) == (
        "Watchlist", "team_list", "team_list", ["Dahua"], dt.date(2021, 6, 1))
    assert dahua.version.mapping == {"name": "Company", "aliases": "Other names", "date": "Added", "note": "Why"}


REFUSALS = [
    ("empty.csv", b"", [], "the file is empty"),
    ("header_only.csv", b"source,name,start_date\n", ["--format", "csl-csv"], "a header row and no entries"),
    ("no_name.csv", b"source,entity,start_date\nEntity List,X,2020-01-01\n", ["--format", "csl-csv"],
     "has no name column"),
    ("unknown_source.csv", b"source,name,start_date\nInterpol Red Notices,X,2020-01-01\n", [],
     "names no list Engage loads"),
    ("bad_date.csv", b"Entity,Country,Merchandise,Status,Type,Effective Date\nA Co,China,Cotton,Active,WRO,soon\n", [],
     "row 2, column Effective Date: not a date"),
    ("bad_status.csv", b"Entity,Country,Merchandise,Status,Type,Effective Date\nA Co,China,Cotton,Pending,WRO,2021-01-01\n",
     [], "not a CBP status"),
    ("mapping.csv", b"Company,Added\nA Co,2021-01-01\n", ["--list", "Mine", "--mapping", "name=Company,colour=Added"],
     "unknown mapping target 'colour'"),
    ("mapping2.csv", b"Company,Added\nA Co,2021-01-01\n", ["--list", "Mine", "--mapping", "name=Firm"],
     "the mapping names column(s) the file does not have: name=Firm"),
    ("noname.csv", b"Company,Added\nA Co,2021-01-01\n", ["--list", "Mine", "--format", "csv"], "no 'name' column"),
    ("team.csv", b"name\nA Co\n", ["--format", "csv"], "needs a list name"),
    ("dupe.csv", b"Entity,Country,Merchandise,Status,Type,Effective Date\nAlpha Cotton Co,China,Cotton,Active,WRO,2021-01-01\n"
                 b"ALPHA COTTON CO.,China,Cotton,Active,WRO,2021-01-01\n", [], "the same entry as row 2"),
    ("x.json", b'{"results": []}', [], "no results"),
    ("bad.json", b"{not json", [], "not JSON"),
    ("ftm.json", b'{"schema": "Nonsense", "properties": {}}\n', ["--format", "ftm"], "not FollowTheMoney"),
    ("latin1.csv", "Entity,Status\nSão,Active\n".encode("latin-1"), [], "not UTF-8"),
    ("sources.csv", b"source,name,start_date\nEntity List,X,2020-01-01\n", ["--sources", "UFLPA"], "unknown CSL source"),
    ("list.json", (FIXTURES / "uflpa_opensanctions.ftm.json").read_bytes(), ["--list", "interpol"],
     "loads into a published list"),
    ("published.csv", b"name\nA Co\n", ["--format", "csv", "--list", "cbp_wro"], "is a published list"),
    ("cbp_list.csv", (FIXTURES / "cbp_wro_2021-07-01.csv").read_bytes(), ["--list", "us_entity_list"],
     "give no other list name"),
]


@pytest.mark.parametrize("name, data, args, message", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_bad_files_are_refused_whole(runner, app, tmp_path, name, data, args, message):
    path = tmp_path / name
    path.write_bytes(data)
    result = run(runner, path, *args)
    assert result.exit_code == 1
    assert message in result.stderr
    assert counts() == (0, 0)
    assert db.session.scalar(sa.select(sa.func.count(AuditEvent.id)).where(AuditEvent.action == "list_import")) == 0


def test_same_file_and_older_file_and_one_csl_file_for_several_lists(runner, app, tmp_path):
    assert run(runner, FIXTURES / "csl_2021-08-01.csv", "--retrieved", "2021-08-01").exit_code == 0
    same = run(runner, FIXTURES / "csl_2021-08-01.csv", "--retrieved", "2021-08-02")
    assert same.exit_code == 1 and "identical to version 1 of US Entity List (csl_2021-08-01.csv" in same.stderr
    older = run(runner, FIXTURES / "csl_2021-07-01.csv", "--retrieved", "2021-07-01")
    assert older.exit_code == 1 and "before the loaded version" in older.stderr and "--older" in older.stderr
    assert counts() == (1, 12)
    confirmed = run(runner, FIXTURES / "csl_2021-07-01.csv", "--retrieved", "2021-07-01", "--older")
    assert confirmed.exit_code == 0 and "1 added, 0 removed, 1 changed" in confirmed.output
    future = run(runner, FIXTURES / "csl_2019-10-09.json", "--retrieved",
                 (dt.date.today() + dt.timedelta(days=3)).isoformat())
    assert future.exit_code == 1 and "in the future" in future.stderr
    # one CSL file, two lists: both versions or neither (a bad row of one list refuses the other too)
    path = tmp_path / "two.csv"
    path.write_text("source,entity_number,name,start_date\n"
                    "Military End User (MEU) List - Bureau of Industry and Security,1,Example Military Co,2024-01-03\n"
                    "Specially Designated Nationals (SDN) - Treasury Department,2,Example Sanctioned Co,later\n")
    before = counts()
    refused = run(runner, path)
    assert refused.exit_code == 1 and "row 3, column start_date: not a date" in refused.stderr
    assert counts() == before


def test_service_preview_writes_nothing(app):
    data = (FIXTURES / "csl_2021-07-01.csv").read_bytes()
    shown = service.preview(data, "csl.csv")
    assert [d.summary() for d in shown.diffs] == ["US Entity List: 13 entries, 13 added, 0 removed, 0 changed (first version)"]
    assert counts() == (0, 0)
    with pytest.raises(service.ListError, match="unknown format"):
        service.preview(data, "csl.csv", format="xlsx")


# --- web ------------------------------------------------------------------------------------

def upload(client, path_or_bytes, name=None, **fields):
    data = path_or_bytes.read_bytes() if isinstance(path_or_bytes, Path) else path_or_bytes
    form = {"file": (io.BytesIO(data), name or getattr(path_or_bytes, "name", "upload.csv")), **fields}
    return client.post("/lists/import", data=form, content_type="multipart/form-data")


def confirm_data(page: str, **extra) -> tuple[str, dict]:
    token = re.search(r'action="/lists/import/([0-9a-f]{32})"', page).group(1)
    digest = re.search(r'name="preview" value="([0-9a-f]{64})"', page).group(1)
    return token, {"preview": digest, **extra}


def test_web_preview_then_confirm_once(client, login_as):
    login_as("analyst")
    assert client.get("/lists/import").status_code == 200
    shown = upload(client, FIXTURES / "csl_2021-07-01.csv", retrieved_on="2021-07-01")
    page = shown.get_data(as_text=True)
    assert shown.status_code == 200 and "13 added" in page and "Nothing is saved yet" in page
    assert counts() == (0, 0)
    token, form = confirm_data(page)
    saved = client.post(f"/lists/import/{token}", data=form)
    assert saved.status_code == 302 and counts() == (1, 13)
    again = client.post(f"/lists/import/{token}", data=form, follow_redirects=True)
    assert "confirmed already and saved once" in again.get_data(as_text=True) and counts() == (1, 13)
    version = db.session.scalar(sa.select(ListVersion))
    assert version.imported_by_id is not None
    index = client.get("/lists/").get_data(as_text=True)
    assert "csl_2021-07-01.csv" in index and version.sha256[:12] in index
    detail = client.get(f"/lists/versions/{version.id}?page=1").get_data(as_text=True)
    assert "Hangzhou Hikvision Digital Technology Co., Ltd." in detail and "84 FR 54002" in detail
    assert client.get("/lists/versions/999999").status_code == 404
    assert client.get(f"/lists/versions/{version.id}?page=99").status_code == 404


def test_web_stale_preview_and_older_file_need_a_new_confirmation(client, login_as, runner):
    login_as("analyst")
    page = upload(client, FIXTURES / "csl_2021-07-01.csv", retrieved_on="2021-07-01").get_data(as_text=True)
    token, form = confirm_data(page)
    assert run(runner, FIXTURES / "csl_2021-08-01.csv", "--retrieved", "2021-08-01").exit_code == 0  # meanwhile
    stale = client.post(f"/lists/import/{token}", data=form)
    text = stale.get_data(as_text=True)
    assert stale.status_code == 409 and "since the preview" in text and counts() == (1, 12)
    assert "retrieved 1 Jul 2021" in text or "before the loaded version" in text
    token, form = confirm_data(text)
    refused = client.post(f"/lists/import/{token}", data=form)
    assert refused.status_code == 422 and "before the loaded version" in refused.get_data(as_text=True)
    assert counts() == (1, 12)
    saved = client.post(f"/lists/import/{token}", data={**form, "older": "y"})
    assert saved.status_code == 302 and counts() == (2, 25)


def test_web_refusals_roles_and_escaping(client, login_as, make_user):
    login_as("viewer")
    assert client.get("/lists/").status_code == 200
    assert client.get("/lists/import").status_code == 403
    assert upload(client, FIXTURES / "csl_2021-07-01.csv").status_code == 403
    assert counts() == (0, 0)
    client.post("/logout")
    login_as("analyst")
    bad = upload(client, b"source,name,start_date\n", "empty.csv")
    assert bad.status_code == 422 and "the file is empty" in bad.get_data(as_text=True)
    rows = upload(client, b"Entity,Country,Merchandise,Status,Type,Effective Date\nA Cotton Co,China,Cotton,Active,WRO,soon\n",
                  "dates.csv")
    text = rows.get_data(as_text=True)
    assert rows.status_code == 422 and "not a date (e.g. 2021-06-24)" in text and "<code>soon</code>" in text
    mapping = upload(client, b"Company\nA Co\n", "team.csv", list_name="Mine", mapping="name=Company,colour=Red")
    assert mapping.status_code == 422 and "unknown mapping target" in mapping.get_data(as_text=True)
    assert counts() == (0, 0)
    hostile = b"Entity,Country,Merchandise,Status,Type,Effective Date\n" \
              b"<script>alert(1)</script> Co,China,<b>Cotton</b>,Active,WRO,2021-01-01\n"
    page = upload(client, hostile, "hostile.csv").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; Co" in page
    token, form = confirm_data(page)
    assert client.post(f"/lists/import/{token}", data=form).status_code == 302
    version = db.session.scalar(sa.select(ListVersion))
    detail = client.get(f"/lists/versions/{version.id}").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in detail and "<b>Cotton</b>" not in detail
    # another analyst cannot confirm someone else's upload
    page = upload(client, FIXTURES / "cbp_wro_2021-07-01.csv").get_data(as_text=True)
    token, form = confirm_data(page)
    client.post("/logout")
    login_as("analyst")
    assert client.post(f"/lists/import/{token}", data=form).status_code == 302
    assert counts()[0] == 1


def test_lists_page_queries_do_not_grow_with_lists(client, login_as, runner, count_queries):
    login_as("viewer")
    assert run(runner, FIXTURES / "csl_2021-07-01.csv").exit_code == 0
    with count_queries() as few:
        client.get("/lists/")
    for name in ("cbp_wro_2021-07-01.csv", "uflpa_2024-11-25.html", "nbim_2023.csv"):
        assert run(runner, FIXTURES / name).exit_code == 0
    with count_queries() as more:
        assert client.get("/lists/").status_code == 200
    assert more.count == few.count


def test_seeding_loads_the_seed_lists_once(runner, app):
    assert runner.invoke(args=["seed"]).exit_code == 0
    names = set(db.session.scalars(sa.select(ListVersion.name)))
    assert names == {"us_entity_list", "cbp_wro"}
    before = counts()
    assert runner.invoke(args=["seed"]).exit_code == 0
    assert counts() == before


def test_an_upload_over_the_size_limit_is_refused(make_app, app, make_user):
    from tests.conftest import login

    small = make_app(LISTS_MAX_UPLOAD_MB=1)  # the list upload's own limit (MAX_CONTENT_LENGTH is the other forms')
    client = small.test_client()
    user = make_user("analyst")
    login(client, user.email)
    big = b"source,name,start_date\n" + b"Entity List (EL),A Co,2020-01-01\n" * 40_000  # 1.3 MB
    response = client.post("/lists/import", data={"file": (io.BytesIO(big), "big.csv")},
                           content_type="multipart/form-data")
    assert response.status_code == 413 and counts() == (0, 0)
    assert "a list file may be at most 1 MB (LISTS_MAX_UPLOAD_MB)" in response.get_data(as_text=True)


def test_a_list_upload_cannot_be_confirmed_as_holdings(client, login_as):
    login_as("analyst")
    page = upload(client, FIXTURES / "cbp_wro_2021-07-01.csv").get_data(as_text=True)
    token, form = confirm_data(page)
    answer = client.post(f"/holdings/import/{token}", data=form, follow_redirects=True)
    assert "no longer waiting" in answer.get_data(as_text=True)
    assert client.post(f"/holdings/import/{token}/read", data={}, follow_redirects=True).status_code == 200
    assert client.post(f"/lists/import/{token}", data=form).status_code == 302 and counts() == (1, 3)  # still waiting


def test_the_same_list_from_another_layout_keeps_flags_and_decisions(runner, app):
    """The DHS page, then the OpenSanctions export of the same list: a held company's flag stands (same
    row, not ended and made again) and a decided question is not asked again."""
    from tests import factories
    from engage.models import CandidateStatus, MatchCandidate, RiskFlag

    zhonghe = factories.company("Xinjiang Zhonghe Co., Ltd.")
    look_alike = factories.company("Zhonghe Example Trading Co.")  # made up for the test
    db.session.commit()
    assert run(runner, FIXTURES / "uflpa_2024-11-25.html").exit_code == 0
    [flag] = db.session.scalars(sa.select(RiskFlag).where(RiskFlag.company_id == zhonghe.id)).all()
    key = entry("Xinjiang Zhonghe Co., Ltd.").key
    db.session.add(MatchCandidate(company_id=look_alike.id, list_name="uflpa_entity_list", entry_key=key, score=75,
                                  reason="test", status=CandidateStatus.REJECTED.value))
    db.session.commit()

    result = run(runner, FIXTURES / "uflpa_opensanctions.ftm.json", "--retrieved", dt.date.today().isoformat())
    assert result.exit_code == 0, result.stderr
    db.session.expire_all()
    flags = db.session.scalars(sa.select(RiskFlag).where(RiskFlag.company_id == zhonghe.id)).all()
    assert [(f.id, f.ended_on) for f in flags] == [(flag.id, None)]
    assert db.session.scalar(sa.select(sa.func.count(MatchCandidate.id)).where(
        MatchCandidate.company_id == look_alike.id, MatchCandidate.status == CandidateStatus.PENDING.value)) == 0
