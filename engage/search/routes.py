"""Search everywhere: the results page behind the header's search box (GET /search?q=)."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request, url_for
from flask_login import current_user

from engage.search import service
from engage.security import access_rule, require_role
from engage.web import MAX_OFFSET, page_number

bp = Blueprint("search", __name__, url_prefix="/search")

#: Where each kind of result leads: (endpoint, its arguments from the hit, fragment).
TARGETS = {
    "companies": ("companies.show", lambda hit: {"company_id": hit.company_id}, ""),
    "engagements": ("engagements.show", lambda hit: {"engagement_id": hit.engagement_id}, ""),
    "contacts": ("companies.show", lambda hit: {"company_id": hit.company_id}, "contacts"),
    "interactions": ("engagements.show", lambda hit: {"engagement_id": hit.engagement_id},
                     "interaction-{id}"),
}


def link_for(hit) -> str | None:
    """The page a result opens, or None when the signed-in user's role cannot open it."""
    endpoint, arguments, fragment = TARGETS[hit.kind]
    rule = access_rule(endpoint)
    if rule is None or not (rule.get("public") or current_user.has_role(rule["read"])):
        return None
    url = url_for(endpoint, **arguments(hit))
    return f"{url}#{fragment.format(id=hit.id)}" if fragment else url


@bp.route("")
@require_role("viewer")
def index():
    kind = request.args.get("kind") or None
    if kind is not None and kind not in service.KINDS:
        abort(404)
    page = page_number() if kind else 1
    if (page - 1) * service.PAGE_SIZE > MAX_OFFSET:
        abort(404)  # no database could reach it
    results = service.search(request.args.get("q", ""), kind=kind, page=page)
    if kind and page > 1 and not results.groups[0].hits:
        abort(404)  # a page past the last, like every list
    return render_template("search/results.html", results=results, link_for=link_for, kinds=service.KINDS)
