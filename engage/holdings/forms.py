from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, HiddenField, SelectChoice, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, Length, Optional, Regexp

from engage.forms import DateField
from engage.holdings.parsing import ENCODINGS
from engage.validators import sane_date


DECIMAL_CHOICES = [SelectChoice("", "Read it from the values"), SelectChoice("point", "Decimal point: 1,234.56"),
                   SelectChoice("comma", "Decimal comma: 1.234,56")]


ENCODING_CHOICES = [SelectChoice("", "Read it from the file")] + [SelectChoice(key, label)
                                                                 for key, label in ENCODINGS.items()]


class FundForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    provider = StringField("Provider", validators=[Optional(), Length(max=120)])
    base_currency = StringField("Base currency", default="USD",
                                validators=[DataRequired(), Regexp(r"^[A-Za-z]{3}$", message="Three letters, e.g. USD.")])
    benchmark = StringField("Benchmark", validators=[Optional(), Length(max=200)])
    submit = SubmitField("Save fund")


class ReadOptionsForm(FlaskForm):
    """How to read a holdings file: what the file cannot say for itself."""

    as_of = DateField("As of", validators=[Optional(), sane_date], description="Only needed when the file does not say.")
    decimal = SelectField("Decimal separator", choices=DECIMAL_CHOICES, default="",
                          description="Only needed when numbers such as 1,234 could be read either way.")
    partial = BooleanField("Partial file: only some of the holdings are listed",
                           description="Then weights far below 100 % or a missing provider trailer do not refuse it.")
    encoding = SelectField("Encoding", choices=ENCODING_CHOICES, default="",
                           description="Only needed when a CSV file's text encoding cannot be told from its bytes.")
    sheet = StringField("Sheet", validators=[Optional(), Length(max=31)],
                        description="For a workbook: the sheet to read (else the first visible one).")


class ImportForm(ReadOptionsForm):
    fund_id = SelectField("Fund", coerce=int, validators=[DataRequired()])
    file = FileField("Holdings file (CSV or XLSX)", validators=[FileRequired("Choose a file to import.")])
    mapping = StringField("Column mapping", validators=[Optional(), Length(max=500)],
                          description="For files with unusual headers, e.g. isin=ISIN Code,name=Security,market_value=Value")
    submit = SubmitField("Check the file")

    def __init__(self, *args, funds: list, **kwargs):
        super().__init__(*args, **kwargs)
        self.fund_id.choices = funds


class MergeForm(FlaskForm):
    """Confirming a merge shown on the confirmation page."""

    target_id = HiddenField(validators=[DataRequired(), Regexp(r"^[0-9]{1,9}$")])
    plan = HiddenField(validators=[DataRequired(), Regexp(r"^[0-9a-f]{32}$")])
