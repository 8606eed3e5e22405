from flask_wtf import FlaskForm
from wtforms import IntegerField, SelectChoice, SelectField, StringField, SubmitField
from wtforms.validators import InputRequired, Length, NumberRange

from engage.idempotency import FormTokenMixin
from engage.models import ContactRole

ROLE_CHOICES = [SelectChoice(r.value, r.label) for r in ContactRole]
ID_RANGE = NumberRange(min=1, max=2 ** 31 - 1, message="Choose one from the list.")


class FileForm(FlaskForm):
    engagement_id = IntegerField("Engagement", validators=[InputRequired(message="Choose an engagement."), ID_RANGE])
    submit = SubmitField("File on this engagement")


class ContactForm(FormTokenMixin, FlaskForm):
    company_id = IntegerField("Company", validators=[InputRequired(message="Choose a company."), ID_RANGE])
    email = SelectField("Address", validators=[InputRequired()])
    name = StringField("Name", validators=[Length(max=200)])
    role = SelectField("Role", choices=ROLE_CHOICES, default=ContactRole.INVESTOR_RELATIONS.value)
    submit = SubmitField("Add as contact")

    def __init__(self, *args, addresses: list, **kwargs):
        super().__init__(*args, **kwargs)
        self.email.choices = addresses


class DiscardForm(FlaskForm):
    submit = SubmitField("Discard")
