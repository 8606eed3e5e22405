"""Keyset paging: a list page is the rows after (or before) the last (first) row shown.

OFFSET paging reads and throws away every row before the page, so page 4,000 of a list costs
4,000 pages (issue 20: the engagements list's deep page took 1 to 2.4 s at 100,000 companies).
Here a page link carries a *cursor*: the sort value and id of the row it continues from, and the
next page is "the rows after it in the list's order", which a database reads from an index
matching the order, whatever the depth.

The order of every list is: the sort value in the chosen direction, rows without a value
(NULL) last, ties by id ascending — exactly the `ORDER BY value NULLS LAST, id` the lists used
with OFFSET, so the rows and their order are the same. The rows with a value and the rows
without are read as two parts of one statement (UNION ALL), so each part can follow its index.

A cursor is not trusted: it is read back as the sort value's type, and a cursor made for
another order (a stale tab after the sort changed) or one that cannot be read gives the first
page and a message saying so. A cursor whose row was deleted still has a place in the order, so
the page after it is the right one. A page number (`?page=`, the old links) is answered with
the first page.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

import sqlalchemy as sa
from flask import current_app, flash, request

from engage.extensions import db
from engage.validators import MAX_ID

#: Rows a list counts before it says "more than": a count is a read of every matching row.
COUNT_CAP = 1000
#: The parameters of a page position (dropped from saved views and from the links they make).
CURSOR_PARAMS = ("after", "before", "last", "page")
#: The longest cursor read (a sort value of up to a few hundred characters, base64 encoded).
CURSOR_MAX = 2000

TEXT, DATE, NUMBER = "text", "date", "number"


@dataclass(frozen=True)
class Order:
    """A list's order: `column` (an SQL expression) in `descending` order, NULLs last, ties by `id`."""

    name: str  # the sort's name in the URL (`sort=`), checked against the cursor
    column: Any
    id: Any
    descending: bool = False
    nullable: bool = True
    kind: str = TEXT  # TEXT, DATE or NUMBER: how a cursor's value is read back
    #: (table, on clause) outer-joined for the sort alone: the page's rows need it, its count does not
    joins: tuple = ()

    @property
    def signature(self) -> str:
        return f"{self.name}:{'desc' if self.descending else 'asc'}"


@dataclass
class KeysetPage:
    """One page of a list in keyset order, with the links' cursors."""

    items: list
    per_page: int
    has_prev: bool = False
    has_next: bool = False
    prev_cursor: str | None = None
    next_cursor: str | None = None
    total: int = 0  # rows matching, counted up to COUNT_CAP
    total_capped: bool = False  # more than COUNT_CAP rows match
    notice: str | None = None
    position: str = "first"  # first, after, before or last: how the page was reached
    keys: list = field(default_factory=list)

    @property
    def total_text(self) -> str:
        """'1 row', '37 rows', 'more than 1,000 rows'."""
        if self.total_capped:
            return f"more than {COUNT_CAP:,} rows"
        return f"{self.total:,} row{'' if self.total == 1 else 's'}"


class BadCursor(ValueError):
    pass


