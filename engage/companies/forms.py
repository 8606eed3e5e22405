import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectChoice, SelectField, StringField, SubmitField, TextAreaField, ValidationError
from wtforms.validators import AnyOf, DataRequired, Length, Optional, Regexp

from engage.companies import service
from engage.errors import FieldError
from engage.extensions import db
from engage.forms import DateField, EditForm, FilterField, FilterForm
from engage.identifiers import compact_lei, isin_problem, lei_problem
from engage.models import LANGUAGES, Company, CompanyContact, ContactRole, RiskSource, Stage
from engage.validators import http_url, sane_date, whole_number


class CompanyForm(EditForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    aliases = TextAreaField("Other names", validators=[Length(max=5000)],
                            description="One per line: former names, short names, names in other scripts.")
    isin = StringField("ISIN", validators=[Optional(), Length(max=20)], description="12 characters, e.g. CNE100000PM8.")
    lei = StringField("LEI", validators=[Optional(), Length(max=30)],
                      description="Legal Entity Identifier, 20 characters, e.g. 5493001KJTIIGC8Y1R12.")
    parent_ref = StringField("Parent company", validators=[Optional(), Length(max=300)],
                         description="The company that controls this one: its name, ISIN, LEI or number (#42). "
                                     "A list entry on the parent \"and its subsidiaries\" reaches this company.")
    ticker = StringField("Ticker", validators=[Optional(), Length(max=20)])
    exchange = StringField("Exchange", validators=[Optional(), Length(max=40)], description="MIC code, e.g. XSHE.")
    country = StringField("Country", validators=[Optional(), Regexp(r"^[A-Za-z]{2}$", message="Two-letter ISO code, e.g. CN.")])
    sector = StringField("Sector", validators=[Optional(), Length(max=80)])
    website = StringField("Website", validators=[Optional(), http_url, Length(max=500)])
    address = TextAreaField("Postal address", validators=[Length(max=2000)],
                            description="Printed on letters to the company's contacts (several lines).")
    description = TextAreaField("Description", validators=[Length(max=5000)])
    submit = SubmitField("Save company")

    def __init__(self, *args, company: Company | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.company = company
        #: The company the parent field names, once validated (None: no parent).
        self.parent_company: Company | None = None

    def validate_lei(self, field):
        if not field.data:
            return
        problem = lei_problem(field.data)
        if problem:
            raise ValidationError(problem)
        field.data = compact_lei(field.data)
        query = sa.select(Company.name).where(Company.lei == field.data)
        if self.company is not None and self.company.id is not None:
            query = query.where(Company.id != self.company.id)
        other = db.session.scalar(query)
        if other:
            raise ValidationError(f"LEI {field.data} already belongs to {other}.")

    def validate_parent_ref(self, field):
        if not (field.data or "").strip():
            return
        try:
            parent = service.find_company(field.data)
            service.check_parent(self.company, parent)
        except FieldError as error:
            raise ValidationError(error.message) from error
        self.parent_company = parent

    def validate_isin(self, field):
        if not field.data:
            return
        field.data = field.data.strip().upper()
        problem = isin_problem(field.data)
        if problem:
            raise ValidationError(problem)
        query = sa.select(Company.name).where(Company.isin == field.data)
        if self.company is not None and self.company.id is not None:
            query = query.where(Company.id != self.company.id)
        other = db.session.scalar(query)
        if other:
            raise ValidationError(f"{field.data} already belongs to {other}.")

    def alias_list(self) -> list[str]:
        seen, result = set(), []
        for line in (self.aliases.data or "").splitlines():
            alias = line.strip()[:200]
            if alias and alias.lower() not in seen and alias != self.name.data.strip():
                seen.add(alias.lower())
                result.append(alias)
        return result


class RiskFlagForm(FlaskForm):
    source = SelectField("List", choices=[SelectChoice(s.value, s.label) for s in RiskSource])
    section = StringField("Statutory section", validators=[Optional(), Length(max=40)],
                          description="For UFLPA Entity List entries, e.g. 2(d)(2)(B)(ii).")
    effective_date = DateField("Effective date", validators=[Optional(), sane_date])
    citation = StringField("Citation", validators=[DataRequired(), Length(max=500)],
                           description="Federal Register notice, decision or article.")
    citation_url = StringField("Citation link", validators=[Optional(), http_url, Length(max=500)])
    note = TextAreaField("Note", validators=[Length(max=5000)])
    submit = SubmitField("Add flag")


class CompanyFilterForm(FilterForm):
    """The companies list's filters; search, sector and country are cut to their longest useful length."""

    q = FilterField("Search", cut=100)
    sector = FilterField("Sector", cut=80)
    country = FilterField("Country", upper=True, cut=2)
    source = FilterField("Risk list", [FilterForm.one_of(set(RiskSource.values()), "Unknown risk list {value!r}.")])
    engaged = FilterField("Open engagement", [FilterForm.one_of({"yes", "no"}, "engaged must be 'yes' or 'no'.")])
    stage = FilterField("Stage", [FilterForm.one_of(set(Stage.values()), "Unknown stage {value!r}.")])
    score_below = FilterField("Score below")
    trend = FilterField("Score trend", [FilterForm.one_of({"up", "down"}, "trend must be 'up' or 'down'.")])
    sort = FilterField("Sort", default="name")
    dir = FilterField("Direction", default="asc")

    def __init__(self, formdata, *, sorts, **kwargs):
        """`sorts`: the columns the list can sort by."""
        super().__init__(formdata, **kwargs)
        self.sorts = set(sorts)

    def validate_score_below(self, field):
        if field.data and whole_number(field.data, maximum=100) is None:
            raise ValidationError("score_below must be a whole number from 0 to 100.")

    def validate_sort(self, field):
        field.data = field.data or "name"
        self.dir.data = self.dir.data or "asc"
        if field.data not in self.sorts or self.dir.data not in ("asc", "desc"):
            raise ValidationError(f"Cannot sort by {field.data!r} {self.dir.data!r}.")


def _email(form, field):
    """A valid address, stored lower-cased (replies are matched on it case-insensitively)."""
    value = (field.data or "").strip()
    if not value:
        field.data = None
        return
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValidationError(f"Not a valid email address: {exc}") from exc
    field.data = result.normalized.lower()


class ContactForm(EditForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    role = SelectField("Role", choices=[SelectChoice(r.value, r.label) for r in ContactRole])
    title = StringField("Title", validators=[Length(max=200)], description="As the company writes it, "
                        "e.g. Secretary to the Board.")
    email = StringField("Email", validators=[Length(max=254), _email])
    phone = StringField("Phone", validators=[Length(max=60)])
    address = TextAreaField("Postal address", validators=[Length(max=2000)],
                            description="Only if it differs from the company's address.")
    language = SelectField("Language of letters", choices=[SelectChoice(tag, label) for tag, label in LANGUAGES])
    source = StringField("Source", validators=[Length(max=500)],
                         description="Where the contact was found: annual report page, IR website, a call…")
    notes = TextAreaField("Notes", validators=[Length(max=5000)])
    submit = SubmitField("Save contact")

    def __init__(self, *args, company: Company | None = None, contact: CompanyContact | None = None, **kwargs):
        super().__init__(*args, obj=contact, **kwargs)
        self.company = company
        self.contact = contact

    def validate_email(self, field):
        if not field.data or self.company is None:
            return
        query = sa.select(CompanyContact.name).where(
            CompanyContact.company_id == self.company.id, CompanyContact.email == field.data)
        if self.contact is not None and self.contact.id is not None:
            query = query.where(CompanyContact.id != self.contact.id)
        other = db.session.scalar(query)
        if other is not None:
            raise ValidationError(f"{field.data} is already the address of {other or 'an erased contact'} "
                                  f"at {self.company.name}.")


class ContactEraseForm(FlaskForm):
    """The erasure confirmation: the post must carry the page's `confirm` field, so nothing else erases."""

    confirm = HiddenField(validators=[DataRequired(message="Confirm the erasure on its page."),
                                                       AnyOf(["erase"], message="Confirm the erasure on its page.")])
