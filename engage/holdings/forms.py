from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import DateField, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, Length, Optional, Regexp

from engage.validators import sane_date


class FundForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    provider = StringField("Provider", validators=[Optional(), Length(max=120)])
    base_currency = StringField("Base currency", default="USD",
                                validators=[DataRequired(), Regexp(r"^[A-Za-z]{3}$", message="Three letters, e.g. USD.")])
    benchmark = StringField("Benchmark", validators=[Optional(), Length(max=200)])
    submit = SubmitField("Save fund")


class ImportForm(FlaskForm):
    fund_id = SelectField("Fund", coerce=int, validators=[DataRequired()])
    file = FileField("Holdings file (CSV or XLSX)", validators=[FileRequired("Choose a file to import.")])
    as_of = DateField("As of", validators=[Optional(), sane_date], description="Only needed when the file does not say.")
    mapping = StringField("Column mapping", validators=[Optional(), Length(max=500)],
                          description="For files with unusual headers, e.g. isin=ISIN Code,name=Security,market_value=Value")
    submit = SubmitField("Check the file")
