"""The one shape of refusal the services raise: a message and the form field it belongs to."""


class FieldError(ValueError):
    """Refused input; `field` names the form field (or CLI option) the message concerns."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message
