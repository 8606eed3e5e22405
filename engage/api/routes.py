"""The JSON API at /api/v1/: bearer tokens, the resources, the export feed, its OpenAPI document.

flask-smorest builds the OpenAPI 3.1 document from the views' schemas (engage.api.schemas).
Every API view is declared `require_role(..., token=True)`: the request signs in with the
personal access token of its Authorization header (never with a session cookie), the token's
scope bounds what it may do and the user's role bounds the token. CSRF does not apply (no
cookies); errors are problem details. Writes call the same services as the forms, in the
same transaction as their audit rows.
"""

from __future__ import annotations

import csv
import hashlib
import http
import io
from contextlib import ExitStack
from pathlib import Path
from typing import Callable

import sqlalchemy as sa
import flask_swagger_ui
from flask import Blueprint as FlaskBlueprint
from flask import Response, abort, current_app, g, json, render_template, request, send_from_directory
from werkzeug.datastructures import MultiDict
from flask_smorest import Api, Blueprint
from flask_smorest import abort as smorest_abort
from flask_smorest.utils import prepare_response
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.exc import StaleDataError
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import HTTPException

from engage import audit, clock
from engage.api import problems, schemas as s, tokens
from engage.engagements import cycle, service as engagements
from engage.engagements.queries import SORTS as ENGAGEMENT_SORTS
from engage.engagements.queries import engagement_query
from engage.exports import monthly
from engage.extensions import csrf, db, limiter
from engage.models import (
    Campaign,
    Company,
    CompanyAlias,
    Engagement,
    Fund,
    Holding,
    Interaction,
    ListedEntity,
    Reminder,
    RiskFlag,
    Score,
    User,
)
from engage.companies import service as companies_service
from engage.companies.forms import CompanyForm, RiskFlagForm
from engage.lists import review
from engage.reminders import service as reminders
from engage.scoring import service as scoring
from engage.validators import http_url_problem
from engage.security import SAFE_METHODS, access_rule, require_role

bp = Blueprint("api", __name__, url_prefix="/api/v1",
               description="Engage's JSON API (bearer tokens from the account page).")
#: webargs ignores unknown query parameters by default; here each schema's Meta decides (they
#: refuse them: a misspelt filter would otherwise answer with everything).
bp.ARGUMENTS_PARSER = FlaskParser(unknown=None)

#: Swagger UI's files, served by the app (never from a CDN).
SWAGGER_FILES = {"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"}
#: Swagger UI 5 (OpenAPI 3.1), as the flask-swagger-ui package ships it; only its files are used.
SWAGGER_DIR = Path(flask_swagger_ui.__file__).resolve().parent / "dist"
IF_MATCH = {"name": "If-Match", "in": "header", "required": True, "schema": {"type": "string"},
            "description": "The ETag of the resource as last read; a stale one is refused with 412."}


class EngageApi(Api):
    """flask-smorest's Api with errors as problem details, handled by the API blueprint alone.

    The stock Api registers a handler for every HTTPException of the app (the HTML pages'
    errors too) and documents errors as application/json; neither fits here.
    """

    ERROR_SCHEMA = s.ProblemSchema

    def _register_error_handlers(self):
        """None app-wide: the blueprint's own handler (below) answers the API's errors."""

    def _register_responses(self):
        for status in http.HTTPStatus:
            response = {"description": status.phrase}
            if not (100 <= status < 200) and status not in (204, 304):
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, problems.PROBLEM_TYPE)
            self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "An error, as problem details", "schema": self.ERROR_SCHEMA}
        prepare_response(response, self.spec, problems.PROBLEM_TYPE)
        self.spec.components.response(self.DEFAULT_ERROR_RESPONSE_NAME, response, lazy=True)


def init_app(app) -> None:
    """Register the API blueprint with its OpenAPI document (called by the app factory)."""
    api = EngageApi(app, spec_kwargs={
        "info": {"description": "Personal access tokens are made on the account page and sent as "
                                "`Authorization: Bearer <token>`. Updates need `If-Match` with the ETag "
                                "of the last read; errors are `application/problem+json`."},
    })
    api.register_field(s.DecimalText, "string", "decimal")
    api.spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    api.spec.options["security"] = [{"bearer": []}]
    csrf.exempt(bp)
    api.register_blueprint(bp)
    app.extensions["engage_api"] = api


def api_rate_limit() -> str:
    return current_app.config["API_RATE_LIMIT"]


def api_rate_key() -> str:
    """Per token (its hash, so the secret is not kept in the limiter's storage), else per address."""
    secret = tokens.bearer_of(request.headers.get("Authorization"))
    if secret:
        return "api-token:" + hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()[:32]
    return "api-addr:" + (request.remote_addr or "")


def refused_rate_key() -> str:
    return "api-refused:" + (request.remote_addr or "")


limiter.limit(api_rate_limit, key_func=api_rate_key)(bp)
# Each made-up token would get a limit of its own; refusals are counted per address as well, so
# guessing tokens (or a script stuck with a revoked one) is slowed like any other flood.
limiter.limit(api_rate_limit, key_func=refused_rate_key, deduct_when=lambda response: response.status_code == 401)(bp)


