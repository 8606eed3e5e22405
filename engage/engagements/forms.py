from flask_wtf import FlaskForm
from flask_wtf.file import MultipleFileField
from wtforms import HiddenField, SelectChoice, SelectField, StringField, SubmitField, TextAreaField
from wtforms import ValidationError
from wtforms.validators import DataRequired, InputRequired, Length, Optional

from engage.forms import DateField, EditForm, FilterField, FilterForm
from engage.idempotency import FormTokenMixin
from engage.validators import http_url, sane_date

from engage.models import Direction, Escalation, InteractionKind, Outcome, Stage
from engage.validators import whole_number

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

    def __init__(self, *args, campaigns: list, owners: list, **kwargs):
        super().__init__(*args, **kwargs)
        self.campaign_id.choices = campaigns
        self.owner_id.choices = owners


class EngagementEditForm(FormTokenMixin, EditForm):
    owner_id = SelectField("Owner", coerce=coerce_optional_int, validators=[Optional()])
    objectives = TextAreaField("Objectives", validators=[Length(max=5000)])
    # The length and the "date needs a text" rule are the service's (update_engagement), one place.
    next_step = StringField("Next step", description="What happens next, in one line (up to 200 characters).")
    next_step_on = DateField("Next step by", validators=[Optional(), sane_date],
                             description="Optional; a date needs a next step.")
    version = HiddenField(validators=[DataRequired()])
    submit = SubmitField("Save")

    def __init__(self, *args, owners: list, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner_id.choices = owners


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

    def __init__(self, *args, moves: list, **kwargs):
        super().__init__(*args, **kwargs)
        self.offer(moves)

    def offer(self, moves: list) -> None:
        """The moves allowed from the engagement's state, as (target, label); again when it changed meanwhile."""
        self.target.choices = moves


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

    def __init__(self, *args, moves: list, **kwargs):
        super().__init__(*args, **kwargs)
        self.offer(moves)

    def offer(self, moves: list) -> None:
        """The forward stage moves a response may make, after "leave the stage as it is"."""
        self.move_to.choices = moves


class EngagementFilterForm(FilterForm):
    """The engagements list's filters (the page and its bulk letters action read the same fields)."""

    campaign = FilterField("Campaign")
    stage = FilterField("Stage", [FilterForm.one_of({*Stage.values(), "open"}, "Unknown stage {value!r}.")])
    escalation = FilterField("Escalation", [FilterForm.one_of(set(Escalation.values()),
                                                              "Unknown escalation level {value!r}.")])
    owner = FilterField("Owner")
    sector = FilterField("Sector")
    overdue = FilterField("Overdue", [FilterForm.one_of({"yes"}, "overdue and stale take the value 'yes'.")])
    stale = FilterField("No recent contact", [FilterForm.one_of({"yes"}, "overdue and stale take the value 'yes'.")])
    score_below = FilterField("Score below")
    trend = FilterField("Score trend", [FilterForm.one_of({"up", "down"}, "trend must be 'up' or 'down'.")])
    sort = FilterField("Sort", default="company")
    dir = FilterField("Direction", default="asc")

    def __init__(self, formdata, *, sorts, **kwargs):
        """`sorts`: the columns the list can sort by."""
        super().__init__(formdata, **kwargs)
        self.sorts = set(sorts)

    def validate_campaign(self, field):
        if field.data and whole_number(field.data) is None:
            raise ValidationError("campaign must be a campaign number.")

    def validate_owner(self, field):
        if field.data and field.data not in ("me", "none") and whole_number(field.data) is None:
            raise ValidationError("owner must be a user number, 'me' or 'none'.")

    def validate_score_below(self, field):
        if field.data and whole_number(field.data, maximum=100) is None:
            raise ValidationError("score_below must be a whole number from 0 to 100.")

    def validate_sort(self, field):
        field.data = field.data or "company"
        self.dir.data = self.dir.data or "asc"
        if field.data not in self.sorts or self.dir.data not in ("asc", "desc"):
            raise ValidationError(f"Cannot sort by {field.data!r} {self.dir.data!r}.")
