"""The one source of "now". Tests and jobs freeze or pass time explicitly.

Times are naive UTC throughout the database: SQLite has no time zones and a single
convention avoids comparing aware with naive values.
"""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager

_frozen: dt.datetime | None = None


def utcnow() -> dt.datetime:
    """Current UTC time without tzinfo (or the frozen time in tests)."""
    if _frozen is not None:
        return _frozen
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def today() -> dt.date:
    return utcnow().date()


@contextmanager
def frozen(at: dt.datetime):
    """Freeze utcnow() at `at` inside the block."""
    global _frozen
    previous, _frozen = _frozen, at.replace(tzinfo=None)
    try:
        yield
    finally:
        _frozen = previous