@bp.before_request
def authenticate():
    """Sign the request in with its bearer token; refuse a read-only token's or a role's writes."""
    rule = access_rule(request.endpoint)
    if rule is None or not rule.get("token"):  # the docs page: a signed-in user (engage.security)
        return None
    try:
        token = tokens.authenticate(request.headers.get("Authorization"), clock.utcnow())
    except tokens.Refused as refused:
        detail = refused.detail
        if not request.headers.get("Authorization") and any(
                str(value).startswith(tokens.TOKEN_PREFIX) for value in [*request.args.values(), *request.cookies.values()]):
            detail = ("A token counts only in the header 'Authorization: Bearer <token>', never in the address "
                      "(where logs keep it) or a cookie. " + detail)
        return problems.problem(401, detail,
                                headers={"WWW-Authenticate": 'Bearer realm="engage", error="invalid_token"'})
    user = token.user
    g._login_user = user  # Flask-Login's current_user for this request only (never the session)
    g.api_token = token
    # The audit trail says which token made a change: "sam@example.org (API token engage_Ab12Cd…)".
    g.api_audit = ExitStack()
    g.api_audit.enter_context(audit.acting_as(f"{user.email} (API token {token.prefix}…)", user.id))
    writing = request.method not in SAFE_METHODS
    refused = _query_problem() or (_body_problem() if writing else None)
    if refused is not None:
        return refused
    if writing and not token.can_write:
        return problems.problem(403, "This token is read only; make a read-write token to change things.")
    needed = rule["write"] if writing else rule["read"]
    if not user.has_role(needed):
        return problems.problem(403, f"Your role ({user.role}) does not allow this; it needs {needed.value}.")
    return None


#: No request body of the API nests deeper than this (a score's criteria are three levels).
MAX_JSON_DEPTH = 20


def _query_problem():
    """A query parameter sent twice is refused (which one would count is not obvious): a 422 naming it."""
    repeated = sorted(key for key in request.args if len(request.args.getlist(key)) > 1)
    if not repeated:
        return None
    message = "Send this parameter once."
    return problems.problem(422, "Parameters sent more than once: " + ", ".join(repeated) + ".",
                            errors={key: [message] for key in repeated})


def _body_problem():
    """A write's body that is not a JSON document the schemas can read, as a problem (None when fine).

    Without this a body sent as a form or without `Content-Type: application/json` would be
    read as empty, and a PATCH would answer 200 having changed nothing.
    """
    if not request.is_json and (request.form or request.files):  # read (and so emptied) by the app's NUL check
        return problems.problem(415, "Send the body as JSON with 'Content-Type: application/json' "
                                     f"(it came as {request.mimetype}).")
    body = request.get_data(cache=True)
    if not body.strip():
        return None  # a DELETE, or a POST whose schema says what is missing
    if not request.is_json:
        return problems.problem(415, "Send the body as JSON with 'Content-Type: application/json' "
                                     f"(it came as {request.mimetype or 'no content type'}).")
    try:
        data = json.loads(body)
    except RecursionError:
        return problems.problem(400, f"The JSON body nests deeper than {MAX_JSON_DEPTH} levels.")
    except ValueError as error:  # UnicodeDecodeError too
        return problems.problem(400, f"The body is not valid JSON: {error}.")
    depth, nul, surrogate = _shape(data)
    if depth > MAX_JSON_DEPTH:
        return problems.problem(400, f"The JSON body nests deeper than {MAX_JSON_DEPTH} levels.")
    if nul:  # the pages' check (engage.web) reads forms only; PostgreSQL's text refuses NUL
        return problems.problem(400, "The request contains a NUL character, which no field accepts.")
    if surrogate:  # "\\ud800" parses, but no database can store it (it was a 500)
        return problems.problem(400, "The request contains an unpaired surrogate escape (such as \\ud800), "
                                     "which is not a character; send the text as UTF-8.")
    return None


def _shape(document) -> tuple[int, bool, bool]:
    """How deep a JSON document nests, and whether any of its strings holds a NUL or an unpaired
    surrogate (iterative, no recursion)."""
    deepest, nul, surrogate = 0, False, False
    stack = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            nul = nul or "\x00" in value
            surrogate = surrogate or not value.isascii() and _has_surrogate(value)
        elif isinstance(value, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                break
            items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)
    return deepest, nul, surrogate


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


@bp.after_request
def not_modified(response):
    """A read sent with If-None-Match naming the current ETag gets a 304 without the body."""
    if request.method in SAFE_METHODS and response.status_code == 200 and "ETag" in response.headers:
        response.make_conditional(request)
    return response


@bp.teardown_request
def end_acting(_error):
    stack = g.pop("api_audit", None)
    if stack is not None:
        stack.close()


@bp.errorhandler(HTTPException)
@bp.errorhandler(403)
@bp.errorhandler(404)
def http_error(error):
    """The app's handlers for 403 and 404 (by code, so Flask prefers them to a class's) would
    replace a view's detail ("There is no engagement 7.") with a generic one: the API keeps it."""
    return problems.from_http_exception(error)


@bp.errorhandler(sa.exc.IntegrityError)
def conflict(error):
    """A unique row saved by a concurrent request between the check and the commit (a fund's name)."""
    db.session.rollback()
    return problems.problem(409, "This conflicts with a row saved meanwhile (a name or identifier now taken); "
                                 "read again and retry.")


# --- helpers --------------------------------------------------------------------------------------

def paged(query, args: dict, sorts: dict, model):
    """One page of `query` sorted as asked (ties by id), with the total count: two queries."""
    per_page = min(args.get("per_page") or current_app.config["API_PAGE_SIZE"], current_app.config["API_MAX_PAGE_SIZE"])
    column = sorts[args["sort"]]
    order = column.desc() if args["dir"] == "desc" else column.asc()
    total = db.session.scalar(sa.select(sa.func.count()).select_from(query.order_by(None).subquery()))
    items = db.session.scalars(query.order_by(order.nulls_last(), model.id)
                               .limit(per_page).offset((args["page"] - 1) * per_page)).all()
    return {"items": items, "page": args["page"], "per_page": per_page, "total": total}


