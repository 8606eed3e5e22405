"""List import and screening under hostile, careless and faulty input (issue 15 hardening).

Every refusal says what and where, writes nothing, and is never a server error. The entries
here are made up (names like "A Co"): they test the reading of files, not any listing.
"""

from __future__ import annotations

import io
import zipfile

import pytest
import sqlalchemy as sa

from engage.extensions import db
from engage.lists import parsers
from engage.models import ListedEntity
from tests.test_lists_import import FIXTURES, counts, run

CSL_HEADER = b"source,entity_number,name,alt_names,start_date,federal_register_notice\n"


def csl_row(number: int, name: str, source: str = "Entity List (EL)") -> bytes:
    return f"{source},{number},{name},,2020-01-01,85 FR {number}\n".encode()


def refused(runner, tmp_path, name: str, data: bytes, *args):
    path = tmp_path / name
    path.write_bytes(data)
    result = run(runner, path, *args)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1, result.output
    assert counts() == (0, 0)
    return result.stderr


# --- JSON that is not what a CSL export holds ---------------------------------------------------

@pytest.mark.parametrize("data, message", [
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"results": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
    (b'[{"source": "Entity List (EL)", "name": "A Co", "addresses": 5}]', "row 1, column addresses: a list of texts"),
    (b'[{"source": "Entity List (EL)", "name": "A Co", "ids": 5}]', "row 1, column ids: a list of objects"),
    (b'[{"source": "Entity List (EL)", "name": "A Co", "alt_names": {"a": 1}}]',
     "row 1, column alt_names: a list of texts"),
], ids=["nested-list", "nested-results", "addresses-number", "ids-number", "alt-names-object"])
def test_json_of_the_wrong_shape_is_refused_with_where(runner, app, tmp_path, data, message):
    assert message in refused(runner, tmp_path, "csl.json", data, "--format", "csl-json")


@pytest.mark.parametrize("args", [[], ["--format", "ftm"]], ids=["detected", "ftm"])
def test_a_json_line_nested_too_deeply_is_refused(runner, app, tmp_path, args):
    data = b'{"schema": "Company", "properties": {"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}\n"
    assert "nested too deeply" in refused(runner, tmp_path, "deep.ftm.json", data, *args)


# --- files that are not what they claim ---------------------------------------------------------

def _zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("csl.csv", (FIXTURES / "csl_2021-07-01.csv").read_bytes())
    return out.getvalue()