def encode_cursor(order: Order, value, row_id: int) -> str:
    if isinstance(value, dt.date):
        value = value.isoformat()
    elif isinstance(value, (Decimal, float, int)) and not isinstance(value, bool):
        value = repr(float(value)) if isinstance(value, float) else str(value)
    raw = json.dumps([order.signature, value, row_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(order: Order, text: str):
    """(value, id) from a cursor made for `order`; BadCursor when it cannot be read, LookupError
    when it was made for another order."""
    if len(text) > CURSOR_MAX:
        raise BadCursor("too long")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        signature, value, row_id = json.loads(raw.decode())
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as error:
        raise BadCursor(str(error)) from error
    if not isinstance(signature, str) or type(row_id) is not int or not 0 < row_id <= MAX_ID:
        raise BadCursor("shape")
    if signature != order.signature:
        raise LookupError(signature)
    if value is None:
        if not order.nullable:
            raise BadCursor("a value is needed")
        return None, row_id
    if not isinstance(value, str):
        raise BadCursor("value")
    try:
        if order.kind == DATE:
            value = dt.date.fromisoformat(value)
        elif order.kind == NUMBER:
            value = Decimal(value)
            # the lists' numbers are scores and their changes (-100 to 100): a float's digits at most
            if not value.is_finite() or abs(value) > 10**6 or len(value.as_tuple().digits) > 40:
                raise BadCursor("number")
    except (ValueError, InvalidOperation) as error:
        raise BadCursor(str(error)) from error
    if "\x00" in str(value):
        raise BadCursor("NUL")
    return value, row_id


def _key_column(order: Order):
    # A number is read as a float: SQLite's REAL read as a Decimal is rounded to 10 places, and
    # the cursor must give back exactly the stored value for the tie on it to be found.
    return sa.type_coerce(order.column, sa.Float) if order.kind == NUMBER else order.column


def _parts(query, order: Order, cursor, forward: bool, limit: int):
    """The statement of the next `limit` rows (key, id) from `cursor` (None: from an end), going
    `forward` in the list's order or backward (then nearest first)."""
    col, id_ = order.column, order.id
    value_desc = order.descending if forward else not order.descending  # the direction read here
    beyond, at_or_beyond = ((lambda a, b: a < b), (lambda a, b: a <= b)) if value_desc else \
        ((lambda a, b: a > b), (lambda a, b: a >= b))
    has_value = [col.is_not(None)] if order.nullable else []
    id_beyond = None if cursor is None else (id_ > cursor[1]) if forward else (id_ < cursor[1])
    value_part, null_part = list(has_value), ([col.is_(None)] if order.nullable else None)
    if cursor is not None and cursor[0] is not None:
        # `col >= value AND (col > value OR id > cursor id)`: the first condition bounds the index range
        value_part += [at_or_beyond(col, cursor[0]), sa.or_(beyond(col, cursor[0]), id_beyond)]
        if not forward:
            null_part = None  # rows without a value come after every row with one
    elif cursor is not None:
        null_part = [col.is_(None), id_beyond] if order.nullable else None
        if forward:
            value_part = None  # after a row without a value come only rows without one

    base = query.order_by(None)
    for table, on in order.joins:
        base = base.outerjoin(table, on)
    id_order = id_.asc() if forward else id_.desc()
    selects = []
    for rank, where in enumerate((value_part, null_part) if forward else (null_part, value_part)):
        if where is None:
            continue
        ordering = ([col.desc() if value_desc else col.asc()] if where is value_part else []) + [id_order]
        part = (base.with_only_columns(id_.label("id"), _key_column(order).label("key"), sa.literal(rank).label("part"))
                .where(*where).order_by(*ordering).limit(limit))
        selects.append(sa.select(part.subquery().c))
    union = (sa.union_all(*selects) if len(selects) > 1 else selects[0]).subquery("keyset")
    key = union.c.key.desc() if value_desc else union.c.key.asc()
    return (sa.select(union.c.key, union.c.id)
            .order_by(union.c.part, key, union.c.id.asc() if forward else union.c.id.desc()).limit(limit))


def _fetch(query, order, cursor, forward, limit) -> list:
    return db.session.execute(_parts(query, order, cursor, forward, limit)).all()


def capped_count(query, id_column) -> tuple[int, bool]:
    """The rows `query` matches, counted up to COUNT_CAP (and whether there are more)."""
    inner = query.order_by(None).with_only_columns(id_column).limit(COUNT_CAP + 1).subquery()
    total = db.session.scalar(sa.select(sa.func.count()).select_from(inner))
    return min(total, COUNT_CAP), total > COUNT_CAP


def keyset_paginate(query, order: Order, load: Callable[[list[int]], list], per_page: int | None = None
                    ) -> KeysetPage:
    """The page of `query` (filtered, any order dropped) the request's cursor asks for.

    `load(ids)` returns the page's objects for those ids (with what the page shows loaded);
    they are put in the list's order here. Queries: the page's keys, `load`'s, the count, and on a
    page reached by a cursor one to know whether there are rows on its other side.
    """
    per_page = per_page or current_app.config["PAGE_SIZE"]
    args = request.args
    notice = None
    position, cursor = "first", None
    raw = args.get("after") or args.get("before")
    if raw:
        position = "after" if args.get("after") else "before"
        try:
            cursor = decode_cursor(order, raw)
        except LookupError:
            notice = "The list's order changed since that page link was made, so it starts again at the first page."
        except BadCursor:
            notice = "That page link could not be read, so the list starts at the first page."
        if cursor is None:
            position = "first"
    elif args.get("last"):
        position = "last"
    elif args.get("page", "") not in ("", "1"):
        notice = "This list no longer has numbered pages: use Next and Previous. It starts at the first page."

    forward = position in ("first", "after")
    rows = _fetch(query, order, cursor, forward, per_page + 1)
    more_this_way = len(rows) > per_page
    rows = rows[:per_page]
    if position == "before" and len(rows) < per_page:
        # Fewer rows before the cursor than a page (rows deleted meanwhile): the first page.
        position, forward, cursor = "first", True, None
        rows = _fetch(query, order, None, True, per_page + 1)
        more_this_way = len(rows) > per_page
        rows = rows[:per_page]
    elif position == "after" and not rows:
        # Nothing after the cursor any more (its rows deleted or moved): the last page.
        position, forward, cursor = "last", False, None
        rows = _fetch(query, order, None, False, per_page + 1)
        more_this_way = len(rows) > per_page
        rows = rows[:per_page]
    if not forward:
        rows.reverse()

    if position == "first":
        has_prev, has_next = False, more_this_way
    elif position == "last":
        has_prev, has_next = more_this_way, False
    else:
        # The other side of the cursor: is there at least one row there?
        other = bool(_fetch(query, order, cursor, not forward, 1))
        has_prev, has_next = (other, more_this_way) if forward else (more_this_way, other)

    ids = [row.id for row in rows]
    objects = {obj.id: obj for obj in load(ids)} if ids else {}
    total, capped = capped_count(query, order.id)
    if notice:
        flash(notice, "info")
    return KeysetPage(
        items=[objects[i] for i in ids if i in objects], per_page=per_page, has_prev=has_prev, has_next=has_next,
        prev_cursor=encode_cursor(order, rows[0].key, rows[0].id) if rows and has_prev else None,
        next_cursor=encode_cursor(order, rows[-1].key, rows[-1].id) if rows and has_next else None,
        total=total, total_capped=capped, notice=notice, position=position, keys=[(r.key, r.id) for r in rows],
    )