def found(model, ident: int, *options):
    item = db.session.scalar(sa.select(model).where(model.id == ident).options(*options))
    if item is None:
        abort(404, f"There is no {NAMES.get(model.__name__, model.__name__.lower())} {ident}.")
    return item


#: How a 404 names a model whose class name is not the word for it.
NAMES = {"RiskFlag": "risk flag", "ListedEntity": "list entry"}


def etag_of(data) -> str:
    """A strong ETag of a representation: what a client sends back in If-Match."""
    return '"' + hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32] + '"'


def _engagement_version_tag(engagement: Engagement) -> str:
    return f'"engagement-{engagement.id}-v{engagement.version}'


def engagement_etag(engagement: Engagement) -> str:
    """An engagement's ETag: its version (the optimistic lock the forms use), then a digest of the
    figures its body carries beside its own fields (next follow-up, last contact, latest score and
    its change), which reminders, interactions and scores change without a new version. A read
    with If-None-Match so sees them change; If-Match compares the version part only
    (`engagement_matches`), so a reminder written meanwhile does not refuse a change of the owner."""
    figures = json.dumps(getattr(engagement, "api_figures", {}), sort_keys=True, default=str)
    return f'{_engagement_version_tag(engagement)}-{hashlib.sha256(figures.encode()).hexdigest()[:12]}"'


def engagement_matches(engagement: Engagement) -> Callable[[str], bool]:
    """If-Match test of an engagement: a tag of its current version, with any figures digest (or none,
    the form of the tags before the digest)."""
    prefix = _engagement_version_tag(engagement)
    return lambda tag: tag == prefix + '"' or tag.startswith(prefix + "-")


def check_if_match(current: str | Callable[[str], bool]) -> None:
    """Refuse a change without If-Match (428) or made from a stale read (412). `current`: the
    resource's ETag, or a test of a sent tag."""
    header = request.headers.get("If-Match")
    if not header:
        abort(428, "Send If-Match with the ETag of your last read of this resource.")
    sent = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    if "*" in sent:  # HTTP lets "*" match any version: it would switch the lock off
        abort(428, "If-Match: * is not accepted: send the ETag of your last read of this resource.")
    if not (any(map(current, sent)) if callable(current) else current in sent):
        abort(412, "The resource changed since you read it (its ETag is no longer the one sent): "
                   "read it again and retry.")


def refuse(status: int, field: str, message: str):
    """Answer a refused request: a problem naming the field of the body it concerns."""
    smorest_abort(status, message=message, messages={"json": {field: [message]}})


def user_or_refuse(user_id: int | None, field: str = "owner_id") -> User | None:
    if user_id is None:
        return None
    user = db.session.get(User, user_id)
    if user is None:
        refuse(422, field, f"There is no user {user_id}.")
    return user


# --- companies and risk flags -------------------------------------------------------------------

COMPANY_SORTS = {"name": Company.normalized_name, "isin": Company.isin, "country": Company.country,
                 "sector": Company.sector}


@bp.route("/companies")
@bp.arguments(s.CompanyArgs, location="query")
@bp.response(200, s.page_of(s.CompanySchema))
@require_role("viewer", token=True)
def companies(args):
    """List companies (filters as on the Companies page; `flagged` for those on a risk list)."""
    query = sa.select(Company).options(*COMPANY_LOAD)
    if args.get("q"):
        # autoescape: "%" and "_" are letters to look for, not LIKE's wildcards (q=% would list everything).
        part = args["q"].lower()
        aliases = sa.select(CompanyAlias.company_id).where(sa.func.lower(CompanyAlias.alias).contains(part, autoescape=True))
        query = query.where(sa.or_(sa.func.lower(Company.name).contains(part, autoescape=True),
                                   Company.isin == args["q"].upper(), sa.func.upper(Company.ticker) == args["q"].upper(),
                                   Company.id.in_(aliases)))
    if args.get("sector"):
        query = query.where(Company.sector == args["sector"])
    if args.get("country"):
        query = query.where(Company.country == args["country"].upper())
    current = sa.select(RiskFlag.company_id).where(RiskFlag.ended_on.is_(None))
    if args.get("source"):
        query = query.where(Company.id.in_(current.where(RiskFlag.source == args["source"])))
    if args.get("flagged") is True:
        query = query.where(Company.id.in_(current))
    elif args.get("flagged") is False:
        query = query.where(Company.id.not_in(current))
    return paged(query, args, COMPANY_SORTS, Company)


@bp.route("/companies/<int:company_id>")
@bp.response(200, s.CompanySchema)
@require_role("viewer", token=True)
def company(company_id: int):
    """One company, with the lists it is currently flagged on."""
    return _company_response(found(Company, company_id, *COMPANY_LOAD))


COMPANY_LOAD = (selectinload(Company.risk_flags), selectinload(Company.aliases))
#: API field -> company form field, where they differ.
COMPANY_FORM_FIELDS = {"parent": "parent_ref"}


def _company_form(data: dict, company: Company | None) -> CompanyForm:
    """The company form filled from the JSON (over the stored values for an update), validated."""
    values = {}
    if company is not None:
        values = {"name": company.name, "aliases": "\n".join(company.alias_names), "isin": company.isin or "",
                  "lei": company.lei or "", "parent_ref": companies_service.parent_reference(company),
                  "ticker": company.ticker or "", "exchange": company.exchange or "",
                  "country": company.country or "", "sector": company.sector or "", "website": company.website or "",
                  "address": company.address or "", "description": company.description or ""}
    for key, value in data.items():
        values[COMPANY_FORM_FIELDS.get(key, key)] = "\n".join(value) if key == "aliases" else (value or "")
    form = CompanyForm(formdata=MultiDict(values), company=company, meta={"csrf": False})
    if not form.validate():
        errors = {next((k for k, v in COMPANY_FORM_FIELDS.items() if v == name), name): list(messages)
                  for name, messages in form.errors.items()}
        smorest_abort(422, message="The company was not saved: " + "; ".join(
            f"{name}: {' '.join(messages)}" for name, messages in errors.items()), messages={"json": errors})
    return form


