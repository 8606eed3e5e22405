"""Forms of the value-chain map import (upload with its options, then the confirmation)."""

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, SelectChoice, SelectField, StringField, SubmitField
from wtforms.validators import Length, Optional

from engage.forms import DateField
from engage.models import MapSourceKind
from engage.validators import sane_date
from engage.valuechain.parsing import FIELDS

SOURCE_LABELS = {"letter_reply": "A reply to our letter", "report": "A report (give the page or annex)",
                 "attachment": "An attachment", "link": "A web page (give the link)", "manual": "Entered by hand"}


class MapImportForm(FlaskForm):
    """Upload a company's disclosed map; what it resolves, flags and changes is shown before anything is saved."""

    file = FileField("Map file", validators=[FileRequired("Choose the map's file (CSV, XLSX or PDF).")],
                     description="A spreadsheet (CSV or XLSX) or a PDF whose supplier list is a table.")
    mapping = StringField("Column mapping", validators=[Optional(), Length(max=500)],
                          description="Only if the columns are not recognised: field=Column pairs, e.g. "
                                      "name=Vendor,tier=Level. Fields: " + ", ".join(FIELDS) + ".")
    source_kind = SelectField("Disclosed in", default=MapSourceKind.ATTACHMENT.value,
                              choices=[SelectChoice(k.value, SOURCE_LABELS.get(k.value, k.label)) for k in MapSourceKind])
    source_ref = StringField("Where exactly", validators=[Optional(), Length(max=500)],
                             description="E.g. “Sustainability report 2025, annex 3” or the link.")
    disclosed_on = DateField("Disclosed on", validators=[Optional(), sane_date],
                             description="The day the company disclosed the map.")
    accept_possible = BooleanField("Take possible matches as the company they may be (otherwise a new company is made)")
    submit = SubmitField("Check the map")


class MapConfirmForm(FlaskForm):
    """Confirms a previewed map; the page names the preview it confirms."""

    submit = SubmitField("Import this map")
