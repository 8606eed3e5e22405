"""Saving a list's filters as a view, and renaming or sharing one."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, StringField

from engage.forms import EditForm
from engage.models import VIEW_NAME_MAX


class ViewNameFields(FlaskForm):
    # The service checks the name (trimmed, not empty, not too long, unique); maxlength helps the browser.
    name = StringField("Name", render_kw={"maxlength": VIEW_NAME_MAX, "autocomplete": "off"},
                       description="How the view appears in the menu, e.g. “Overdue, forced labour campaign”.")
    shared = BooleanField("Share with the team")


class SaveViewForm(ViewNameFields):
    """Save this view: the list and its current query string travel as hidden fields."""

    kind = HiddenField("List")
    query = HiddenField("Filters")


class EditViewForm(ViewNameFields, EditForm):
    """Rename a view, or change whether the team sees it (judged on the post alone, see EditForm)."""
