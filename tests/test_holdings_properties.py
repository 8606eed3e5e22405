"""Property-based tests of the holdings parsers: generated hostile input, round trips of valid input.

No database: the parser is pure. Derandomized so CI sees the same examples every run.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from decimal import Decimal

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engage import validators
from engage.holdings import parsing

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
NUMBERISH = "0123456789.,' -+()%$€eE\u00a0\u2212"


def group(digits: str, mark: str) -> str:
    parts = []
    while len(digits) > 3:
        parts.insert(0, digits[-3:])
        digits = digits[:-3]
    return mark.join([digits, *parts])


@st.composite
def formatted_numbers(draw):
    """(number, text, convention): a number written the way a file in that convention writes it."""
    convention = draw(st.sampled_from(parsing.DECIMALS))
    number = draw(st.decimals(min_value=-10**14, max_value=10**14, places=draw(st.integers(0, 6)),
                              allow_nan=False, allow_infinity=False))
    whole, _, fraction = format(abs(number), "f").partition(".")
    marks = [",", " ", "'", ""] if convention == "point" else [".", " ", "'", ""]
    whole = group(whole, draw(st.sampled_from(marks)))
    body = whole + (("." if convention == "point" else ",") + fraction if fraction else "")
    style = draw(st.sampled_from(["plain", "percent", "currency", "suffix-currency", "nbsp"]))
    if style == "percent":
        body += "%"
    elif style == "currency":
        body = "$" + body
    elif style == "suffix-currency":
        body += "\u00a0€"
    elif style == "nbsp":
        body = body.replace(" ", "\u00a0")
    if number < 0:
        body = draw(st.sampled_from(["-{}", "({})", "\u2212{}", "- {}"])).format(body)
    return number, draw(st.sampled_from(["{}", '"{}"', " {} "])).format(body), convention


@SETTINGS
@given(formatted_numbers())
def test_numbers_written_in_either_convention_read_back_exactly(case):
    number, text, convention = case
    assert parsing.parse_number(text, convention) == number
    assert parsing.decimal_hint(text) in (convention, "ambiguous", None)  # never the other convention


@SETTINGS
@given(st.one_of(st.text(), st.text(alphabet=NUMBERISH, max_size=30)), st.sampled_from(parsing.DECIMALS))
def test_any_text_is_a_finite_number_missing_or_a_number_error(text, convention):
    try:
        value = parsing.parse_number(text, convention)
    except parsing.NumberError as error:
        assert error.reason in ("not a number", "not a finite number")
        return
    assert value is None or value.is_finite()
    assert parsing.decimal_hint(text) in ("point", "comma", "ambiguous", None)


@SETTINGS
@given(st.dates(min_value=validators.DATE_MIN, max_value=validators.DATE_MAX), st.sampled_from(parsing.DATE_FORMATS))
def test_dates_in_every_accepted_format_read_back(date, fmt):
    text = dt.datetime.combine(date, dt.time()).strftime(fmt)
    assert parsing.parse_date(text) == date
    assert validators.date_problem(date) is None


@SETTINGS
@given(st.one_of(st.text(), st.text(alphabet="0123456789-/.,: JanNovDec", max_size=25)))
def test_any_text_is_a_date_or_none(text):
    value = parsing.parse_date(text)
    assert value is None or isinstance(value, dt.date)
    validators.date_problem(value)


names = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp", "Zs")),
                min_size=1, max_size=20).map(lambda s: f"Co {s}").filter(lambda s: not parsing.NON_EQUITY.search(s))


@SETTINGS
@given(st.sampled_from(parsing.DELIMITERS), st.lists(st.tuples(names, formatted_numbers()), min_size=1, max_size=8),
       st.sampled_from(parsing.DECIMALS), st.booleans())
def test_tables_with_any_delimiter_read_back_and_auto_detection_never_misreads(delimiter, rows, convention, auto):
    rows = [(name, case) for name, case in rows if case[2] == convention and case[0] >= 0]
    assume(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter)
    writer.writerow(["Name", "Ticker", "Market Value"])
    for index, (name, (_number, text, _c)) in enumerate(rows):
        writer.writerow([name, f"T{index}", text.strip().strip('"')])
    parsed = parsing.parse("t.csv", buffer.getvalue().encode(), decimal=None if auto else convention)
    assert parsed.delimiter == delimiter
    if auto and not parsed.ok:  # only ever refused for ambiguity, naming the column and row
        assert all("could be read with a decimal point or a decimal comma" in e.reason and e.column == "Market Value"
                   and e.row >= 2 for e in parsed.errors), parsed.errors
        return
    assert parsed.ok, parsed.errors
    assert [(r.name, r.market_value) for r in parsed.rows] == [(parsing.clean_cell(name), case[0]) for name, case in rows]


def assert_only_own_errors(data: bytes, **options) -> None:
    try:
        parsed = parsing.parse("hostile", data, **options)
    except parsing.FileRefused as refusal:
        assert str(refusal)
        return
    for error in parsed.errors:
        assert isinstance(error.row, int) and error.row >= 1 and isinstance(error.column, str) and error.reason
    for row in parsed.rows:
        for name in ("market_value", "weight", "shares"):
            value = getattr(row, name)
            assert value is None or (value.is_finite() and parsing.check_bounds(name, value) is None)


HEADERS = ["Name", "Ticker", "ISIN", "Market Value", "Weight (%)", "Shares", "Price", "Asset Class", "Fund Holdings as of"]


@SETTINGS
@given(st.binary(max_size=600))
def test_any_bytes_are_parsed_or_refused(data):
    assert_only_own_errors(data)


@SETTINGS
@given(st.lists(st.lists(st.one_of(st.sampled_from(HEADERS), st.text(alphabet=NUMBERISH + 'abcXYZ"\r\n', max_size=12)),
                         max_size=8), max_size=12),
       st.sampled_from([",", ";", "\t", "|", " "]), st.sampled_from([None, *parsing.DECIMALS]), st.booleans(),
       st.integers(0, 400))
def test_hostile_tables_are_parsed_or_refused(rows, delimiter, decimal, partial, cut):
    text = "\n".join(delimiter.join(cells) for cells in [["Name", "Ticker", "Market Value", "Weight (%)"], *rows])
    data = text.encode()[: len(text.encode()) - cut if cut else None]
    assert_only_own_errors(data, decimal=decimal, partial=partial)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.one_of(st.none(), st.sampled_from(HEADERS), st.text(max_size=10),
                                   st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**20, 10**20),
                                   st.booleans(), st.dates()), max_size=6), max_size=8),
       st.integers(0, 2000), st.binary(min_size=1, max_size=4))
def test_hostile_workbooks_are_parsed_or_refused(rows, position, garbage):
    from openpyxl import Workbook
    from openpyxl.utils.exceptions import IllegalCharacterError

    workbook = Workbook()
    sheet = workbook.active
    try:
        for row in [["Name", "Ticker", "Market Value"], *rows]:
            sheet.append(row)
    except IllegalCharacterError:
        assume(False)
    buffer = io.BytesIO()
    workbook.save(buffer)
    assert_only_own_errors(buffer.getvalue())
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                at = position % len(data)
                data = data[:at] + garbage + data[at + len(garbage):]
            target.writestr(info, data)
    assert_only_own_errors(out.getvalue())


def test_a_generated_value_in_a_spreadsheet_cell_keeps_its_exact_number():
    from openpyxl import Workbook

    workbook = Workbook()
    workbook.active.append(["Name", "Ticker", "Market Value"])
    workbook.active.append(["Alpha", "AAA", 1234.5678])
    buffer = io.BytesIO()
    workbook.save(buffer)
    assert parsing.parse("x.xlsx", buffer.getvalue()).rows[0].market_value == Decimal("1234.5678")
