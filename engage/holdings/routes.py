"""Funds, holdings import (upload, preview, confirm), review of created companies, screening."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy.orm import selectinload

from engage import clock
from engage.extensions import db
from engage.holdings import importer, parsing, screening, service
from engage.holdings.forms import FundForm, ImportForm
from engage.models import Campaign, Company, Fund, Holding, RiskFlag, RiskSource
from engage.security import require_role
from engage.validators import date_problem, whole_number
from engage.web import paginate
from engage.web import field_error

bp = Blueprint("holdings", __name__)


@bp.route("/funds")
@require_role("viewer")
def funds():
    overview = service.funds_overview()
    exposures = {fund.id: screening.exposure(fund) for fund, *_ in overview}
    return render_template("holdings/funds.html", overview=overview, exposures=exposures)


@bp.route("/funds/new", methods=["GET", "POST"])
@require_role("analyst")
def new_fund():
    form = FundForm()
    if form.validate_on_submit():
        name = form.name.data.strip()
        if db.session.scalar(sa.select(Fund.id).where(Fund.name == name)):
            field_error(form, "name", f"A fund called {name} already exists.")
        else:
            fund = Fund(name=name, provider=form.provider.data or None, base_currency=form.base_currency.data.upper(),
                        benchmark=form.benchmark.data or None)
            db.session.add(fund)
            db.session.commit()
            flash(f"Fund {fund.name} created; import its holdings next.", "success")
            return redirect(url_for("holdings.import_holdings", fund_id=fund.id))
    return render_template("holdings/fund_form.html", form=form), 422 if form.errors else 200


@bp.route("/funds/<int:fund_id>")
@require_role("viewer")
def fund(fund_id: int):
    item = db.get_or_404(Fund, fund_id)
    snapshots = db.session.execute(
        sa.select(Holding.as_of, sa.func.count(), sa.func.sum(Holding.market_value))
        .where(Holding.fund_id == fund_id).group_by(Holding.as_of).order_by(Holding.as_of.desc())
    ).all()
    as_of = None
    if request.args.get("as_of"):
        as_of = parsing.parse_date(request.args["as_of"])
        if as_of is None:
            abort(400, "as_of must be a date such as 2026-10-31.")
    as_of = as_of or (snapshots[0][0] if snapshots else None)
    flagged = sa.select(RiskFlag.company_id).distinct()
    query = (
        sa.select(Holding).join(Company, Company.id == Holding.company_id)
        .where(Holding.fund_id == fund_id, Holding.as_of == as_of)
        .options(selectinload(Holding.company).selectinload(Company.risk_flags))
        .order_by(Holding.market_value.desc().nulls_last(), Company.normalized_name)
    )
    if request.args.get("flagged") == "yes":
        query = query.where(Holding.company_id.in_(flagged))
    page = paginate(query)
    return render_template("holdings/fund.html", fund=item, snapshots=snapshots, as_of=as_of, page=page,
                           exposure=screening.exposure(item, as_of) if as_of else None)


def _mapping_or_error(text: str | None):
    try:
        return parsing.parse_mapping(text), None
    except parsing.FileRefused as exc:
        return None, str(exc)


@bp.route("/holdings/import", methods=["GET", "POST"])
@require_role("analyst")
def import_holdings():
    """Upload and check a file; nothing is written until the preview is confirmed."""
    form = ImportForm()
    form.fund_id.choices = [(f.id, f.name) for f in db.session.scalars(sa.select(Fund).order_by(Fund.name))]
    if request.method == "GET" and whole_number(request.args.get("fund_id")) is not None:
        form.fund_id.data = whole_number(request.args["fund_id"])
    if not form.fund_id.choices:
        flash("Create a fund first; holdings are imported into a fund.", "info")
        return redirect(url_for("holdings.new_fund"))
    if not form.validate_on_submit():
        return render_template("holdings/import.html", form=form), 422 if form.errors else 200
    upload = form.file.data
    data = upload.read()
    mapping, problem = _mapping_or_error(form.mapping.data)
    parsed = None
    if problem is None:
        try:
            parsed = parsing.parse(upload.filename or "upload", data, mapping)
        except parsing.FileRefused as exc:
            problem = str(exc)
    if problem is not None or not parsed.ok:
        return render_template("holdings/preview.html", form=form, parsed=parsed, problem=problem,
                               filename=upload.filename, fund=db.session.get(Fund, form.fund_id.data)), 422
    as_of = parsed.as_of or form.as_of.data
    if as_of is None or date_problem(as_of):
        field_error(form, "as_of", f"The file's date {date_problem(as_of)}" if as_of
                    else "The file does not say its date; give the as-of date.")
        return render_template("holdings/import.html", form=form), 422
    token = service.stash_upload(data, {"fund_id": form.fund_id.data, "as_of": as_of.isoformat(),
                                        "mapping": mapping, "filename": upload.filename, "user": current_user.id})
    return render_template("holdings/preview.html", form=form, parsed=parsed, preview=importer.preview(parsed),
                           token=token, as_of=as_of, filename=upload.filename,
                           fund=db.session.get(Fund, form.fund_id.data))


@bp.route("/holdings/import/<token>", methods=["POST"])
@require_role("analyst")
def confirm_import(token: str):
    stashed = service.load_upload(token)
    if stashed is None or not FlaskForm().validate_on_submit():
        flash("That import is no longer waiting; upload the file again.", "error")
        return redirect(url_for("holdings.import_holdings"))
    data, meta = stashed
    fund = db.get_or_404(Fund, meta["fund_id"])
    parsed = parsing.parse(meta["filename"] or "upload", data, meta["mapping"])
    result = importer.import_parsed(parsed, fund, dt.date.fromisoformat(meta["as_of"]))
    db.session.commit()
    service.discard_upload(token)
    for line in result.lines():
        flash(line, "success")
    if result.created:
        flash(f"{len(result.created)} companies were created from the file; review them to merge duplicates.", "info")
    return redirect(url_for("holdings.fund", fund_id=fund.id))


@bp.route("/holdings/review")
@require_role("viewer")
def review():
    query = (sa.select(Company).where(Company.origin.is_not(None))
             .options(selectinload(Company.aliases)).order_by(Company.origin, Company.normalized_name))
    page = paginate(query)
    return render_template("holdings/review.html", page=page)


@bp.route("/holdings/review/<int:company_id>", methods=["POST"])
@require_role("analyst")
def review_company(company_id: int):
    company = db.get_or_404(Company, company_id)
    if not FlaskForm().validate_on_submit():
        abort(400, "The form expired; reload the page.")
    if request.form.get("action") == "keep":
        company.origin = None
        db.session.commit()
        flash(f"{company.name} kept as a company of its own.", "success")
        return redirect(url_for("holdings.review"))
    try:
        target = service.find_company(request.form.get("target", ""))
        name = company.name
        service.merge(company, target)
        db.session.commit()
    except service.MergeError as error:
        db.session.rollback()
        flash(f"Not merged: {error.message}", "error")
        return redirect(url_for("holdings.review"))
    flash(f"{name} merged into {target.name}; its name is kept as an alias.", "success")
    return redirect(url_for("holdings.review"))


@bp.route("/screening")
@require_role("viewer")
def screening_page():
    funds = db.session.scalars(sa.select(Fund).order_by(Fund.name)).all()
    campaigns = db.session.scalars(sa.select(Campaign).where(Campaign.active.is_(True)).order_by(Campaign.name)).all()
    return render_template("holdings/screening.html", exposures=[screening.exposure(f) for f in funds],
                           campaigns=campaigns, lists=screening_lists(),
                           list_labels={s.value: s.label for s in RiskSource})


def screening_lists():
    from engage.models import ListedEntity

    return db.session.execute(
        sa.select(ListedEntity.source, sa.func.count(), sa.func.max(ListedEntity.effective_date))
        .group_by(ListedEntity.source).order_by(ListedEntity.source)
    ).all()


@bp.route("/screening/run", methods=["POST"])
@require_role("analyst")
def run_screening():
    if FlaskForm().validate_on_submit():
        result = screening.screen()
        db.session.commit()
        flash(f"Screened {result.companies_checked} companies: {len(result.flags_created)} new risk flag(s).", "success")
    return redirect(url_for("holdings.screening_page"))


@bp.route("/screening/engage", methods=["POST"])
@require_role("analyst")
def engage_flagged():
    """Open `identified` engagements for a fund's flagged holdings that have none."""
    if not FlaskForm().validate_on_submit():
        abort(400, "The form expired; reload the page.")
    fund_id, campaign_id = request.form.get("fund_id", ""), request.form.get("campaign_id", "")
    fund_id, campaign_id = whole_number(fund_id), whole_number(campaign_id)
    if fund_id is None or campaign_id is None:
        abort(400, "Choose a fund and a campaign.")
    fund = db.get_or_404(Fund, fund_id)
    campaign = db.get_or_404(Campaign, campaign_id)
    companies = [row["company"] for row in screening.exposure(fund).rows]
    opened = screening.open_engagements(companies, campaign, current_user._get_current_object(), clock.today())
    db.session.commit()
    flash(f"{len(opened)} engagement(s) opened for flagged holdings of {fund.name}.", "success")
    return redirect(url_for("engagements.index", stage="identified", campaign=campaign.id))
