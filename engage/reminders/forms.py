from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectChoice, SelectField, SelectMultipleField, StringField, SubmitField
from wtforms.validators import DataRequired, Length, Optional

from engage.forms import DateField
from engage.idempotency import FormTokenMixin
from engage.validators import sane_date


class ReminderForm(FlaskForm):
    due_on = DateField("Due on", validators=[DataRequired(), sane_date])
    reason = StringField("What for", validators=[DataRequired(), Length(max=300)])
    submit = SubmitField("Add reminder")


class SnoozeForm(FlaskForm):
    until = DateField("Snooze until", validators=[DataRequired(), sane_date])
    submit = SubmitField("Snooze")


def _optional_id(value):
    return int(value) if value not in (None, "", "None") else None


class BulkForm(FormTokenMixin, FlaskForm):
    """One form for the ticked reminders of the page (the checkboxes join it with `form="bulk"`)."""

    reminder_ids = SelectMultipleField("Ticked reminders", coerce=int, validate_choice=False)
    action = SelectField("Do", choices=[SelectChoice("done", "Mark done"), SelectChoice("snooze", "Snooze until"),
                                        SelectChoice("reassign", "Give their engagements to")])
    until = DateField("Snooze until", validators=[Optional(), sane_date])
    assignee_id = SelectField("Give to", coerce=_optional_id, validate_choice=False, validators=[Optional()])
    who = HiddenField(default="mine")
    submit = SubmitField("Apply to the ticked reminders")
