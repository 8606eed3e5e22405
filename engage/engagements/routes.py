"""Engagements: the list, opening one, its page, cycle moves, logging contact, attachments."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user
from sqlalchemy.orm import joinedload, selectinload
from sqlalchemy.orm.exc import StaleDataError

from engage import clock, idempotency
from engage.companies.contacts import contacts_of
from engage.engagements import attachments, cycle, service
from engage.engagements.forms import (
    EngagementEditForm,
    EscalationForm,
    InteractionForm,
    OpenEngagementForm,
    StageMoveForm,
)
from engage.engagements.queries import engagement_keyset, filter_form, owner_choices
from engage.dbutil import distinct_values
from engage.extensions import db
from engage.forms import ActionForm
from engage.holdings import screening
from engage.keyset import keyset_paginate
from engage.letters.forms import GenerateForm, bulk_form
from engage.letters.service import active_templates, suggested_template
from engage.models import (
    Attachment,
    Campaign,
    Company,
    Engagement,
    Escalation,
    InteractionKind,
    Letter,
    Relationship,
    Reminder,
    Stage,
    User,
)
from engage.reminders.forms import ReminderForm, SnoozeForm
from engage.scoring import progress
from engage.scoring.service import disagreement, stage_hints
from engage.security import require_role
from engage.validators import whole_number
from engage.valuechain import feeds
from engage.valuechain import figures as value_chain_figures
from engage.views.menu import menu_context
from engage.web import content_disposition, refuse

bp = Blueprint("engagements", __name__, url_prefix="/engagements")


@bp.route("")
@require_role("viewer")
def index():
    today = clock.today()
    filters = filter_form(request.args)
    f = filters.values_or_400()
    query, order = engagement_keyset(f, today)
    page = keyset_paginate(query, order, lambda ids: db.session.scalars(
        sa.select(Engagement).where(Engagement.id.in_(ids)).options(
            selectinload(Engagement.company), selectinload(Engagement.campaign), selectinload(Engagement.owner))).all())
    # The page's engagements; their computed columns come from one more query for the page's rows.
    return render_template(
        "engagements/index.html", page=page, rows=_rows(page, f, today), f=f, today=today,
        bulk=bulk_form() if current_user.can_edit else None, filters=filters,
        stages=list(Stage), escalations=list(Escalation),
        campaign_options=[(c.id, c.name) for c in db.session.scalars(sa.select(Campaign).order_by(Campaign.name))],
        owners=owner_choices()[1:],
        sectors=distinct_values(Company.sector),
        **menu_context("engagements"),
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


@bp.route("/open/<int:company_id>", methods=["GET", "POST"])
@require_role("analyst")
def open_for_company(company_id: int):
    company = db.get_or_404(Company, company_id)
    form = OpenEngagementForm(campaigns=[(c.id, c.name) for c in db.session.scalars(
        sa.select(Campaign).where(Campaign.active.is_(True)).order_by(Campaign.name))], owners=owner_choices())
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
            refuse(form, error)
        else:
            flash(f"Engagement with {company.name} opened.", "success")
            # the first thing to do with a new engagement is its initial letter
            return redirect(url_for("engagements.show", engagement_id=engagement.id, tab="letter"))
    status = 422 if form.errors else 200
    return render_template("engagements/open.html", form=form, company=company), status


def _load(engagement_id: int) -> Engagement:
    # its company, campaign and owner in the same statement (one row each: a join, not three more
    # round trips); the lists (risk flags, reminders) each in one more statement
    engagement = db.session.scalar(
        sa.select(Engagement).where(Engagement.id == engagement_id)
        .options(joinedload(Engagement.company).selectinload(Company.risk_flags),
                 joinedload(Engagement.campaign), joinedload(Engagement.owner),
                 selectinload(Engagement.reminders).selectinload(Reminder.relationship_)
                 .selectinload(Relationship.counterparty))
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
    moves = {"stage": _choices(cycle.stage_moves(engagement)),
             "escalation": _choices(cycle.escalation_moves(engagement)),
             "interaction": response_moves(engagement)}
    fresh = {
        "edit": lambda: EngagementEditForm(obj=engagement, formdata=None, owners=owner_choices()),
        "stage": lambda: StageMoveForm(formdata=None, occurred_on=today, moves=moves["stage"],
                                       target=_hinted(moves["stage"]) or cycle.proposed_stage(engagement)),
        "escalation": lambda: EscalationForm(formdata=None, occurred_on=today, moves=moves["escalation"],
                                             target=cycle.proposed_level(engagement)),
        "interaction": lambda: InteractionForm(formdata=None, occurred_on=today, moves=moves["interaction"]),
    }
    forms = {}
    for key, make in fresh.items():
        form = given.get(key)
        if form is None:
            form = make()
            form.version.data = version
        elif stale:
            form.version.data = version
        if key in moves:  # a form sent back offers the moves allowed now (another user may have moved it)
            form.offer(moves[key])
        _prefix_ids(form, ID_PREFIXES[key])
        forms[key] = form
    return {f"{key}_form": form for key, form in forms.items()}


#: Each form's field ids start with its own prefix: the page holds four forms with a "Date" or a
#: "Note", and an error listed at the top of the page links to the field it is about.
ID_PREFIXES = {"edit": "edit-", "stage": "stage-", "escalation": "escalation-", "interaction": "log-"}


def _prefix_ids(form, prefix: str) -> None:
    for item in form:
        if not item.id.startswith(prefix):
            item.id = prefix + item.id
            item.label.field_id = item.id


#: The work tabs of the engagement page, in order: key and label.
TABS = [("log", "Log"), ("letter", "Letter"), ("score", "Score"), ("move", "Move"), ("reminders", "Reminders")]
#: The tab that shows a form sent back with errors.
TAB_OF_FORM = {"interaction": "log", "stage": "move", "escalation": "move"}


def _tabs(engagement: Engagement, posted: set, requested: str | None) -> tuple[list, str]:
    """The tabs this user gets here and the one shown: the refused form's, else ?tab=, else the first."""
    editor = current_user.can_edit
    offered = {
        "log": editor and (engagement.is_open or "interaction" in posted),
        "letter": True,
        "score": True,
        "move": editor,  # there is always a stage move: forward, back, close, or reopen
        "reminders": True,
    }
    tabs = [(key, label) for key, label in TABS if offered[key]]
    keys = [key for key, _ in tabs]
    for form_key in posted:
        if TAB_OF_FORM.get(form_key) in keys:
            return tabs, TAB_OF_FORM[form_key]
    return tabs, requested if requested in keys else keys[0]


