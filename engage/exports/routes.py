"""The Exports page (monthly status export, stored copies) and the public campaign report."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import sqlalchemy as sa
from flask import Blueprint, Response, abort, render_template, request, send_file

from engage import clock
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
                           error=None, **_choices())


@bp.route("/monthly")
@require_role("viewer")
def download():
    today = clock.today()
    try:
        asked = monthly.parse_request(request.args, today)
    except monthly.ExportError as error:
        return render_template("exports/index.html", default_month=request.args.get("month", ""),
                               runs=service.stored_runs(), error=error.message, **_choices()), 400
    month, fmt = asked.month, asked.fmt
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


@bp.route("/stored/<int:run_id>")
@require_role("viewer")
def stored(run_id: int):
    run = db.get_or_404(ExportRun, run_id)
    path = service.export_dir() / run.filename
    if not path.is_file():
        abort(404)
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