def _company_response(item: Company, status: int = 200):
    return item, status, {"ETag": etag_of(s.CompanySchema().dump(item))}


@bp.route("/companies", methods=["POST"])
@bp.arguments(s.CompanyCreate)
@bp.response(201, s.CompanySchema)
@require_role("viewer", "analyst", token=True)
def company_create(data):
    """Add a company (the company form's checks apply)."""
    form = _company_form(data, None)
    item = companies_service.apply_form(Company(), form)
    db.session.add(item)
    db.session.commit()
    return _company_response(item, 201)


@bp.route("/companies/<int:company_id>", methods=["PATCH"])
@bp.arguments(s.CompanyWrite)
@bp.response(200, s.CompanySchema)
@bp.doc(parameters=[IF_MATCH])
@bp.alt_response(412, response="PRECONDITION_FAILED")
@bp.alt_response(428, response="PRECONDITION_REQUIRED")
@require_role("viewer", "analyst", token=True)
def company_update(data, company_id: int):
    """Change a company's fields (those sent); needs If-Match."""
    item = db.session.scalar(sa.select(Company).where(Company.id == company_id).options(*COMPANY_LOAD)
                             .with_for_update(of=Company))
    if item is None:
        abort(404, f"There is no company {company_id}.")
    check_if_match(etag_of(s.CompanySchema().dump(item)))
    companies_service.apply_form(item, _company_form(data, item))
    db.session.commit()
    return _company_response(item)


@bp.route("/companies/<int:company_id>/risk-flags", methods=["POST"])
@bp.arguments(s.RiskFlagCreate)
@bp.response(201, s.RiskFlagSchema)
@require_role("viewer", "analyst", token=True)
def risk_flag_create(data, company_id: int):
    """Flag a company as on a list (as the company page's Add flag form does)."""
    item = found(Company, company_id)
    values = {key: "" if value is None else str(value) for key, value in data.items()}
    form = RiskFlagForm(formdata=MultiDict(values), meta={"csrf": False})
    if not form.validate():
        smorest_abort(422, message="The flag was not added: " + "; ".join(
            f"{name}: {' '.join(messages)}" for name, messages in form.errors.items()),
            messages={"json": dict(form.errors)})
    flag = companies_service.add_flag(item, form, g._login_user.id)
    db.session.commit()
    return flag, 201, {"ETag": etag_of(s.RiskFlagSchema().dump(flag))}


@bp.route("/risk-flags")
@bp.arguments(s.RiskFlagArgs, location="query")
@bp.response(200, s.page_of(s.RiskFlagSchema))
@require_role("viewer", token=True)
def risk_flags(args):
    """List risk flags (by company, list, current or ended)."""
    query = sa.select(RiskFlag)
    if args.get("company"):
        query = query.where(RiskFlag.company_id == args["company"])
    if args.get("source"):
        query = query.where(RiskFlag.source == args["source"])
    if args.get("current") is True:
        query = query.where(RiskFlag.ended_on.is_(None))
    elif args.get("current") is False:
        query = query.where(RiskFlag.ended_on.is_not(None))
    return paged(query, args, {"effective_date": RiskFlag.effective_date, "id": RiskFlag.id}, RiskFlag)


@bp.route("/risk-flags/<int:flag_id>")
@bp.response(200, s.RiskFlagSchema)
@require_role("viewer", token=True)
def risk_flag(flag_id: int):
    item = found(RiskFlag, flag_id)
    return item, 200, {"ETag": etag_of(s.RiskFlagSchema().dump(item))}


@bp.route("/risk-flags/<int:flag_id>", methods=["DELETE"])
@bp.response(204)
@bp.doc(parameters=[IF_MATCH])
@bp.alt_response(409, response="CONFLICT")
@bp.alt_response(412, response="PRECONDITION_FAILED")
@bp.alt_response(428, response="PRECONDITION_REQUIRED")
@require_role("viewer", "analyst", token=True)
def risk_flag_delete(flag_id: int):
    """Remove a flag as the company page does: a list's flag becomes a rejected match, remembered by screening."""
    flag = found(RiskFlag, flag_id)
    check_if_match(etag_of(s.RiskFlagSchema().dump(flag)))
    try:
        review.reject_flag(flag, g._login_user)
    except review.ReviewError as error:
        db.session.rollback()
        refuse(409, error.field, error.message)
    db.session.commit()
    return None


@bp.route("/list-entries")
@bp.arguments(s.ListEntryArgs, location="query")
@bp.response(200, s.page_of(s.ListEntrySchema))
@require_role("viewer", token=True)
def list_entries(args):
    """List the entries of imported sanctions and risk lists."""
    query = sa.select(ListedEntity)
    if args.get("source"):
        query = query.where(ListedEntity.source == args["source"])
    if args.get("version"):
        query = query.where(ListedEntity.version_id == args["version"])
    if args.get("q"):
        query = query.where(sa.func.lower(ListedEntity.name).contains(args["q"].lower(), autoescape=True))
    return paged(query, args, {"name": ListedEntity.normalized_name, "id": ListedEntity.id}, ListedEntity)


