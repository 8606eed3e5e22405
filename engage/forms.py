"""Form base classes shared by the features' forms."""

from __future__ import annotations

import decimal

from flask import abort, has_request_context, request
from flask_wtf import FlaskForm
from wtforms import DateField as _DateField
from wtforms import DecimalField as _DecimalField
from wtforms import StringField, ValidationError

from engage.formatting import DATE_FORMAT

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


class ActionForm(FlaskForm):
    """A button, or a form whose fields the view reads itself: its CSRF token, checked on submit.

    The view that draws the page passes one (`action_form=ActionForm(formdata=None)`) and the
    template renders `action_form.csrf_token`; the view that takes the post calls
    `ActionForm().validate_on_submit()`.
    """


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class FilterField(StringField):
    """One filter of a list page: text from the query string, stripped, "" when absent.

    `cut` keeps at most that many characters (a search longer than any name finds nothing more).
    """

    def __init__(self, label=None, validators=None, *, default="", cut: int | None = None, upper: bool = False,
                 **kwargs):
        filters = [_strip]
        if upper:
            filters.append(lambda value: value.upper() if isinstance(value, str) else value)
        if cut is not None:
            filters.append(lambda value: value[:cut] if isinstance(value, str) else value)
        super().__init__(label, validators, filters=filters, default=default, **kwargs)


class FilterForm(FlaskForm):
    """A list page's filters as a GET form: no CSRF, every value checked by the form.

    The page builds it from `request.args`, a bulk action from the same fields posted again;
    `values_or_400()` gives the checked values, or refuses the request (400) naming the bad value.
    """

    class Meta:
        csrf = False

    def values_or_400(self) -> dict:
        if not self.validate():
            abort(400, " ".join(f"{field.label.text}: {message}" for field in self for message in field.errors))
        return {field.name: field.data or "" for field in self}

    @staticmethod
    def one_of(allowed, message: str):
        """Validator: empty, or one of `allowed`; `message` is formatted with the value (`{value!r}`)."""

        def check(form, field):
            if field.data and field.data not in allowed:
                raise ValidationError(message.format(value=field.data))

        return check


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


class DateField(_DateField):
    """A day, picked (`<input type=date>` sends YYYY-MM-DD) or typed: YYYY-MM-DD or as the pages
    write it ('05 Dec 2026'). A refusal quotes what was typed and says the format; nothing typed
    is no date, for `DataRequired` or `Optional` to judge."""

    def __init__(self, label=None, validators=None, format=("%Y-%m-%d", DATE_FORMAT), **kwargs):
        super().__init__(label, validators, format=list(format), **kwargs)

    def process_formdata(self, valuelist):
        self.typed_problem = None
        typed = " ".join(valuelist).strip() if valuelist else ""
        if not typed:
            self.data = None
            return
        try:
            super().process_formdata([typed])
        except ValueError as error:
            self.typed_problem = f"{typed[:40]!r} is not a date; write it as YYYY-MM-DD, e.g. 2026-06-15."
            raise ValueError(self.typed_problem) from error

    def post_validate(self, form, validation_stopped):
        """`DataRequired` replaces a refused date by "This field is required.": say what was wrong."""
        if getattr(self, "typed_problem", None):
            self.errors[:] = [self.typed_problem]
