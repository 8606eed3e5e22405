"""Helpers shared by the blueprints' views."""

from flask import flash


def field_error(form, field_name: str, message: str) -> None:
    """Show a service's refusal on the form field it concerns, or as a flash message."""
    field = getattr(form, field_name, None)
    if field is not None and hasattr(field, "errors"):
        field.errors = list(field.errors) + [message]
    else:
        flash(message, "error")
