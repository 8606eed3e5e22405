"""Security identifiers: ISIN format and check digit."""

from __future__ import annotations

import re

ISIN_RE = re.compile(r"^[A-Z]{2}[A-Z0-9]{9}[0-9]$")


def isin_check_digit(first11: str) -> int:
    """ISO 6166 check digit: letters become numbers (A=10), then Luhn over the digits."""
    digits = "".join(str(int(ch, 36)) for ch in first11)
    total = 0
    for position, ch in enumerate(reversed(digits)):
        n = int(ch)
        if position % 2 == 0:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return (10 - total % 10) % 10


def isin_problem(value: str) -> str | None:
    """None when `value` is a valid ISIN, else a sentence saying what is wrong."""
    isin = (value or "").strip().upper()
    if not ISIN_RE.match(isin):
        return f"{value!r} is not an ISIN: expected 2 letters, 9 letters or digits, 1 check digit."
    expected = isin_check_digit(isin[:11])
    if int(isin[11]) != expected:
        return f"{isin} has check digit {isin[11]}, expected {expected}."
    return None
