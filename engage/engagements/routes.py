"""Engagements: the list, opening one, its page, cycle moves, logging contact, attachments."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.exc import StaleDataError

from engage import clock, idempotency
from engage.engagements import attachments, cycle, service
from engage.engagements.forms import (
    EngagementEditForm,
    EscalationForm,
    InteractionForm,
    OpenEngagementForm,
    StageMoveForm,
)
from engage.extensions import db
from engage.formatting import SHOWN_CHANGE, shown_below
from engage.holdings import screening
from engage.models import (
    Attachment,
    Campaign,
    Company,
    Engagement,
    Escalation,
    InteractionKind,
    Letter,
    Role,
    Stage,
    User,
)
from engage.security import require_role
from engage.validators import whole_number
from engage.web import content_disposition, field_error, paginate

bp = Blueprint("engagements", __name__)

SORTS = {
    "company": Company.normalized_name,
    "stage": Engagement.stage,
    "escalation": Engagement.escalation,
    "opened": Engagement.opened_on,
}


def owner_choices(include_none: bool = True):
    users = db.session.scalars(
        sa.select(User).where(User.active.is_(True), User.role.in_([Role.ANALYST.value, Role.ADMIN.value]))
        .order_by(User.name)
    ).all()
    choices = [("", "Unassigned")] if include_none else []
    return choices + [(u.id, u.name) for u in users]


def engagement_filters(args) -> dict:
    f = {key: (args.get(key) or "").strip() for key in
         ("campaign", "stage", "escalation", "owner", "sector", "overdue", "stale", "score_below", "trend",
          "sort", "dir")}
    f["sort"] = f["sort"] or "company"
    f["dir"] = f["dir"] or "asc"
    if f["stage"] and f["stage"] not in Stage.values() and f["stage"] != "open":
        abort(400, f"Unknown stage {f['stage']!r}.")
    if f["escalation"] and f["escalation"] not in Escalation.values():
        abort(400, f"Unknown escalation level {f['escalation']!r}.")
    if f["campaign"] and whole_number(f["campaign"]) is None:
        abort(400, "campaign must be a campaign number.")
    if f["owner"] and f["owner"] not in ("me", "none") and whole_number(f["owner"]) is None:
        abort(400, "owner must be a user number, 'me' or 'none'.")
    if f["overdue"] not in ("", "yes") or f["stale"] not in ("", "yes"):
        abort(400, "overdue and stale take the value 'yes'.")
    if f["score_below"] and whole_number(f["score_below"], maximum=100) is None:
        abort(400, "score_below must be a whole number from 0 to 100.")
    if f["trend"] not in ("", "up", "down"):
        abort(400, "trend must be 'up' or 'down'.")
    if f["sort"] not in SORTS and f["sort"] not in ("next_follow_up", "last_contact", "score", "change") \
            or f["dir"] not in ("asc", "desc"):
        abort(400, f"Cannot sort by {f['sort']!r} {f['dir']!r}.")
    return f


def engagement_query(f: dict, today: dt.date):
    # Only the engagements are selected: the per-row figures are computed for the page alone
    # (`_rows`), so a deep page does not compute them for every row it skips.
    query = sa.select(Engagement).join(Engagement.company)
    if f["campaign"]:
        query = query.where(Engagement.campaign_id == int(f["campaign"]))
    if f["stage"] == "open":
        query = query.where(Engagement.stage != Stage.CLOSED.value)
    elif f["stage"]:
        query = query.where(Engagement.stage == f["stage"])
    if f["escalation"]:
        query = query.where(Engagement.escalation == f["escalation"])
    if f["owner"] == "me":
        query = query.where(Engagement.owner_id == current_user.id)
    elif f["owner"] == "none":
        query = query.where(Engagement.owner_id.is_(None))
    elif f["owner"]:
        query = query.where(Engagement.owner_id == int(f["owner"]))
    if f["sector"]:
        query = query.where(Company.sector == f["sector"])
    if f["overdue"]:
        query = query.where(service.next_follow_up_query() < today)
    if f["stale"]:
        cutoff = today - dt.timedelta(days=current_app.config["STALE_AFTER_DAYS"])
        query = query.where(Engagement.stage != Stage.CLOSED.value,
                            sa.func.coalesce(service.last_contact_query(), Engagement.opened_on) < cutoff)
    if f["score_below"]:
        query = query.where(service.latest_score_query() < shown_below(int(f["score_below"])))
    if f["trend"] == "up":  # a change shown as +1 or more; "+0" is no trend
        query = query.where(service.score_change_query() >= SHOWN_CHANGE)
    elif f["trend"] == "down":
        query = query.where(service.score_change_query() <= -SHOWN_CHANGE)
    computed = {"next_follow_up": service.next_follow_up_query, "last_contact": service.last_contact_query,
                "score": service.latest_score_query, "change": service.score_change_query}
    column = SORTS[f["sort"]] if f["sort"] in SORTS else computed[f["sort"]]()
    order = column.desc() if f["dir"] == "desc" else column.asc()
    return query.order_by(order.nulls_last(), Engagement.id)


@bp.route("/engagements")
@require_role("viewer")
def index():
    today = clock.today()
    f = engagement_filters(request.args)
    query = engagement_query(f, today).options(
        selectinload(Engagement.company), selectinload(Engagement.campaign), selectinload(Engagement.owner)
    )
    page = paginate(query)
    # paginate returns scalars; re-run the row query for the page to get the computed columns.
    from engage.letters.routes import bulk_form

    return render_template(
        "engagements/index.html", page=page, rows=_rows(page, f, today), f=f, today=today,
        bulk=bulk_form(f) if current_user.can_edit else None,
        stages=list(Stage), escalations=list(Escalation),
        campaign_options=[(c.id, c.name) for c in db.session.scalars(sa.select(Campaign).order_by(Campaign.name))],
        owners=owner_choices()[1:],
        sectors=[s for s in db.session.scalars(
            sa.select(Company.sector).where(Company.sector.is_not(None)).distinct().order_by(Company.sector))],
    )


def _rows(page, f: dict, today: dt.date) -> list:
    """The page's engagements with next follow-up, last contact and latest score, in one query."""
    ids = [e.id for e in page.items]
    if not ids:
        return []
    extra = {
        row.id: row
        for row in db.session.execute(
            sa.select(Engagement.id, service.next_follow_up_query().label("next_follow_up"),
                      service.last_contact_query().label("last_contact"),
                      service.latest_score_query().label("latest_score"),
                      service.score_change_query().label("score_change"))
            .where(Engagement.id.in_(ids))
        )
    }
    return [(e, extra[e.id]) for e in page.items]