@bp.route("/list-entries/<int:entry_id>")
@bp.response(200, s.ListEntrySchema)
@require_role("viewer", token=True)
def list_entry(entry_id: int):
    item = found(ListedEntity, entry_id)
    return item, 200, {"ETag": etag_of(s.ListEntrySchema().dump(item))}


# --- engagements ------------------------------------------------------------------------------

ENGAGEMENT_LOAD = (selectinload(Engagement.company), selectinload(Engagement.campaign))


@bp.route("/engagements")
@bp.arguments(s.EngagementArgs, location="query")
@bp.response(200, s.page_of(s.EngagementSchema))
@require_role("viewer", token=True)
def engagements_list(args):
    """List engagements with the Engagements page's filters and sorts."""
    today = clock.today()
    f = {"campaign": args.get("campaign"), "stage": args.get("stage"), "escalation": args.get("escalation"),
         "owner": args.get("owner"), "sector": args.get("sector"), "overdue": args.get("overdue"),
         "stale": args.get("stale"), "score_below": args.get("score_below"), "trend": args.get("trend"),
         "sort": "company", "dir": "asc"}
    query = engagement_query(f, today).order_by(None).options(*ENGAGEMENT_LOAD)
    if args.get("company"):
        query = query.where(Engagement.company_id == args["company"])
    computed = {"next_follow_up": engagements.next_follow_up_query, "last_contact": engagements.last_contact_query,
                "score": engagements.latest_score_query, "change": engagements.score_change_query}
    sorts = {**ENGAGEMENT_SORTS, **{key: make() for key, make in computed.items()}}
    page = paged(query, args, sorts, Engagement)
    with_figures(page["items"])
    return page


#: Engagements whose figures one query reads.
FIGURES_CHUNK = 1000


def with_figures(items: list[Engagement]) -> list[Engagement]:
    """Next follow-up, last contact, latest score and its change for these engagements, in one query."""
    ids = [item.id for item in items]
    figures = {}
    for start in range(0, len(ids), FIGURES_CHUNK):  # an export's thousands of ids: under SQLite's bound-parameter limit
        figures.update({row.id: row._asdict() for row in db.session.execute(
            sa.select(Engagement.id, engagements.next_follow_up_query().label("next_follow_up"),
                      engagements.last_contact_query().label("last_contact"),
                      engagements.latest_score_query().label("latest_score"),
                      engagements.score_change_query().label("score_change"))
            .where(Engagement.id.in_(ids[start:start + FIGURES_CHUNK])))})
    for item in items:
        item.api_figures = figures.get(item.id, {})
    return items


def _engagement_response(engagement: Engagement, status: int = 200):
    with_figures([engagement])
    return engagement, status, {"ETag": engagement_etag(engagement)}


@bp.route("/engagements/<int:engagement_id>")
@bp.response(200, s.EngagementSchema)
@require_role("viewer", token=True)
def engagement(engagement_id: int):
    """One engagement; its ETag follows its version and the figures it shows."""
    return _engagement_response(found(Engagement, engagement_id, *ENGAGEMENT_LOAD))


@bp.route("/engagements", methods=["POST"])
@bp.arguments(s.EngagementOpen)
@bp.response(201, s.EngagementSchema)
@require_role("viewer", "analyst", token=True)
def engagement_open(data):
    """Open an engagement (as the Open engagement form does)."""
    company = db.session.get(Company, data["company_id"]) or refuse(
        422, "company_id", f"There is no company {data['company_id']}.")
    campaign = db.session.get(Campaign, data["campaign_id"]) or refuse(
        422, "campaign_id", f"There is no campaign {data['campaign_id']}.")
    owner = user_or_refuse(data["owner_id"])
    try:
        item = engagements.open_engagement(company, campaign, owner=owner, objectives=data["objectives"],
                                           opened_on=data["opened_on"], today=clock.today(), actor_id=g._login_user.id)
        db.session.commit()
    except engagements.EngagementError as error:
        db.session.rollback()
        refuse(422, error.field, error.message)
    return _engagement_response(item, 201)


def _commit_or_412():
    try:
        db.session.commit()  # UPDATE ... WHERE id = ? AND version = ?: a race lost here is a 412 too
    except StaleDataError:
        db.session.rollback()
        abort(412, "The engagement changed while this request ran: read it again and retry.")


@bp.route("/engagements/<int:engagement_id>", methods=["PATCH"])
@bp.arguments(s.EngagementPatch)
@bp.response(200, s.EngagementSchema)
@bp.doc(parameters=[IF_MATCH])
@bp.alt_response(412, response="PRECONDITION_FAILED")
@bp.alt_response(428, response="PRECONDITION_REQUIRED")
@require_role("viewer", "analyst", token=True)
def engagement_update(data, engagement_id: int):
    """Change the owner, objectives or next step (the fields sent); needs If-Match."""
    item = found(Engagement, engagement_id, *ENGAGEMENT_LOAD)
    check_if_match(engagement_matches(item))
    owner = user_or_refuse(data["owner_id"]) if "owner_id" in data else item.owner
    next_step = data.get("next_step")
    if next_step is None and "next_step_on" in data:
        next_step = item.next_step
    try:
        engagements.update_engagement(
            item, seen_version=item.version, owner=owner, objectives=data.get("objectives", item.objectives),
            next_step=next_step, next_step_on=data.get("next_step_on", item.next_step_on), today=clock.today())
    except engagements.EngagementError as error:
        db.session.rollback()
        refuse(422, error.field, error.message)
    _commit_or_412()
    return _engagement_response(item)


def _move(engagement_id: int, perform):
    item = found(Engagement, engagement_id, *ENGAGEMENT_LOAD)
    check_if_match(engagement_matches(item))
    try:
        perform(item)
    except cycle.MoveError as error:
        db.session.rollback()
        # A move the cycle does not allow from here conflicts with the state; other refusals are input.
        refuse(409 if error.field == "target" else 422, error.field, error.message)
    _commit_or_412()
    return _engagement_response(item)


