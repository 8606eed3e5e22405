from flask_wtf import FlaskForm
from wtforms import PasswordField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length

from engage.validators import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, strong_password


class PasswordChangeForm(FlaskForm):
    """A user changes their own password: the current one, then the new one twice."""

    current_password = PasswordField("Current password",
                                     validators=[DataRequired(), Length(max=MAX_PASSWORD_LENGTH)])
    new_password = PasswordField("New password", validators=[DataRequired(), strong_password],
                                 description=f"At least {MIN_PASSWORD_LENGTH} characters.")
    confirm = PasswordField("Repeat new password",
                            validators=[DataRequired(), EqualTo("new_password", "The passwords differ.")])
    submit = SubmitField("Change password")
