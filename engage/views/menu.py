"""What a list page passes its template for the views menu (`templates/views/_menu.html`)."""

from __future__ import annotations

from flask import request
from flask_login import current_user

from engage.views import service
from engage.views.forms import SaveViewForm


def menu_context(kind: str) -> dict:
    """The current user's and the team's views of this list, and the form saving the page's filters."""
    query = request.query_string.decode("latin-1")
    return {
        "views_menu": service.menu(kind, current_user, query),
        "view_form": SaveViewForm(formdata=None, kind=kind, query=query),
    }