@bp.route("/engagements/<int:engagement_id>/stage", methods=["POST"])
@bp.arguments(s.StageMove)
@bp.response(200, s.EngagementSchema)
@bp.doc(parameters=[IF_MATCH])
@bp.alt_response(409, response="CONFLICT")
@bp.alt_response(412, response="PRECONDITION_FAILED")
@bp.alt_response(428, response="PRECONDITION_REQUIRED")
@require_role("viewer", "analyst", token=True)
def engagement_stage(data, engagement_id: int):
    """Move the stage through the cycle (its rules apply: 409 for a move it does not allow)."""
    return _move(engagement_id, lambda item: cycle.move_stage(
        item, data["target"], on=data["occurred_on"], today=clock.today(), actor_id=g._login_user.id,
        note=data["note"], reason=data["reason"], evidence=data["evidence"], evidence_url=data["evidence_url"],
        outcome=data["outcome"]))


@bp.route("/engagements/<int:engagement_id>/escalation", methods=["POST"])
@bp.arguments(s.EscalationMove)
@bp.response(200, s.EngagementSchema)
@bp.doc(parameters=[IF_MATCH])
@bp.alt_response(409, response="CONFLICT")
@bp.alt_response(412, response="PRECONDITION_FAILED")
@bp.alt_response(428, response="PRECONDITION_REQUIRED")
@require_role("viewer", "analyst", token=True)
def engagement_escalation(data, engagement_id: int):
    """Move up or down the escalation ladder (its rules apply)."""
    return _move(engagement_id, lambda item: cycle.move_escalation(
        item, data["target"], on=data["occurred_on"], today=clock.today(), actor_id=g._login_user.id,
        note=data["note"], reason=data["reason"], evidence=data["evidence"], evidence_url=data["evidence_url"]))


# --- interactions, reminders, scores ------------------------------------------------------------

@bp.route("/interactions")
@bp.arguments(s.InteractionArgs, location="query")
@bp.response(200, s.page_of(s.InteractionSchema))
@require_role("viewer", token=True)
def interactions(args):
    """List logged contacts (by engagement, kind and date)."""
    query = sa.select(Interaction)
    if args.get("engagement"):
        query = query.where(Interaction.engagement_id == args["engagement"])
    if args.get("kind"):
        query = query.where(Interaction.kind == args["kind"])
    if args.get("since"):
        query = query.where(Interaction.occurred_on >= args["since"])
    if args.get("until"):
        query = query.where(Interaction.occurred_on <= args["until"])
    return paged(query, args, {"occurred_on": Interaction.occurred_on, "id": Interaction.id}, Interaction)


@bp.route("/interactions/<int:interaction_id>")
@bp.response(200, s.InteractionSchema)
@require_role("viewer", token=True)
def interaction(interaction_id: int):
    item = found(Interaction, interaction_id)
    return item, 200, {"ETag": etag_of(s.InteractionSchema().dump(item))}


@bp.route("/engagements/<int:engagement_id>/interactions", methods=["POST"])
@bp.arguments(s.InteractionCreate)
@bp.response(201, s.InteractionSchema)
@require_role("viewer", "analyst", token=True)
def interaction_create(data, engagement_id: int):
    """Log a contact on an engagement (no attachments through the API)."""
    item = found(Engagement, engagement_id)
    try:
        logged, _ = engagements.log_interaction(
            item, kind=data["kind"], direction=data["direction"], occurred_on=data["occurred_on"],
            subject=data["subject"], summary=data["summary"], participants=data["participants"], uploads=[],
            today=clock.today(), actor_id=g._login_user.id)
        db.session.commit()
    except engagements.EngagementError as error:
        db.session.rollback()
        refuse(422, error.field, error.message)
    return logged, 201, {"ETag": etag_of(s.InteractionSchema().dump(logged))}


@bp.route("/reminders")
@bp.arguments(s.ReminderArgs, location="query")
@bp.response(200, s.page_of(s.ReminderSchema))
@require_role("viewer", token=True)
def reminders_list(args):
    """List reminders (by engagement, status, due date)."""
    query = sa.select(Reminder)
    if args.get("engagement"):
        query = query.where(Reminder.engagement_id == args["engagement"])
    if args.get("status"):
        query = query.where(Reminder.status == args["status"])
    if args.get("due_before"):
        query = query.where(Reminder.due_on < args["due_before"])
    return paged(query, args, {"due_on": Reminder.due_on, "id": Reminder.id}, Reminder)


def _reminder_response(item: Reminder, status: int = 200):
    return item, status, {"ETag": etag_of(s.ReminderSchema().dump(item))}


@bp.route("/reminders/<int:reminder_id>")
@bp.response(200, s.ReminderSchema)
@require_role("viewer", token=True)
def reminder(reminder_id: int):
    return _reminder_response(found(Reminder, reminder_id))


@bp.route("/reminders", methods=["POST"])
@bp.arguments(s.ReminderCreate)
@bp.response(201, s.ReminderSchema)
@require_role("viewer", "analyst", token=True)
def reminder_create(data):
    """Add a manual reminder to an open engagement."""
    item = db.session.get(Engagement, data["engagement_id"]) or refuse(
        422, "engagement_id", f"There is no engagement {data['engagement_id']}.")
    try:
        added = reminders.add_manual(item, due_on=data["due_on"], reason=data["reason"], today=clock.today(),
                                     actor_id=g._login_user.id)
        db.session.commit()
    except reminders.ReminderError as error:
        db.session.rollback()
        refuse(422, error.field, error.message)
    return _reminder_response(added, 201)


