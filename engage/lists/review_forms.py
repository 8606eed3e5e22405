"""Forms of the match review: a decision with an optional note, and undoing one."""

from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField, SubmitField
from wtforms.validators import AnyOf, Length, Optional


class DecisionForm(FlaskForm):
    note = StringField("Note", validators=[Optional(), Length(max=500)],
                       description="Why: the identifier or fact that shows it is (or is not) the same company.")
    accept = SubmitField("Accept: same company")
    reject = SubmitField("Reject: not the same")


class UndoForm(FlaskForm):
    #: The decision the page showed: a stale tab undoing a decision changed since is refused.
    status = HiddenField(validators=[AnyOf(["accepted", "rejected"])])
    note = StringField("Note", validators=[Optional(), Length(max=500)])
    undo = SubmitField("Undo")