@pytest.mark.parametrize("name, data, message", [
    ("csl.csv", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n", "a PDF document"),
    ("csl.csv", _zip(), "a ZIP archive"),
    ("csl.csv", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "an old Office file"),
    ("csl.csv", CSL_HEADER + csl_row(1, "Hik\x00vision Co"), "NUL character at line 2"),
], ids=["pdf", "zip", "xls", "nul"])
def test_a_file_that_is_not_text_says_what_it_is(runner, app, tmp_path, name, data, message):
    assert message in refused(runner, tmp_path, name, data)


@pytest.mark.parametrize("encoding", ["utf-16", "gb18030", "utf-8-sig"])
def test_a_text_file_in_another_encoding_or_with_crlf_is_read(runner, app, tmp_path, encoding):
    chinese = "杭州海康威视数字技术股份有限公司"  # a name in Chinese only
    text = (CSL_HEADER + csl_row(1, chinese) + csl_row(2, "B Co")).decode().replace("\n", "\r\n")
    path = tmp_path / "csl.csv"
    path.write_bytes(text.encode(encoding))
    result = run(runner, path)
    assert result.exit_code == 0, result.stderr
    assert sorted(db.session.scalars(sa.select(ListedEntity.name))) == ["B Co", chinese]


def test_an_ambiguous_encoding_is_refused_with_both_readings(runner, app, tmp_path):
    data = (CSL_HEADER + csl_row(1, "Müller Co")).decode().encode("cp1252")
    message = refused(runner, tmp_path, "csl.csv", data)
    assert "line 2 reads as" in message and "Müller" in message and "save the file as UTF-8" in message
    assert "--encoding" not in message  # the holdings import's option: the list import has none


def test_a_csv_with_old_mac_line_endings_is_read(runner, app, tmp_path):
    path = tmp_path / "csl.csv"
    path.write_bytes((CSL_HEADER + csl_row(1, "A Co") + csl_row(2, "B Co")).replace(b"\n", b"\r"))
    result = run(runner, path)
    assert result.exit_code == 0, result.stderr
    assert sorted(db.session.scalars(sa.select(ListedEntity.name))) == ["A Co", "B Co"]


# --- columns and mappings that say two things ---------------------------------------------------

def test_a_column_read_that_appears_twice_is_refused(runner, app, tmp_path):
    data = b"source,entity_number,name,name,start_date\nEntity List (EL),1,A Co,B Co,2020-01-01\n"
    message = refused(runner, tmp_path, "csl.csv", data)
    assert "two columns called 'name' (columns 3 and 4)" in message
    team = refused(runner, tmp_path, "team.csv", b"Company,Company,Why\nA Co,B Co,x\n", "--list", "Mine",
                   "--mapping", "name=Company")
    assert "two columns called 'Company' (columns 1 and 2)" in team


def test_a_mapping_naming_a_target_twice_is_refused(runner, app, tmp_path):
    message = refused(runner, tmp_path, "team.csv", b"Company,Other\nA Co,B Co\n", "--list", "Mine",
                      "--mapping", "name=Company,name=Other")
    assert "mapping target 'name' is given twice (Company, Other)" in message


def test_the_same_file_read_with_another_mapping_is_not_refused_as_identical(runner, app, tmp_path):
    path = tmp_path / "team.csv"
    path.write_bytes(b"Code,Company\nX1,A Co\nX2,B Co\n")
    careless = run(runner, path, "--list", "Mine", "--mapping", "name=Code")  # the wrong column
    assert careless.exit_code == 0, careless.stderr
    again = run(runner, path, "--list", "Mine", "--mapping", "name=Code")
    assert again.exit_code == 1 and "identical to version 1 of Mine" in again.stderr
    fixed = run(runner, path, "--list", "Mine", "--mapping", "name=Company")
    assert fixed.exit_code == 0, fixed.stderr
    assert "Mine: 2 entries, 2 added, 2 removed, 0 changed (against version 1" in fixed.output
    assert counts() == (2, 4)


def test_the_row_limit_counts_entries_not_the_header(monkeypatch):
    monkeypatch.setattr(parsers, "MAX_ROWS", 2)
    assert len(parsers.parse(CSL_HEADER + csl_row(1, "A Co") + csl_row(2, "B Co")).lists["us_entity_list"]) == 2
    with pytest.raises(parsers.ListError, match="the file has 3 entries; at most 2 are read"):
        parsers.parse(CSL_HEADER + csl_row(1, "A Co") + csl_row(2, "B Co") + csl_row(3, "C Co"))


@pytest.mark.parametrize("escape, shown", [
    ("\\u0000", "U+0000"), ("\\ud800", "U+D800, half of a surrogate pair"), ("\\u001b[31m", "U+001B")],
                         ids=["nul", "lone-surrogate", "terminal-escape"])
def test_a_json_escape_no_text_may_hold_is_refused(runner, app, tmp_path, escape, shown):
    """\\u0000 and a lone surrogate cannot be stored (PostgreSQL refused them: a server error); an
    escape sequence would colour or rewrite the terminal the CLI prints the diff on."""
    data = ('[{"source": "Entity List (EL)", "entity_number": "1", "name": "A Co", "alt_names": ["A%s Co"]}]'
            % escape).encode()
    message = refused(runner, tmp_path, "csl.json", data, "--format", "csl-json")
    assert "row 1, column aliases: a " in message and f"({shown})" in message


def test_each_table_of_a_norges_bank_page_is_read_by_its_own_header():
    """A page with the exclusions and observations in two tables whose columns come in another
    order: the second table's rows were read by the first one's header (made-up companies)."""
    page = (b"<html><body><h1>Norges Bank Investment Management</h1>"
            b"<table><tr><th>Company</th><th>Decision</th><th>Criterion</th><th>Date</th></tr>"
            b"<tr><td>A Co</td><td>Exclusion</td><td>Coal</td><td>2020-05-13</td></tr></table>"
            b"<table><tr><th>Date</th><th>Company</th><th>Criterion</th><th>Decision</th></tr>"
            b"<tr><td>2023-02-01</td><td>B Co</td><td>Human rights</td><td>Observation</td></tr></table>"
            b"</body></html>")
    parsed = parsers.parse(page, "nbim")
    [excluded], [observed] = parsed.lists["gpfg_exclusion"], parsed.lists["gpfg_observation"]
    assert (excluded.name, excluded.note, excluded.effective_date.isoformat()) == ("A Co", "Coal", "2020-05-13")
    assert (observed.name, observed.note, observed.effective_date.isoformat(), observed.row) == (
        "B Co", "Human rights", "2023-02-01", 2)


def test_a_team_list_identifier_is_validated_and_an_unread_target_refused(runner, app, tmp_path):
    """LEI and ISIN columns of a team's CSV are checked like every identifier entered (python-stdnum);
    the `identifiers` target was accepted and then never read. The LEI is the GLEIF's own."""
    bad = refused(runner, tmp_path, "team.csv", b"Company,LEI,ISIN\nA Co,5493001KJTIIGC8Y1R13,US0378331006\n",
                  "--list", "Mine", "--mapping", "name=Company,lei=LEI,isin=ISIN")
    assert "row 2, column LEI: 5493001KJTIIGC8Y1R13 is not a valid LEI" in bad
    unread = refused(runner, tmp_path, "team.csv", b"Company,IDs\nA Co,X\n", "--list", "Mine",
                     "--mapping", "name=Company,identifiers=IDs")
    assert "unknown mapping target 'identifiers'" in unread
    good = tmp_path / "good.csv"
    good.write_bytes(b"Company,LEI,ISIN\nA Co,5493 001K JTII GC8Y 1R12,us0378331005\n")
    assert run(runner, good, "--list", "Mine", "--mapping", "name=Company,lei=LEI,isin=ISIN").exit_code == 0
    assert db.session.scalar(sa.select(ListedEntity.identifiers)) == {"lei": ["5493001KJTIIGC8Y1R12"],
                                                                      "isin": ["US0378331005"]}


def test_a_team_list_status_that_is_no_status_is_refused(runner, app, tmp_path):
    """A typo ("Actve") made the entry inactive: it never flagged, and nothing said so."""
    message = refused(runner, tmp_path, "team.csv", b"Company,State\nA Co,Actve\nB Co,Revoked\n", "--list", "Mine",
                      "--mapping", "name=Company,status=State")
    assert "row 2, column State: not a status (Active, Partially Active, Modified, Revoked, Inactive, Ended)" in message
    good = tmp_path / "good.csv"
    good.write_bytes(b"Company,State\nA Co,active\nB Co,Revoked\nC Co,\n")
    assert run(runner, good, "--list", "Mine", "--mapping", "name=Company,status=State").exit_code == 0
    assert dict(db.session.execute(sa.select(ListedEntity.name, ListedEntity.status)).all()) == {
        "A Co": "active", "B Co": "revoked", "C Co": "active"}


def test_a_csl_file_loaded_for_one_list_says_how_to_load_its_others(runner, app, tmp_path):
    path = tmp_path / "csl.csv"
    path.write_bytes(CSL_HEADER + csl_row(1, "A Co") + csl_row(2, "B Co", "Military End User (MEU) List"))
    assert run(runner, path, "--sources", "Entity List").exit_code == 0
    again = run(runner, path)
    assert again.exit_code == 1 and "identical to version 1 of US Entity List" in again.stderr
    assert "to load its other lists, choose them: --sources MEU" in again.stderr
    assert run(runner, path, "--sources", "MEU").exit_code == 0
    assert counts() == (2, 2)


@pytest.mark.parametrize("name", ["analyst", "sector_risk", "team_list"])
def test_an_opensanctions_file_loads_into_a_published_list_only(runner, app, tmp_path, name):
    """Loaded as "analyst", its entries flagged companies as analyst notes that no analyst wrote."""
    data = (FIXTURES / "uflpa_opensanctions.ftm.json").read_bytes()
    message = refused(runner, tmp_path, "os.ftm.json", data, "--list", name)
    assert "an OpenSanctions file loads into a published list" in message and f"not {name!r}" in message


def test_a_json_line_holding_a_unicode_line_separator_is_one_entity():
    """JSON allows U+2028 and U+2029 unescaped in a string; str.splitlines() cut such a line in two
    and refused the whole export (a made-up entity)."""
    line = '{"id": "x-1", "schema": "Company", "properties": {"name": ["A Co"], "notes": ["one\u2028two\u2029three"]}}'
    parsed = parsers.parse(line.encode() + b"\n", "ftm")
    [entry] = parsed.lists["uflpa_entity_list"]
    assert (entry.name, entry.note.split()) == ("A Co", ["one", "two", "three"])


def test_the_row_limit_of_an_opensanctions_file_counts_its_entities(monkeypatch):
    monkeypatch.setattr(parsers, "MAX_ROWS", 2)
    lines = [b'{"id": "x-%d", "schema": "Company", "properties": {"name": ["Co %d"]}}\n' % (i, i) for i in range(3)]
    assert len(parsers.parse(b"".join(lines[:2]) + b"\n\n", "ftm").lists["uflpa_entity_list"]) == 2
    with pytest.raises(parsers.ListError, match="the file has 3 entities; at most 2 are read"):
        parsers.parse(b"".join(lines), "ftm")


def test_a_character_decoded_wrongly_once_by_the_publisher_is_kept():
    """U+0092 (a Windows apostrophe read as Latin-1) in a published name is no reason to refuse a list."""
    data = b'[{"source": "Entity List (EL)", "entity_number": "1", "name": "People\\u0092s Co"}]'
    [entry] = parsers.parse(data, "csl-json").lists["us_entity_list"]
    assert entry.name == "People\u0092s Co"