def _hinted(choices: list) -> str | None:
    """`?to=` (a stage hint's link to the Move tab) when it is a move allowed now."""
    wanted = request.args.get("to")
    return wanted if wanted in {target for target, _ in choices} else None


def _choices(moves) -> list:
    return [(m.target, m.label) for m in moves]


def response_moves(engagement: Engagement) -> list:
    return [("", "Leave the stage as it is")] + _choices(m for m in cycle.stage_moves(engagement) if m.kind == "forward")


def _page(engagement: Engagement, status: int = 200, stale: service.StaleEdit | None = None, **forms):
    templates = active_templates()
    addressees = contacts_of(engagement.company_id, active_only=True)
    generate_form = GenerateForm(
        formdata=None, template_id=suggested_template(engagement, templates),
        templates=[(t.id, f"{t.name} (v{t.version})") for t in templates],
        contacts=[(c.id, f"{c.name} ({c.title or c.role_label}, {c.language_label})") for c in addressees])
    letters = db.session.scalars(
        sa.select(Letter).where(Letter.engagement_id == engagement.id).order_by(Letter.created_at.desc(), Letter.id.desc())
    ).all()
    tabs, active_tab = _tabs(engagement, set(forms), request.args.get("tab"))
    history = progress.engagement_history(engagement)
    latest = history["scores"][-1] if history["scores"] else None
    flags = {s.id: any(disagreement(s, m)["flagged"] for m in s.moderations) for s in history["scores"]}
    return render_template(
        "engagements/show.html", engagement=engagement,
        timeline=service.timeline(engagement, more=feeds.timeline_entries(engagement)),
        summary=service.summary_of(engagement), stale=stale, today=clock.today(),
        stage_moves=cycle.stage_moves(engagement), escalation_moves=cycle.escalation_moves(engagement),
        generate_form=generate_form, letters=letters, history=history, moderation_flags=flags,
        tabs=tabs, active_tab=active_tab, contacts=addressees,
        reminder_form=ReminderForm(formdata=None, due_on=clock.today() + dt.timedelta(days=14)),
        action_form=ActionForm(formdata=None), snooze_form=SnoozeForm(formdata=None),
        hints=stage_hints(engagement, latest) + feeds.stage_hints(engagement), posted=set(forms),
        held_again=screening.held_after_divestment(screening.snapshots(), engagement.id)
        if engagement.is_divested else [],
        value_chain=value_chain_figures.for_company(engagement.company_id),
        **_forms(engagement, stale=stale is not None, **forms),
    ), status


