"""Helpers shared by the blueprints' views: refusals shown on their field, and pagination."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

from flask import abort, current_app, flash, render_template, request
from jinja2 import pass_context
from werkzeug.routing import IntegerConverter
from wtforms.form import BaseForm

from engage.errors import FieldError
from engage.extensions import db
from engage.validators import MAX_ID, whole_number

#: OFFSET is a signed 64-bit integer on SQLite and PostgreSQL; no page may ask for more.
MAX_OFFSET = 2**63 - 1


def field_error(form, field_name: str, message: str) -> None:
    """Show a service's refusal on the form field it concerns, or as a flash message.

    Either way it also reaches the top of the page: the layout lists every error of the forms
    it draws (`refusals`), so a refusal is seen even when its form is folded away or not drawn.
    """
    field = getattr(form, field_name, None)
    if field is not None and hasattr(field, "errors"):
        field.errors = list(field.errors) + [message]
    else:
        flash(message, "error")


#: The status of a page that shows refused input again (the form is drawn with its errors).
REFUSED = 422


def refuse(form, error: FieldError) -> int:
    """The one way a view shows a service's FieldError; returns the status to answer with (422).

    Nothing of the attempt is kept (the session is rolled back), the message goes on the field it
    concerns and, through the layout's `refusals`, to the top of the page under "Not saved."; the
    form keeps what was typed, so the page is drawn again with it. A view that must keep something
    of the attempt (a failed password counts towards the backoff) commits that before calling this.
    """
    db.session.rollback()
    field_error(form, error.field, error.message)
    return REFUSED


class Refusal(str):
    """One "Label: message" line of the page's refusals; `field_id` is the id of the field to link
    to, None when the field is not drawn (a hidden field, the CSRF token, the whole form)."""

    field_id: str | None = None

    def __new__(cls, text: str, field_id: str | None = None):
        line = super().__new__(cls, text)
        line.field_id = field_id
        return line


#: Field types a page never draws: an error on one has no field to link to.
UNDRAWN = {"HiddenField", "CSRFTokenField", "SubmitField"}


@pass_context
def refusals(context) -> list[Refusal]:
    """Template global: every error of every form in the page's context, as "Label: message" lines."""
    lines = []
    for value in context.get_all().values():
        if not isinstance(value, BaseForm):
            continue
        lines += [Refusal(str(message)) for message in getattr(value, "form_errors", [])]
        for field in value:
            for message in field.errors if isinstance(field.errors, (list, tuple)) else []:
                line = Refusal(f"{field.label.text}: {message}", None if field.type in UNDRAWN else field.id)
                if line not in lines:
                    lines.append(line)
    return lines


def page_number() -> int:
    """`?page=` as a whole number from 1 (absent or empty: 1); anything else is a 404."""
    raw = request.args.get("page", "")
    if raw == "":
        return 1
    page = whole_number(raw, minimum=1, maximum=MAX_OFFSET)
    if page is None:
        abort(404)
    return page


def paginate(query, per_page: int | None = None):
    """The one way a list pages. A page past the last, or one no database could reach, is a 404."""
    per_page = per_page or current_app.config["PAGE_SIZE"]
    page = page_number()
    if (page - 1) * per_page > MAX_OFFSET:
        abort(404)
    return db.paginate(query, page=page, per_page=per_page, max_per_page=None, error_out=True, count=True)


class IdConverter(IntegerConverter):
    """`<int:...>` in URLs: ids are database integers, so a larger number is a 404, not an overflow."""

    def __init__(self, map, fixed_digits: int = 0, min: int | None = None, max: int | None = MAX_ID,
                 signed: bool = False) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


def refuse_nul_characters():
    """before_request hook: no NUL character in the path, query string or form (PostgreSQL's text refuses it)."""
    values = [*(request.view_args or {}).values(), *request.args.keys(), *request.args.values()]
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        values += [*request.form.keys(), *request.form.values()]
    if any(isinstance(value, str) and "\x00" in value for value in values):
        abort(400, "The request contains a NUL character, which no field accepts.")


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """A Content-Disposition header for any file name: the UTF-8 name (RFC 5987 `filename*`)
    and an ASCII fallback, since a header value outside Latin-1 is refused by WSGI servers."""
    stem, dot, extension = filename.rpartition(".")
    if not dot or not (extension.isascii() and extension.isalnum()):
        stem, extension = filename, ""
    fallback = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    fallback = re.sub(r"[^A-Za-z0-9._ ()-]+", "_", fallback).strip(" ._") or "attachment"
    fallback += f".{extension.lower()}" if extension else ""
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def own_upload_limit(bp, endpoint: str, setting: str, what: str, form_page) -> None:
    """Give the upload of `endpoint` (a view of blueprint `bp`) its own size limit, `setting` (in MB),
    in place of MAX_CONTENT_LENGTH, which the other forms keep. A body over it answers 413 saying its
    size and the limit, on the upload form again (`form_page()` renders it); nothing was read or kept.

    Set by a URL value preprocessor because those run before every before_request hook, and the
    CSRF check reads the form (so the body) before the view is called."""

    @bp.url_value_preprocessor
    def _upload_limit(endpoint_now: str | None, _values) -> None:
        if endpoint_now == endpoint:
            request.max_content_length = current_app.config[setting] * 1024 * 1024

    @bp.errorhandler(413)
    def _upload_too_large(_error):
        if request.endpoint != endpoint:
            return render_template("errors/error.html", code=413, title="Too large",
                                   text="The upload is larger than the limit this server accepts."), 413
        limit = current_app.config[setting]
        size = request.content_length or 0
        flash(f"The file was refused; nothing was saved. This upload is {size / 1024 / 1024:.0f} MB and {what} "
              f"may be at most {limit} MB ({setting}). Split the file, or ask an administrator to raise the limit.",
              "error")
        return form_page(), 413
