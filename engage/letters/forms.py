"""Letter forms: generating, editing, sending, bulk generation and the template editor."""

import secrets

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    HiddenField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms import widgets
from wtforms.validators import DataRequired, Length, Optional, Regexp

from engage.forms import DateField, EditForm
from engage.idempotency import FormTokenMixin
from engage.letters.service import CHANNELS, template_choices
from engage.models import LANGUAGES, LetterKind
from engage.validators import sane_date


def _optional_id(value):
    return int(value) if value not in (None, "", "None") else None


class GenerateForm(FormTokenMixin, FlaskForm):
    template_id = SelectField("Template", coerce=int, validators=[DataRequired()])
    #: Choices are the company's active contacts; empty means its primary contact.
    contact_id = SelectField("Addressed to", coerce=_optional_id, validators=[Optional()], validate_choice=False)
    submit = SubmitField("Generate draft")

    def __init__(self, *args, templates: list, contacts: list = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.template_id.choices = templates
        self.contact_id.choices = list(contacts)


class ContactChecks(SelectMultipleField):
    """Contacts as a list of checkboxes."""

    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class EmailForm(FlaskForm):
    to = ContactChecks("To", coerce=int, validate_choice=False)
    cc = ContactChecks("Cc", coerce=int, validate_choice=False)
    submit = SubmitField("Send by email")

    def __init__(self, *args, contacts: list, **kwargs):
        super().__init__(*args, **kwargs)
        self.to.choices = contacts
        self.cc.choices = contacts


class BatchEmailForm(FormTokenMixin, FlaskForm):
    submit = SubmitField("Email the drafts")


class BatchSentForm(FormTokenMixin, FlaskForm):
    """Mark every unsent letter of a batch as sent, on one date by one channel."""

    sent_on = DateField("Sent on", validators=[DataRequired(), sane_date])
    channel = SelectField("Channel", choices=[SelectChoice(c, c.capitalize()) for c in CHANNELS])
    submit = SubmitField("Mark all as sent")


class LanguageForm(EditForm):
    language = SelectField("Language", choices=[SelectChoice(tag, label) for tag, label in LANGUAGES if tag != "en"])
    subject = StringField("Subject", validators=[DataRequired(), Length(max=300)])
    body = TextAreaField("Body", validators=[DataRequired(), Length(max=100_000)], render_kw={"rows": 20})
    submit = SubmitField("Save language version")


class DraftForm(EditForm):
    subject = StringField("Subject", validators=[DataRequired(), Length(max=300)])
    body = TextAreaField("Text", validators=[DataRequired(), Length(max=100_000)])
    submit = SubmitField("Save draft")


class SendForm(FlaskForm):
    sent_on = DateField("Sent on", validators=[DataRequired(), sane_date])
    channel = SelectField("Channel", choices=[SelectChoice(c, c.capitalize()) for c in CHANNELS])
    submit = SubmitField("Mark as sent")


class BulkForm(FlaskForm):
    template_id = SelectField("Template", coerce=int, validators=[DataRequired()])
    scope = SelectField("Letters for", choices=[SelectChoice("selected", "the selected engagements"),
                                                SelectChoice("all", "every engagement matching the filters")])
    #: One-time key of this rendered form, so a double click generates one batch.
    token = HiddenField(validators=[Optional(), Length(max=64), Regexp(r"^[A-Za-z0-9_-]*$")])
    submit = SubmitField("Generate letters")

    def __init__(self, *args, templates: list, **kwargs):
        super().__init__(*args, **kwargs)
        self.template_id.choices = templates


class TemplateForm(EditForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    kind = SelectField("Kind", choices=[SelectChoice(k.value, k.label) for k in LetterKind])
    subject = StringField("Subject", validators=[DataRequired(), Length(max=300)])
    body = TextAreaField("Body", validators=[DataRequired(), Length(max=100_000)],
                         render_kw={"rows": 24, "spellcheck": "true"})
    active = BooleanField("Active (offered when generating letters)", default=True)
    preview_engagement = SelectField("Preview with", coerce=lambda v: int(v) if v not in (None, "", "None") else None,
                                     validators=[Optional()])
    submit = SubmitField("Save template")

    def __init__(self, *args, previews: list, **kwargs):
        super().__init__(*args, **kwargs)
        self.preview_engagement.choices = previews


def bulk_form() -> BulkForm:
    """The engagements list's bulk-letter form (the page adds the list's filter fields to it)."""
    form = BulkForm(formdata=None, templates=template_choices())
    form.token.data = secrets.token_urlsafe(24)  # one per rendered form: a double submission makes one batch
    return form