@bp.route("/<int:engagement_id>")
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


@bp.route("/<int:engagement_id>/edit", methods=["POST"])
@require_role("analyst")
def edit(engagement_id: int):
    engagement = _load(engagement_id)
    form = EngagementEditForm(owners=owner_choices())
    if not form.validate_on_submit():
        return _page(engagement, 422, edit=form)
    owner = db.session.get(User, form.owner_id.data) if form.owner_id.data else None
    here = url_for("engagements.show", engagement_id=engagement_id)
    try:
        claimed = idempotency.claim(form.form_token.data, "engagement.edit", current_user.id)
        service.update_engagement(engagement, seen_version=whole_number(form.version.data), owner=owner,
                                  objectives=form.objectives.data or "", next_step=form.next_step.data or "",
                                  next_step_on=form.next_step_on.data, today=clock.today())
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
        status = refuse(form, error)
        return _page(_load(engagement_id), status, edit=form)
    flash("Engagement saved.", "success")
    return redirect(url_for("engagements.show", engagement_id=engagement_id))


def _move(engagement_id: int, form_class, form_key: str, perform):
    engagement = _load(engagement_id)
    moves = cycle.stage_moves(engagement) if form_class is StageMoveForm else cycle.escalation_moves(engagement)
    form = form_class(moves=_choices(moves))
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
        status = refuse(form, error)
        return _page(_load(engagement_id), status, **{form_key: form})
    flash(done, "success")  # only once committed: a move refused at commit time is not announced
    return redirect(here)


@bp.route("/<int:engagement_id>/stage", methods=["POST"])
@require_role("analyst")
def move_stage(engagement_id: int):
    def perform(engagement, form):
        cycle.move_stage(engagement, form.target.data, on=form.occurred_on.data, today=clock.today(),
                         actor_id=current_user.id, note=form.note.data or "", reason=form.reason.data or "",
                         evidence=form.evidence.data or "", evidence_url=form.evidence_url.data or None,
                         outcome=form.outcome.data or None)
        return f"Stage is now {engagement.stage_label}."

    return _move(engagement_id, StageMoveForm, "stage", perform)


@bp.route("/<int:engagement_id>/escalation", methods=["POST"])
@require_role("analyst")
def move_escalation(engagement_id: int):
    def perform(engagement, form):
        cycle.move_escalation(engagement, form.target.data, on=form.occurred_on.data, today=clock.today(),
                              actor_id=current_user.id, note=form.note.data or "", reason=form.reason.data or "",
                              evidence=form.evidence.data or "", evidence_url=form.evidence_url.data or None)
        return f"Escalation is now {engagement.escalation_label}."

    return _move(engagement_id, EscalationForm, "escalation", perform)


@bp.route("/<int:engagement_id>/interactions", methods=["POST"])
@require_role("analyst")
def log_interaction(engagement_id: int):
    engagement = _load(engagement_id)
    form = InteractionForm(moves=response_moves(engagement))
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
        status = refuse(form, error)
        service.discard_files(written)
        return _page(_load(engagement_id), status, interaction=form)
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
