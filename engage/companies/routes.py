"""Companies: search and filter, the company page, create/edit, risk flags."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy.orm import selectinload

from engage.companies import contacts as contact_service
from engage.companies import service
from engage.companies.queries import company_filters, company_keyset
from engage.companies.forms import (
    CompanyForm,
    ContactEraseForm,
    ContactForm,
    RiskFlagForm,
)
from engage.extensions import db
from engage.lists import review
from engage.forms import ActionForm
from engage.models import Company, CompanyContact, Engagement, RiskFlag, RiskSource, Stage
from engage.security import require_role
from engage.views.menu import menu_context
from engage.keyset import keyset_paginate

bp = Blueprint("companies", __name__, url_prefix="/companies")


@bp.route("")
@require_role("viewer")
def index():
    f = company_filters(request.args)
    query, order = company_keyset(f)
    page = keyset_paginate(query, order, lambda ids: db.session.scalars(
        sa.select(Company).where(Company.id.in_(ids)).options(
            selectinload(Company.risk_flags), selectinload(Company.aliases), selectinload(Company.engagements))).all())
    # The score and change shown are the stored columns (engage.companies.stored), loaded with the rows.
    return render_template(
        "companies/index.html", page=page, f=f, sources=list(RiskSource), stages=list(Stage),
        sectors=service.distinct_values(Company.sector), countries=service.distinct_values(Company.country),
        **menu_context("companies"),
    )


@bp.route("/new", methods=["GET", "POST"])
@require_role("analyst")
def create():
    form = CompanyForm()
    if form.validate_on_submit():
        company = service.apply_form(Company(), form)
        db.session.add(company)
        db.session.commit()
        flash(f"Company {company.name} created.", "success")
        return redirect(url_for("companies.show", company_id=company.id))
    return render_template("companies/form.html", form=form, company=None), 422 if form.errors else 200


@bp.route("/<int:company_id>")
@require_role("viewer")
def show(company_id: int):
    company = db.session.scalar(
        sa.select(Company).where(Company.id == company_id)
        .options(selectinload(Company.risk_flags).options(
                     selectinload(RiskFlag.version), selectinload(RiskFlag.ended_version),
                     selectinload(RiskFlag.linked_via)),
                 selectinload(Company.aliases), selectinload(Company.parent), selectinload(Company.subsidiaries))
    )
    if company is None:
        abort(404)
    engagements = db.session.scalars(
        sa.select(Engagement).where(Engagement.company_id == company.id)
        .options(selectinload(Engagement.campaign), selectinload(Engagement.owner))
        .order_by(Engagement.opened_on.desc())
    ).all()
    return render_template("companies/show.html", company=company, engagements=engagements,
                           holdings=service.latest_holdings(company.id), flag_form=RiskFlagForm(),
                           contacts=contact_service.contacts_of(company.id), action_form=ActionForm(formdata=None))


@bp.route("/<int:company_id>/edit", methods=["GET", "POST"])
@require_role("analyst")
def edit(company_id: int):
    company = db.get_or_404(Company, company_id)
    form = CompanyForm(obj=company, company=company)
    if request.method == "GET":
        form.aliases.data = "\n".join(company.alias_names)
        form.parent_ref.data = service.parent_reference(company)
    if form.validate_on_submit():
        service.apply_form(company, form)
        db.session.commit()
        flash("Company saved.", "success")
        return redirect(url_for("companies.show", company_id=company.id))
    return render_template("companies/form.html", form=form, company=company), 422 if form.errors else 200


@bp.route("/<int:company_id>/flags", methods=["POST"])
@require_role("analyst")
def add_flag(company_id: int):
    company = db.get_or_404(Company, company_id)
    form = RiskFlagForm()
    if form.validate_on_submit():
        service.add_flag(company, form, current_user.id)
        db.session.commit()
        flash("Risk flag added.", "success")
        return redirect(url_for("companies.show", company_id=company.id) + "#flags")
    engagements = db.session.scalars(sa.select(Engagement).where(Engagement.company_id == company.id)).all()
    return render_template("companies/show.html", company=company, engagements=engagements,
                           holdings=service.latest_holdings(company.id), flag_form=form,
                           contacts=contact_service.contacts_of(company.id), action_form=ActionForm(formdata=None)), 422


@bp.route("/<int:company_id>/flags/<int:flag_id>/delete", methods=["POST"])
@require_role("analyst")
def delete_flag(company_id: int, flag_id: int):
    flag = db.session.scalar(sa.select(RiskFlag).where(RiskFlag.id == flag_id, RiskFlag.company_id == company_id))
    if flag is None:
        abort(404)
    try:
        removed = review.reject_flag(flag, current_user)
    except review.ReviewError as exc:
        db.session.rollback()
        flash(exc.message, "error")
        return redirect(url_for("companies.show", company_id=company_id) + "#flags")
    db.session.commit()
    flash("Risk flag removed." if flag.entity_id is None else
          f"Risk flag removed ({len(removed)} with those linked through this company); the match is recorded as "
          "rejected, so screening will not flag it again (undo it in the match review's Decided tab).", "success")
    return redirect(url_for("companies.show", company_id=company_id) + "#flags")


# --- contacts: personal data, shown to signed-in users only, every change audited ---------------

def _contact(company_id: int, contact_id: int) -> CompanyContact:
    contact = db.session.scalar(sa.select(CompanyContact).where(
        CompanyContact.id == contact_id, CompanyContact.company_id == company_id))
    if contact is None:
        abort(404)
    return contact


@bp.route("/<int:company_id>/contacts/new", methods=["GET", "POST"])
@require_role("analyst")
def new_contact(company_id: int):
    company = db.get_or_404(Company, company_id)
    form = ContactForm(company=company)
    if form.validate_on_submit():
        contact = contact_service.apply_form(CompanyContact(company=company, active=True), form)
        db.session.add(contact)
        db.session.commit()
        flash(f"Contact {contact.name} added.", "success")
        return redirect(url_for("companies.show", company_id=company.id) + "#contacts")
    return render_template("companies/contact_form.html", form=form, company=company, contact=None), \
        422 if form.errors else 200


@bp.route("/<int:company_id>/contacts/<int:contact_id>", methods=["GET", "POST"])
@require_role("analyst")
def edit_contact(company_id: int, contact_id: int):
    contact = _contact(company_id, contact_id)
    if contact.is_erased:
        abort(404)
    form = ContactForm(company=contact.company, contact=contact)
    if form.validate_on_submit():
        contact_service.apply_form(contact, form)
        db.session.commit()
        flash("Contact saved.", "success")
        return redirect(url_for("companies.show", company_id=company_id) + "#contacts")
    return render_template("companies/contact_form.html", form=form, company=contact.company, contact=contact), \
        422 if form.errors else 200


@bp.route("/<int:company_id>/contacts/<int:contact_id>/active", methods=["POST"])
@require_role("analyst")
def toggle_contact(company_id: int, contact_id: int):
    """Deactivate an active contact (no longer offered for letters), or reactivate it."""
    contact = _contact(company_id, contact_id)
    if contact.is_erased:
        abort(404)
    if ActionForm().validate_on_submit():
        contact.active = not contact.active
        db.session.commit()
        flash(f"{contact.name} is {'active again' if contact.active else 'deactivated'}.", "success")
    return redirect(url_for("companies.show", company_id=company_id) + "#contacts")


@bp.route("/<int:company_id>/contacts/<int:contact_id>/erase", methods=["GET", "POST"])
@require_role("admin")
def erase_contact(company_id: int, contact_id: int):
    """Confirm, then erase the contact's personal data everywhere (a data-subject request)."""
    contact = _contact(company_id, contact_id)
    form = ContactEraseForm()
    if contact.is_erased:
        flash("This contact was already erased.", "info")
        return redirect(url_for("companies.show", company_id=company_id) + "#contacts")
    if form.validate_on_submit():
        contact_service.erase(contact)
        db.session.commit()
        flash("The contact was erased: its name and details are gone from letters, interactions, emails and "
              "the audit trail.", "success")
        return redirect(url_for("companies.show", company_id=company_id) + "#contacts")
    return render_template("companies/contact_erase.html", company=contact.company, contact=contact, form=form), \
        422 if form.errors else 200
