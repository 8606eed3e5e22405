"""Scoring responses, score pages, campaign progress, and the rubric editor (admin)."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy.orm import selectinload
from wtforms import TextAreaField
from wtforms.validators import DataRequired, Length

from engage import clock, idempotency
from engage.extensions import db
from engage.forms import ActionForm, DateField
from engage.formatting import format_score
from engage.idempotency import FormTokenMixin
from engage.models import Campaign, CriterionScore, Engagement, Interaction, Rubric, Score, Stage
from engage.scoring import progress, service
from engage.security import require_role
from engage.validators import http_url_problem, sane_date, whole_number
from engage.valuechain import feeds

bp = Blueprint("scoring", __name__, url_prefix="/scoring")


class ScoreForm(FormTokenMixin, FlaskForm):
    scored_on = DateField("Scored on", validators=[DataRequired(), sane_date])
    note = TextAreaField("Overall note", validators=[Length(max=5000)])


def _entries(rubric: Rubric, form_data) -> tuple[dict, dict]:
    """Per-criterion inputs from the posted form, and the problems found while reading them."""
    entries, errors = {}, {}
    for criterion in rubric.criteria:
        raw = (form_data.get(f"level-{criterion.id}") or "").strip()
        level = whole_number(raw, maximum=service.MAX_LEVEL)
        if raw and level is None:
            errors[f"level-{criterion.id}"] = (f"{criterion.title}: {raw[:20]!r} is not a level; "
                                               f"levels run from 0 to {service.MAX_LEVEL}.")
        url = (form_data.get(f"url-{criterion.id}") or "").strip()[:500] or None
        problem = http_url_problem(url)
        if problem:
            errors[f"url-{criterion.id}"] = f"{criterion.title}: {problem}"
        entries[criterion.id] = service.Entry(level=level, evidence=(form_data.get(f"evidence-{criterion.id}") or "")[:5000],
                                              evidence_url=url)
    return entries, errors


@bp.route("/interactions/<int:interaction_id>", methods=["GET", "POST"])
@require_role("analyst")
def score(interaction_id: int):
    """Score a company response against the rubric (or, with ?moderate=ID, moderate a score)."""
    interaction = db.session.scalar(
        sa.select(Interaction).where(Interaction.id == interaction_id)
        .options(selectinload(Interaction.engagement).selectinload(Engagement.company))
    )
    if interaction is None:
        abort(404)
    if interaction.kind != "response":
        abort(400, "Only company responses can be scored.")
    moderates = None
    if request.args.get("moderate"):
        if whole_number(request.args["moderate"]) is None:
            abort(400, "moderate must be a score number.")
        moderates = db.get_or_404(Score, whole_number(request.args["moderate"]))
    rubric = moderates.rubric if moderates else service.current_rubric(interaction.engagement.campaign_id)
    if rubric is None:
        flash("The campaign has no published rubric yet; an admin publishes one under Admin → Campaigns.", "error")
        return redirect(url_for("engagements.show", engagement_id=interaction.engagement_id))
    form = ScoreForm(formdata=request.form if request.method == "POST" else None,
                     scored_on=clock.today())
    errors: dict[str, str] = {}
    if request.method == "POST" and form.validate_on_submit():
        entries, errors = _entries(rubric, request.form)
        if not errors:
            try:
                claimed = idempotency.claim(form.form_token.data, "scoring.score", current_user.id)
                made = service.score_response(interaction, scorer_id=current_user.id, scored_on=form.scored_on.data,
                                              today=clock.today(), entries=entries, note=form.note.data or "",
                                              moderates=moderates)
                db.session.flush()
                idempotency.record_result(claimed, url_for("scoring.show", score_id=made.id))
                db.session.commit()
            except idempotency.AlreadySubmitted as duplicate:
                db.session.rollback()
                return idempotency.answer_duplicate(
                    duplicate, url_for("engagements.show", engagement_id=interaction.engagement_id) + "#scores")
            except service.ScoreError as error:
                db.session.rollback()
                errors[error.field] = error.message
            else:
                flash(f"Scored {format_score(made.total)} / 100.", "success")
                return redirect(url_for("scoring.show", score_id=made.id))
    status = 422 if (errors or form.errors) else 200
    # Read-only evidence beside the criteria about mapping and disengagement: the value-chain figures.
    evidence_stages = feeds.EVIDENCE_STAGES
    value_chain = (feeds.score_evidence(interaction.engagement.company_id)
                   if any(c.stage_hint in evidence_stages for c in rubric.criteria) else None)
    return render_template("scoring/form.html", interaction=interaction, rubric=rubric, form=form, errors=errors,
                           values=request.form, moderates=moderates, value_chain=value_chain,
                           evidence_stages=evidence_stages), status


@bp.route("/scores/<int:score_id>")
@require_role("viewer")
def show(score_id: int):
    item = db.session.scalar(
        sa.select(Score).where(Score.id == score_id)
        .options(selectinload(Score.criterion_scores).selectinload(CriterionScore.criterion),
                 selectinload(Score.moderations).selectinload(Score.criterion_scores),
                 selectinload(Score.engagement).selectinload(Engagement.company),
                 selectinload(Score.scorer), selectinload(Score.interaction))
    )
    if item is None:
        abort(404)
    first = item.moderates or item
    pairs = [(m, service.disagreement(first, m)) for m in first.moderations] if first is item else \
        [(item, service.disagreement(first, item))]
    return render_template("scoring/show.html", score=item, first=first, pairs=pairs)


@bp.route("/campaigns/<int:campaign_id>")
@require_role("viewer")
def campaign(campaign_id: int):
    item = db.get_or_404(Campaign, campaign_id)
    return render_template("scoring/campaign.html", campaign=item, report=progress.campaign_report(item))


# --- the rubric editor (admin) -------------------------------------------------------------

@bp.route("/campaigns/<int:campaign_id>/rubrics")
@require_role("admin")
def rubrics(campaign_id: int):
    item = db.get_or_404(Campaign, campaign_id)
    usage = dict(db.session.execute(
        sa.select(Score.rubric_id, sa.func.count()).join(Rubric).where(Rubric.campaign_id == campaign_id)
        .group_by(Score.rubric_id)).all())
    return render_template("scoring/rubrics.html", campaign=item, usage=usage, action_form=ActionForm(formdata=None))


@bp.route("/campaigns/<int:campaign_id>/rubrics/new", methods=["POST"])
@require_role("admin")
def new_rubric(campaign_id: int):
    item = db.get_or_404(Campaign, campaign_id)
    try:
        rubric = service.new_version(item)
        db.session.commit()
    except service.ScoreError as error:
        db.session.rollback()
        flash(error.message, "error")
        return redirect(url_for("scoring.rubrics", campaign_id=campaign_id))
    flash(f"Version {rubric.version} created as a draft; edit it, then publish it.", "success")
    return redirect(url_for("scoring.edit_rubric", rubric_id=rubric.id))


@bp.route("/rubrics/<int:rubric_id>", methods=["GET", "POST"])
@require_role("admin")
def edit_rubric(rubric_id: int):
    rubric = db.get_or_404(Rubric, rubric_id)
    errors: dict[str, str] = {}
    rows = None
    if request.method == "POST":
        if not ActionForm().validate_on_submit():
            abort(400, "The form expired; reload the page.")
        rows = _criterion_rows(request.form)
        try:
            service.update_criteria(rubric, rows)
            db.session.commit()
        except service.ScoreError as error:
            db.session.rollback()
            errors[error.field] = error.message
        else:
            flash(f"Version {rubric.version} saved.", "success")
            return redirect(url_for("scoring.edit_rubric", rubric_id=rubric.id))
    used = service.scores_using(rubric)
    return render_template("scoring/rubric_form.html", rubric=rubric, used=used, errors=errors, rows=rows,
                           stages=[s for s in Stage][2:6], action_form=ActionForm(formdata=None)), 422 if errors else 200


def _criterion_rows(form) -> list[service.CriterionInput]:
    rows = []
    count = min(whole_number(form.get("count"), maximum=10**6) or 0, 50)
    for index in range(1, min(count, 50) + 1):
        if form.get(f"remove-{index}"):
            continue
        if not any(form.get(f"{name}-{index}") for name in ("key", "title")):
            continue
        rows.append(service.CriterionInput(
            key=form.get(f"key-{index}", ""), title=form.get(f"title-{index}", ""),
            guidance=form.get(f"guidance-{index}", ""), weight=form.get(f"weight-{index}", ""),
            levels=[form.get(f"level{n}-{index}", "") for n in range(5)],
            stage_hint=form.get(f"stage_hint-{index}") or None))
    return rows


@bp.route("/rubrics/<int:rubric_id>/publish", methods=["POST"])
@require_role("admin")
def publish_rubric(rubric_id: int):
    rubric = db.get_or_404(Rubric, rubric_id)
    if ActionForm().validate_on_submit():
        try:
            service.publish(rubric)
            db.session.commit()
            flash(f"Version {rubric.version} published; new scores use it.", "success")
        except service.ScoreError as error:
            db.session.rollback()
            flash(error.message, "error")
    return redirect(url_for("scoring.rubrics", campaign_id=rubric.campaign_id))
