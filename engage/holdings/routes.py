"""Funds, holdings import (upload, preview, confirm), review of created companies, screening."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy.orm import selectinload
from wtforms import SelectChoice

from engage import background, clock
from engage.dbutil import is_lock_timeout
from engage.extensions import db
from engage.formatting import counted, format_datetime
from engage.forms import ActionForm
from engage.holdings import jobs as holdings_jobs
from engage.holdings import screening, screening_stored, service, stored
from engage.lists import review as match_review
from engage.lists import screening as list_screening
from engage.main import figures
from engage.holdings.forms import FundForm, ImportForm, MergeForm, ReadOptionsForm
from engage.models import Campaign, Company, Fund, Holding, ListedEntity, RiskSource
from engage.security import require_role
from engage.validators import whole_number
from engage.web import field_error, own_upload_limit, paginate

bp = Blueprint("holdings", __name__, url_prefix="/holdings")


def _upload_form():
    return render_template("holdings/import.html", form=ImportForm(formdata=None, funds=_fund_choices()))


# the holdings upload's own size limit (HOLDINGS_MAX_UPLOAD_MB; other forms keep MAX_CONTENT_LENGTH)
own_upload_limit(bp, "holdings.import_holdings", "HOLDINGS_MAX_UPLOAD_MB", "a holdings file", _upload_form)


@bp.route("/funds")
@require_role("viewer")
def funds():
    """Every fund at its latest snapshot with its exposure per official list (a fixed number of queries):
    the stored exposures while no holding, flag or fund was written since they were counted."""
    return render_template("holdings/funds.html", exposures=stored.exposures())


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
        as_of = service.parse_date(request.args["as_of"])
        if as_of is None:
            abort(400, "as_of must be a date such as 2026-10-31.")
    as_of = as_of or (snapshots[0][0] if snapshots else None)
    query = (
        sa.select(Holding).join(Company, Company.id == Holding.company_id)
        .where(Holding.fund_id == fund_id, Holding.as_of == as_of)
        .options(selectinload(Holding.company).selectinload(Company.risk_flags))
        .order_by(Holding.market_value.desc().nulls_last(), Company.normalized_name, Holding.id)
    )
    if request.args.get("flagged") == "yes":
        query = query.where(Holding.company_id.in_(screening.on_official_list()))
    page = paginate(query)
    return render_template("holdings/fund.html", fund=item, snapshots=snapshots, as_of=as_of, page=page,
                           exposure=screening.exposure(item, as_of, detail=False) if as_of else None)


def _mapping_or_error(text: str | None):
    try:
        return service.parse_mapping(text), None
    except service.FileRefused as exc:
        return None, str(exc)


def _fund_choices() -> list[SelectChoice]:
    return [SelectChoice(f.id, f.name) for f in db.session.scalars(sa.select(Fund).order_by(Fund.name))]


def _options_form(options: service.ReadOptions) -> ReadOptionsForm:
    return ReadOptionsForm(formdata=None, decimal=options.decimal or "", partial=options.partial, as_of=options.as_of,
                           encoding=options.encoding or "", sheet=options.sheet or "")


def _preview_page(token: str, data: bytes, meta: dict, form: ReadOptionsForm | None = None,
                  checked: service.Checked | None = None, status: int | None = None):
    """The preview of a stashed file, or its refusal (422) with the options to read it again.

    The file is read once per request: `checked` is that reading when the caller has it.
    """
    fund = db.session.get(Fund, meta["fund_id"])
    if fund is None:
        service.discard_upload(token)
        flash("That fund no longer exists; choose another.", "error")
        return redirect(url_for("holdings.import_holdings"))
    options = service.ReadOptions.from_meta(meta)
    if checked is None and len(data) >= current_app.config["HOLDINGS_PREVIEW_JOB_BYTES"]:
        checked = service.kept_preview(token, data, meta)  # read by the preview job
        if checked is None:  # not read yet with these options: by a job, not in this request
            return _preview_in_background(data, meta, token)
    if checked is None:
        checked = service.check_file(data, meta.get("filename") or "upload", options, fund)
    form = form or _options_form(options)
    if checked.field and checked.field in form and checked.problem:
        field_error(form, checked.field, checked.problem[0].upper() + checked.problem[1:] + ".")
    context = dict(parsed=checked.parsed, problem=checked.problem, filename=meta.get("filename"), fund=fund,
                   token=token, options=form, action_form=ActionForm(formdata=None), as_of=checked.as_of,
                   preview=checked.preview, digest=checked.digest, row_count=checked.row_count)
    if not checked.ok:
        return render_template("holdings/preview.html", **context), status or 422
    if checked.parsed is not None and meta.get("rows") != checked.row_count:
        meta["rows"] = checked.row_count  # the confirmation sends a big file to the job worker
        service.save_upload_meta(token, meta)
    return render_template("holdings/preview.html", **context), status or 200


@bp.errorhandler(service.StashUnsafe)
def stash_unsafe(error):
    """A faulty or hostile environment: say so, and keep the upload form."""
    current_app.logger.error("holdings upload stash refused: %s", error)
    form = ImportForm(formdata=None, funds=_fund_choices())
    flash(f"Uploads cannot be kept for confirmation: {error}.", "error")
    return render_template("holdings/import.html", form=form), 503


@bp.route("/import", methods=["GET", "POST"])
@require_role("analyst")
def import_holdings():
    """Upload and check a file (read once); nothing is written until the preview is confirmed."""
    form = ImportForm(funds=_fund_choices())
    if request.method == "GET" and whole_number(request.args.get("fund_id")) is not None:
        form.fund_id.data = whole_number(request.args["fund_id"])
    if not form.fund_id.choices:
        flash("Create a fund first; holdings are imported into a fund.", "info")
        return redirect(url_for("holdings.new_fund"))
    if not form.validate_on_submit():
        return render_template("holdings/import.html", form=form), 422 if form.errors else 200
    upload = form.file.data
    data = upload.read()
    fund = db.session.get(Fund, form.fund_id.data)
    mapping, problem = _mapping_or_error(form.mapping.data)
    filename = (upload.filename or "upload")[:255]
    if problem is not None:
        return render_template("holdings/preview.html", parsed=None, problem=problem, filename=filename, fund=fund,
                               token=None, options=None), 422
    options = service.ReadOptions(mapping=mapping, decimal=form.decimal.data or None, partial=bool(form.partial.data),
                                  as_of=form.as_of.data, encoding=form.encoding.data or None,
                                  sheet=(form.sheet.data or "").strip() or None)
    if len(data) >= current_app.config["HOLDINGS_PREVIEW_JOB_BYTES"]:  # read by a job: its page, then the preview
        return _preview_in_background(data, {"fund_id": form.fund_id.data, "filename": filename,
                                             "user": current_user.id, **options.to_meta()})
    checked = service.check_file(data, filename, options, fund)
    if checked.parsed is None and checked.field is None:  # unreadable whatever the options: nothing kept
        return render_template("holdings/preview.html", parsed=None, problem=checked.problem, filename=filename,
                               fund=fund, token=None, options=None), 422
    meta = {"fund_id": form.fund_id.data, "filename": filename, "user": current_user.id, **options.to_meta()}
    token = service.stash_upload(data, meta)
    return _preview_page(token, data, meta, checked=checked)


def _preview_in_background(data: bytes, meta: dict, token: str | None = None):
    """A big file is read and previewed by the job worker: its page shows the progress, then leads
    to the preview (`show_preview`). `token`: the stash read again (other options); None for a new
    upload, stashed here.

    The same user sending the same file into the same fund with the same options while its reading
    is still queued or running (a double click on Upload, a second tab) gets that job, not another."""
    options = service.ReadOptions.from_meta(meta)
    fund = db.session.get(Fund, meta["fund_id"])
    label = f"Holdings file check: {meta.get('filename') or 'upload'} for {fund.name if fund else 'a fund'}"
    job = background.submit_unless_running(
        holdings_jobs.PREVIEW_KIND, [current_user.id, meta["fund_id"], hashlib.sha256(data).hexdigest(),
                                     options.to_meta()],
        label=label, user_id=current_user.id, start=lambda: {"token": token or service.stash_upload(data, meta)})
    return redirect(url_for("background.show", job_id=job.id))


@bp.route("/import/<token>", methods=["GET"])
@require_role("analyst")
def show_preview(token: str):
    """The preview of a stashed upload (where the preview job leads): kept by the job for a big file."""
    if not service.TOKEN.match(token):
        abort(404)  # not an upload's token at all
    stashed = service.load_upload(token)
    if stashed is None:
        return _no_longer_waiting(token, "This import is being saved (confirmed in another tab); it is saved once.")
    data, meta = stashed
    return _preview_page(token, data, meta)


def _no_longer_waiting(token: str, importing: str):
    """Back to the upload form, saying what became of a stashed upload that is no longer waiting."""
    state, lines = service.upload_state(token)
    if state == "done":
        flash("This import was confirmed already and saved once: " + "; ".join(lines[:1]), "info")
    elif state == "importing":
        flash(importing, "info")
    else:
        flash("That import is no longer waiting; upload the file again.", "error")
    return redirect(url_for("holdings.import_holdings"))


@bp.route("/import/<token>/read", methods=["POST"])
@require_role("analyst")
def read_again(token: str):
    """Read a stashed file again with other options (decimal separator, partial, date, encoding, sheet)."""
    stashed = service.load_upload(token)
    if stashed is None:
        flash("That import is no longer waiting; upload the file again.", "error")
        return redirect(url_for("holdings.import_holdings"))
    data, meta = stashed
    form = ReadOptionsForm()
    if not form.validate_on_submit():
        return _preview_page(token, data, meta, form)
    meta.update(decimal=form.decimal.data or None, partial=bool(form.partial.data),
                as_of=form.as_of.data.isoformat() if form.as_of.data else meta.get("as_of"),
                encoding=form.encoding.data or None, sheet=(form.sheet.data or "").strip() or None)
    service.save_upload_meta(token, meta)
    return _preview_page(token, data, meta, form)


@bp.route("/import/<token>", methods=["POST"])
@require_role("analyst")
def confirm_import(token: str):
    """Import the stashed file exactly as its preview showed it (the form names that preview), once."""
    if not ActionForm().validate_on_submit():
        flash("The form expired; upload the file again.", "error")
        return redirect(url_for("holdings.import_holdings"))
    asked = background.find(f"{holdings_jobs.KIND}:{token}")
    if asked is not None and asked.status != "failed":  # confirmed already and handed to the job worker: its page
        return redirect(url_for("background.show", job_id=asked.id))
    waiting = service.load_upload(token)
    if waiting is not None and ((waiting[1].get("rows") or 0) >= current_app.config["HOLDINGS_JOB_ROWS"]
                                or len(waiting[0]) >= current_app.config["HOLDINGS_PREVIEW_JOB_BYTES"]):
        return _import_in_background(token, waiting[1])
    stashed = service.claim_upload(token)
    if stashed is None:
        return _no_longer_waiting(token, "This import is being saved by an earlier click; it is saved once.")
    data, meta = stashed
    try:
        result = service.import_file(data, meta.get("filename") or "upload", service.ReadOptions.from_meta(meta),
                                     fund_id=meta["fund_id"], expected_digest=request.form.get("preview", ""))
        db.session.commit()
    except (service.PreviewChanged, service.ImportBusy) as exc:
        db.session.rollback()
        service.release_upload(token)
        message = exc.message if isinstance(exc, service.PreviewChanged) else str(exc)
        flash(f"{message[0].upper()}{message[1:]}.", "error")
        response = make_response(_preview_page(token, data, meta))  # the preview again, to confirm once more
        if response.status_code == 200:
            response.status_code = 409
        return response
    except service.ImportRefused as exc:
        db.session.rollback()
        service.release_upload(token)
        flash(f"Not imported: {exc.message}; check its preview again.", "error")
        return _preview_page(token, data, meta)
    except Exception:
        db.session.rollback()
        service.release_upload(token)
        raise
    lines = result.lines()
    service.finish_upload(token, lines)
    for line in lines:
        flash(line, "success")
    for line in result.warnings():
        flash(line[0].upper() + line[1:] + ". See the dashboard.", "error")
    if result.created:
        flash(f"{len(result.created)} companies were created from the file; review them to merge duplicates.", "info")
    return redirect(url_for("holdings.fund", fund_id=result.fund.id))


def _import_in_background(token: str, meta: dict):
    """A big file is imported by the job worker: its page shows the progress, then links to the fund.

    A second click (or a second tab) confirming the same upload finds the same job."""
    fund = db.session.get(Fund, meta["fund_id"])
    label = f"Holdings import: {meta.get('filename') or 'upload'} into {fund.name if fund else 'a fund'}"
    job = background.submit(holdings_jobs.KIND, key=f"{holdings_jobs.KIND}:{token}", label=label,
                            params={"token": token, "digest": request.form.get("preview", "")},
                            user_id=current_user.id)
    return redirect(url_for("background.show", job_id=job.id))


@bp.route("/review")
@require_role("viewer")
def review():
    query = (sa.select(Company).where(Company.origin.is_not(None))
             .options(selectinload(Company.aliases)).order_by(Company.origin, Company.normalized_name))
    page = paginate(query)
    return render_template("holdings/review.html", page=page, action_form=ActionForm(formdata=None))


def _merged_already(company_id: int):
    """A clear answer for a company that is gone: merged (by whom, into what) or unknown (404)."""
    event = service.last_merge_of(company_id)
    if event is None:
        abort(404)
    into = (event.changes or {}).get("into", {})
    flash(f"{event.changes.get('company', {}).get('name', 'That company')} was already merged into "
          f"{into.get('name', 'another company')} by {event.actor_label} at {format_datetime(event.created_at)}; "
          f"nothing more was done.", "info")
    return redirect(url_for("holdings.review"))


@bp.route("/review/<int:company_id>", methods=["POST"])
@require_role("analyst")
def review_company(company_id: int):
    """Keep a created company, or show what merging it would move (nothing is merged here)."""
    if not ActionForm().validate_on_submit():
        abort(400, "The form expired; reload the page.")
    company = db.session.get(Company, company_id)
    if company is None:
        return _merged_already(company_id)
    if request.form.get("action") == "keep":
        try:
            service.keep(company)
        except service.MergeError as error:
            db.session.rollback()
            flash(error.message, "error")
            return redirect(url_for("holdings.review"))
        db.session.commit()
        flash(f"{company.name} kept as a company of its own.", "success")
        return redirect(url_for("holdings.review"))
    target_text = request.form.get("target", "")
    try:
        service.check_mergeable(company)
        target = service.find_company(target_text)
        plan = service.merge_plan(company, target)
    except service.MergeError as error:
        return render_template("holdings/merge.html", company=company, plan=None, error=error.message,
                               target_text=target_text, action_form=ActionForm(formdata=None)), 422
    return render_template("holdings/merge.html", company=company, plan=plan, error=None, target_text=target_text,
                           form=MergeForm(formdata=None, target_id=str(target.id), plan=plan.digest))


@bp.route("/review/<int:company_id>/merge", methods=["POST"])
@require_role("analyst")
def merge_company(company_id: int):
    """Merge, once the user has seen what moves; a second click finds the company gone and says so."""
    form = MergeForm()
    if not form.validate_on_submit():
        abort(400, "The form expired or was altered; start the merge again from the review page.")
    company = db.session.get(Company, company_id)
    if company is None:
        return _merged_already(company_id)
    target = db.session.get(Company, int(form.target_id.data))
    if target is None:
        flash("The company to merge into no longer exists; nothing was changed.", "error")
        return redirect(url_for("holdings.review"))
    name, target_name = company.name, target.name
    try:
        plan = service.merge(company, target, expected_digest=form.plan.data)
        db.session.commit()
    except service.MergeError as error:
        db.session.rollback()
        company = db.session.get(Company, company_id)
        if company is None:
            return _merged_already(company_id)
        target = db.session.get(Company, int(form.target_id.data))
        if target is not None and company.origin is not None:
            try:
                plan = service.merge_plan(company, target)
            except service.MergeError as again:
                error = again
                plan = None
            if plan is not None:
                return render_template("holdings/merge.html", company=company, plan=plan, error=error.message,
                                       target_text=str(target.id),
                                       form=MergeForm(formdata=None, target_id=str(target.id), plan=plan.digest)), 409
        flash(f"Not merged: {error.message}", "error")
        return redirect(url_for("holdings.review"))
    moved = f"{len(plan.holdings)} position(s), {len(plan.flags_moved)} risk flag(s), {len(plan.engagements)} engagement(s)"
    if plan.relationships or plan.maps:
        moved += (f", {counted(plan.relationships, 'value-chain relationship')}, "
                  f"{counted(plan.maps, 'value-chain map')}")
    flash(f"{name} merged into {target_name}: {moved} moved; its name is kept as an alias.", "success")
    return redirect(url_for("companies.show", company_id=target.id))


@bp.route("/screening")
@require_role("viewer")
def screening_page():
    """Each fund's exposure (aggregates over every holding) and the first rows of its long lists,
    each with "N of M shown" and a link to the paged full list: a fixed number of queries."""
    new_after = list_screening.new_since_threshold()
    # the counted parts, stored while nothing they come from was written (engage.holdings.screening_stored);
    # first, as storing them commits (expiring what was read before)
    totals, counted_at = _stored_totals()
    held_counts = {fund: t.held_again for fund, t in totals.items()} if totals is not None else None
    groups, slice_ids, held = screening_stored.overview(new_after, held_counts, counted_at)
    campaigns = db.session.scalars(sa.select(Campaign).where(Campaign.active.is_(True)).order_by(Campaign.name)).all()
    exposures = screening.exposures(totals=totals, groups=groups)
    return render_template("holdings/screening.html", exposures=exposures, overall=screening.overall(exposures),
                           counts=screening.section_counts_of(groups),
                           slices=screening.rows_by_ids(slice_ids),
                           held=held,
                           shown=screening.SHOWN, counted_at=counted_at,
                           campaigns=campaigns, lists=screening_lists(), action_form=ActionForm(formdata=None),
                           list_labels={s.value: s.label for s in RiskSource},
                           new_after=new_after, to_review=match_review.pending_count())


def _stored_totals():
    """The counts over every holding the scheduler stored (engage.main.figures.screening_totals) and
    when, or (None, None): the page then counts them itself."""
    stored = figures.screening_totals(clock.utcnow())
    return stored if stored is not None else (None, None)


@dataclass
class Pager:
    """A page of a list of `total` rows, `per_page` at a time; `asked` is the page asked for when it was past the end."""

    page: int
    per_page: int
    total: int
    asked: int | None = None

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    @property
    def first(self) -> int:
        return self.offset + 1 if self.total else 0

    @property
    def last(self) -> int:
        return min(self.total, self.offset + self.per_page)


#: The highest ?page= the full lists read as a number (beyond it, the page is refused as not a page number;
#: below it, a page past the last one shows the last one).
MAX_PAGE = 10**9


def _page_asked() -> int:
    """`?page=` of a screening list: empty is 1; anything but a whole number from 1 (to MAX_PAGE) is a 404 saying so."""
    raw = request.args.get("page", "")
    page = 1 if raw == "" else whole_number(raw, minimum=1, maximum=MAX_PAGE)
    if page is None:  # a 404, as every list's bad page (engage.web.paginate), saying why
        abort(make_response(render_template(
            "errors/error.html", code=404, title="No such page",
            text=f"Page \u201c{raw[:40]}\u201d is not a page number: give a whole number from 1 "
                 f"(a page past the last one shows the last one)."), 404))
    return page


def _pager(asked: int, total: int) -> Pager:
    """The page asked for, or the last one when it is past the end (the page then says so)."""
    pager = Pager(asked, current_app.config["PAGE_SIZE"], total)
    return pager if asked <= pager.pages else Pager(pager.pages, pager.per_page, total, asked=asked)


def _choice(name: str, allowed: dict[str, str], default: str | None = None) -> str | None:
    """A filter of a screening list: empty means `default`; a value it does not know is a 400 naming the ones it knows."""
    value = request.args.get(name, "")
    if value == "":
        return default
    if value not in allowed:
        abort(400, f"{name}=\u201c{value[:40]}\u201d is not one of the choices: "
                   f"{', '.join(f'{key} ({label})' for key, label in allowed.items())}.")
    return value


@bp.route("/screening/<int:fund_id>")
@require_role("viewer")
def screening_fund(fund_id: int):
    """One list of a fund's flagged holdings in full, a page at a time: on an official list, linked
    through a parent, or noted only; filtered by list and to those new since the last screening."""
    fund = db.get_or_404(Fund, fund_id)
    section = _choice("section", {key: key.capitalize() for key in screening.SECTIONS}, "official")
    source = _choice("list", {s.value: s.label for s in RiskSource})
    new_only = _choice("new", {"1": "only new since the last screening"}) == "1"
    new_after = list_screening.new_since_threshold()
    # stored while nothing they come from was written (engage.holdings.screening_stored); first, as
    # storing them commits (expiring what was read before)
    groups, lists = screening_stored.fund_lists(new_after)
    fund = db.get_or_404(Fund, fund_id)
    snap = screening.snapshots([fund.id])
    totals, counted_at = _stored_totals()
    exposure = screening.exposures([fund.id], totals=totals, groups=[g for g in groups if g.fund_id == fund.id])[0]
    counts = screening.section_counts_of(groups).get(fund.id, screening.SectionCounts())
    total = (counts[section] if source is None and not new_only else
             screening.flagged_count(snap, fund.id, section, source=source, new_after=new_after, new_only=new_only))
    pager = _pager(_page_asked(), total)
    if source is None and not new_only:
        rows = screening.flagged_rows(lists.get((fund.id, section), [])[pager.offset:pager.offset + pager.per_page])
    else:
        rows = screening.flagged_page(snap, fund.id, section, limit=pager.per_page, offset=pager.offset, source=source,
                                      new_after=new_after, new_only=new_only)
    campaigns = db.session.scalars(sa.select(Campaign).where(Campaign.active.is_(True)).order_by(Campaign.name)).all()
    return render_template("holdings/screening_fund.html", fund=fund, e=exposure, section=section, source=source,
                           new_only=new_only, sections=screening.SECTIONS, counts=counts, rows=rows, pager=pager,
                           campaigns=campaigns, action_form=ActionForm(formdata=None), new_after=new_after,
                           list_labels={s.value: s.label for s in RiskSource}, counted_at=counted_at)


@bp.route("/screening/held-again")
@require_role("viewer")
def screening_held_again():
    """Every divested company held again after its divestment, a page at a time, of one fund or all."""
    funds = db.session.execute(sa.select(Fund.id, Fund.name).order_by(Fund.name, Fund.id)).all()
    raw = request.args.get("fund", "")
    fund_id = None
    if raw != "":
        fund_id = whole_number(raw, minimum=1)
        if fund_id is None or fund_id not in {row.id for row in funds}:
            abort(400, f"fund=\u201c{raw[:40]}\u201d is no fund: choose one of the list, or all funds.")
    asked = _page_asked()  # a bad page is refused before anything is counted
    # every fund's held-again holdings in order, stored while nothing they come from was written
    # (engage.holdings.screening_stored): the list is the funds' lists one after the other, by name
    lists = screening_stored.held_lists()
    ids = [i for fund in funds if fund_id in (None, fund.id) for i in lists.get(fund.id, [])]
    pager = _pager(asked, len(ids))
    rows, total = screening.held_again_rows(ids[pager.offset:pager.offset + pager.per_page]), len(ids)
    return render_template("holdings/screening_held_again.html", rows=rows, pager=pager, funds=funds,
                           fund_id=fund_id)


def screening_lists():
    return db.session.execute(
        sa.select(ListedEntity.source, sa.func.count(), sa.func.max(ListedEntity.effective_date))
        .where(ListedEntity.id.in_(screening.current_entries().with_only_columns(ListedEntity.id)))
        .group_by(ListedEntity.source).order_by(ListedEntity.source)
    ).all()


@bp.route("/screening/run", methods=["POST"])
@require_role("analyst")
def run_screening():
    if ActionForm().validate_on_submit():
        result = list_screening.screen()
        db.session.commit()
        flash(f"Screened {result.companies_checked} companies: {len(result.created)} new risk flag(s), "
              f"{len(result.ended)} ended, {len(result.queued)} new possible match(es) to review.", "success")
    return redirect(url_for("holdings.screening_page"))


#: How many divested companies the bulk action's message names (then "and N more").
DIVESTED_NAMED = 5


@bp.route("/screening/engage", methods=["POST"])
@require_role("analyst")
def engage_flagged():
    """Open `identified` engagements for a fund's holdings on an official list that have none (divested ones excepted)."""
    if not ActionForm().validate_on_submit():
        abort(400, "The form expired; reload the page.")
    fund_id, campaign_id = request.form.get("fund_id", ""), request.form.get("campaign_id", "")
    fund_id, campaign_id = whole_number(fund_id), whole_number(campaign_id)
    if fund_id is None or campaign_id is None:
        abort(400, "Choose a fund and a campaign.")
    fund = db.get_or_404(Fund, fund_id)
    campaign = db.get_or_404(Campaign, campaign_id)
    if not campaign.active:  # the page offers active campaigns only: a stale tab or a crafted post
        abort(400, f"{campaign.name} is not active: choose an active campaign (reload the page).")
    rows = screening.exposure(fund).rows
    # The companies the page counted ("Opens N engagements"): none open in any campaign, not divested.
    try:
        opened = screening.open_engagements([row.company for row in rows if row.can_open], campaign,
                                            current_user._get_current_object(), clock.today())
        db.session.commit()
    except sa.exc.IntegrityError:
        # Another post of the action (a double click) opened some of them at the same moment: the
        # unique index of open engagements refused ours; nothing of this one is kept.
        db.session.rollback()
        flash(f"Engagements for {fund.name} were being opened by another request at the same moment: "
              f"nothing more opened. The list below shows what was.", "info")
        return redirect(url_for("engagements.index", stage="identified", campaign=campaign_id))
    except sa.exc.OperationalError as error:
        # SQLite: another post (a double click) held the write lock longer than this one may wait
        # (SQLITE_BUSY_TIMEOUT_MS): nothing of this one is kept; say so rather than fail.
        db.session.rollback()
        if not is_lock_timeout(error):
            raise
        flash(f"Engagements for {fund.name} were being opened by another request at the same moment and it "
              f"did not finish in time: nothing more opened by this one. The list below shows what was; "
              f"post again if some are missing.", "info")
        return redirect(url_for("engagements.index", stage="identified", campaign=campaign_id))
    flash(f"{len(opened)} engagement(s) opened for flagged holdings of {fund.name}.", "success")
    divested = [row.company.name for row in rows if row.divestment is not None]
    if divested:  # a few names: the flash travels in the session cookie, which browsers drop past 4 KB
        named = ", ".join(divested[:DIVESTED_NAMED]) + (
            f", and {len(divested) - DIVESTED_NAMED} more" if len(divested) > DIVESTED_NAMED else "")
        flash(f"Not opened for {named}: divested; readmission is a reopening of the divested "
              f"engagement on recorded evidence of change in practice.", "info")
    return redirect(url_for("engagements.index", stage="identified", campaign=campaign.id))
