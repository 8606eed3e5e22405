"""The value chain on the web: importing a disclosed map (upload, mapping, preview, confirm), and the
engagement's value-chain tab (figures, flagged links and their status, the network drawing,
relationships added one by one)."""

from __future__ import annotations

import time

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy.orm import selectinload
from werkzeug.exceptions import HTTPException

from engage import clock, idempotency
from engage.errors import FieldError
from engage.extensions import db
from engage.formatting import format_date
from engage.models import Company, Engagement, Relationship
from engage.security import require_role
from engage.validators import whole_number
from engage.valuechain import figures as vc_figures
from engage.valuechain import importing, service
from engage.valuechain import service as vc_service
from engage.valuechain import tab as vc_tab
from engage.valuechain.import_forms import MapConfirmForm, MapImportForm
from engage.valuechain.tab_forms import AddRelationshipForm, StatusForm, status_prefix
from engage.web import field_error, paginate, refuse

bp = Blueprint("valuechain", __name__, url_prefix="/value-chain")
#: The map import keeps its uploads in the holdings import's stash, under its own kind.
KIND = "valuechain"
#: Seconds a second confirmation waits for the first click's import to finish (and its polling step).
WAIT_FOR_FIRST_CLICK, WAIT_STEP = 10.0, 0.25


# ---------------------------------------------------------------------------------------------
# Importing a map: upload, column mapping, preview, confirm.
# ---------------------------------------------------------------------------------------------

