"""Form base classes shared by the features' forms."""

from __future__ import annotations

import decimal

from flask import has_request_context, request
from flask_wtf import FlaskForm
from wtforms import DecimalField as _DecimalField

SUBMIT_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class EditForm(FlaskForm):
    """A form that edits a stored object: filled from `obj` when shown, judged on the post alone.

    WTForms fills a field missing from the post with the object's stored value (for a
    relationship, a list of rows), so a post carrying only a CSRF token would be "valid" and
    save, or fail on that list. A submitted edit form ignores `obj`: a missing required field is
    a field error, like on a new object. A form built with explicit `formdata` is left alone.
    """

    def __init__(self, *args, obj=None, **kwargs):
        submitted = has_request_context() and request.method in SUBMIT_METHODS
        if submitted and not args and "formdata" not in kwargs:
            obj = None
        super().__init__(*args, obj=obj, **kwargs)


class DecimalField(_DecimalField):
    """A DecimalField that can always be drawn, even around a stored value it could not format.

    WTForms quantizes the value to `places` when drawing it; an infinite value, or one longer
    than the decimal context's precision, raises there, and the page would be a 500.
    """

    def _value(self):
        try:
            return super()._value()
        except (decimal.InvalidOperation, ValueError, TypeError):
            return str(self.data)
