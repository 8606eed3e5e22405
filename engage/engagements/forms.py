from flask_wtf import FlaskForm
from flask_wtf.file import MultipleFileField
from wtforms import DateField, HiddenField, SelectChoice, SelectField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, Optional

from engage.forms import EditForm
from engage.idempotency import FormTokenMixin
from engage.validators import http_url, sane_date

from engage.models import Direction, InteractionKind, Outcome

KIND_CHOICES = [SelectChoice(k.value, k.label) for k in InteractionKind]
DIRECTION_CHOICES = [
    SelectChoice(Direction.OUTBOUND.value, "Outbound (we contacted the company)"),
    SelectChoice(Direction.INBOUND.value, "Inbound (the company contacted us)"),
    SelectChoice(Direction.INTERNAL.value, "Internal (note for the team)"),
]


def coerce_optional_int(value):
    return int(value) if value not in (None, "", "None") else None


class OpenEngagementForm(FlaskForm):
    campaign_id = SelectField("Campaign", coerce=int, validators=[InputRequired()])
    owner_id = SelectField("Owner", coerce=coerce_optional_int, validators=[Optional()])
    opened_on = DateField("Opened on", validators=[DataRequired(), sane_date])
    objectives = TextAreaField("Objectives", validators=[Length(max=5000)],
                               description="What this engagement should achieve with this company.")
    submit = SubmitField("Open engagement")


class EngagementEditForm(FormTokenMixin, EditForm):
    owner_id = SelectField("Owner", coerce=coerce_optional_int, validators=[Optional()])
    objectives = TextAreaField("Objectives", validators=[Length(max=5000)])
    version = HiddenField(validators=[DataRequired()])
    submit = SubmitField("Save")


class _MoveForm(FormTokenMixin, FlaskForm):
    target = SelectField("Move to", validators=[DataRequired()])
    occurred_on = DateField("Date", validators=[DataRequired(), sane_date], description="When it happened.")
    note = TextAreaField("Note", validators=[Length(max=5000)])
    reason = TextAreaField("Reason", validators=[Length(max=5000)],
                           description="Required when moving back, de-escalating or reopening.")
    evidence = TextAreaField("Evidence of change in practice", validators=[Length(max=5000)],
                             description="Required to readmit a divested company: what has changed, not what is planned.")
    evidence_url = StringField("Evidence link", validators=[Optional(), http_url,
                                                            Length(max=500)])
    version = HiddenField(validators=[DataRequired()])


class StageMoveForm(_MoveForm):
    outcome = SelectField("Outcome", choices=[SelectChoice("", "—")] + [SelectChoice(o.value, o.label) for o in Outcome],
                          validators=[Optional()], description="Required when closing.")
    submit = SubmitField("Move stage")


class EscalationForm(_MoveForm):
    submit = SubmitField("Change escalation")


class InteractionForm(FormTokenMixin, FlaskForm):
    kind = SelectField("Kind", choices=KIND_CHOICES, default=InteractionKind.EMAIL.value)
    direction = SelectField("Direction", choices=DIRECTION_CHOICES, default=Direction.OUTBOUND.value)
    occurred_on = DateField("Date", validators=[DataRequired(), sane_date],
                            description="Not in the future, except for a planned meeting.")
    subject = StringField("Subject", validators=[Length(max=300)])
    summary = TextAreaField("Summary", validators=[Length(max=20000)],
                            description="Plain text or Markdown (no HTML).")
    participants = StringField("Participants", validators=[Length(max=1000)])
    attachments = MultipleFileField("Attachments")
    move_to = SelectField("Also move the stage to", validators=[Optional()], default="",
                          description="For a company response, e.g. to Acknowledged.")
    version = HiddenField()
    submit = SubmitField("Log interaction")