@bp.route("/reminders/<int:reminder_id>", methods=["PATCH"])
@bp.arguments(s.ReminderPatch)
@bp.response(200, s.ReminderSchema)
@bp.doc(parameters=[IF_MATCH])
@bp.alt_response(412, response="PRECONDITION_FAILED")
@bp.alt_response(428, response="PRECONDITION_REQUIRED")
@require_role("viewer", "analyst", token=True)
def reminder_update(data, reminder_id: int):
    """Mark a reminder done, or snooze it to a later date; needs If-Match."""
    item = db.session.scalar(sa.select(Reminder).where(Reminder.id == reminder_id).with_for_update())
    if item is None:
        abort(404, f"There is no reminder {reminder_id}.")
    check_if_match(etag_of(s.ReminderSchema().dump(item)))
    try:
        if data["status"] == "done":
            reminders.complete(item)
        else:
            reminders.snooze(item, data["until"], clock.today())
        db.session.commit()
    except reminders.ReminderError as error:
        db.session.rollback()
        refuse(422, error.field, error.message)
    return _reminder_response(item)


SCORE_LOAD = (selectinload(Score.criterion_scores),)


@bp.route("/scores")
@bp.arguments(s.ScoreArgs, location="query")
@bp.response(200, s.page_of(s.ScoreSchema))
@require_role("viewer", token=True)
def scores(args):
    """List scored company responses, each with its criteria."""
    query = sa.select(Score).options(*SCORE_LOAD)
    if args.get("engagement"):
        query = query.where(Score.engagement_id == args["engagement"])
    return paged(query, args, {"scored_on": Score.scored_on, "total": Score.total, "id": Score.id}, Score)


@bp.route("/scores/<int:score_id>")
@bp.response(200, s.ScoreSchema)
@require_role("viewer", token=True)
def score(score_id: int):
    item = found(Score, score_id, *SCORE_LOAD)
    return item, 200, {"ETag": etag_of(s.ScoreSchema().dump(item))}


@bp.route("/scores", methods=["POST"])
@bp.arguments(s.ScoreCreate)
@bp.response(201, s.ScoreSchema)
@require_role("viewer", "analyst", token=True)
def score_create(data):
    """Score a company response against its campaign's published rubric (or moderate a score)."""
    interaction = db.session.scalar(sa.select(Interaction).where(Interaction.id == data["interaction_id"])
                                    .options(selectinload(Interaction.engagement)))
    if interaction is None:
        refuse(422, "interaction_id", f"There is no interaction {data['interaction_id']}.")
    moderates = None
    if data["moderates_id"] is not None:
        moderates = db.session.get(Score, data["moderates_id"]) or refuse(
            422, "moderates_id", f"There is no score {data['moderates_id']}.")
    entries = {}
    for index, entry in enumerate(data["criteria"]):
        if (problem := http_url_problem(entry["evidence_url"])) is not None:
            refuse(422, f"criteria.{index}.evidence_url", problem)
        if entry["criterion_id"] in entries:  # which of two levels would count is not obvious
            refuse(422, f"criteria.{index}.criterion_id", f"Criterion {entry['criterion_id']} is sent twice.")
        entries[entry["criterion_id"]] = scoring.Entry(level=entry["level"], evidence=entry["evidence"],
                                                       evidence_url=entry["evidence_url"] or None)
    try:
        made = scoring.score_response(interaction, scorer_id=g._login_user.id, scored_on=data["scored_on"],
                                      today=clock.today(), entries=entries, note=data["note"], moderates=moderates)
        # The service reads the rubric's criteria; one it does not have would be dropped unsaid.
        scored = {item.criterion.id for item in made.criterion_scores}
        if stray := [index for index, entry in enumerate(data["criteria"]) if entry["criterion_id"] not in scored]:
            db.session.rollback()
            refuse(422, f"criteria.{stray[0]}.criterion_id", f"Criterion {data['criteria'][stray[0]]['criterion_id']} "
                                                            "is not in the rubric this response is scored against.")
        db.session.commit()
    except scoring.ScoreError as error:
        db.session.rollback()
        # The form names a criterion's fields "level-<id>"; the API says which criterion in words.
        refuse(422, "criteria" if error.field.startswith(("level-", "evidence-")) else error.field, error.message)
    return made, 201, {"ETag": etag_of(s.ScoreSchema().dump(made))}


# --- funds and holdings -------------------------------------------------------------------------

@bp.route("/funds", methods=["POST"])
@bp.arguments(s.FundCreate)
@bp.response(201, s.FundSchema)
@require_role("viewer", "analyst", token=True)
def fund_create(data):
    """Add a fund (its holdings come from an import on the Holdings page or the CLI)."""
    name = data["name"].strip()
    if not name:
        refuse(422, "name", "Give the fund a name.")
    if db.session.scalar(sa.select(Fund.id).where(Fund.name == name)):
        refuse(422, "name", f"A fund called {name} already exists.")
    item = Fund(name=name, provider=(data["provider"] or "").strip() or None,
                base_currency=data["base_currency"].upper(), benchmark=(data["benchmark"] or "").strip() or None)
    db.session.add(item)
    db.session.commit()
    return item, 201, {"ETag": etag_of(s.FundSchema().dump(item))}


@bp.route("/funds")
@bp.arguments(s.FundArgs, location="query")
@bp.response(200, s.page_of(s.FundSchema))
@require_role("viewer", token=True)
def funds(args):
    return paged(sa.select(Fund), args, {"name": Fund.name, "id": Fund.id}, Fund)


