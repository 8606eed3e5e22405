from flask_wtf import FlaskForm
from decimal import Decimal

from wtforms import (
    BooleanField,
    EmailField,
    IntegerField,
    PasswordField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
    ValidationError,
)
from wtforms.validators import DataRequired, Email, EqualTo, InputRequired, Length, NumberRange, Optional

from engage.forms import DateField, DecimalField, EditForm, FilterForm
from engage.models import Investor, InvestorKind, PaperSize, Role
from engage.letters.service import LetterError, check_cover_note
from engage.validators import MIN_PASSWORD_LENGTH, FiniteDecimal, http_url, sane_date, strong_password, whole_number

#: No investor manages more: the whole world's assets under management are about US$130 trillion.
AUM_MAX_USD = Decimal(10) ** 15

ROLE_CHOICES = [SelectChoice(r.value, r.label) for r in Role]


class UserForm(EditForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    name = StringField("Name", validators=[DataRequired(), Length(max=120)])
    role = SelectField("Role", choices=ROLE_CHOICES, default=Role.ANALYST.value)
    active = BooleanField("Active (may sign in)", default=True)
    submit = SubmitField("Save")


class NewUserForm(UserForm):
    password = PasswordField(
        "Initial password",
        validators=[DataRequired(), strong_password],
        description=f"At least {MIN_PASSWORD_LENGTH} characters; share it with the user out of band.",
    )
    confirm = PasswordField("Repeat password", validators=[DataRequired(), EqualTo("password", "The passwords differ.")])
    submit = SubmitField("Create user")


class PasswordResetForm(FlaskForm):
    password = PasswordField(
        "New password", validators=[DataRequired(), strong_password],
        description=f"At least {MIN_PASSWORD_LENGTH} characters. The user's sessions and calendar link end; "
                    "a sign-in pause is lifted.",
    )
    confirm = PasswordField("Repeat password", validators=[DataRequired(), EqualTo("password", "The passwords differ.")])
    submit = SubmitField("Set password")


class UnlockForm(FlaskForm):
    """Lift a user's sign-in pause: CSRF only."""

    submit = SubmitField("Lift the pause and forget failed attempts")


class FilterDateField(DateField):
    """A date filter (YYYY-MM-DD) whose refusal quotes what was typed (as every date field's does)."""


class AuditFilterForm(FilterForm):
    """The audit trail's filters; choices of action and object type come from `engage.admin.trail`."""

    action = SelectField("Action", validators=[Optional()])
    object_type = SelectField("Object type", validators=[Optional()])
    object_id = StringField("Object number", validators=[Optional()],
                            description="With an object type: that object's history.")
    actor = StringField("Actor", validators=[Optional(), Length(max=254)])
    date_from = FilterDateField("From", name="from", validators=[Optional(), sane_date],
                                description="First day shown (UTC).")
    date_to = FilterDateField("To", name="to", validators=[Optional(), sane_date],
                              description="Last day shown (UTC), included.")

    def __init__(self, *args, actions: list, object_types: list, **kwargs):
        super().__init__(*args, **kwargs)
        self.action.choices = [SelectChoice("", "Any")] + [SelectChoice(value, label) for value, label in actions]
        self.object_type.choices = [SelectChoice("", "Any")] + [SelectChoice(v, label) for v, label in object_types]

    def validate_object_id(self, field):
        if field.data and whole_number(field.data.strip()) is None:
            raise ValidationError(f"{field.data!r} is not an object number (digits only).")

    def validate_date_to(self, field):
        if field.data and self.date_from.data and self.date_from.data > field.data:
            raise ValidationError(f"The range ends ({field.data:%d %b %Y}) before it starts "
                                  f"({self.date_from.data:%d %b %Y}): choose a To on or after the From.")


class CampaignForm(EditForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    summary = TextAreaField("Summary", validators=[Length(max=5000)])
    letterhead = TextAreaField("Letterhead", validators=[Length(max=2000)],
                               description="Printed at the top of the campaign's letters: organisation on the first line, then address.")
    paper_size = SelectField("Paper size of letters", choices=[SelectChoice(p.value, p.label) for p in PaperSize],
                             default=PaperSize.A4.value, validate_choice=False,
                             description="The page size of the campaign's letters, in the PDF and the DOCX alike.")
    call_to_action = TextAreaField("Call to Action", validators=[Length(max=5000)])
    call_to_action_url = StringField("Call to Action link", validators=[Optional(), http_url, Length(max=500)])
    response_window_days = IntegerField("Reply expected within (days)", validators=[InputRequired(), NumberRange(1, 365)])
    follow_up_interval_days = IntegerField("Follow up every (days)", validators=[InputRequired(), NumberRange(1, 365)])
    follow_ups_before_escalation = IntegerField("Follow-ups before escalation is suggested",
                                                validators=[InputRequired(), NumberRange(0, 20)])
    warn_days_before = IntegerField("Warn owners (days before due)", validators=[InputRequired(), NumberRange(0, 60)])
    signatory_ids = SelectMultipleField("Co-signatories", coerce=int, validators=[Optional()],
                                        description="Listed on every letter with their combined AUM.")
    sender_email = EmailField("Sender address of emailed letters", validators=[Optional(), Email(), Length(max=254)],
                              description="The From of letters sent by email; MAIL_DEFAULT_SENDER when empty.")
    cover_note = TextAreaField("Cover note of emailed letters", validators=[Length(max=20_000)],
                               render_kw={"rows": 10},
                               description="The email's text, with the letter attached as PDF. Jinja like letter "
                                           "templates, plus {{ letter.subject }} and {{ letter.reference }}; "
                                           "empty: a short default note.")
    submit = SubmitField("Save campaign")

    def __init__(self, *args, investors: list, **kwargs):
        super().__init__(*args, **kwargs)
        self.signatory_ids.choices = investors

    def validate_paper_size(self, field):
        if field.data not in PaperSize.values():
            raise ValidationError(f"Choose the paper size of the campaign's letters: "
                                  f"{' or '.join(p.label for p in PaperSize)}, not {str(field.data)[:20]!r}.")

    def validate_cover_note(self, field):
        if field.data and field.data.strip():
            try:
                check_cover_note(field.data)
            except LetterError as error:
                raise ValidationError(error.message) from error


class InvestorForm(EditForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    kind = SelectField("Kind", choices=[SelectChoice(k.value, k.label if k.value != "ngo" else "NGO") for k in InvestorKind])
    aum_usd = DecimalField("Assets under management (US$)", places=2,
                           validators=[Optional(), FiniteDecimal(minimum=0, maximum=AUM_MAX_USD, column=Investor.aum_usd)],
                           description="Leave empty when not disclosed; at most US$1,000 trillion, in cents.")
    contact_name = StringField("Contact name", validators=[Optional(), Length(max=120)])
    contact_email = EmailField("Contact email", validators=[Optional(), Email(), Length(max=254)])
    website = StringField("Website", validators=[Optional(), http_url, Length(max=500)])
    submit = SubmitField("Save investor")
