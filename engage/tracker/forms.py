"""Forms of the tracker import: the upload, the mapping step's choices, the confirmation."""

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, SelectChoice, SelectField, StringField, SubmitField
from wtforms.validators import Length, Optional

from engage.tracker.parsing import FIELDS

DATE_ORDERS = [SelectChoice("day", "Day first: 03/02 is 3 February"),
               SelectChoice("month", "Month first: 03/02 is 2 March")]


class _Choices(FlaskForm):
    """What every step of the import lets the importer choose for the whole tracker."""

    campaign_id = SelectField("Campaign of rows without one", coerce=int, validate_choice=True,
                              description="Used when the tracker has no campaign column (or a row leaves it empty).")
    date_order = SelectField("Dates written with numbers", choices=DATE_ORDERS, default="day",
                             description="Only when the file's own dates do not tell (a 25/03/2024 tells).")
    sheet = StringField("Sheet", validators=[Optional(), Length(max=100)],
                        description="Of a workbook: the sheet to read, when not the first one.")

    def __init__(self, campaigns, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.campaign_id.choices = [SelectChoice(0, "— none: every row names its campaign —")] + \
            [SelectChoice(c.id, c.name) for c in campaigns]


class TrackerUploadForm(_Choices):
    """Upload the team's tracker; the mapping step and the preview come before anything is written."""

    file = FileField("Tracker file", validators=[FileRequired("Choose the tracker's file (CSV or XLSX).")],
                     description="The spreadsheet the team kept: CSV or XLSX, first sheet.")
    mapping = StringField("Column mapping", validators=[Optional(), Length(max=1000)],
                          description="Optional; the next page maps every column too. field=Column pairs, e.g. "
                                      "company=Investee. Fields: " + ", ".join(FIELDS) + ".")
    submit = SubmitField("Read the tracker")


class TrackerMappingForm(_Choices):
    """The mapping step: the columns' and words' selects are read from the request (one per column and word)."""

    skip_refused = BooleanField("Import the other rows, leaving the refused ones out")
    submit = SubmitField("Update the preview")


class TrackerConfirmForm(FlaskForm):
    """Confirms a previewed import; the page names the preview it confirms."""

    submit = SubmitField("Import")