@bp.route("/funds/<int:fund_id>")
@bp.response(200, s.FundSchema)
@require_role("viewer", token=True)
def fund(fund_id: int):
    item = found(Fund, fund_id)
    return item, 200, {"ETag": etag_of(s.FundSchema().dump(item))}


@bp.route("/holdings")
@bp.arguments(s.HoldingArgs, location="query")
@bp.response(200, s.page_of(s.HoldingSchema))
@require_role("viewer", token=True)
def holdings(args):
    """List positions (by fund, company and as-of date)."""
    query = sa.select(Holding)
    if args.get("fund"):
        query = query.where(Holding.fund_id == args["fund"])
    if args.get("company"):
        query = query.where(Holding.company_id == args["company"])
    if args.get("as_of"):
        query = query.where(Holding.as_of == args["as_of"])
    return paged(query, args, {"as_of": Holding.as_of, "market_value": Holding.market_value, "id": Holding.id},
                 Holding)


@bp.route("/holdings/<int:holding_id>")
@bp.response(200, s.HoldingSchema)
@require_role("viewer", token=True)
def holding(holding_id: int):
    item = found(Holding, holding_id)
    return item, 200, {"ETag": etag_of(s.HoldingSchema().dump(item))}


# --- the export feed ----------------------------------------------------------------------------

def _month_request(args) -> monthly.ExportRequest:
    values = {key: str(args[key]) for key in ("month", "campaign", "owner", "fund") if args.get(key)}
    values["format"] = "csv"  # parse_request knows the file formats; the feed adds json
    try:
        return monthly.parse_request(values, clock.today())
    except monthly.ExportError as error:
        refuse(422, error.field, error.message)


def _csv(rows: list[list], name: str) -> Response:
    out = io.StringIO()
    out.write("\ufeff")  # with a BOM like the monthly CSV, so Excel reads non-Latin names right
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows(rows)
    return Response(out.getvalue().encode("utf-8"), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


CSV_CONTENT = {"text/csv": {"schema": {"type": "string"}}}


@bp.route("/exports/monthly")
@bp.arguments(s.MonthArgs, location="query")
@bp.response(200, s.MonthlyExportSchema)
@bp.alt_response(200, success=True, content_type="text/csv", description="The same rows as the CSV export",
                 schema={"type": "string"})
@require_role("viewer", token=True)
def export_monthly(args):
    """The monthly status rows of a month (`format=json` or `csv`, the same columns as the CSV export)."""
    asked = _month_request(args)
    export = monthly.build(asked.month, asked.filters, cut_off=clock.today())
    if args["format"] == "csv":
        out = io.StringIO()
        monthly.write_csv(export, out)
        return Response(out.getvalue().encode("utf-8"), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="engage-status-{asked.month}.csv"'})
    rows = [{key: (value.isoformat() if hasattr(value, "isoformat") else
                   str(value) if value is not None and not isinstance(value, (int, str, float)) else value)
             for key, value in row.items() if key in KEYS} for row in export.rows]
    return {"month": str(asked.month), "state_on": export.end, "rows": rows}


KEYS = {column.key for column in monthly.COLUMN_SPECS}


@bp.route("/exports/engagements")
@bp.arguments(s.MonthArgs, location="query")
@bp.response(200, s.EngagementExportSchema)
@bp.alt_response(200, success=True, content_type="text/csv", description="The same rows as CSV",
                 schema={"type": "string"})
@require_role("viewer", token=True)
def export_engagements(args):
    """The engagements open at any time in a month, as JSON or CSV (a feed for BI tools)."""
    asked = _month_request(args)
    end = min(asked.month.last, clock.today())
    query = (sa.select(Engagement).join(Engagement.company).options(*ENGAGEMENT_LOAD)
             .where(Engagement.open_during(asked.month.first, end)).order_by(Company.normalized_name, Engagement.id))
    f = asked.filters
    if f.campaign is not None:
        query = query.where(Engagement.campaign_id == f.campaign.id)
    if f.owner is not None:
        query = query.where(Engagement.owner_id == f.owner.id)
    if f.fund is not None:
        query = query.where(Engagement.company_id.in_(sa.select(Holding.company_id).where(Holding.fund_id == f.fund.id)))
    items = with_figures(db.session.scalars(query).all())
    if args["format"] == "csv":
        fields = list(s.EngagementSchema().fields)
        dumped = s.EngagementSchema(many=True).dump(items)
        return _csv([fields] + [[monthly.neutralise("" if row[k] is None else row[k]) for k in fields]
                                for row in dumped], f"engage-engagements-{asked.month}.csv")
    return {"month": str(asked.month), "rows": items}


# --- the OpenAPI document and its browsable page (not part of the document) --------------------

def openapi_json():
    """The OpenAPI 3.1 document, generated from the views (a token reads it like any resource)."""
    return current_app.extensions["engage_api"].spec.to_dict()


def docs_page():
    """Swagger UI for signed-in users, its files served by the app, the document embedded."""
    return render_template("api/docs.html", spec=current_app.extensions["engage_api"].spec.to_dict())


def docs_asset(name: str):
    if name not in SWAGGER_FILES:
        abort(404)
    return send_from_directory(SWAGGER_DIR, name, max_age=3600)


# Added with Flask's add_url_rule, not flask-smorest's: they are not operations of the API.
FlaskBlueprint.add_url_rule(bp, "/openapi.json", "openapi_json", require_role("viewer", token=True)(openapi_json))
FlaskBlueprint.add_url_rule(bp, "/docs", "docs", require_role("viewer")(docs_page))
FlaskBlueprint.add_url_rule(bp, "/docs/assets/<name>", "docs_asset", require_role("viewer")(docs_asset))
