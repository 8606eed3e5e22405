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
from engage.lists import parsers, service
from engage.models import ListedEntity
from tests.test_lists_import import FIXTURES, confirm_data, counts, run, upload

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
    (b'[{"source": "Entity List (EL)", "name": "A Co", "alt_names": {"a": 1}}]', "row 1, column alt_names: a list of texts"),
], ids=["nested-list", "nested-results", "addresses-number", "ids-number", "alt-names-object"])
def test_json_of_the_wrong_shape_is_refused_with_where(runner, app, tmp_path, data, message):
    assert message in refused(runner, tmp_path, "csl.json", data, "--format", "csl-json")


@pytest.mark.parametrize("args", [[], ["--format", "ftm"]], ids=["detected", "ftm"])
def test_a_json_line_nested_too_deeply_is_refused(runner, app, tmp_path, args):
    data = b'{"schema": "Company", "properties": {"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}\n"
    assert "nested too deeply" in refused(runner, tmp_path, "deep.ftm.json", data, *args)
