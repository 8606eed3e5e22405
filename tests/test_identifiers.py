"""Identifiers validated with python-stdnum (engage/identifiers.py): the sentence each problem gets.

Valid examples: Hikvision's ISIN (seeds/companies.yaml), Apple's ISIN and CUSIP (US0378331005 /
037833100), python-stdnum's documented LEI and SEDOL examples.
"""

from __future__ import annotations

import pytest

from engage import identifiers


@pytest.mark.parametrize(
    ("check", "value", "problem"),
    [
        (identifiers.isin_problem, "CNE100000PM8", None),
        (identifiers.isin_problem, " cne100000pm8 ", None),
        (identifiers.isin_problem, "US0378331005", None),
        (identifiers.isin_problem, "CNE100000PM9", "CNE100000PM9 has check digit 9, expected 8."),
        (identifiers.isin_problem, "XX0378331005", "XX0378331005 does not start with an ISO 3166 country code (or XS, EU): 'XX' is unknown."),
        (identifiers.isin_problem, "CNE10000PM8", "'CNE10000PM8' is not an ISIN: expected 2 letters, 9 letters or digits, 1 check digit."),
        (identifiers.isin_problem, "", "'' is not an ISIN: expected 2 letters, 9 letters or digits, 1 check digit."),
        (identifiers.lei_problem, "5493001KJTIIGC8Y1R12", None),
        (identifiers.lei_problem, "5493001kjtiigc8y1r12", None),
        (identifiers.lei_problem, "5493001KJTIIGC8Y1R13", "5493001KJTIIGC8Y1R13 is not a valid LEI: its check digits (13) do not match (ISO 17442)."),
        (identifiers.lei_problem, "5493001KJTIIGC8Y1R1", "'5493001KJTIIGC8Y1R1' is not an LEI: expected 20 letters or digits, the last two check digits."),
        (identifiers.lei_problem, "5493001KJTIIGC8Y1R1!", "'5493001KJTIIGC8Y1R1!' is not an LEI: expected 20 letters or digits, the last two check digits."),
        (identifiers.cusip_problem, "037833100", None),
        (identifiers.cusip_problem, "037833101", "037833101 has check digit 1, expected 0."),
        (identifiers.cusip_problem, "03783310", "'03783310' is not a CUSIP: expected 9 letters or digits, the last a check digit."),
        (identifiers.sedol_problem, "B0YBKJ7", None),
        (identifiers.sedol_problem, "B0YBKJ8", "B0YBKJ8 has check digit 8, expected 7."),
        (identifiers.sedol_problem, "BAYBKJ7", "'BAYBKJ7' is not a SEDOL: expected 7 letters (no vowels) or digits, the last a check digit."),
    ],
)
def test_problems(check, value, problem):
    assert check(value) == problem


def test_isin_check_digit_for_generated_isins():
    assert identifiers.isin_check_digit("CNE100000PM") == 8
    assert identifiers.isin_check_digit("us037833100") == 5


def test_the_quick_isin_check_agrees_with_stdnum():
    """identifiers._plainly_valid_isin (the holdings reader's quick path) accepts exactly the compact
    values stdnum accepts: every check digit of many bodies, bad country codes, odd characters."""
    import random

    from stdnum import isin as stdnum_isin

    from engage import identifiers

    chance = random.Random(20)
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    bodies = ["US0378331005"[:11], "XS000000001", "CNE100000296"[:11], "ZZ123456789", "DEABC123XYZ", "gb000263494"]
    bodies += ["".join(chance.choice(alphabet) for _ in range(2)) + "".join(chance.choice(alphabet) for _ in range(9))
               for _ in range(400)]
    bodies += [chance.choice(["US", "GB", "XS", "CN", "DE", "JP"]) + "".join(chance.choice(alphabet) for _ in range(9))
               for _ in range(400)]
    checked = accepted = 0
    for body in bodies:
        for last in "0123456789A ":
            value = body + last
            assert identifiers._plainly_valid_isin(value) == stdnum_isin.is_valid(value) \
                or (not identifiers._plainly_valid_isin(value) and value != stdnum_isin.compact(value)), value
            assert (identifiers.isin_problem(value) is None) == stdnum_isin.is_valid(value), value
            checked += 1
            accepted += identifiers._plainly_valid_isin(value)
    assert checked > 9000 and accepted > 400  # the quick path did take most valid ones
