"""Security and entity identifiers, validated with python-stdnum: ISIN (ISO 6166), LEI
(ISO 17442), CUSIP and SEDOL.

Each `*_problem(value)` returns None for a valid identifier, else one sentence saying what is
wrong (shown next to the form field, the file row or the seed entry). Callers store the
compact upper-case form (`compact_isin`, `compact_lei`...).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from types import ModuleType

from stdnum import cusip, isin, lei
from stdnum.exceptions import InvalidChecksum, InvalidComponent, InvalidFormat, InvalidLength, ValidationError
from stdnum.gb import sedol


#: An ISIN as files write it, already compact: 2 letters, 9 letters or digits, a check digit.
_ISIN_SHAPE = re.compile(r"[A-Z]{2}[0-9A-Z]{9}[0-9]\Z")
#: Each character's value in the ISO 6166 check digit (stdnum's: its index in 0-9A-Z), as digits.
_ISIN_DIGITS = {c: str(i) for i, c in enumerate(string.digits + string.ascii_uppercase)}


def _plainly_valid_isin(value: str) -> bool:
    """True when `value` is a compact, valid ISIN: what stdnum would accept, checked in a fifth of
    its time (a 200,000-row holdings file gives 200,000 ISINs). False sends the value to stdnum,
    which says what is wrong (and accepts the forms this does not: spaces, lower case)."""
    if not _ISIN_SHAPE.match(value) or value[:2] not in isin._country_codes:
        return False
    digits = "".join([_ISIN_DIGITS[c] for c in value[:11]])
    total = 0
    for position, digit in enumerate(reversed(digits)):
        product = int(digit) * (2 if position % 2 == 0 else 1)
        total += product // 10 + product % 10
    return (10 - total) % 10 == int(value[11])


def compact_isin(value: str | None) -> str:
    if value and _ISIN_SHAPE.match(value):
        return value
    return isin.compact(value or "")


def compact_lei(value: str | None) -> str:
    return lei.compact(value or "")


def isin_check_digit(first11: str) -> int:
    """ISO 6166 check digit of the first 11 characters."""
    return int(isin.calc_check_digit(first11.upper()))


def isin_problem(value: str | None) -> str | None:
    """None when `value` is a valid ISIN, else a sentence saying what is wrong."""
    if isinstance(value, str) and _plainly_valid_isin(value):
        return None
    number = compact_isin(value)
    shape = f"{value!r} is not an ISIN: expected 2 letters, 9 letters or digits, 1 check digit."
    try:
        isin.validate(number)
    except InvalidChecksum:
        return f"{number} has check digit {number[11]}, expected {isin.calc_check_digit(number[:11])}."
    except InvalidComponent:
        return f"{number} does not start with an ISO 3166 country code (or XS, EU): {number[:2]!r} is unknown."
    except ValidationError:
        return shape
    return None


def lei_problem(value: str | None) -> str | None:
    """None when `value` is a valid Legal Entity Identifier, else a sentence saying what is wrong."""
    number = compact_lei(value)
    if len(number) != 20 or not number.isalnum():
        return f"{value!r} is not an LEI: expected 20 letters or digits, the last two check digits."
    try:
        lei.validate(number)
    except InvalidChecksum:
        return f"{number} is not a valid LEI: its check digits ({number[-2:]}) do not match (ISO 17442)."
    except ValidationError:
        return f"{value!r} is not an LEI: expected 20 letters or digits, the last two check digits."
    return None


def _problem(module: ModuleType, name: str, shape: str) -> Callable[[str | None], str | None]:
    def problem(value: str | None) -> str | None:
        number = module.compact(value or "")
        try:
            module.validate(number)
        except InvalidChecksum:
            return f"{number} has check digit {number[-1]}, expected {module.calc_check_digit(number[:-1])}."
        except (InvalidFormat, InvalidLength, InvalidComponent, ValidationError):
            return f"{value!r} is not a {name}: expected {shape}."
        return None

    problem.__doc__ = f"None when `value` is a valid {name}, else a sentence saying what is wrong."
    return problem


cusip_problem = _problem(cusip, "CUSIP", "9 letters or digits, the last a check digit")
sedol_problem = _problem(sedol, "SEDOL", "7 letters (no vowels) or digits, the last a check digit")