@bp.route("/companies/<int:company_id>/engagements/new", methods=["GET", "POST"])
@require_role("analyst")
def open_for_company(company_id: int):
    company = db.get_or_404(Company, company_id)
    form = OpenEngagementForm()
    form.campaign_id.choices = [(c.id, c.name) for c in db.session.scalars(
        sa.select(Campaign).where(Campaign.active.is_(True)).order_by(Campaign.name))]
    form.owner_id.choices = owner_choices()
    if request.method == "GET":
        form.opened_on.data = clock.today()
        form.owner_id.data = current_user.id
    if form.validate_on_submit():
        campaign = db.get_or_404(Campaign, form.campaign_id.data)
        owner = db.session.get(User, form.owner_id.data) if form.owner_id.data else None
        try:
            engagement = service.open_engagement(company, campaign, owner=owner, objectives=form.objectives.data or "",
                                                 opened_on=form.opened_on.data, today=clock.today(),
                                                 actor_id=current_user.id)
            db.session.commit()
        except service.EngagementError as error:
            db.session.rollback()
            field_error(form, error.field, error.message)
        else:
            flash(f"Engagement with {company.name} opened.", "success")
            return redirect(url_for("engagements.show", engagement_id=engagement.id))
    status = 422 if form.errors else 200
    return render_template("engagements/open.html", form=form, company=company), status


def _load(engagement_id: int) -> Engagement:
    engagement = db.session.scalar(
        sa.select(Engagement).where(Engagement.id == engagement_id)
        .options(selectinload(Engagement.company).selectinload(Company.risk_flags),
                 selectinload(Engagement.campaign), selectinload(Engagement.owner),
                 selectinload(Engagement.reminders))
    )
    if engagement is None:
        abort(404)
    return engagement


def _forms(engagement: Engagement, stale: bool = False, **given):
    """The page's forms, with choices limited to the moves allowed from the current state.

    Fresh forms carry the engagement's current version; a form sent back with errors keeps
    the version it was opened with, unless it was stale (then it gets the new one to retry).
    """
    today = clock.today()
    version = str(engagement.version)
    fresh = {
        "edit": lambda: EngagementEditForm(obj=engagement, formdata=None),
        "stage": lambda: StageMoveForm(formdata=None, occurred_on=today),
        "escalation": lambda: EscalationForm(formdata=None, occurred_on=today),
        "interaction": lambda: InteractionForm(formdata=None, occurred_on=today),
    }
    forms = {}
    for key, make in fresh.items():
        form = given.get(key)
        if form is None:
            form = make()
            form.version.data = version
        elif stale:
            form.version.data = version
        forms[key] = form
    forms["edit"].owner_id.choices = owner_choices()
    forms["stage"].target.choices = [(m.target, m.label) for m in cycle.stage_moves(engagement)]
    forms["escalation"].target.choices = [(m.target, m.label) for m in cycle.escalation_moves(engagement)]
    forms["interaction"].move_to.choices = response_moves(engagement)
    return {f"{key}_form": form for key, form in forms.items()}


