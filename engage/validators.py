"""Validators shared by every form and CLI option: links, dates, numbers, whole numbers.

Each limit is defined once here, so the forms, the CLI and the README agree:
- dates from DATE_MIN to DATE_MAX (`sane_date` for forms, `parse_date`/`parse_datetime` for the CLI);
- decimals finite, within bounds and within the column's precision (`FiniteDecimal`, `decimal_problem`);
- whole numbers in query strings and hidden fields as ASCII digits within bounds (`whole_number`).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

from wtforms import ValidationError
from wtforms.validators import StopValidation

from engage.formatting import format_date

#: The dates Engage accepts anywhere: wide enough for any engagement, narrow enough that date
#: arithmetic, both databases and every calendar client handle them.
DATE_MIN = dt.date(1990, 1, 1)
DATE_MAX = dt.date(2100, 12, 31)

#: Ids are database INTEGER columns (32-bit on PostgreSQL).
MAX_ID = 2**31 - 1

#: The password rule for every way a password is set: `flask users create`, the admin's
#: create and reset, and a user's own change on the account page.
MIN_PASSWORD_LENGTH = 12
#: Longer input is refused rather than hashed (the sign-in form accepts no more either).
MAX_PASSWORD_LENGTH = 256


def http_url_problem(value: str | None) -> str | None:
    """None for an absolute http(s) link (or nothing), else what is wrong with it."""
    value = (value or "").strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or " " in value:
        return "Give a full http:// or https:// address."
    return None


def http_url(form, field):
    """Only absolute http(s) links: a javascript: or data: link must never reach a page."""
    problem = http_url_problem(field.data)
    if problem:
        raise ValidationError(problem)
    field.data = (field.data or "").strip()


def password_problem(password: str | None) -> str | None:
    """None for an acceptable new password, else what is wrong with it."""
    password = password or ""
    if len(password) < MIN_PASSWORD_LENGTH or not password.strip():
        return f"The password must be at least {MIN_PASSWORD_LENGTH} characters long."
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"The password must be at most {MAX_PASSWORD_LENGTH} characters long."
    return None


def strong_password(form, field):
    """Form validator for a new password: the same rule as password_problem."""
    problem = password_problem(field.data)
    if problem:
        raise ValidationError(problem)


# --- dates ----------------------------------------------------------------------------------

def date_problem(value: dt.date | dt.datetime | None) -> str | None:
    """None for a date within DATE_MIN..DATE_MAX (or no date), else what is wrong with it."""
    if value is None:
        return None
    day = value.date() if isinstance(value, dt.datetime) else value
    if DATE_MIN <= day <= DATE_MAX:
        return None
    return (f"{format_date(day)} is outside the dates Engage accepts "
            f"({format_date(DATE_MIN)} to {format_date(DATE_MAX)}).")


def sane_date(form, field):
    """WTForms validator for every DateField: the date is within DATE_MIN..DATE_MAX."""
    problem = date_problem(field.data)
    if problem:
        raise StopValidation(problem)


def parse_date(text: str, option: str) -> dt.date:
    """A CLI date YYYY-MM-DD within the accepted range, or ValueError saying what and where."""
    try:
        value = dt.date.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        raise ValueError(f"{option} must be a date YYYY-MM-DD, not {text!r}") from None
    problem = date_problem(value)
    if problem:
        raise ValueError(f"{option}: {problem}")
    return value


def parse_datetime(text: str, option: str) -> dt.datetime:
    """A CLI ISO date-time (naive UTC; an offset is converted) within the accepted date range."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        raise ValueError(f"{option} must be an ISO date-time such as 2026-11-21T09:00, not {text!r}") from None
    if value.tzinfo is not None:
        try:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        except OverflowError:  # an offset that takes the time past year 1 or 9999
            raise ValueError(f"{option}: {text.strip()} is outside the dates Engage accepts "
                             f"({format_date(DATE_MIN)} to {format_date(DATE_MAX)}).") from None
    problem = date_problem(value)
    if problem:
        raise ValueError(f"{option}: {problem}")
    return value


# --- numbers --------------------------------------------------------------------------------

def column_capacity(column) -> tuple[Decimal, int] | None:
    """(largest absolute value, decimal places) a NUMERIC(p, s) column stores, or None if unbounded."""
    column_type = getattr(getattr(column, "property", None), "columns", [column])[0].type
    precision, scale = getattr(column_type, "precision", None), getattr(column_type, "scale", None)
    if precision is None:
        return None
    scale = scale or 0
    return Decimal(10) ** (precision - scale) - Decimal(10) ** -scale, scale


def _plain(value: Decimal) -> str:
    return f"{value:,f}" if value == value.to_integral_value() else f"{value:f}"


def decimal_problem(value, *, minimum: Decimal | int | None = None, maximum: Decimal | int | None = None,
                    places: int | None = None) -> str | None:
    """None for a finite number within [minimum, maximum] with at most `places` decimals, else why not."""
    if value is None:
        return None
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return f"{str(value)[:40]!r} is not a number."
    if not number.is_finite():
        return "Give a finite number (not infinity or NaN)."
    low = None if minimum is None else Decimal(minimum)
    high = None if maximum is None else Decimal(maximum)
    if (low is not None and number < low) or (high is not None and number > high):
        if low is not None and high is not None:
            return f"Give a number from {_plain(low)} to {_plain(high)}."
        if low is not None:
            return f"Give a number of at least {_plain(low)}."
        return f"Give a number of at most {_plain(high)}."
    if places is not None and number.as_tuple().exponent < -places:
        return f"Give at most {places} decimal place{'s' if places != 1 else ''}." if places else "Give a whole number."
    return None


def parse_decimal(text, **bounds) -> Decimal:
    """A number typed by a user (service-level input), or ValueError with the problem."""
    if text is None or str(text).strip() == "":
        raise ValueError("Give a number.")
    problem = decimal_problem(text, **bounds)
    if problem:
        raise ValueError(problem)
    return Decimal(str(text).strip())


class FiniteDecimal:
    """WTForms validator: a finite decimal within bounds and within its column's precision.

    `column` (a mapped NUMERIC column) caps `maximum` at what the column stores and sets the
    decimal places, so a value the database would round or refuse is refused here with a message.
    """

    def __init__(self, minimum=None, maximum=None, places: int | None = None, column=None):
        capacity = column_capacity(column) if column is not None else None
        if capacity is not None:
            largest, scale = capacity
            maximum = largest if maximum is None else min(Decimal(maximum), largest)
            minimum = -largest if minimum is None else max(Decimal(minimum), -largest)
            places = scale if places is None else min(places, scale)
        self.minimum, self.maximum, self.places = minimum, maximum, places

    def __call__(self, form, field):
        problem = decimal_problem(field.data, minimum=self.minimum, maximum=self.maximum, places=self.places)
        if problem:
            raise StopValidation(problem)


# --- whole numbers ----------------------------------------------------------------------------

def whole_number(text: str | None, *, minimum: int = 0, maximum: int = MAX_ID) -> int | None:
    """ASCII digits within [minimum, maximum], else None: no sign, space, exponent or other digits."""
    if not text or not (text.isascii() and text.isdigit()) or len(text) > len(str(maximum)):
        return None
    value = int(text)
    return value if minimum <= value <= maximum else None