def _import_page(company: Company, form: MapImportForm, errors=(), status: int = 200):
    return render_template("valuechain/import.html", company=company, form=form, errors=list(errors)[:200],
                           more=max(0, len(errors) - 200), engagement_id=_engagement_arg(),
                           latest=importing.latest_map_of(company),
                           max_mb=importing.MAX_UPLOAD_BYTES // (1024 * 1024)), status


def _engagement_arg() -> int | None:
    """?engagement=<id>: the engagement page the import was started from (to go back to it)."""
    return whole_number(request.args.get("engagement") or "")


def _preview_page(company: Company, token: str, shown: service.Preview, meta: dict, status: int = 200,
                  stale: str | None = None):
    return render_template("valuechain/import_preview.html", company=company, token=token, preview=shown, meta=meta,
                           rows=importing.flagged_first(shown), counts=importing.counts(shown),
                           digest=importing.digest(shown), form=MapConfirmForm(formdata=None), stale=stale,
                           disclosed_on=importing.day(meta.get("disclosed_on")),
                           engagement_id=meta.get("engagement")), status


def _read(company: Company, data: bytes, meta: dict) -> service.Preview:
    return service.preview(company, data, meta["file_name"], meta["mapping"], accept_possible=meta["accept_possible"],
                           pdf_seconds=_pdf_seconds())


def _pdf_seconds() -> float:
    """How long the web reads a PDF: less than a worker may take (gunicorn kills it after 30 s by default)."""
    return float(current_app.config.get("VALUECHAIN_WEB_PDF_SECONDS", 20))


def _result_url(company: Company, engagement_id: int | None) -> str:
    """The engagement's value-chain page when the app has it, else the company's page."""
    engagement = importing.engagement_for(company, engagement_id)
    if engagement is not None:
        path = f"/value-chain/engagements/{engagement.id}"
        try:
            current_app.url_map.bind("").match(path, method="GET")
        except HTTPException:
            pass
        else:
            return request.script_root + path
    return url_for("companies.show", company_id=company.id)


@bp.errorhandler(importing.StashUnsafe)
def stash_unsafe(error):
    current_app.logger.error("value-chain upload stash refused: %s", error)
    flash(f"Uploads cannot be kept for confirmation: {error}.", "error")
    return redirect(url_for("main.dashboard"))


@bp.route("/companies/<int:company_id>/import", methods=["GET", "POST"])
@require_role("analyst")
def import_map(company_id: int):
    """Upload a company's disclosed map; its preview is shown, nothing is saved until it is confirmed."""
    company = db.get_or_404(Company, company_id)
    form = MapImportForm()
    if not form.validate_on_submit():
        return _import_page(company, form, status=422 if form.errors else 200)
    upload = form.file.data
    data = upload.read()  # the request is capped by MAX_CONTENT_LENGTH
    engagement = importing.engagement_for(company, _engagement_arg())
    meta = {"file_name": (upload.filename or "upload")[:255], "mapping": (form.mapping.data or "").strip() or None,
            "source_kind": form.source_kind.data, "source_ref": (form.source_ref.data or "").strip(),
            "disclosed_on": form.disclosed_on.data.isoformat() if form.disclosed_on.data else None,
            "accept_possible": bool(form.accept_possible.data), "user": current_user.id, "company": company.id,
            "engagement": engagement.id if engagement else None, "previous": importing.latest_number(company)}
    try:
        importing.check_upload(data, meta["file_name"], form.disclosed_on.data)
        shown = _read(company, data, meta)
        importing.check_not_identical(shown)
    except service.ValueChainError as exc:
        db.session.rollback()
        form.file.errors = [exc.message]
        return _import_page(company, form, exc.errors, status=422)
    except FieldError as exc:
        db.session.rollback()
        getattr(form, exc.field, form.file).errors = [exc.message]
        return _import_page(company, form, status=422)
    token = importing.stash_upload(data, meta, KIND)
    return _preview_page(company, token, shown, meta)


def _stashed(token: str, company: Company):
    """The stash of `token` if it is this user's map upload for this company, else None."""
    stashed = importing.load_upload(token, KIND)
    if stashed is None or stashed[1].get("user") != current_user.id or stashed[1].get("company") != company.id:
        return None
    return stashed


@bp.route("/companies/<int:company_id>/import/<token>", methods=["POST"])
@require_role("analyst")
def confirm_map_import(company_id: int, token: str):
    """Save the stashed map exactly as its preview showed it, once; a stale preview is shown again instead."""
    company = db.get_or_404(Company, company_id)
    form = MapConfirmForm()
    if not form.validate_on_submit():
        flash("The form expired; upload the map again.", "error")
        return redirect(url_for("valuechain.import_map", company_id=company.id))
    if _stashed(token, company) is None:
        state, lines = _after_first_click(token, company)
        if state == "done":
            flash("This map was confirmed already and imported once: " + " ".join(lines[:2]), "info")
        elif state == "importing":
            flash("This map is being imported by an earlier click; it is imported once.", "info")
        else:
            flash("That import is no longer waiting; upload the map again.", "error")
            return redirect(url_for("valuechain.import_map", company_id=company.id))
        return redirect(_result_url(company, None))
    claimed = importing.claim_upload(token, KIND)
    if claimed is None:
        state, lines = _after_first_click(token, company)
        if state == "done":
            flash("This map was confirmed already and imported once: " + " ".join(lines[:2]), "info")
        else:
            flash("This map is being imported by an earlier click; it is imported once.", "info")
        return redirect(_result_url(company, None))
    data, meta = claimed
    disclosed_on = importing.day(meta["disclosed_on"])
    try:
        saved = None
        if importing.latest_number(company) == meta["previous"]:
            saved = service.save(company, data, meta["file_name"], meta["mapping"], source_kind=meta["source_kind"],
                                 source_ref=meta["source_ref"], disclosed_on=disclosed_on,
                                 imported_by_id=current_user.id, accept_possible=meta["accept_possible"],
                                 pdf_seconds=_pdf_seconds())
        if saved is None or importing.digest(saved.preview) != request.form.get("preview", ""):
            db.session.rollback()
            return _stale(company, token, data, meta, importing.latest_number(company) != meta["previous"])
        db.session.commit()
    except (service.ValueChainError, FieldError) as exc:
        db.session.rollback()
        importing.discard_upload(token)
        form = MapImportForm(formdata=None)
        form.file.errors = [f"Not imported: {exc.message}"]
        return _import_page(company, form, getattr(exc, "errors", []), status=422)
    except Exception:
        db.session.rollback()
        importing.release_upload(token)
        raise
    lines = importing.summary(saved)
    importing.finish(token, lines, meta)
    for line in lines:
        flash(line, "success")
    return redirect(_result_url(company, meta.get("engagement")))


def _after_first_click(token: str, company: Company) -> tuple[str, list[str]]:
    """The state of an upload another click has claimed, once its import is over or after a few seconds.

    A double click in a browser sends the second confirmation while the first is importing and shows only the
    second's answer: waiting for the first lets that answer say what was imported, and the page it redirects
    to show the map. Told as importing.state_for tells it: a finished import only to its importer, under its
    company."""
    state, lines = importing.state_for(token, current_user.id, company.id)
    for _ in range(int(WAIT_FOR_FIRST_CLICK / WAIT_STEP)):
        if state != "importing":
            break
        time.sleep(WAIT_STEP)
        state, lines = importing.state_for(token, current_user.id, company.id)
    return state, lines


def _stale(company: Company, token: str, data: bytes, meta: dict, map_changed: bool):
    """Nothing is saved: another map of the company was imported since the preview (or what the map resolves
    to or flags changed). The file is read again against the company's map now and shown, under a new token,
    to be confirmed again."""
    importing.discard_upload(token)
    latest = importing.latest_map_of(company)
    meta = {**meta, "previous": latest.number if latest else None}
    if map_changed and latest is not None:
        stale = (f"Not imported: map {latest.number} of {company.name} ({latest.file_name}) was imported by "
                 f"{importing.importer_name(latest)} after this preview was made. Below is the preview against it; "
                 f"check it and import again.")
    else:
        stale = ("Not imported: what this map resolves to or flags changed since the preview. Below is the preview "
                 "now; check it and import again.")
    try:
        shown = _read(company, data, meta)
    except service.ValueChainError as exc:
        form = MapImportForm(formdata=None)
        form.file.errors = [f"Not imported: {exc.message}"]
        return _import_page(company, form, exc.errors, status=409)
    new_token = importing.stash_upload(data, meta, KIND)
    return _preview_page(company, new_token, shown, meta, status=409, stale=stale)


# ---------------------------------------------------------------------------------------------
# The engagement's value-chain tab: figures, flagged links, status changes, the drawing,
# relationships added one by one.
# ---------------------------------------------------------------------------------------------


def _engagement(engagement_id: int) -> Engagement:
    engagement = db.session.scalar(
        sa.select(Engagement).where(Engagement.id == engagement_id)
        .options(selectinload(Engagement.company).selectinload(Company.aliases), selectinload(Engagement.campaign)))
    if engagement is None:
        abort(404)
    return engagement


#: The status a fresh form proposes after each one (the usual next step towards an exit).
NEXT_STATUS = {"active": "under_review", "under_review": "remediation_plan", "remediation_plan": "exit_planned",
               "exit_planned": "exited", "exited": "active", "not_linked": "active"}


def _status_form(relationship: Relationship, given: dict) -> StatusForm:
    form = given.get(relationship.id)
    if form is None:
        form = StatusForm(formdata=None, prefix=status_prefix(relationship.id), date=clock.today(),
                          status=NEXT_STATUS.get(relationship.status))
        form.seen_status.data = relationship.status
    return form


def _tab(engagement: Engagement, status: int = 200, *, status_forms: dict | None = None,
         add_form: AddRelationshipForm | None = None):
    """The tab: figures, the maps and their diffs, the drawing, the relationships (flagged first)."""
    company = engagement.company
    figures = vc_figures.for_company(company.id)
    maps = vc_service.maps(company)
    latest = maps[-1] if maps else None
    page = rows = drawing = None
    forms: dict[int, StatusForm] = {}
    if latest is not None:
        page = paginate(vc_tab.relationships_query(latest.id), per_page=vc_tab.PER_PAGE)
        rows = vc_tab.rows(page.items)
        drawing = vc_tab.network(company, latest.id, figures)
        if current_user.can_edit and engagement.is_open:
            forms = {row.relationship.id: _status_form(row.relationship, status_forms or {})
                     for row in rows if row.flagged or row.was_flagged}
    posted = [f for f in (status_forms or {}).values() if f not in forms.values()]
    return render_template(
        "valuechain/tab.html", engagement=engagement, company=company, figures=figures, maps=maps,
        latest=latest, page=page, rows=rows, drawing=drawing, status_forms=forms, today=clock.today(),
        # a refused form whose row is not on this page still reaches the top of the page (web.refusals)
        posted_status_form=posted[0] if posted else None,
        add_form=add_form or (AddRelationshipForm(formdata=None) if current_user.can_edit and engagement.is_open
                              else None),
        open_engagement=None if engagement.is_open else vc_service.open_engagement_of(company.id),
    ), status


def _here(engagement_id: int, anchor: str = "") -> str:
    return url_for("valuechain.tab", engagement_id=engagement_id) + (f"#{anchor}" if anchor else "")


@bp.route("/engagements/<int:engagement_id>")
@require_role("viewer")
def tab(engagement_id: int):
    return _tab(_engagement(engagement_id))


@bp.route("/engagements/<int:engagement_id>/maps/<int:number>")
@require_role("viewer")
def earlier_map(engagement_id: int, number: int):
    """One map of the company as disclosed (its relationships and its diff against the one before)."""
    engagement = _engagement(engagement_id)
    maps = vc_service.maps(engagement.company)
    shown = next((m for m in maps if m.number == number), None)
    if shown is None:
        abort(404)
    page = paginate(vc_tab.relationships_query(shown.id), per_page=vc_tab.PER_PAGE)
    return render_template("valuechain/tab_map.html", engagement=engagement, company=engagement.company,
                           maps=maps, shown=shown, page=page, rows=vc_tab.rows(page.items))


@bp.route("/engagements/<int:engagement_id>/relationships/<int:relationship_id>/status", methods=["POST"])
@require_role("analyst")
def change_status(engagement_id: int, relationship_id: int):
    engagement = _engagement(engagement_id)
    relationship = db.session.get(Relationship, relationship_id)
    if relationship is None or relationship.company_id != engagement.company_id:
        abort(404)
    form = StatusForm(prefix=status_prefix(relationship_id))
    try:
        vc_service.check_open(engagement, "status")
    except FieldError as error:
        refuse(form, error)
        return _tab(engagement, 409, status_forms={relationship_id: form})
    if not form.validate_on_submit():
        return _tab(engagement, 422, status_forms={relationship_id: form})
    latest = vc_service.latest_map(engagement.company)
    if latest is not None and relationship.map_id != latest.id:  # a map imported since the page was drawn
        field_error(form, "status", f"Not saved: map {latest.number} of {engagement.company.name} was recorded "
                                    f"after this page was opened; its relationships carry the statuses now. "
                                    f"Check the link there and change it again if you still mean to.")
        return _tab(engagement, 409, status_forms={relationship_id: form})
    here = _here(engagement_id, f"rel-{relationship_id}")
    try:
        # The token first: a double click is told it was saved, not that the status changed meanwhile.
        claimed = idempotency.claim(form.form_token.data, "valuechain.status", current_user.id)
        vc_service.change_status_seen(
            relationship, form.seen_status.data, form.status.data, form.date.data, target_date=form.target_date.data,
            evidence=form.evidence.data or "", reason=form.reason.data or "", actor_id=current_user.id)
        idempotency.record_result(claimed, here)
        db.session.commit()
    except idempotency.AlreadySubmitted as duplicate:
        db.session.rollback()
        return idempotency.answer_duplicate(duplicate, here)
    except vc_service.StaleStatus as stale:
        message = stale.message
        db.session.rollback()
        form.seen_status.data = db.session.get(Relationship, relationship_id).status  # a retry applies to the new one
        field_error(form, "status", message)
        return _tab(_engagement(engagement_id), 409, status_forms={relationship_id: form})
    except FieldError as error:
        status = refuse(form, error)
        return _tab(_engagement(engagement_id), status, status_forms={relationship_id: form})
    flash(f"{relationship.counterparty.name}: the status is now {relationship.status.replace('_', ' ')}"
          f"{' (target ' + format_date(relationship.target_date) + ')' if relationship.status == 'exit_planned' else ''}.",
          "success")
    return redirect(here, code=303)


@bp.route("/engagements/<int:engagement_id>/relationships", methods=["POST"])
@require_role("analyst")
def add_relationship(engagement_id: int):
    engagement = _engagement(engagement_id)
    form = AddRelationshipForm()
    try:
        vc_service.check_open(engagement, "name")
    except FieldError as error:
        refuse(form, error)
        return _tab(engagement, 409, add_form=form)
    if not form.validate_on_submit():
        return _tab(engagement, 422, add_form=form)
    here = _here(engagement_id)
    try:
        claimed = idempotency.claim(form.form_token.data, "valuechain.add", current_user.id)
        added = vc_service.add_relationship(
            engagement.company, form.name.data, kind=form.kind.data, tier=form.tier.data,
            products=form.products.data or "", country=form.country.data or None, region=form.region.data or "",
            isin=form.isin.data or None, lei=form.lei.data or None, source_ref=form.source_ref.data or "",
            accept_possible=form.accept_possible.data, actor_id=current_user.id)
        here = _here(engagement_id, f"rel-{added.relationship.id}")
        idempotency.record_result(claimed, here)
        db.session.commit()
    except idempotency.AlreadySubmitted as duplicate:
        db.session.rollback()
        return idempotency.answer_duplicate(duplicate, _here(engagement_id))
    except FieldError as error:
        status = refuse(form, error)
        return _tab(_engagement(engagement_id), status, add_form=form)
    text = (f"{added.relationship.counterparty.name} added to map {added.map.number} as "
            f"{added.relationship.kind.replace('_', '-')}, tier {added.relationship.tier}")
    text += " (a new company)" if added.created else " (an existing company)"
    if added.possible:
        text += f"; a possible match was not taken: {added.possible[1]} ({added.possible[2]})"
    if added.flagged:
        why = [str(n) for n in added.flags] + ([f"in the Uyghur Region ({added.region_reason})"]
                                               if added.region_reason else [])
        text += f". Flagged: {'; '.join(why)}"
    flash(text + ".", "info" if added.flagged else "success")
    return redirect(here, code=303)
