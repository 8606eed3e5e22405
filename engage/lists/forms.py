from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, SelectChoice, SelectField, StringField, SubmitField
from wtforms.validators import Length, Optional

from engage.forms import DateField
from engage.lists.parsers import FORMATS
from engage.validators import sane_date

#: What each layout is, for people (the code in brackets is the command line's --format).
FORMAT_LABELS = {
    "csl-csv": "US Consolidated Screening List, CSV export",
    "csl-json": "US Consolidated Screening List, JSON export",
    "cbp-wro": "CBP Withhold Release Orders and Findings, CSV",
    "uflpa-html": "DHS UFLPA Entity List page, saved as HTML",
    "ftm": "OpenSanctions FollowTheMoney export (JSON lines)",
    "nbim": "Norges Bank exclusion and observation decisions (HTML or CSV)",
    "csv": "A team's own CSV (give a list name, and a column mapping unless it has a 'name' column)",
}
FORMAT_CHOICES = [SelectChoice("", "Tell it from the file")] + [SelectChoice(f, f"{FORMAT_LABELS[f]} ({f})")
                                                                for f in FORMATS]


class ListImportForm(FlaskForm):
    """Upload a list file; what it would change is shown before anything is saved."""

    file = FileField("List file", validators=[FileRequired("Choose a file to import.")])
    format = SelectField("Format", choices=FORMAT_CHOICES, default="")
    list_name = StringField("List name", validators=[Optional(), Length(max=80)],
                            description="A team's own CSV: the name of the list. An OpenSanctions file: the list it is.")
    sources = StringField("CSL sources", validators=[Optional(), Length(max=200)],
                          description="A Consolidated Screening List file: which lists to load, e.g. Entity List,MEU,SDN "
                                      "(all known ones when empty).")
    mapping = StringField("Column mapping", validators=[Optional(), Length(max=500)],
                          description="A team's own CSV: e.g. name=Company,aliases=Other names,date=Added")
    retrieved_on = DateField("Retrieved on", validators=[Optional(), sane_date],
                             description="The day the file was downloaded from its publisher (today when empty).")
    older = BooleanField("The file is older than the loaded version: load it anyway")
    submit = SubmitField("Check the file")


class ConfirmForm(FlaskForm):
    """Confirms a previewed upload; `older` repeats the confirmation an older file needs."""

    older = BooleanField("The file was retrieved before the loaded version: make it the latest anyway")
    submit = SubmitField("Save this version")