def response_moves(engagement: Engagement) -> list:
    return [("", "Leave the stage as it is")] + [
        (m.target, m.label) for m in cycle.stage_moves(engagement) if m.kind == "forward"]


def _page(engagement: Engagement, status: int = 200, stale: service.StaleEdit | None = None, **forms):
    from engage.companies.contacts import contacts_of
    from engage.letters.forms import GenerateForm
    from engage.letters.routes import active_templates, suggested_template

    templates = active_templates()
    generate_form = GenerateForm(formdata=None)
    generate_form.template_id.choices = [(t.id, f"{t.name} (v{t.version})") for t in templates]
    generate_form.template_id.data = suggested_template(engagement, templates)
    addressees = contacts_of(engagement.company_id, active_only=True)
    generate_form.contact_id.choices = [(c.id, f"{c.name} ({c.title or c.role_label}, {c.language_label})")
                                        for c in addressees]
    letters = db.session.scalars(
        sa.select(Letter).where(Letter.engagement_id == engagement.id).order_by(Letter.created_at.desc(), Letter.id.desc())
    ).all()
    from engage.scoring import progress
    from engage.scoring.service import disagreement, stage_hints

    history = progress.engagement_history(engagement)
    latest = history["scores"][-1] if history["scores"] else None
    flags = {s.id: any(disagreement(s, m)["flagged"] for m in s.moderations) for s in history["scores"]}
    return render_template(
        "engagements/show.html", engagement=engagement, timeline=service.timeline(engagement),
        summary=service.summary_of(engagement), stale=stale, today=clock.today(),
        stage_moves=cycle.stage_moves(engagement), escalation_moves=cycle.escalation_moves(engagement),
        generate_form=generate_form, letters=letters, history=history, moderation_flags=flags,
        hints=stage_hints(engagement, latest), posted=set(forms),
        held_again=screening.held_after_divestment(screening.snapshots(), engagement.id)
        if engagement.is_divested else [],
        **_forms(engagement, stale=stale is not None, **forms),
    ), status


@bp.route("/engagements/<int:engagement_id>")
@require_role("viewer")
def show(engagement_id: int):
    return _page(_load(engagement_id))


def _stale_response(engagement_id: int, error: service.StaleEdit | None = None, **forms):
    db.session.rollback()
    engagement = _load(engagement_id)
    if error is None:  # lost the race at commit time
        error = service.StaleEdit(engagement, service.changes_since(engagement, engagement.version - 1))
    flash("Not saved: someone else changed this engagement after you opened it. "
          "Review the changes below and try again.", "error")
    return _page(engagement, 409, stale=error, **forms)


@bp.route("/engagements/<int:engagement_id>/edit", methods=["POST"])
@require_role("analyst")
def edit(engagement_id: int):
    engagement = _load(engagement_id)
    form = EngagementEditForm()
    form.owner_id.choices = owner_choices()
    if not form.validate_on_submit():
        return _page(engagement, 422, edit=form)
    owner = db.session.get(User, form.owner_id.data) if form.owner_id.data else None
    here = url_for("engagements.show", engagement_id=engagement_id)
    try:
        claimed = idempotency.claim(form.form_token.data, "engagement.edit", current_user.id)
        service.update_engagement(engagement, seen_version=whole_number(form.version.data), owner=owner,
                                  objectives=form.objectives.data or "")
        idempotency.record_result(claimed, here)
        db.session.commit()
    except idempotency.AlreadySubmitted as duplicate:
        db.session.rollback()
        return idempotency.answer_duplicate(duplicate, here)
    except service.StaleEdit as error:
        return _stale_response(engagement_id, error, edit=form)
    except StaleDataError:
        return _stale_response(engagement_id, edit=form)
    except service.EngagementError as error:
        db.session.rollback()
        field_error(form, error.field, error.message)
        return _page(_load(engagement_id), 422, edit=form)
    flash("Engagement saved.", "success")
    return redirect(url_for("engagements.show", engagement_id=engagement_id))


