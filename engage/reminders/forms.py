from flask_wtf import FlaskForm
from wtforms import DateField, StringField, SubmitField
from wtforms.validators import DataRequired, Length

from engage.validators import sane_date


class ReminderForm(FlaskForm):
    due_on = DateField("Due on", validators=[DataRequired(), sane_date])
    reason = StringField("What for", validators=[DataRequired(), Length(max=300)])
    submit = SubmitField("Add reminder")


class SnoozeForm(FlaskForm):
    until = DateField("Snooze until", validators=[DataRequired(), sane_date])
    submit = SubmitField("Snooze")
