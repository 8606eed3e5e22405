"""The scoring form: its fields, the problems of a refused submit in the form's order, and what
the template `scoring/_form.html` needs, so that any page showing the form builds it the same way
(the post always goes to `scoring.score`)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import TextAreaField
from wtforms.validators import DataRequired, Length

from engage.forms import DateField
from engage.idempotency import FormTokenMixin
from engage.models import Interaction, Rubric, Score
from engage.scoring import service
from engage.validators import sane_date
from engage.valuechain import feeds


class ScoreForm(FormTokenMixin, FlaskForm):
    scored_on = DateField("Scored on", validators=[DataRequired(), sane_date])
    note = TextAreaField("Overall note", validators=[Length(max=5000)])


def form_context(interaction: Interaction, rubric: Rubric, *, form: ScoreForm, errors: dict[str, str] | None = None,
                 values=None, moderates: Score | None = None) -> dict:
    """The variables of `scoring/_form.html`: a blank form (errors and values empty) or a refused one."""
    errors = errors or {}
    # Read-only evidence beside the criteria about mapping and disengagement: the value-chain figures.
    evidence_stages = feeds.EVIDENCE_STAGES
    value_chain = (feeds.score_evidence(interaction.engagement.company_id)
                   if any(c.stage_hint in evidence_stages for c in rubric.criteria) else None)
    return {"interaction": interaction, "rubric": rubric, "form": form, "errors": errors,
            "problems": problem_summary(rubric, form, errors), "values": values if values is not None else {},
            "moderates": moderates, "value_chain": value_chain, "evidence_stages": evidence_stages,
            "rule": service.total_rule(rubric)}


def problem_summary(rubric: Rubric, form: ScoreForm, errors: dict[str, str]) -> list[tuple[str, str]]:
    """Every problem of a refused score, in the order of the form: (id of the field to jump to, message)."""
    summary = []
    for criterion in rubric.criteria:
        for field, anchor in ((f"level-{criterion.id}", f"level-{criterion.id}-0"),
                              (f"evidence-{criterion.id}", f"evidence-{criterion.id}"),
                              (f"url-{criterion.id}", f"url-{criterion.id}")):
            if field in errors:
                summary.append((anchor, errors[field]))
    for message in form.scored_on.errors:
        summary.append(("scored_on", f"Scored on: {message}"))
    if "scored_on" in errors:
        summary.append(("scored_on", errors["scored_on"]))
    for message in form.note.errors:
        summary.append(("note", f"Overall note: {message}"))
    if "csrf_token" in form.errors:
        summary.append(("score-save", "The form expired; nothing was saved. Save again to send it anew."))
    summary.extend(("score-save", message) for message in form.form_token.errors)
    known = {f"{kind}-{c.id}" for c in rubric.criteria for kind in ("level", "evidence", "url")} | {"scored_on"}
    summary.extend(("score-save", message) for field, message in errors.items() if field not in known)
    return summary
