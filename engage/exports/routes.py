"""The Exports page (monthly status export, stored copies) and the public campaign report."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, redirect, render_template, request, send_file, url_for
from flask_login import current_user

from engage import background, clock
from engage.exports import jobs as export_jobs
from engage.exports import monthly, public, service
from engage.extensions import db
from engage.models import Campaign, ExportRun, Fund, Role, User
from engage.security import require_role

bp = Blueprint("exports", __name__, url_prefix="/exports")


def _choices():
    return {
        "campaigns": db.session.scalars(sa.select(Campaign).order_by(Campaign.name)).all(),
        "owners": db.session.scalars(sa.select(User).where(User.role != Role.VIEWER.value).order_by(User.name)).all(),
        "funds": db.session.scalars(sa.select(Fund).order_by(Fund.name)).all(),
    }


@bp.route("")
@require_role("viewer")
def index():
    today = clock.today()
    last_month = monthly.Month(today.year, today.month).previous
    return render_template("exports/index.html", default_month=str(last_month), runs=service.stored_runs(),
                           kept=service.kept_files(),
                           error=None, **_choices())


@bp.route("/monthly")
@require_role("viewer")
def download():
    today = clock.today()
    try:
        asked = monthly.parse_request(request.args, today)
    except monthly.ExportError as error:
        return render_template("exports/index.html", default_month=request.args.get("month", ""),
                               runs=service.stored_runs(), kept=service.kept_files(), error=error.message,
                               **_choices()), 400
    month, fmt = asked.month, asked.fmt
    rows = monthly.count(month, asked.filters, cut_off=today)
    if rows >= current_app.config["EXPORT_JOB_ENGAGEMENTS"]:
        return _export_in_background(asked, rows, today)
    export = monthly.build(month, asked.filters, cut_off=today)
    name = f"engage-status-{month}.{fmt}"
    if fmt == "csv":
        out = io.StringIO()
        monthly.write_csv(export, out)
        return Response(out.getvalue().encode("utf-8"), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        monthly.write_xlsx(export, str(path))
        data = path.read_bytes()
    return Response(data, mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _export_in_background(asked: monthly.ExportRequest, rows: int, today):
    """A big export is made by the job worker into a stored file; its page shows the progress, then
    links to the file (also listed on this page). The same export asked for again meanwhile (a
    double click, a second tab) finds the same job."""
    args = {k: (request.args.get(k) or "").strip() for k in ("month", "format", *monthly.FILTER_KEYS)}
    args["month"], args["format"] = str(asked.month), asked.fmt
    chosen = [getattr(row, "name", None) for row in (asked.filters.campaign, asked.filters.owner, asked.filters.fund) if row]
    what = f"{asked.month} ({asked.fmt.upper()}, {rows:,} engagements{''.join(', ' + n for n in chosen if n)})"
    job = background.submit(export_jobs.KIND, key=export_jobs.key(args, today, current_user.id),
                            label=f"Monthly status export {what}",
                            params={"args": args, "today": today.isoformat()}, user_id=current_user.id)
    return redirect(url_for("background.show", job_id=job.id), code=303)


@bp.route("/stored/<int:run_id>")
@require_role("viewer")
def stored(run_id: int):
    run = db.get_or_404(ExportRun, run_id)
    path = service.export_dir() / run.filename
    if not path.is_file():  # a job's export deleted after JOB_RESULTS_KEEP_DAYS (or by hand): say so
        return render_template("errors/error.html", code=410, title="No longer kept",
                               text=f"The file {run.filename} was deleted: exports made by a job are kept "
                                    f"{current_app.config['JOB_RESULTS_KEEP_DAYS']} days. Ask for the export "
                                    f"again on the Exports page."), 410
    return send_file(path, as_attachment=True, download_name=run.filename, max_age=0)


@bp.route("/campaigns/<int:campaign_id>/report")
@require_role("viewer")
def public_report(campaign_id: int):
    campaign = db.get_or_404(Campaign, campaign_id)
    return render_template("exports/public_report.html", report=public.report(campaign, clock.today()),
                           standalone=False)


@bp.route("/campaigns/<int:campaign_id>/report.pdf")
@require_role("viewer")
def public_report_pdf(campaign_id: int):
    campaign = db.get_or_404(Campaign, campaign_id)
    pdf = public.report_pdf(public.report(campaign, clock.today()))
    return Response(pdf, mimetype="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="progress-report-{campaign.slug}.pdf"'})
