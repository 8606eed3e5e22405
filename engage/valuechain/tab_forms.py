"""The value-chain tab's forms: a flagged relationship's status, and a relationship added by hand.

Field names are the ones the service's FieldErrors name (`status`, `date`, `target_date`,
`evidence`, `reason`; `name`, `isin`, `lei`, `kind`, `tier`, `country`...), so `web.refuse`
puts each refusal next to its field. Each status form is drawn with a prefix (`rel<ID>`), so the
page can carry one per relationship with distinct ids.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    HiddenField,
    SelectChoice,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional

from engage.forms import DateField
from engage.idempotency import FormTokenMixin
from engage.models import RelationshipKind, RelationshipStatus
from engage.validators import sane_date

STATUS_CHOICES = [SelectChoice(s.value, s.label) for s in RelationshipStatus]
KIND_CHOICES = [SelectChoice(k.value, k.label.replace("Sub supplier", "Sub-supplier")) for k in RelationshipKind]
TIER_CHOICES = [SelectChoice("1", "1 (direct)"), SelectChoice("2", "2"), SelectChoice("3", "3 or further")]


def status_prefix(relationship_id: int) -> str:
    return f"rel{relationship_id}"


class StatusForm(FormTokenMixin, FlaskForm):
    status = SelectField("New status", choices=STATUS_CHOICES, validators=[DataRequired()])
    date = DateField("Date", validators=[Optional(), sane_date], description="When the status changed.")
    target_date = DateField("Target date of the exit", validators=[Optional(), sane_date],
                            description="Needed for an exit plan.")
    evidence = TextAreaField("Evidence", validators=[Length(max=5000)],
                             description="Needed for an exit: the company's statement, a report, a document.")
    reason = TextAreaField("Reason", validators=[Length(max=5000)],
                           description="Needed for “not linked”: why the flag was wrong.")
    #: The status the form was drawn with: a change from another status is refused as stale.
    seen_status = HiddenField(validators=[DataRequired(message="The form is damaged; reload the page.")])
    submit = SubmitField("Change status")


class AddRelationshipForm(FormTokenMixin, FlaskForm):
    name = StringField("Counterparty", validators=[DataRequired(message="Give the counterparty's name."),
                                                   Length(max=200)])
    isin = StringField("ISIN", validators=[Optional(), Length(max=20)])
    lei = StringField("LEI", validators=[Optional(), Length(max=30)])
    kind = SelectField("Relationship", choices=KIND_CHOICES, default=RelationshipKind.SUPPLIER.value)
    tier = SelectField("Tier", choices=TIER_CHOICES, default="1")
    products = StringField("Products or inputs", validators=[Length(max=1000)],
                           description="e.g. polysilicon, aluminium frames, cotton yarn")
    country = StringField("Country", validators=[Length(max=60)], description="An ISO code (CN) or a name.")
    region = StringField("Region or city", validators=[Length(max=200)],
                         description="A place in the Uyghur Region (Xinjiang, Hotan, Shihezi...) flags the link.")
    source_ref = StringField("Where disclosed", validators=[Length(max=200)],
                             description="e.g. letter reply of 03 May 2026, annual report p. 112")
    accept_possible = BooleanField("Take a close match among existing companies (otherwise only a sure match "
                                   "is taken, and a new company is made)")
    submit = SubmitField("Add relationship")
