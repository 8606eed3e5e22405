"""Saved views: cleaning a list's query string, saving, renaming, sharing and deleting views.

A view stores only what the list understands: its query string is parsed, every parameter the
list's filter form does not have (and `page`) is dropped, empty values are dropped, and the rest
is checked by that same form, so a stored view always opens on a valid list page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable
from urllib.parse import parse_qsl, urlencode

import sqlalchemy as sa
from sqlalchemy.orm import selectinload
from werkzeug.datastructures import MultiDict

from engage.companies import queries as company_queries
from engage.engagements import queries as engagement_queries
from engage.errors import FieldError
from engage.extensions import db
from engage.models import VIEW_NAME_MAX, VIEW_QUERY_MAX, Role, SavedView, User, ViewList

#: Parameters a list page reads that are not part of a view.
NOT_SAVED = {"page", "after", "before", "last"}


@dataclass(frozen=True)
class ListPage:
    """A list page views can be saved on: where it lives and the form that checks its filters."""

    endpoint: str
    filter_form: Callable


LISTS = {
    ViewList.ENGAGEMENTS.value: ListPage("engagements.index", engagement_queries.filter_form),
    ViewList.COMPANIES.value: ListPage("companies.index", company_queries.filter_form),
}


class ViewError(FieldError):
    """A view refused: `field` is the form field the message concerns."""


def list_page(kind: str) -> ListPage:
    if kind not in LISTS:
        raise ViewError("kind", f"Views can be saved on the engagements or companies list, not {kind!r}.")
    return LISTS[kind]


def clean_query(kind: str, raw: str) -> str:
    """The list's known filters and sort from `raw` (a query string, `?` optional), checked and re-encoded.

    Unknown parameters and empty values are dropped; a known filter with a value the list refuses
    is an error naming it (the list page itself would answer 400 to it).
    """
    page = list_page(kind)
    raw = (raw or "").lstrip("?")
    if len(raw) > 4 * VIEW_QUERY_MAX:
        raise ViewError("query", f"The filters are too long to save (over {4 * VIEW_QUERY_MAX} characters).")
    known = {field.name for field in page.filter_form(MultiDict())}
    given: dict[str, str] = {}
    for key, value in parse_qsl(raw, keep_blank_values=False):
        if key in known and key not in NOT_SAVED and key not in given and value.strip():
            given[key] = value
    form = page.filter_form(MultiDict(given))
    if not form.validate():
        raise ViewError("query", " ".join(f"{field.label.text}: {message}" for field in form for message in field.errors))
    # In the form's order, as the form read them (trimmed, upper-cased, cut), only those given.
    cleaned = [(field.name, field.data) for field in form if field.name in given and field.data]
    query = urlencode(cleaned)
    if len(query) > VIEW_QUERY_MAX:
        raise ViewError("query", f"The filters are too long to save ({len(query)} characters, at most {VIEW_QUERY_MAX}).")
    return query


def describe(view: SavedView) -> list[tuple[str, str]]:
    """A view's filters as (label, value) pairs in the list's words, e.g. ("Stage", "mapping requested")."""
    labels = {field.name: field.label.text for field in list_page(view.list_kind).filter_form(MultiDict())}
    return [(labels.get(key, key), value.replace("_", " ")) for key, value in parse_qsl(view.query)]


def clean_name(name: str | None) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise ViewError("name", "Give the view a name.")
    if len(name) > VIEW_NAME_MAX:
        raise ViewError("name", f"A view's name has at most {VIEW_NAME_MAX} characters ({len(name)} given).")
    return name


def _check_unique(owner: User, kind: str, name: str, view_id: int | None = None) -> None:
    """One name per owner and list, compared without case ("Overdue" and "overdue" would be confusing)."""
    clash = sa.select(SavedView.id).where(
        SavedView.owner_id == owner.id, SavedView.list_kind == kind,
        sa.func.lower(SavedView.name) == name.lower())
    if view_id is not None:
        clash = clash.where(SavedView.id != view_id)
    if db.session.scalar(clash) is not None:
        raise ViewError("name", f"You already have a view named {name!r} on the {ViewList(kind).label.lower()} list.")


def _check_sharing(owner: User, shared: bool) -> None:
    if shared and not owner.has_role(Role.ANALYST):
        raise ViewError("shared", "Viewers keep their views to themselves; an analyst or admin can share one with the team.")


def save_view(owner: User, kind: str, name: str | None, raw_query: str, shared: bool) -> SavedView:
    """A new view of `owner`'s; the caller commits."""
    query = clean_query(kind, raw_query)
    name = clean_name(name)
    _check_sharing(owner, shared)
    _check_unique(owner, kind, name)
    view = SavedView(owner_id=owner.id, list_kind=kind, name=name, query=query, shared=shared)
    db.session.add(view)
    db.session.flush()
    return view


def edit_view(view: SavedView, actor: User, name: str | None, shared: bool) -> SavedView:
    """Rename a view or change whether the team sees it; only its owner may."""
    if view.owner_id != actor.id:
        raise ViewError("name", "Only the owner of a view can rename it or change its sharing.")
    name = clean_name(name)
    _check_sharing(actor, shared)
    _check_unique(actor, view.list_kind, name, view.id)
    view.name, view.shared = name, shared
    db.session.flush()
    return view


def can_delete(view: SavedView, user: User) -> bool:
    """Owners delete their views; an admin may also delete any shared one (the team's menu is theirs to tidy)."""
    return view.owner_id == user.id or (view.shared and user.is_admin)


def delete_view(view: SavedView, actor: User) -> None:
    if not can_delete(view, actor):
        raise ViewError("view", "Only the owner of this view, or an admin for a shared view, can delete it.")
    db.session.delete(view)
    db.session.flush()


def visible_view(view_id: int, user: User) -> SavedView | None:
    """The view if `user` may see it (theirs, or shared); None otherwise, so a private view stays unknown."""
    view = db.session.get(SavedView, view_id)
    if view is None or not (view.owner_id == user.id or view.shared):
        return None
    return view


def visible_views(user: User, kind: str | None = None) -> list[SavedView]:
    """`user`'s views and the team's shared ones, by list then name, owners loaded (two queries)."""
    query = (sa.select(SavedView).where(sa.or_(SavedView.owner_id == user.id, SavedView.shared.is_(True)))
             .options(selectinload(SavedView.owner))
             .order_by(SavedView.list_kind, sa.func.lower(SavedView.name), SavedView.id))
    if kind is not None:
        query = query.where(SavedView.list_kind == kind)
    return list(db.session.scalars(query))


@dataclass
class Menu:
    """What a list page's views menu shows."""

    kind: str
    mine: list
    team: list
    #: The page's own filters, cleaned as a view would store them ("" if they are not valid).
    current_query: str

    @property
    def current(self) -> SavedView | None:
        """The first listed view whose filters are exactly the page's (the page "is" that view)."""
        return next((view for view in [*self.mine, *self.team] if view.query == self.current_query), None) \
            if self.current_query else None


def menu(kind: str, user: User, raw_query: str) -> Menu:
    views = visible_views(user, kind)
    try:
        current = clean_query(kind, raw_query)
    except ViewError:
        current = ""
    return Menu(kind=kind, mine=[v for v in views if v.owner_id == user.id],
                team=[v for v in views if v.owner_id != user.id], current_query=current)
