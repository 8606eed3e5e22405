from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, SelectChoice, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length, Optional

from engage.admin.service import MIN_PASSWORD_LENGTH
from engage.models import Role

ROLE_CHOICES = [SelectChoice(r.value, r.label) for r in Role]


class UserForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    name = StringField("Name", validators=[DataRequired(), Length(max=120)])
    role = SelectField("Role", choices=ROLE_CHOICES, default=Role.ANALYST.value)
    active = BooleanField("Active (may sign in)", default=True)
    submit = SubmitField("Save")


class NewUserForm(UserForm):
    password = PasswordField(
        "Initial password",
        validators=[DataRequired(), Length(min=MIN_PASSWORD_LENGTH, max=256)],
        description=f"At least {MIN_PASSWORD_LENGTH} characters; share it with the user out of band.",
    )
    confirm = PasswordField("Repeat password", validators=[DataRequired(), EqualTo("password", "The passwords differ.")])
    submit = SubmitField("Create user")


class PasswordResetForm(FlaskForm):
    password = PasswordField(
        "New password", validators=[DataRequired(), Length(min=MIN_PASSWORD_LENGTH, max=256)]
    )
    confirm = PasswordField("Repeat password", validators=[DataRequired(), EqualTo("password", "The passwords differ.")])
    submit = SubmitField("Set password")


class AuditFilterForm(FlaskForm):
    class Meta:
        csrf = False

    action = SelectField(
        "Action",
        choices=[SelectChoice("", "Any")] + [SelectChoice(a, a.replace("_", " ")) for a in
                                 ("create", "update", "delete", "login", "login_failed", "logout", "role_change")],
        validators=[Optional()],
    )
    object_type = StringField("Object type", validators=[Optional(), Length(max=60)])
    actor = StringField("Actor", validators=[Optional(), Length(max=254)])
