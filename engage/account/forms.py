from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectChoice, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length

from engage.forms import DateField
from engage.idempotency import FormTokenMixin
from engage.validators import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, sane_date, strong_password


class PasswordChangeForm(FlaskForm):
    """A user changes their own password: the current one, then the new one twice."""

    current_password = PasswordField("Current password",
                                     validators=[DataRequired(), Length(max=MAX_PASSWORD_LENGTH)])
    new_password = PasswordField("New password", validators=[DataRequired(), strong_password],
                                 description=f"At least {MIN_PASSWORD_LENGTH} characters.")
    confirm = PasswordField("Repeat new password",
                            validators=[DataRequired(), EqualTo("new_password", "The passwords differ.")])
    submit = SubmitField("Change password")


class TokenForm(FormTokenMixin, FlaskForm):
    """A new personal access token for the JSON API: what it is for, its scope, its last day."""

    name = StringField("Name", validators=[DataRequired(), Length(max=120)],
                       description="What uses it, e.g. \"Power BI refresh\" or \"weekly script\".")
    scope = SelectField("Scope", choices=[SelectChoice("read", "Read only"),
                                          SelectChoice("read_write", "Read and write")], default="read")
    expires_on = DateField("Works until", validators=[DataRequired(), sane_date],
                           description="The last day the token works.")
    submit = SubmitField("Create token")

    def __init__(self, *args, can_write: bool, **kwargs):
        """`can_write`: the user's role may change things; a viewer is offered read-only tokens alone."""
        super().__init__(*args, **kwargs)
        if not can_write:
            self.scope.choices = [SelectChoice("read", "Read only")]
