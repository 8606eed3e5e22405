"""The triage page: messages the mailbox could not file by themselves, and what analysts do with them.

Analysts file a message on an engagement (searched by company name or ENG-number), add one of
its addresses as a contact of a company (searched by name), or discard it. Viewers read the
list and the messages (as plain text) and change nothing. Every action is audited; a second
click finds the message already handled (a conditional UPDATE decides) and changes nothing.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy.orm import selectinload

from engage import clock, idempotency
from engage.engagements.service import discard_files
from engage.extensions import db
from engage.mailbox import service
from engage.mailbox.forms import ContactForm, DiscardForm, FileForm
from engage.models import Company, CompanyContact, Engagement, InboundMessage, InboundStatus, Stage
from engage.security import require_role
from engage.web import paginate

bp = Blueprint("mailbox", __name__, url_prefix="/mailbox")

SEARCH_LIMIT = 20


@bp.route("/triage")
@require_role("viewer")
def triage():
    status = request.args.get("status") or InboundStatus.TRIAGE.value
    if status not in InboundStatus.values():
        abort(400, "status must be one of " + ", ".join(InboundStatus.values()) + ".")
    query = (sa.select(InboundMessage).where(InboundMessage.status == status)
             .options(selectinload(InboundMessage.engagement).selectinload(Engagement.company))
             .order_by(InboundMessage.received_at.desc(), InboundMessage.id.desc()))
    counts = dict(db.session.execute(sa.select(InboundMessage.status, sa.func.count())
                                     .group_by(InboundMessage.status)).all())
    return render_template("mailbox/triage.html", page=paginate(query), status=status, counts=counts,
                           statuses=list(InboundStatus))


def _engagement_search(text: str, inbound: InboundMessage) -> list[Engagement]:
    query = (sa.select(Engagement).join(Company, Company.id == Engagement.company_id)
             .where(Engagement.stage != Stage.CLOSED.value)
             .options(selectinload(Engagement.company), selectinload(Engagement.campaign))
             .order_by(Company.name, Engagement.id).limit(SEARCH_LIMIT))
    text = text.strip()
    if text:
        number = text.upper().removeprefix("ENG-").removeprefix("#")
        condition = Company.name.ilike(f"%{_like(text)}%")
        if number.isascii() and number.isdigit() and len(number) < 10:
            condition = sa.or_(condition, Engagement.id == int(number))
        return list(db.session.scalars(query.where(condition)))
    addresses = service.candidate_addresses(inbound)
    if not addresses:
        return []
    companies = sa.select(CompanyContact.company_id).where(
        sa.func.lower(CompanyContact.email).in_(addresses), CompanyContact.active, CompanyContact.erased_at.is_(None))
    return list(db.session.scalars(query.where(Engagement.company_id.in_(companies))))


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _company_search(text: str) -> list[Company]:
    text = text.strip()
    if not text:
        return []
    return list(db.session.scalars(sa.select(Company).where(Company.name.ilike(f"%{_like(text)}%"))
                                   .order_by(Company.name).limit(SEARCH_LIMIT)))


def _page(inbound: InboundMessage, status: int = 200, file_form=None, contact_form=None):
    q = request.args.get("q", "")
    cq = request.args.get("cq", "")
    contact_form = contact_form or ContactForm(formdata=None, name=inbound.from_name,
                                               addresses=service.candidate_addresses(inbound))
    text = ""
    if inbound.raw_name:
        try:
            raw, _ = service.stored_raw(inbound)
            text = service.parsing.parse(raw).text
        except OSError:
            text = "(the stored message could not be read)"
    return render_template(
        "mailbox/message.html", m=inbound, text=text or inbound.snippet, q=q, cq=cq,
        engagements=_engagement_search(q, inbound), companies=_company_search(cq),
        file_form=file_form or FileForm(formdata=None), contact_form=contact_form,
        discard_form=DiscardForm(formdata=None)), status


def _load(inbound_id: int) -> InboundMessage:
    return db.get_or_404(InboundMessage, inbound_id)


@bp.route("/triage/<int:inbound_id>")
@require_role("viewer")
def message(inbound_id: int):
    return _page(_load(inbound_id))


@bp.route("/triage/<int:inbound_id>/file", methods=["POST"])
@require_role("viewer", write="analyst")
def file(inbound_id: int):
    inbound = _load(inbound_id)
    form = FileForm()
    if not form.validate():
        return _page(inbound, 422, file_form=form)
    engagement = db.session.get(Engagement, form.engagement_id.data)
    if engagement is None:
        form.engagement_id.errors.append("That engagement does not exist.")
        return _page(inbound, 422, file_form=form)
    written = []
    try:
        inbound, written = service.file_from_triage(inbound.id, engagement, current_user, clock.utcnow())
        db.session.commit()
    except service.AlreadyHandled as exc:
        db.session.rollback()
        discard_files(written)
        flash(str(exc), "info")
        return redirect(url_for("mailbox.message", inbound_id=inbound_id), code=303)
    except service.FilingRefused as exc:
        db.session.rollback()
        form.engagement_id.errors.append(str(exc))
        return _page(_load(inbound_id), 422, file_form=form)
    except Exception:
        db.session.rollback()
        discard_files(written)
        raise
    flash(f"Filed on engagement #{engagement.id} ({engagement.company.name}).", "success")
    return redirect(url_for("engagements.show", engagement_id=engagement.id), code=303)


@bp.route("/triage/<int:inbound_id>/contact", methods=["POST"])
@require_role("viewer", write="analyst")
def contact(inbound_id: int):
    inbound = _load(inbound_id)
    form = ContactForm(addresses=service.candidate_addresses(inbound))
    if not form.validate():
        return _page(inbound, 422, contact_form=form)
    company = db.session.get(Company, form.company_id.data)
    if company is None:
        form.company_id.errors.append("That company does not exist.")
        return _page(inbound, 422, contact_form=form)
    here = url_for("mailbox.message", inbound_id=inbound.id, q=company.name)
    try:
        claimed = idempotency.claim(form.form_token.data, "mailbox.contact", current_user.id)
    except idempotency.AlreadySubmitted as duplicate:
        db.session.rollback()
        return idempotency.answer_duplicate(duplicate, here)
    try:
        added = service.add_contact(inbound, company, email=form.email.data, name=form.name.data or "",
                                    role=form.role.data)
    except service.ContactRefused as exc:
        db.session.rollback()
        form.email.errors.append(str(exc))
        return _page(_load(inbound_id), 422, contact_form=form)
    idempotency.record_result(claimed, here)
    db.session.commit()
    flash(f"{added.email} is now a contact of {company.name}. File the message on one of its engagements below.",
          "success")
    return redirect(here, code=303)


@bp.route("/triage/<int:inbound_id>/discard", methods=["POST"])
@require_role("viewer", write="analyst")
def discard(inbound_id: int):
    _load(inbound_id)
    try:
        service.discard(inbound_id, current_user, clock.utcnow())
        db.session.commit()
    except service.AlreadyHandled as exc:
        db.session.rollback()
        flash(str(exc), "info")
        return redirect(url_for("mailbox.message", inbound_id=inbound_id), code=303)
    flash("Discarded.", "success")
    return redirect(url_for("mailbox.triage"), code=303)