def _move(engagement_id: int, form_class, form_key: str, perform):
    engagement = _load(engagement_id)
    form = form_class()
    moves = cycle.stage_moves(engagement) if form_class is StageMoveForm else cycle.escalation_moves(engagement)
    form.target.choices = [(m.target, m.label) for m in moves]
    if not form.validate_on_submit():
        if not engagement.is_open and form.target.errors:  # a tab opened before the engagement was closed
            form.target.errors = [cycle.closed_refusal(engagement, "stage" if form_class is StageMoveForm
                                                       else "escalation")]
        return _page(engagement, 422, **{form_key: form})
    here = url_for("engagements.show", engagement_id=engagement_id)
    try:
        # The token first: a double click is told so, not that "someone else" changed the engagement.
        claimed = idempotency.claim(form.form_token.data, f"engagement.{form_key}", current_user.id)
        service.check_version(engagement, whole_number(form.version.data))
        done = perform(engagement, form)
        idempotency.record_result(claimed, here)
        db.session.commit()  # UPDATE engagements ... WHERE id = ? AND version = ? (the mapper's version_id_col)
    except idempotency.AlreadySubmitted as duplicate:
        db.session.rollback()
        return idempotency.answer_duplicate(duplicate, here)
    except service.StaleEdit as error:
        return _stale_response(engagement_id, error, **{form_key: form})
    except StaleDataError:
        return _stale_response(engagement_id, **{form_key: form})
    except cycle.MoveError as error:
        db.session.rollback()
        field_error(form, error.field, error.message)
        return _page(_load(engagement_id), 422, **{form_key: form})
    flash(done, "success")  # only once committed: a move refused at commit time is not announced
    return redirect(here)


@bp.route("/engagements/<int:engagement_id>/stage", methods=["POST"])
@require_role("analyst")
def move_stage(engagement_id: int):
    def perform(engagement, form):
        engagement.move_to(form.target.data, on=form.occurred_on.data, today=clock.today(), actor_id=current_user.id,
                           note=form.note.data or "", reason=form.reason.data or "", evidence=form.evidence.data or "",
                           evidence_url=form.evidence_url.data or None, outcome=form.outcome.data or None)
        return f"Stage is now {engagement.stage_label}."

    return _move(engagement_id, StageMoveForm, "stage", perform)


@bp.route("/engagements/<int:engagement_id>/escalation", methods=["POST"])
@require_role("analyst")
def move_escalation(engagement_id: int):
    def perform(engagement, form):
        engagement.escalate_to(form.target.data, on=form.occurred_on.data, today=clock.today(),
                               actor_id=current_user.id, note=form.note.data or "", reason=form.reason.data or "",
                               evidence=form.evidence.data or "", evidence_url=form.evidence_url.data or None)
        return f"Escalation is now {engagement.escalation_label}."

    return _move(engagement_id, EscalationForm, "escalation", perform)


@bp.route("/engagements/<int:engagement_id>/interactions", methods=["POST"])
@require_role("analyst")
def log_interaction(engagement_id: int):
    engagement = _load(engagement_id)
    form = InteractionForm()
    form.move_to.choices = response_moves(engagement)
    if not form.validate_on_submit():
        return _page(engagement, 422, interaction=form)
    uploads = [f for f in (form.attachments.data or []) if getattr(f, "filename", "")]
    written = []
    timeline = url_for("engagements.show", engagement_id=engagement_id) + "#timeline"
    try:
        claimed = idempotency.claim(form.form_token.data, "engagement.interaction", current_user.id)
        interaction, written = service.log_interaction(
            engagement, kind=form.kind.data, direction=form.direction.data, occurred_on=form.occurred_on.data,
            subject=form.subject.data or "", summary=form.summary.data or "", participants=form.participants.data or "",
            uploads=uploads, today=clock.today(), actor_id=current_user.id, move_to=form.move_to.data or None,
            seen_version=whole_number(form.version.data))
        idempotency.record_result(claimed, timeline)
        db.session.commit()
    except idempotency.AlreadySubmitted as duplicate:
        db.session.rollback()
        return idempotency.answer_duplicate(duplicate, timeline)
    except service.StaleEdit as error:
        service.discard_files(written)
        return _stale_response(engagement_id, error, interaction=form)
    except StaleDataError:
        service.discard_files(written)
        return _stale_response(engagement_id, interaction=form)
    except service.EngagementError as error:
        db.session.rollback()
        service.discard_files(written)
        field_error(form, error.field, error.message)
        return _page(_load(engagement_id), 422, interaction=form)
    except Exception:
        db.session.rollback()
        service.discard_files(written)
        raise
    flash(f"{InteractionKind(interaction.kind).label} logged.", "success")
    return redirect(timeline)


@bp.route("/attachments/<int:attachment_id>")
@require_role("viewer")
def download_attachment(attachment_id: int):
    attachment = db.get_or_404(Attachment, attachment_id)
    path = attachments.path_of(attachment.stored_name)
    if not path.is_file():
        abort(404)
    response = send_file(path, mimetype=attachment.content_type, as_attachment=True, max_age=0,
                         download_name=attachment.stored_name)
    response.headers["Content-Disposition"] = content_disposition(attachment.filename)
    return response
